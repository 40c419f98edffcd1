# -*- test-case-name: tests.raft.test_log -*-
"""
The in-memory view of the Raft log that the core works on.

The core keeps every entry since the last compaction in memory, so it never
waits on disk to answer a follower; storage only mirrors it.  Entries before
C{offset + 1} have been compacted into a snapshot.
"""

from __future__ import annotations

from typing import Iterable, Sequence

from ._types import Entry


class RaftLog:
    """
    A contiguous run of entries C{offset + 1 .. last_index}.

    @ivar offset: the index just before the first entry held.
    @ivar offset_term: the term of the entry at C{offset}, or L{None} when it
        is unknown (a node restarted with a trailing window older than its
        snapshot).
    """

    def __init__(
        self,
        offset: int = 0,
        offset_term: int | None = 0,
        entries: Sequence[Entry] = (),
    ) -> None:
        self.offset = offset
        self.offset_term = offset_term
        self._entries: list[Entry] = list(entries)
        if self._entries and self._entries[0].index != offset + 1:
            raise ValueError("entries do not start after the offset")

    @property
    def first_index(self) -> int:
        return self.offset + 1

    @property
    def last_index(self) -> int:
        return self.offset + len(self._entries)

    @property
    def last_term(self) -> int:
        if self._entries:
            return self._entries[-1].term
        return self.offset_term or 0

    def term_at(self, index: int) -> int | None:
        """
        The term of the entry at C{index}, or L{None} if it is not held.
        """
        if index == self.offset:
            return self.offset_term
        position = index - self.offset - 1
        if 0 <= position < len(self._entries):
            return self._entries[position].term
        return None

    def entry(self, index: int) -> Entry:
        return self._entries[index - self.offset - 1]

    def slice(self, low: int, high: int, max_bytes: int | None = None) -> list[Entry]:
        """
        Entries C{low .. high} inclusive, cut short after C{max_bytes} of
        payload (at least one entry is returned when any is in range).
        """
        start = max(low, self.first_index) - self.offset - 1
        stop = min(high, self.last_index) - self.offset
        if start >= stop:
            return []
        if max_bytes is None:
            return self._entries[start:stop]
        out: list[Entry] = []
        size = 0
        for position in range(start, stop):
            entry = self._entries[position]
            size += len(entry.data) + 24
            if out and size > max_bytes:
                break
            out.append(entry)
        return out

    def append(self, entries: Iterable[Entry]) -> None:
        for entry in entries:
            if entry.index != self.last_index + 1:
                raise ValueError(f"append of {entry.index} after {self.last_index}")
            self._entries.append(entry)

    def truncate_after(self, index: int) -> None:
        """
        Drop every entry after C{index}.
        """
        if index < self.offset:
            raise ValueError("cannot truncate into the compacted prefix")
        del self._entries[index - self.offset :]

    def compact(self, index: int) -> None:
        """
        Drop every entry up to and including C{index}.
        """
        if index <= self.offset:
            return
        index = min(index, self.last_index)
        term = self.term_at(index)
        del self._entries[: index - self.offset]
        self.offset = index
        self.offset_term = term

    def reset(self, index: int, term: int) -> None:
        """
        Discard everything: the log continues after C{(index, term)}.
        """
        self._entries = []
        self.offset = index
        self.offset_term = term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """
        Whether a log ending at C{(last_index, last_term)} is at least as
        up-to-date as this one (paper 5.4.1).
        """
        return last_term > self.last_term or (
            last_term == self.last_term and last_index >= self.last_index
        )

    def first_index_of_term(self, index: int, lower: int) -> int:
        """
        The first index, not below C{lower}, of the run of entries with the
        same term as the entry at C{index} (conflict hint, paper 5.3).
        """
        term = self.term_at(index)
        lower = max(lower, self.first_index)
        while index > lower and self.term_at(index - 1) == term:
            index -= 1
        return index

    def last_index_of_term(self, term: int, upper: int) -> int | None:
        """
        The last index at or below C{upper} holding C{term}, or L{None} when
        the log holds no entry of that term there.
        """
        index = min(upper, self.last_index)
        while index > self.offset:
            t = self.entry(index).term
            if t == term:
                return index
            if t < term:
                return None
            index -= 1
        return None
