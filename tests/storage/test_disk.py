"""
Tests for L{raft3d.storage._disk}: L{DiskStorage} on real temporary
directories.

Most tests use the C{_synchronous} hook (writes inline, no thread); the
L{ThreadedDiskStorageTests} at the end run the real writer thread under the
real reactor.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import threading
from typing import Any, Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.python import threadable
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from raft3d.raft import (
    CorruptStorage,
    Entry,
    HardState,
    IRaftStorage,
    LoadedState,
    NodeIdentity,
    PersistBatch,
    StorageFull,
)
from raft3d.storage import DiskStorage, _disk
from raft3d.storage._disk import CORRUPT_SUFFIX
from raft3d.storage._metadata import METADATA_NAME
from raft3d.storage._segments import HEADER_SIZE, RECORD_OVERHEAD, segment_name
from raft3d.storage._snapshots import encode_snapshot, snapshot_name

from ._support import capture_log, entries, listdir, meta, read, skip_syncs, temp_dir, write

SIZE = 8
RECORD = RECORD_OVERHEAD + SIZE
STEP = 4 * RECORD
"""A preallocation step that a few records fill."""


def batch(first: int, last: int, term: int = 1) -> PersistBatch:
    return PersistBatch(entries=entries(first, last, term, SIZE))


def seg(directory: str, first: int) -> str:
    return os.path.join(directory, segment_name(first))


def record_offset(position: int) -> int:
    """
    Where the C{position}th (0-based) record of a segment of test entries
    starts.
    """
    return HEADER_SIZE + position * RECORD


class DiskFixture(SynchronousTestCase):
    """
    Opens synchronous storages that are closed after the test.

    @cvar preallocate: the storages' preallocation step; 0 (the file ends
        where the records do) unless a subclass runs the same tests over
        preallocated segments.
    """

    preallocate = 0

    def setUp(self) -> None:
        self.dir = temp_dir(self)

    def open(
        self, directory: str | None = None, segment_size: int = 1 << 20
    ) -> tuple[DiskStorage, LoadedState]:
        log, self.events = capture_log()
        store = DiskStorage(
            directory or self.dir,
            segment_size=segment_size,
            preallocate=self.preallocate,
            log=log,
            _synchronous=True,
        )
        self.addCleanup(store.close)
        return store, store.load()

    def assertRecordsEnd(self, path: str, offset: int) -> None:
        """
        The records of the segment at C{path} end at C{offset}: the file
        ends there, or with preallocation only zeros follow, up to a whole
        number of steps.
        """
        blob = read(path)
        if not self.preallocate:
            self.assertEqual(len(blob), offset)
            return
        self.assertIn(len(blob), (offset, -(-offset // self.preallocate) * self.preallocate))
        self.assertEqual(blob[offset:], bytes(len(blob) - offset))

    def ok(self, d: Deferred[None]) -> None:
        self.assertIsNone(self.successResultOf(d))

    def warnings(self) -> list[str]:
        return [str(e.get("log_format")) for e in self.events if e["log_level"].name == "warn"]

    def flip(self, path: str, offset: int, mask: int = 0x01) -> None:
        blob = bytearray(read(path))
        blob[offset] ^= mask
        write(path, bytes(blob))


class BasicTests(DiskFixture):
    """
    Round trips through the files.
    """

    def test_interface(self) -> None:
        """
        L{DiskStorage} provides L{IRaftStorage}.
        """
        store, _ = self.open()
        verifyObject(IRaftStorage, store)

    def test_fresh(self) -> None:
        """
        A missing directory is created and loads as empty storage.
        """
        path = os.path.join(self.dir, "a", "b")
        _, state = self.open(path)
        self.assertEqual(state, LoadedState(None, HardState(), None, None, ()))
        self.assertTrue(os.path.isdir(path))

    def test_needs_reactor(self) -> None:
        """
        Without a reactor (and outside tests) there is nowhere to deliver
        results.
        """
        self.assertRaises(TypeError, DiskStorage, self.dir)

    def test_load_first(self) -> None:
        """
        Writing before L{load} is a programming error, and so is loading
        twice.
        """
        store = DiskStorage(self.dir, _synchronous=True)
        self.assertRaises(RuntimeError, store.save, PersistBatch())
        store.load()
        self.assertRaises(RuntimeError, store.load)
        self.ok(store.close())

    def test_identity_and_hard_state(self) -> None:
        """
        Identity and hard state survive a restart, and writing one keeps the
        other.
        """
        store, _ = self.open()
        self.ok(store.save(PersistBatch(hard_state=HardState(3, "n2"))))
        self.ok(store.set_identity(NodeIdentity("n1", "c1")))
        self.ok(store.save(PersistBatch(hard_state=HardState(4, None))))
        self.ok(store.close())
        _, state = self.open()
        self.assertEqual(state.identity, NodeIdentity("n1", "c1"))
        self.assertEqual(state.hard_state, HardState(4, None))
        self.assertEqual(listdir(self.dir), [METADATA_NAME])

    def test_entries(self) -> None:
        """
        Saved entries come back in order after a restart, in one segment
        named after the first index.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 3)))
        self.ok(store.save(PersistBatch(HardState(2, "n1"), entries(4, 5, term=2, size=SIZE))))
        self.ok(store.close())
        _, state = self.open()
        self.assertEqual(state.entries, entries(1, 3, 1, SIZE) + entries(4, 5, 2, SIZE))
        self.assertEqual(state.hard_state, HardState(2, "n1"))
        self.assertEqual(listdir(self.dir), [segment_name(1), METADATA_NAME])

    def test_empty_batch(self) -> None:
        """
        An empty batch does no I/O at all and still succeeds.
        """
        store, _ = self.open()
        calls: list[str] = []
        for name in ("pwrite", "fdatasync", "fsync", "open"):
            real = getattr(os, name)
            self.patch(os, name, lambda *a, _n=name, _r=real: (calls.append(_n), _r(*a))[1])
        self.ok(store.save(PersistBatch()))
        self.assertEqual(calls, [])

    def test_same_hard_state_not_rewritten(self) -> None:
        """
        A hard state equal to the stored one is not written again.
        """
        store, _ = self.open()
        self.ok(store.save(PersistBatch(hard_state=HardState(1, "a"))))
        before = os.stat(os.path.join(self.dir, METADATA_NAME)).st_ino
        self.ok(store.save(PersistBatch(hard_state=HardState(1, "a"))))
        self.assertEqual(os.stat(os.path.join(self.dir, METADATA_NAME)).st_ino, before)

    def test_malformed_batch(self) -> None:
        """
        A batch leaving a gap fails with ValueError and changes nothing.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 2)))
        self.failureResultOf(store.save(batch(4, 4)), ValueError)
        self.ok(store.save(batch(3, 3)))
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 3).entries)

    def test_bug_does_not_wedge(self) -> None:
        """
        An unexpected exception in the writer fails that call only, is
        logged, and later calls still work.
        """
        store, _ = self.open()
        self.failureResultOf(store.save(PersistBatch(entries=("junk",))), TypeError)  # type: ignore[arg-type]
        self.assertTrue(any(e["log_level"].name == "critical" for e in self.events))
        self.ok(store.save(batch(1, 1)))

    def test_close(self) -> None:
        """
        After L{close} writes fail; closing again is harmless.
        """
        store, _ = self.open()
        self.ok(store.close())
        self.ok(store.close())
        self.failureResultOf(store.save(batch(1, 1)), RuntimeError)


class TruncationTests(DiskFixture):
    """
    A batch discards every stored entry from its first index on.
    """

    def test_truncate_then_append(self) -> None:
        """
        Overwriting the tail replaces it; the file is cut at the right
        record.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 10)))
        self.ok(store.save(batch(5, 7, term=2)))
        self.assertRecordsEnd(seg(self.dir, 1), record_offset(7))
        self.ok(store.save(batch(8, 8, term=2)))
        self.ok(store.close())
        _, state = self.open()
        self.assertEqual(state.entries, batch(1, 4).entries + batch(5, 8, term=2).entries)

    def test_truncate_across_segments(self) -> None:
        """
        Truncating into an earlier segment deletes the later segment files
        and cuts that one (the new entry then starts a segment of its own,
        since the cut one is still full).
        """
        store, _ = self.open(segment_size=1)
        for i in range(1, 10, 3):
            self.ok(store.save(batch(i, i + 2)))
        self.assertEqual(listdir(self.dir), [segment_name(1), segment_name(4), segment_name(7)])
        self.ok(store.save(batch(3, 3, term=2)))
        self.assertEqual(listdir(self.dir), [segment_name(1), segment_name(3)])
        self.assertRecordsEnd(seg(self.dir, 1), record_offset(2))
        self.ok(store.close())
        _, state = self.open(segment_size=1)
        self.assertEqual(state.entries, batch(1, 2).entries + batch(3, 3, term=2).entries)

    def test_truncate_segment_start(self) -> None:
        """
        Truncating at the first entry of a segment leaves it empty and
        appends to it again.
        """
        store, _ = self.open(segment_size=1)
        self.ok(store.save(batch(1, 2)))
        self.ok(store.save(batch(3, 4)))
        self.ok(store.save(batch(3, 3, term=2)))
        self.assertEqual(listdir(self.dir), [segment_name(1), segment_name(3)])
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 2).entries + batch(3, 3, 2).entries)


