# -*- test-case-name: tests.storage.test_rules -*-
"""
The rules both storages follow, as pure functions.

L{DiskStorage<raft3d.storage.DiskStorage>} and
L{MemoryStorage<raft3d.storage.MemoryStorage>} must behave the same so that
a simulated cluster says something about a real one; keeping the decisions
(how batches truncate and append, which snapshot to trust, what compaction
may delete) here means there is only one copy of each.
"""

from __future__ import annotations

from typing import Callable, Literal, Sequence

import attrs

from ..raft._types import Entry, EntryType, SnapshotMeta

KEEP_SNAPSHOTS = 2
"""How many snapshots are kept; the older one is the fallback if the newest
turns out to be damaged."""

_MAX_U64 = 2**64 - 1


def check_entries(entries: Sequence[Entry]) -> None:
    """
    Check that C{entries} can be stored: contiguous ascending indexes from
    1 up, terms and types that fit the record format, C{bytes} payloads.

    @raise ValueError: if not.
    """
    expected = entries[0].index
    if expected < 1:
        raise ValueError(f"entry index {expected} < 1")
    for e in entries:
        if e.index != expected:
            raise ValueError(f"entries not contiguous: {e.index} follows {expected - 1}")
        if not 0 <= e.term <= _MAX_U64 or e.index > _MAX_U64:
            raise ValueError(f"entry {e.index} has out of range term {e.term}")
        if not isinstance(e.type, EntryType) or not isinstance(e.data, bytes):
            raise ValueError(f"entry {e.index} has bad type or data")
        expected += 1


@attrs.define
class LogPlan:
    """
    Folds the entries of consecutive batches into at most one truncation of
    the stored log followed by one append.

    Each batch means "discard every entry with index >= the batch's first,
    then append"; folding several lets the disk storage write a whole group
    commit with a single write and a single fdatasync.

    @ivar stored_next: the index the stored log continues at.
    @ivar truncate_at: if not L{None}, stored entries from this index on
        must be discarded before appending.
    @ivar pending: the entries to append; the first one has index
        C{truncate_at} if set, else C{stored_next}.
    """

    stored_next: int
    truncate_at: int | None = None
    pending: list[Entry] = attrs.Factory(list)

    @property
    def next_index(self) -> int:
        """
        The index a following batch may start at, at the latest.
        """
        if self.pending:
            return self.pending[-1].index + 1
        if self.truncate_at is not None:
            return self.truncate_at
        return self.stored_next

    def add(self, entries: Sequence[Entry]) -> None:
        """
        Fold in one batch's entries; on error the plan is unchanged.

        @raise ValueError: if the entries are malformed or leave a gap.
        """
        if not entries:
            return
        check_entries(entries)
        first = entries[0].index
        if first > self.next_index:
            raise ValueError(f"batch starts at {first} but the log continues at {self.next_index}")
        if self.pending and first >= self.pending[0].index:
            del self.pending[first - self.pending[0].index :]
            self.pending.extend(entries)
            return
        if first < self.stored_next and (self.truncate_at is None or first < self.truncate_at):
            self.truncate_at = first
        self.pending = list(entries)


def next_index(last_entry: int | None, snapshot_index: int | None) -> int:
    """
    The index the log continues at, given its last entry (if any) and the
    newest snapshot (if any).
    """
    if last_entry is not None:
        return last_entry + 1
    if snapshot_index is not None:
        return snapshot_index + 1
    return 1


def check_log_against_snapshot(
    snapshot: SnapshotMeta | None,
    first: int | None,
    last: int | None,
    term_at: Callable[[int], int],
) -> Literal["keep", "discard"]:
    """
    Decide what to do at start-up with a stored log next to a snapshot.

    The log is kept if it continues the snapshot.  It is discarded when it
    ends before the snapshot or disagrees with it at the snapshot's index
    (paper figure 13, rules 6 and 7): that is what a crash in the middle of
    L{install_snapshot<raft3d.raft.IRaftStorage.install_snapshot>} leaves,
    and it is what the install asked for.

    @param term_at: the term of a stored entry, given its index.
    @raise ValueError: when entries are missing between the snapshot (or
        the start of time) and the log, which no crash can explain.
    """
    if first is None or last is None:
        return "keep"
    if snapshot is None:
        if first != 1:
            raise ValueError(f"log starts at index {first} and there is no snapshot")
        return "keep"
    if first > snapshot.index + 1:
        raise ValueError(f"log starts at index {first}, after snapshot index {snapshot.index}")
    if last < snapshot.index:
        return "discard"
    if first <= snapshot.index and term_at(snapshot.index) != snapshot.term:
        return "discard"
    return "keep"


def fallback_covers(
    fallback_index: int, skipped_index: int, first: int | None, last: int | None
) -> bool:
    """
    Whether a damaged snapshot at C{skipped_index} may be skipped in favour
    of an older one at C{fallback_index} (0 for "no snapshot"): only if the
    log holds every entry in between.
    """
    if first is None or last is None:
        return False
    return first <= fallback_index + 1 and last >= skipped_index


def snapshots_to_delete(keys: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """
    The C{(index, term)} keys of the snapshots to delete: all but the newest
    L{KEEP_SNAPSHOTS}.
    """
    return sorted(keys)[:-KEEP_SNAPSHOTS]


def compaction_limit(upto_index: int, snapshot_index: int | None) -> int:
    """
    The highest index compaction may really discard: never beyond the newest
    durable snapshot, so that a compaction requested too early cannot lose
    entries nothing else holds.
    """
    return min(upto_index, snapshot_index if snapshot_index is not None else 0)