_MODEL_OPS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=6),
        st.integers(min_value=1, max_value=4),
        st.booleans(),
    ),
    max_size=12,
)


class LogModelTests(DiskFixture):
    """
    The log against a plain list.
    """

    @settings(max_examples=40, deadline=None)
    @given(_MODEL_OPS)
    def test_model(self, ops: list[tuple[int, int, bool]]) -> None:
        """
        For any sequence of appends and overwrites, with tiny segments, with
        or without restarts in between, the log read back equals a plain
        list that had the same operations applied.
        """
        self.check(ops, 0)

    @settings(max_examples=40, deadline=None)
    @given(_MODEL_OPS)
    def test_model_preallocated(self, ops: list[tuple[int, int, bool]]) -> None:
        """
        The same with preallocated segments.
        """
        self.check(ops, STEP)

    def check(self, ops: list[tuple[int, int, bool]], preallocate: int) -> None:
        skip_syncs(self)  # the files, not the platter, are under test here
        directory = tempfile.mkdtemp(prefix="raft3d-model-")
        try:
            store = DiskStorage(
                directory, segment_size=40, preallocate=preallocate, _synchronous=True
            )
            store.load()
            model: list[Entry] = []
            for term, (back, count, restart) in enumerate(ops, start=1):
                first = max(1, len(model) + 1 - back)
                new = entries(first, first + count - 1, term)
                self.ok(store.save(PersistBatch(entries=new)))
                model = model[: first - 1] + list(new)
                if restart:
                    self.ok(store.close())
                    store = DiskStorage(
                        directory, segment_size=40, preallocate=preallocate, _synchronous=True
                    )
                    self.assertEqual(list(store.load().entries), model)
            self.ok(store.close())
            self.assertEqual(list(DiskStorage(directory, _synchronous=True).load().entries), model)
        finally:
            shutil.rmtree(directory)


class SegmentTests(DiskFixture):
    """
    Rolling over to new segments.
    """

    def test_roll(self) -> None:
        """
        Once a segment reaches the size limit the next batch starts a new
        one, named after its first index; a batch is never split.
        """
        store, _ = self.open(segment_size=3 * RECORD)
        for i in range(1, 9, 2):
            self.ok(store.save(batch(i, i + 1)))
        self.assertEqual(listdir(self.dir), [segment_name(1), segment_name(5)])
        self.assertRecordsEnd(seg(self.dir, 1), record_offset(4))
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 8).entries)

    def test_append_after_restart(self) -> None:
        """
        After a restart appends continue in the last segment.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 2)))
        self.ok(store.close())
        store, _ = self.open()
        self.ok(store.save(batch(3, 4)))
        self.ok(store.close())
        self.assertEqual(listdir(self.dir), [segment_name(1)])
        self.assertEqual(self.open()[1].entries, batch(1, 4).entries)


class GroupCommitTests(DiskFixture):
    """
    Saves queued while the writer is busy share one write and one
    fdatasync.
    """

    def count(self, name: str) -> list[int]:
        calls: list[int] = []
        real = getattr(os, name)

        def counting(*args: Any) -> Any:
            calls.append(args[0])
            return real(*args)

        self.patch(os, name, counting)
        return calls

    def during_first_sync(self, work: Callable[[], None]) -> list[int]:
        """
        Run C{work} inside the next fdatasync, that is while the writer is
        busy; return the list of fdatasync calls.
        """
        calls: list[int] = []
        real = os.fdatasync

        def sync(fd: int) -> None:
            calls.append(fd)
            if len(calls) == 1:
                work()
            real(fd)

        self.patch(os, "fdatasync", sync)
        return calls

    def test_group(self) -> None:
        """
        Three saves made while the writer is busy with a first one are
        written with one write and made durable with one fdatasync; all
        fire, in order.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 1)))
        fired: list[int] = []
        later: list[Deferred[None]] = []

        def queue_more() -> None:
            for i in (3, 4, 5):
                later.append(store.save(batch(i, i)))
                later[-1].addCallback(lambda _, i=i: fired.append(i))

        syncs = self.during_first_sync(queue_more)
        writes = self.count("pwrite")
        self.ok(store.save(batch(2, 2)))
        self.assertEqual([self.successResultOf(d) for d in later], [None] * 3)
        self.assertEqual(fired, [3, 4, 5])
        self.assertEqual(len(syncs), 2)
        self.assertEqual(len(writes), 2)
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 5).entries)

    def test_group_with_overwrite_and_bad_batch(self) -> None:
        """
        In one group a later save may overwrite an earlier one's entries
        and a malformed save fails alone.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 1)))
        results: list[Deferred[None]] = []

        def queue_more() -> None:
            results.append(store.save(batch(3, 6)))
            results.append(store.save(batch(9, 9)))
            results.append(store.save(batch(5, 5, term=2)))

        syncs = self.during_first_sync(queue_more)
        self.ok(store.save(batch(2, 2)))
        self.ok(results[0])
        self.failureResultOf(results[1], ValueError)
        self.ok(results[2])
        self.assertEqual(len(syncs), 2)
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 4).entries + batch(5, 5, 2).entries)


class TornTailTests(DiskFixture):
    """
    Damage at the end of the last segment is a torn write: cut away.
    """

    def prepare(self) -> tuple[str, bytes]:
        store, _ = self.open()
        self.ok(store.save(batch(1, 5)))
        self.ok(store.close())
        path = seg(self.dir, 1)
        return path, read(path)

    def test_every_offset(self) -> None:
        """
        Cutting the last record at any byte, or zeroing or scrambling it
        from any byte on, loads records 1-4, cuts the file back and warns;
        appending then works.  Zeros from the record's first byte on (its
        length's first bytes are zeros too) are not damage but the end of
        the records, as nothing of the record reached preallocated space:
        no warning then, and the file is left alone.
        """
        path, blob = self.prepare()
        start, end = record_offset(4), record_offset(5)
        self.assertRecordsEnd(path, end)
        for cut in range(start, end):
            rest = len(blob) - cut
            tails = [bytes(rest), bytes(b ^ 0x5A for b in blob[cut:end]) + bytes(len(blob) - end)]
            if cut > start:
                tails.append(b"")
            for tail in tails:
                damaged = blob[:cut] + tail
                write(path, damaged)
                store, state = self.open()
                self.assertEqual(state.entries, batch(1, 4).entries, (cut, tail))
                clean = not any(damaged[start:])
                if clean:
                    self.assertEqual(read(path), damaged)
                else:
                    self.assertEqual(os.path.getsize(path), start)
                self.assertEqual(len(self.warnings()), 0 if clean else 1, (cut, tail))
                self.ok(store.close())
        store, _ = self.open()
        self.ok(store.save(batch(5, 6)))
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 6).entries)

    def test_clean_end(self) -> None:
        """
        A file ending exactly after a record is not damaged: no warning.
        """
        path, blob = self.prepare()
        write(path, blob[: record_offset(4)])
        _, state = self.open()
        self.assertEqual(state.entries, batch(1, 4).entries)
        self.assertEqual(self.warnings(), [])

    def test_whole_new_segment(self) -> None:
        """
        A new segment torn at any byte (header included) is removed and the
        log ends with the previous segment.
        """
        store, _ = self.open(segment_size=1)
        self.ok(store.save(batch(1, 2)))
        self.ok(store.save(batch(3, 3)))
        self.ok(store.close())
        path = seg(self.dir, 3)
        blob = read(path)
        for cut in range(record_offset(1)):
            write(path, blob[:cut])
            store, state = self.open(segment_size=1)
            self.assertEqual(state.entries, batch(1, 2).entries)
            self.assertFalse(os.path.exists(path))
            self.ok(store.close())

    def test_damaged_last_record(self) -> None:
        """
        A flipped byte in the very last record cannot be told from a torn
        write, so it is cut away too (documented behaviour).
        """
        path, _ = self.prepare()
        self.flip(path, record_offset(4) + RECORD_OVERHEAD)
        _, state = self.open()
        self.assertEqual(state.entries, batch(1, 4).entries)


class CorruptLogTests(DiskFixture):
    """
    Damage that a crash cannot explain stops the node.
    """

    def prepare(self, segment_size: int = 1 << 20) -> str:
        store, _ = self.open(segment_size=segment_size)
        self.ok(store.save(batch(1, 5)))
        self.ok(store.save(batch(6, 6)))
        self.ok(store.close())
        return seg(self.dir, 1)

    def test_flipped_byte_mid_log(self) -> None:
        """
        Flipping any byte of record 3 (of 6) is reported with the segment's
        path and the record's offset, whether it hits the length, the
        checksum, the header fields or the payload.
        """
        path = self.prepare()
        blob = read(path)
        offset = record_offset(2)
        for i in range(offset, offset + RECORD):
            for mask in (0x01, 0x80):
                damaged = bytearray(blob)
                damaged[i] ^= mask
                write(path, bytes(damaged))
                store = DiskStorage(self.dir, _synchronous=True)
                e = self.assertRaises(CorruptStorage, store.load)
                self.assertEqual((e.path, e.offset), (path, offset), i)

    def test_earlier_segment(self) -> None:
        """
        Even a torn-looking end is corruption in a segment that is not the
        last one.
        """
        path = self.prepare(segment_size=1)
        write(path, read(path)[: record_offset(5) - 1])
        e = self.assertRaises(CorruptStorage, self.open)
        self.assertEqual((e.path, e.offset), (path, record_offset(4)))

    def test_missing_segment(self) -> None:
        """
        A missing segment in the middle is an index discontinuity.
        """
        store, _ = self.open(segment_size=1)
        for i in (1, 3, 5):
            self.ok(store.save(batch(i, i + 1)))
        self.ok(store.close())
        os.unlink(seg(self.dir, 3))
        e = self.assertRaises(CorruptStorage, self.open)
        self.assertEqual(e.path, seg(self.dir, 5))
        self.assertIn("expected 3", e.reason)

    def test_wrong_index_in_file(self) -> None:
        """
        A segment whose records do not carry the index its name says is
        corrupt, even as the last segment.
        """
        path = self.prepare()
        os.rename(path, seg(self.dir, 2))
        e = self.assertRaises(CorruptStorage, self.open)
        self.assertEqual((e.path, e.offset), (seg(self.dir, 2), HEADER_SIZE))

    def test_log_without_start(self) -> None:
        """
        A log that starts after index 1 with no snapshot misses entries.
        """
        store, _ = self.open()
        self.ok(store.install_snapshot(meta(6), b"six"))
        self.ok(store.save(batch(7, 8)))
        self.ok(store.close())
        os.unlink(os.path.join(self.dir, snapshot_name(meta(6))))
        e = self.assertRaises(CorruptStorage, self.open)
        self.assertEqual(e.path, seg(self.dir, 7))

    def test_corrupt_metadata(self) -> None:
        """
        A damaged metadata file is corruption.
        """
        store, _ = self.open()
        self.ok(store.set_identity(NodeIdentity("n1")))
        self.ok(store.close())
        self.flip(os.path.join(self.dir, METADATA_NAME), 10)
        e = self.assertRaises(CorruptStorage, self.open)
        self.assertEqual(e.path, os.path.join(self.dir, METADATA_NAME))

    def test_leftover_temporary_files(self) -> None:
        """
        Temporary files left by a crash are removed at start-up.
        """
        write(os.path.join(self.dir, METADATA_NAME + ".tmp"), b"half")
        write(os.path.join(self.dir, snapshot_name(meta(3)) + ".tmp"), b"half")
        _, state = self.open()
        self.assertIsNone(state.identity)
        self.assertEqual(listdir(self.dir), [])


class SnapshotTests(DiskFixture):
    """
    Snapshot files, retention, fallback, install and compaction.
    """

    def snap(self, m: Any) -> str:
        return os.path.join(self.dir, snapshot_name(m))

    def test_keep_two(self) -> None:
        """
        The newest snapshot is loaded with its data; only the newest two
        files are kept.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 30)))
        for i in (10, 20, 30):
            self.ok(store.save_snapshot(meta(i), b"state-%d" % i))
        self.assertEqual(
            listdir(self.dir),
            [segment_name(1), snapshot_name(meta(20)), snapshot_name(meta(30))],
        )
        self.ok(store.close())
        _, state = self.open()
        self.assertEqual((state.snapshot, state.snapshot_data), (meta(30), b"state-30"))
        self.assertEqual(state.entries, batch(1, 30).entries)

    def test_damaged_newest_covered(self) -> None:
        """
        A damaged newest snapshot is skipped with a warning when the older
        one and the log cover it; it is renamed aside.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 30)))
        self.ok(store.save_snapshot(meta(10), b"ten"))
        self.ok(store.save_snapshot(meta(20), b"twenty"))
        self.ok(store.close())
        self.flip(self.snap(meta(20)), -2)
        _, state = self.open()
        self.assertEqual((state.snapshot, state.snapshot_data), (meta(10), b"ten"))
        self.assertEqual(state.entries, batch(1, 30).entries)
        self.assertEqual(len(self.warnings()), 1)
        self.assertTrue(os.path.exists(self.snap(meta(20)) + CORRUPT_SUFFIX))

    def test_damaged_only_snapshot_covered(self) -> None:
        """
        With no older snapshot, a log from index 1 covers a damaged one.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 5)))
        self.ok(store.save_snapshot(meta(5), b"five"))
        self.ok(store.close())
        write(self.snap(meta(5)), read(self.snap(meta(5)))[:-1])
        _, state = self.open()
        self.assertIsNone(state.snapshot)
        self.assertEqual(state.entries, batch(1, 5).entries)

    def test_damaged_newest_not_covered(self) -> None:
        """
        When compaction has removed entries the older snapshot does not
        hold, a damaged newest snapshot is corruption, reported with its
        path and the offset of the damaged part.
        """
        store, _ = self.open(segment_size=1)
        for i in range(1, 30, 5):
            self.ok(store.save(batch(i, i + 4)))
        self.ok(store.save_snapshot(meta(10), b"ten"))
        self.ok(store.save_snapshot(meta(20), b"twenty"))
        self.ok(store.compact(20))
        self.ok(store.close())
        path = self.snap(meta(20))
        blob = read(path)
        self.flip(path, len(blob) - 1)
        e = self.assertRaises(CorruptStorage, self.open, None, 1)
        self.assertEqual((e.path, e.offset), (path, len(blob) - len(b"twenty")))

    def test_name_mismatch(self) -> None:
        """
        A snapshot whose content is not what its name says is damaged.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 20)))
        self.ok(store.close())
        write(self.snap(meta(20)), encode_snapshot(meta(10), b"x"))
        _, state = self.open()
        self.assertIsNone(state.snapshot)
        self.assertEqual(len(self.warnings()), 1)

    def test_install(self) -> None:
        """
        Installing a snapshot removes every segment; the log continues
        after the snapshot's index and nowhere else.
        """
        store, _ = self.open(segment_size=1)
        self.ok(store.save(batch(1, 5)))
        self.ok(store.save(batch(6, 10)))
        self.ok(store.install_snapshot(meta(50, 3), b"fifty"))
        self.assertEqual(listdir(self.dir), [snapshot_name(meta(50, 3))])
        self.failureResultOf(store.save(batch(52, 52, 3)), ValueError)
        self.ok(store.save(batch(51, 52, 3)))
        self.ok(store.close())
        _, state = self.open()
        self.assertEqual((state.snapshot, state.snapshot_data), (meta(50, 3), b"fifty"))
        self.assertEqual(state.entries, batch(51, 52, 3).entries)

    def test_interrupted_install(self) -> None:
        """
        A crash after the installed snapshot is durable but before the
        segments are gone leaves a log that ends before the snapshot or
        disagrees with it at its index; start-up discards that log.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 10)))
        self.ok(store.close())
        write(self.snap(meta(50, 3)), encode_snapshot(meta(50, 3), b"x"))
        _, state = self.open()
        self.assertEqual((state.snapshot, state.entries), (meta(50, 3), ()))
        self.assertEqual(listdir(self.dir), [snapshot_name(meta(50, 3))])

    def test_disagreeing_log(self) -> None:
        """
        A log whose entry at the snapshot's index has another term is
        discarded.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 10)))
        self.ok(store.close())
        write(self.snap(meta(5, 2)), encode_snapshot(meta(5, 2), b"x"))
        self.assertEqual(self.open()[1].entries, ())

    def test_overlapping_log_kept(self) -> None:
        """
        Entries before the snapshot (the trailing window) are kept.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 10)))
        self.ok(store.save_snapshot(meta(5), b"x"))
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 10).entries)

    def test_compact(self) -> None:
        """
        Compaction deletes whole segments whose last entry is covered, only
        up to the newest snapshot, never the current segment.
        """
        store, _ = self.open(segment_size=1)
        for i in range(1, 20, 5):
            self.ok(store.save(batch(i, i + 4)))
        self.ok(store.compact(100))
        self.assertEqual(len([n for n in listdir(self.dir) if n.endswith(".seg")]), 4)
        self.ok(store.save_snapshot(meta(12), b"x"))
        self.ok(store.compact(100))
        segs = [n for n in listdir(self.dir) if n.endswith(".seg")]
        self.assertEqual(segs, [segment_name(11), segment_name(16)])
        self.ok(store.save_snapshot(meta(20), b"y"))
        self.ok(store.compact(20))
        segs = [n for n in listdir(self.dir) if n.endswith(".seg")]
        self.assertEqual(segs, [segment_name(16)])
        self.ok(store.close())
        _, state = self.open(segment_size=1)
        self.assertEqual((state.snapshot, state.entries), (meta(20), batch(16, 20).entries))


def failing(code: int, after: int = 0) -> Callable[..., int]:
    """
    A C{pwrite} that writes C{after} bytes and then fails with C{code}.
    """
    real = os.pwrite
    budget = [after]

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        if budget[0] <= 0:
            raise OSError(code, os.strerror(code))
        n = real(fd, bytes(data)[: budget[0]], offset)
        budget[0] -= n
        return n

    return pwrite


class WriteErrorTests(DiskFixture):
    """
    A failed write fails its call, leaves the files as before, and the
    storage keeps working.
    """

    def test_enospc_append(self) -> None:
        """
        Running out of space half-way through a batch fails it with
        L{StorageFull}, cuts the partial bytes away, and a later write
        succeeds.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 3)))
        patched = self.patch(os, "pwrite", failing(errno.ENOSPC, after=RECORD + 5))
        self.failureResultOf(store.save(batch(4, 6)), StorageFull)
        self.assertRecordsEnd(seg(self.dir, 1), record_offset(3))
        patched.restore()
        patched = self.patch(os, "pwrite", failing(errno.EDQUOT))
        self.failureResultOf(store.save(batch(4, 6)), StorageFull)
        self.assertRecordsEnd(seg(self.dir, 1), record_offset(3))
        patched.restore()
        self.ok(store.save(batch(4, 5)))
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 5).entries)

    def test_enospc_new_segment(self) -> None:
        """
        A failed new segment is removed again.
        """
        store, _ = self.open()
        patched = self.patch(os, "pwrite", failing(errno.ENOSPC, after=10))
        self.failureResultOf(store.save(batch(1, 3)), StorageFull)
        self.assertEqual(listdir(self.dir), [])
        patched.restore()
        self.ok(store.save(batch(1, 1)))
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 1).entries)

    def test_enospc_restores_hard_state(self) -> None:
        """
        When the entries of a batch fail, its hard state (written first) is
        put back.
        """
        store, _ = self.open()
        self.ok(store.save(PersistBatch(HardState(1, "a"), batch(1, 1).entries)))
        real = os.pwrite
        fail_segment = failing(errno.ENOSPC)

        def pwrite(fd: int, data: bytes, offset: int) -> int:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(".seg"):
                return fail_segment(fd, data, offset)
            return real(fd, data, offset)

        patched = self.patch(os, "pwrite", pwrite)
        self.failureResultOf(
            store.save(PersistBatch(HardState(2, "b"), batch(2, 2).entries)), StorageFull
        )
        patched.restore()
        self.ok(store.close())
        _, state = self.open()
        self.assertEqual(
            (state.hard_state, state.entries), (HardState(1, "a"), batch(1, 1).entries)
        )

    def test_enospc_metadata(self) -> None:
        """
        A metadata write that fails leaves the old file and no temporary
        one.
        """
        store, _ = self.open()
        self.ok(store.set_identity(NodeIdentity("n1")))
        patched = self.patch(os, "pwrite", failing(errno.ENOSPC))
        self.failureResultOf(store.save(PersistBatch(hard_state=HardState(9))), StorageFull)
        self.failureResultOf(store.set_identity(NodeIdentity("n2")), StorageFull)
        patched.restore()
        self.assertEqual(listdir(self.dir), [METADATA_NAME])
        self.ok(store.close())
        _, state = self.open()
        self.assertEqual((state.identity, state.hard_state), (NodeIdentity("n1"), HardState()))

    def test_enospc_snapshot(self) -> None:
        """
        A snapshot that cannot be written fails and leaves the older ones.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 5)))
        self.ok(store.save_snapshot(meta(3), b"three"))
        patched = self.patch(os, "pwrite", failing(errno.ENOSPC, after=7))
        self.failureResultOf(store.install_snapshot(meta(5), b"five"), StorageFull)
        patched.restore()
        self.ok(store.close())
        _, state = self.open()
        self.assertEqual((state.snapshot, state.entries), (meta(3), batch(1, 5).entries))
        self.assertEqual(listdir(self.dir), [segment_name(1), snapshot_name(meta(3))])

    def test_other_error(self) -> None:
        """
        Other I/O errors are reported as they are, and do not stop the
        storage either.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 1)))

        def broken(fd: int) -> None:
            raise OSError(errno.EIO, "I/O error")

        patched = self.patch(os, "fdatasync", broken)
        f = self.failureResultOf(store.save(batch(2, 2)), OSError)
        self.assertEqual(f.value.errno, errno.EIO)
        patched.restore()
        self.ok(store.save(batch(2, 3)))
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 3).entries)


class PreallocationTests(DiskFixture):
    """
    Segments extended with zeros ahead of their records.
    """

    preallocate = STEP

    def test_steps(self) -> None:
        """
        A new segment takes one step; the records are written into it, and
        the batch that outgrows it extends the file by whole steps, with
        zeros after the records.
        """
        store, _ = self.open()
        path = seg(self.dir, 1)
        self.ok(store.save(batch(1, 1)))
        self.assertEqual(os.path.getsize(path), STEP)
        self.ok(store.save(batch(2, 2)))
        self.assertEqual(os.path.getsize(path), STEP)
        self.ok(store.save(batch(3, 9)))
        self.assertEqual(os.path.getsize(path), 3 * STEP)
        self.assertRecordsEnd(path, record_offset(9))
        self.ok(store.close())
        _, state = self.open()
        self.assertEqual(state.entries, batch(1, 9).entries)
        self.assertEqual(self.warnings(), [])

    def test_restart_keeps_space(self) -> None:
        """
        After a restart records go on into the space already there, and
        the file does not grow until it is used up.
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 1)))
        self.ok(store.close())
        store, _ = self.open()
        self.ok(store.save(batch(2, 2)))
        path = seg(self.dir, 1)
        self.assertEqual(os.path.getsize(path), STEP)
        self.assertRecordsEnd(path, record_offset(2))
        self.ok(store.close())
        self.assertEqual(self.open()[1].entries, batch(1, 2).entries)

    def test_earlier_segments_keep_zeros(self) -> None:
        """
        Segments before the last keep their zero tails: not damage.
        """
        store, _ = self.open(segment_size=1)
        for i in (1, 3, 5):
            self.ok(store.save(batch(i, i + 1)))
        self.ok(store.close())
        self.assertEqual(os.path.getsize(seg(self.dir, 1)), STEP)
        _, state = self.open(segment_size=1)
        self.assertEqual(state.entries, batch(1, 6).entries)
        self.assertEqual(self.warnings(), [])

    def test_no_stale_records(self) -> None:
        """
        An overwrite leaves no trace of the records it replaced after the
        new end, so a later torn write can never be followed by an old
        intact record (which recovery would report as corruption).
        """
        store, _ = self.open()
        self.ok(store.save(batch(1, 6)))
        self.ok(store.save(batch(3, 3, term=2)))
        path = seg(self.dir, 1)
        self.assertRecordsEnd(path, record_offset(3))
        self.ok(store.save(batch(4, 4, term=2)))
        self.assertRecordsEnd(path, record_offset(4))
        self.ok(store.close())
        blob = read(path)
        write(path, blob[: record_offset(4) - 3] + bytes(len(blob) - record_offset(4) + 3))
        _, state = self.open()
        self.assertEqual(state.entries, batch(1, 2).entries + batch(3, 3, term=2).entries)
        self.assertEqual(len(self.warnings()), 1)

    def test_zero_step(self) -> None:
        """
        Without preallocation the file ends where the records do; a
        negative step is refused.
        """
        self.preallocate = 0
        store, _ = self.open()
        self.ok(store.save(batch(1, 2)))
        self.assertEqual(os.path.getsize(seg(self.dir, 1)), record_offset(2))
        self.assertRaises(ValueError, DiskStorage, self.dir, preallocate=-1, _synchronous=True)


class PreallocatedTruncationTests(TruncationTests):
    preallocate = STEP


class PreallocatedSegmentTests(SegmentTests):
    preallocate = STEP


class PreallocatedTornTailTests(TornTailTests):
    preallocate = STEP


class PreallocatedCorruptLogTests(CorruptLogTests):
    preallocate = STEP


class PreallocatedWriteErrorTests(WriteErrorTests):
    preallocate = STEP


def stall_syncs(case: TestCase) -> tuple[threading.Event, threading.Event]:
    """
    Make every C{fdatasync} wait until the second event is set (at the end
    of the test at the latest); the first is set when one gets there.
    """
    entered = threading.Event()
    release = threading.Event()
    real = os.fdatasync

    def slow(fd: int) -> None:
        entered.set()
        release.wait(10)
        real(fd)

    case.patch(os, "fdatasync", slow)
    case.addCleanup(release.set)
    return entered, release


class ThreadedDiskStorageTests(TestCase):
    """
    The real writer thread under the real reactor.
    """

    def setUp(self) -> None:
        self.dir = temp_dir(self)
        self.store = DiskStorage(self.dir, reactor=_reactor)
        self.store.load()
        self.addCleanup(self.store.close)

    async def test_round_trip(self) -> None:
        """
        Writes done on the thread fire on the reactor thread and are on
        disk afterwards.
        """
        threads: list[bool] = []
        d = self.store.save(batch(1, 3))
        d.addCallback(lambda _: threads.append(threadable.isInIOThread()))
        await d
        await self.store.set_identity(NodeIdentity("n1"))
        await self.store.close()
        self.assertEqual(threads, [True])
        state = DiskStorage(self.dir, _synchronous=True).load()
        self.assertEqual((state.identity, state.entries), (NodeIdentity("n1"), batch(1, 3).entries))

    async def test_order(self) -> None:
        """
        Every kind of call but a snapshot save completes in call order, an
        empty batch and an installed snapshot included.
        """
        fired: list[str] = []
        calls = [
            ("save", self.store.save(batch(1, 5))),
            ("identity", self.store.set_identity(NodeIdentity("n1"))),
            ("install", self.store.install_snapshot(meta(5), b"s")),
            ("empty", self.store.save(PersistBatch())),
            ("compact", self.store.compact(5)),
            ("save2", self.store.save(batch(6, 6))),
        ]
        for name, d in calls:
            d.addCallback(lambda _, n=name: fired.append(n))
        await gatherResults([d for _, d in calls])
        await self.store.close()
        self.assertEqual(fired, [name for name, _ in calls])

    def stall_snapshot_files(self) -> tuple[threading.Event, threading.Event]:
        """
        Make the snapshot thread wait, once it has written a file, until
        the second event is set; the first is set when it gets there.
        """
        entered = threading.Event()
        release = threading.Event()
        real = _disk.write_temporary

        def stalled(path: str, parts: Any) -> None:
            real(path, parts)
            entered.set()
            self.assertTrue(release.wait(10))

        self.patch(_disk, "write_temporary", stalled)
        self.addCleanup(release.set)
        return entered, release

    async def test_snapshot_off_the_writer(self) -> None:
        """
        Saves made while a snapshot file is being written complete without
        waiting for it; the snapshot completes once it is renamed into
        place, and a restart finds it.
        """
        await self.store.save(batch(1, 5))
        entered, release = self.stall_snapshot_files()
        snapshot = self.store.save_snapshot(meta(5), b"five")
        self.assertTrue(entered.wait(10))
        await self.store.save(batch(6, 8))
        self.assertNoResult(snapshot)
        self.assertNotIn(snapshot_name(meta(5)), listdir(self.dir))
        release.set()
        await snapshot
        self.assertIn(snapshot_name(meta(5)), listdir(self.dir))
        await self.store.close()
        state = DiskStorage(self.dir, _synchronous=True).load()
        self.assertEqual((state.snapshot, state.snapshot_data), (meta(5), b"five"))
        self.assertEqual(state.entries, batch(1, 8).entries)

    async def test_close_waits_for_snapshot(self) -> None:
        """
        L{close} lets a snapshot being written finish and publishes it
        before it stops the threads; later calls are refused.
        """
        await self.store.save(batch(1, 5))
        entered, release = self.stall_snapshot_files()
        snapshot = self.store.save_snapshot(meta(5), b"five")
        self.assertTrue(entered.wait(10))
        closed = self.store.close()
        self.assertNoResult(closed)
        with self.assertRaises(RuntimeError):
            await self.store.save(batch(6, 6))
        release.set()
        await closed
        await snapshot
        self.assertFalse(any(self.dir in t.name for t in threading.enumerate()))
        self.assertEqual(listdir(self.dir), [segment_name(1), snapshot_name(meta(5))])

    async def test_snapshot_file_fails(self) -> None:
        """
        A snapshot file that cannot be written fails its save, leaves no
        temporary file behind and does not stop the log.
        """
        await self.store.save(batch(1, 5))
        real = os.pwrite

        def full(fd: int, data: Any, offset: int) -> int:
            if threading.current_thread().name.startswith("raft3d-snapshots"):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(fd, data, offset)

        self.patch(os, "pwrite", full)
        with self.assertRaises(StorageFull):
            await self.store.save_snapshot(meta(5), b"five")
        await self.store.save(batch(6, 6))
        await self.store.close()
        self.assertEqual(listdir(self.dir), [segment_name(1)])

    async def test_group_commit(self) -> None:
        """
        Saves queued while the writer is stuck in an fdatasync are written
        together with a single further fdatasync.
        """
        entered = threading.Event()
        release = threading.Event()
        syncs: list[int] = []
        real = os.fdatasync

        def slow(fd: int) -> None:
            syncs.append(fd)
            if len(syncs) == 1:
                entered.set()
                release.wait(10)
            real(fd)

        self.patch(os, "fdatasync", slow)
        first = self.store.save(batch(1, 1))
        self.assertTrue(entered.wait(10))
        rest = [self.store.save(batch(i, i)) for i in range(2, 7)]
        release.set()
        await gatherResults([first, *rest])
        self.assertEqual(len(syncs), 2)
        await self.store.close()
        state = DiskStorage(self.dir, _synchronous=True).load()
        self.assertEqual(state.entries, batch(1, 6).entries)

    async def test_close_stops_thread(self) -> None:
        """
        L{close} finishes queued work and stops the writer thread.
        """
        d = self.store.save(batch(1, 1))
        before = {t.name for t in threading.enumerate()}
        self.assertTrue(any("raft3d-storage" in name for name in before))
        await self.store.close()
        await d
        after = {t.name for t in threading.enumerate()}
        self.assertFalse(any("raft3d-storage" in name for name in after))

    async def test_empty_save_when_idle(self) -> None:
        """
        An empty save while the writer is idle fires on the reactor thread
        without the writer.
        """
        await self.store.save(batch(1, 1))
        self.patch(self.store, "_drain", lambda: self.fail("the writer ran"))
        threads: list[bool] = []
        await self.store.save(PersistBatch()).addCallback(
            lambda _: threads.append(threadable.isInIOThread())
        )
        self.assertEqual(threads, [True])

    async def test_empty_save_waits_for_writer(self) -> None:
        """
        An empty save made while the writer is busy fires after the saves
        made before it.
        """
        entered, release = stall_syncs(self)
        fired: list[str] = []
        first = self.store.save(batch(1, 1)).addCallback(lambda _: fired.append("save"))
        self.assertTrue(entered.wait(10))
        empty = self.store.save(PersistBatch()).addCallback(lambda _: fired.append("empty"))
        self.assertNoResult(empty)
        release.set()
        await gatherResults([first, empty])
        self.assertEqual(fired, ["save", "empty"])


class BlockingSaveTests(TestCase):
    """
    Blocking saves, written on the calling thread when the writer is idle
    and the disk has been quick.
    """

    def setUp(self) -> None:
        self.dir = temp_dir(self)
        self.now = 0.0
        self.store = DiskStorage(self.dir, reactor=_reactor, _timer=lambda: self.now)
        self.store.load()
        self.addCleanup(self.store.close)
        self.sync_threads: list[str] = []
        real = os.fdatasync

        def recording(fd: int) -> None:
            self.sync_threads.append(threading.current_thread().name)
            real(fd)

        self.patch(os, "fdatasync", recording)

    def written_here(self) -> bool:
        return self.sync_threads[-1] == threading.current_thread().name

    async def test_written_at_once(self) -> None:
        """
        With the writer idle a blocking save is durable and has fired when
        C{save} returns, without the writer thread ever starting.
        """
        self.ok(self.store.save(batch(1, 2), blocking=True))
        self.assertTrue(self.written_here())
        self.ok(self.store.save(PersistBatch(HardState(1, "n1")), blocking=True))
        self.assertFalse(any("raft3d-storage" in t.name for t in threading.enumerate()))
        await self.store.close()
        state = DiskStorage(self.dir, _synchronous=True).load()
        self.assertEqual(
            (state.hard_state, state.entries), (HardState(1, "n1"), batch(1, 2).entries)
        )

    async def test_behind_the_writer(self) -> None:
        """
        A blocking save made while the writer is busy waits its turn on the
        writer, after the saves made before it.
        """
        entered, release = stall_syncs(self)
        fired: list[str] = []
        first = self.store.save(batch(1, 1)).addCallback(lambda _: fired.append("first"))
        self.assertTrue(entered.wait(10))
        second = self.store.save(batch(2, 2), blocking=True)
        second.addCallback(lambda _: fired.append("blocking"))
        self.assertNoResult(second)
        release.set()
        await gatherResults([first, second])
        self.assertEqual(fired, ["first", "blocking"])

    async def test_slow_disk(self) -> None:
        """
        Once a write took C{blocking_limit} or more, blocking saves go to
        the writer thread, until a write is quick again.
        """
        real = os.fdatasync
        delays = [0.0]

        def timed(fd: int) -> None:
            self.sync_threads.append(threading.current_thread().name)
            self.now += delays.pop(0) if delays else 0.0
            real(fd)

        self.patch(os, "fdatasync", timed)
        delays[:] = [_disk.DEFAULT_BLOCKING_LIMIT]
        self.ok(self.store.save(batch(1, 1), blocking=True))
        self.assertTrue(self.written_here())
        d = self.store.save(batch(2, 2), blocking=True)
        self.assertNoResult(d)
        await d
        self.assertFalse(self.written_here())
        self.ok(self.store.save(batch(3, 3), blocking=True))
        self.assertTrue(self.written_here())

    async def test_failure_at_once(self) -> None:
        """
        A blocking save that fails fails before C{save} returns, leaves the
        files as they were, and later saves work.
        """
        self.ok(self.store.save(batch(1, 1), blocking=True))
        patched = self.patch(os, "pwrite", failing(errno.ENOSPC))
        self.failureResultOf(self.store.save(batch(2, 2), blocking=True), StorageFull)
        patched.restore()
        self.ok(self.store.save(batch(2, 2), blocking=True))
        await self.store.close()
        self.assertEqual(
            DiskStorage(self.dir, _synchronous=True).load().entries, batch(1, 2).entries
        )

    def test_bug(self) -> None:
        """
        An unexpected exception in a blocking save fails that save only,
        before C{save} returns, and later blocking saves are still written
        at once.
        """
        junk = PersistBatch(entries=("junk",))  # type: ignore[arg-type]
        self.failureResultOf(self.store.save(junk, blocking=True), TypeError)
        self.flushLoggedErrors(TypeError)
        self.ok(self.store.save(batch(1, 1), blocking=True))
        self.assertTrue(self.written_here())

    async def test_closed(self) -> None:
        """
        After L{close} a blocking save is refused like any other.
        """
        await self.store.close()
        self.failureResultOf(self.store.save(batch(1, 1), blocking=True), RuntimeError)

    def ok(self, d: Deferred[None]) -> None:
        self.assertIsNone(self.successResultOf(d))
