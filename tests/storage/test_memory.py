"""
Tests for L{raft3d.storage._memory}: L{MemoryStorage}, the simulated disk.
"""

from __future__ import annotations

import random
import shutil
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from raft3d.raft import (
    HardState,
    IRaftStorage,
    LoadedState,
    NodeIdentity,
    PersistBatch,
    StorageFull,
)
from raft3d.storage import DiskStorage, MemoryStorage

from ._support import entries, meta, skip_syncs


def batch(first: int, last: int, term: int = 1) -> PersistBatch:
    return PersistBatch(entries=entries(first, last, term))


class MemoryFixture(SynchronousTestCase):
    """
    A storage on a fake clock with a seeded generator.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = MemoryStorage(self.clock, random.Random(7), (0.001, 0.01))

    def flush(self) -> None:
        """
        Advance the clock until nothing is pending.
        """
        while self.store.pending:
            self.clock.advance(0.01)

    def ok(self, d: Deferred[None]) -> None:
        self.flush()
        self.assertIsNone(self.successResultOf(d))


class BasicTests(MemoryFixture):
    """
    Writes become durable after a simulated fsync.
    """

    def test_interface(self) -> None:
        """
        L{MemoryStorage} provides L{IRaftStorage}.
        """
        verifyObject(IRaftStorage, self.store)

    def test_empty(self) -> None:
        """
        A new storage loads as empty.
        """
        self.assertEqual(self.store.load(), LoadedState(None, HardState(), None, None, ()))

    def test_not_durable_before_fsync(self) -> None:
        """
        A write neither fires nor shows in L{load} before its fsync ends.
        """
        d = self.store.save(PersistBatch(HardState(2, "a"), entries(1, 2)))
        self.assertNoResult(d)
        self.assertEqual(self.store.load().entries, ())
        self.flush()
        self.successResultOf(d)
        state = self.store.load()
        self.assertEqual((state.hard_state, state.entries), (HardState(2, "a"), entries(1, 2)))

    def test_delay(self) -> None:
        """
        The fsync takes a delay within the configured bounds.
        """
        store = MemoryStorage(self.clock, random.Random(1), (0.5, 0.5))
        d = store.set_identity(NodeIdentity("n1"))
        self.clock.advance(0.499)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        self.successResultOf(d)
        self.assertEqual(store.load().identity, NodeIdentity("n1"))

    def test_group(self) -> None:
        """
        Writes issued in the same instant complete together, with one
        simulated fsync, and fire in call order.
        """
        fired: list[int] = []
        ds = [self.store.save(batch(i, i)) for i in (1, 2, 3)]
        for i, d in enumerate(ds):
            d.addCallback(lambda _, i=i: fired.append(i))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0.01)
        self.assertEqual(fired, [0, 1, 2])

    def test_queued_during_fsync(self) -> None:
        """
        Writes made while an fsync is in flight wait for the next one, and
        never complete before earlier writes.
        """
        first = self.store.save(batch(1, 1))
        self.clock.advance(0.0005)
        second = self.store.save(batch(2, 2))
        third = self.store.save(batch(3, 3))
        self.clock.advance(self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds())
        self.successResultOf(first)
        self.assertNoResult(second)
        self.assertNoResult(third)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(self.clock.getDelayedCalls()[0].getTime() - self.clock.seconds())
        self.successResultOf(second)
        self.successResultOf(third)

    def test_callbacks_queue_next_group(self) -> None:
        """
        Writes made by callbacks of a completing group form the next group
        together.
        """
        later: list[Deferred[None]] = []
        d = self.store.save(batch(1, 1))
        d.addCallback(lambda _: later.extend(self.store.save(batch(i, i)) for i in (2, 3)))
        self.clock.advance(0.01)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.flush()
        self.assertEqual([self.successResultOf(x) for x in later], [None, None])

    def test_order(self) -> None:
        """
        Every kind of call, an empty batch included, fires in call order.
        """
        fired: list[str] = []
        calls = [
            ("save", self.store.save(batch(1, 5))),
            ("identity", self.store.set_identity(NodeIdentity("n1"))),
            ("snapshot", self.store.save_snapshot(meta(5), b"s")),
            ("empty", self.store.save(PersistBatch())),
            ("compact", self.store.compact(5)),
        ]
        for name, d in calls:
            d.addCallback(lambda _, n=name: fired.append(n))
        self.clock.advance(0.01)
        self.assertEqual(fired, [name for name, _ in calls])

    def test_close(self) -> None:
        """
        L{close} fires after earlier writes; later writes fail; closing
        again is harmless.
        """
        d = self.store.save(batch(1, 1))
        closed = self.store.close()
        self.assertNoResult(closed)
        self.flush()
        self.successResultOf(d)
        self.successResultOf(closed)
        self.successResultOf(self.store.close())
        self.failureResultOf(self.store.save(batch(2, 2)), RuntimeError)


class LogTests(MemoryFixture):
    """
    Truncation, snapshots and compaction follow the shared rules.
    """

    def test_truncate(self) -> None:
        """
        A batch overwrites every entry from its first index on.
        """
        self.ok(self.store.save(batch(1, 5)))
        self.ok(self.store.save(batch(3, 4, term=2)))
        self.assertEqual(self.store.load().entries, entries(1, 2) + entries(3, 4, 2))

    def test_gap(self) -> None:
        """
        A batch leaving a gap fails with ValueError.
        """
        d = self.store.save(batch(2, 2))
        self.flush()
        self.failureResultOf(d, ValueError)

    def test_snapshots(self) -> None:
        """
        The newest snapshot is loaded; only two are kept.
        """
        self.ok(self.store.save(batch(1, 30)))
        for i in (10, 20, 30):
            self.ok(self.store.save_snapshot(meta(i), b"%d" % i))
        state = self.store.load()
        self.assertEqual((state.snapshot, state.snapshot_data), (meta(30), b"30"))
        self.assertEqual(len(self.store._durable.snapshots), 2)

    def test_install(self) -> None:
        """
        Installing a snapshot empties the log, which continues after it.
        """
        self.ok(self.store.save(batch(1, 5)))
        self.ok(self.store.install_snapshot(meta(40, 2), b"x"))
        bad = self.store.save(batch(42, 42))
        self.flush()
        self.failureResultOf(bad, ValueError)
        self.ok(self.store.save(batch(41, 41, 2)))
        state = self.store.load()
        self.assertEqual((state.snapshot, state.entries), (meta(40, 2), entries(41, 41, 2)))

    def test_compact(self) -> None:
        """
        Compaction drops entries up to the requested index, but never beyond
        the newest snapshot.
        """
        self.ok(self.store.save(batch(1, 10)))
        self.ok(self.store.compact(5))
        self.assertEqual(self.store.load().entries, entries(1, 10))
        self.ok(self.store.save_snapshot(meta(4), b""))
        self.ok(self.store.compact(5))
        self.assertEqual(self.store.load().entries, entries(5, 10))


class FaultTests(MemoryFixture):
    """
    Injected full disks.
    """

    def test_fail_next_writes(self) -> None:
        """
        The next n writes fail with L{StorageFull} and change nothing; empty
        batches do not count; later writes succeed.
        """
        self.store.fail_next_writes(2)
        failed = self.store.save(batch(1, 1))
        empty = self.store.save(PersistBatch())
        identity = self.store.set_identity(NodeIdentity("n1"))
        good = self.store.save(batch(1, 2))
        self.flush()
        self.failureResultOf(failed, StorageFull)
        self.successResultOf(empty)
        self.failureResultOf(identity, StorageFull)
        self.successResultOf(good)
        state = self.store.load()
        self.assertEqual((state.identity, state.entries), (None, entries(1, 2)))


class BlockingWriteTests(MemoryFixture):
    """
    Blocking saves, completed at once by chance when nothing is pending.
    """

    def test_at_once(self) -> None:
        """
        With C{blocking_writes=1} a blocking save on an idle disk is durable
        and fired when C{save} returns; a plain one still waits.
        """
        store = MemoryStorage(self.clock, random.Random(7), (0.001, 0.01), blocking_writes=1.0)
        self.assertIsNone(self.successResultOf(store.save(batch(1, 1), blocking=True)))
        self.assertEqual(store.load().entries, entries(1, 1))
        plain = store.save(batch(2, 2))
        self.assertNoResult(plain)

    def test_behind_pending(self) -> None:
        """
        A blocking save made while a write is pending waits behind it.
        """
        store = MemoryStorage(self.clock, random.Random(7), (0.001, 0.01), blocking_writes=1.0)
        first = store.save(batch(1, 1))
        second = store.save(batch(2, 2), blocking=True)
        self.assertNoResult(second)
        self.clock.advance(0.01)
        self.clock.advance(0.01)
        self.successResultOf(first)
        self.successResultOf(second)

    def test_chance(self) -> None:
        """
        The chance is drawn from the seeded generator: both outcomes occur,
        the same ones for the same seed; by default never at once.
        """

        def outcomes(seed: int, chance: float) -> list[bool]:
            clock = Clock()
            store = MemoryStorage(clock, random.Random(seed), (0.001, 0.01), blocking_writes=chance)
            seen = []
            for i in range(1, 41):
                d = store.save(batch(i, i), blocking=True)
                seen.append(d.called)
                clock.advance(0.01)
            return seen

        self.assertEqual(set(outcomes(3, 0.5)), {True, False})
        self.assertEqual(outcomes(3, 0.5), outcomes(3, 0.5))
        self.assertEqual(set(outcomes(3, 0.0)), {False})

    def test_fault_and_crash(self) -> None:
        """
        An injected fault fails a blocking save at once; the storage a
        crash returns completes blocking saves at once too.
        """
        store = MemoryStorage(self.clock, random.Random(7), (0.001, 0.01), blocking_writes=1.0)
        store.fail_next_writes(1)
        self.failureResultOf(store.save(batch(1, 1), blocking=True), StorageFull)
        restarted = store.crash()
        self.successResultOf(restarted.save(batch(1, 1), blocking=True))


class CrashTests(MemoryFixture):
    """
    Power loss.
    """

    def crash_once(self, seed: int) -> tuple[list[Deferred[None]], MemoryStorage]:
        clock = Clock()
        store = MemoryStorage(clock, random.Random(seed), (0.001, 0.01))
        acked = store.save(batch(1, 3))
        clock.advance(0.01)
        self.successResultOf(acked)
        pending = [store.save(batch(i, i)) for i in range(4, 7)]
        clock.advance(0.0005)
        pending += [store.save(batch(i, i)) for i in range(7, 9)]
        restarted = store.crash()
        clock.advance(1)
        for d in pending:
            self.assertNoResult(d)
        return pending, restarted

    def test_acked_survive_unacked_prefix(self) -> None:
        """
        Acknowledged writes always survive; of the others a prefix survives,
        sometimes none, sometimes all, never with a hole.
        """
        survived = set()
        for seed in range(60):
            _, restarted = self.crash_once(seed)
            found = restarted.load().entries
            self.assertEqual(found, entries(1, len(found)))
            self.assertGreaterEqual(len(found), 3)
            survived.add(len(found))
        self.assertEqual(survived, {3, 4, 5, 6, 7, 8})

    def test_restarted_storage(self) -> None:
        """
        The new storage works on the same clock; the dead one swallows
        writes, as a dead machine would.
        """
        self.ok(self.store.save(batch(1, 1)))
        dead = self.store
        self.store = dead.crash()
        self.assertEqual(self.store.load().entries, entries(1, 1))
        self.ok(self.store.save(batch(2, 2)))
        ghost = dead.save(batch(2, 2))
        self.clock.advance(1)
        self.assertNoResult(ghost)
        self.assertNoResult(dead.close())
        self.assertEqual(self.store.load().entries, entries(1, 2))

    def test_deterministic(self) -> None:
        """
        The same seed gives the same timings and the same crash outcome.
        """

        def run() -> tuple[list[float], int]:
            clock = Clock()
            store = MemoryStorage(clock, random.Random(99))
            times: list[float] = []
            for i in range(1, 6):
                store.save(batch(i, i)).addCallback(lambda _: times.append(clock.seconds()))
                clock.advance(0.004)
            return times, len(store.crash().load().entries)

        self.assertEqual(run(), run())


ops = st.lists(
    st.one_of(
        st.tuples(st.just("save"), st.integers(0, 5), st.integers(1, 4)),
        st.tuples(st.just("snapshot"), st.integers(0, 5), st.booleans()),
        st.tuples(st.just("install"), st.integers(1, 5), st.booleans()),
    ),
    max_size=15,
)


class SameAsDiskTests(SynchronousTestCase):
    """
    L{MemoryStorage} and L{DiskStorage} agree.
    """

    @settings(max_examples=40, deadline=None)
    @given(ops)
    def test_same_outcome(self, program: list[tuple[str, int, int | bool]]) -> None:
        """
        The same calls (overwrites, snapshots consistent with the log or
        not, installs) lead both storages to accept and refuse the same
        calls and to load the same state.
        """
        skip_syncs(self)  # the files, not the platter, are under test here
        directory = tempfile.mkdtemp(prefix="raft3d-same-")
        self.addCleanup(shutil.rmtree, directory, True)
        disk = DiskStorage(directory, segment_size=64, _synchronous=True)
        disk.load()
        clock = Clock()
        memory = MemoryStorage(clock, random.Random(0))
        last = 0
        for term, (kind, n, flag) in enumerate(program, start=1):
            name: str
            args: tuple[object, ...]
            if kind == "save":
                first = max(1, last + 1 - n)
                name, args = (
                    "save",
                    (PersistBatch(entries=entries(first, first + int(flag) - 1, term)),),
                )
                new_last = first + int(flag) - 1
            elif kind == "snapshot":
                name, args = "save_snapshot", (meta(max(1, last - n), term if flag else 1), b"s")
                new_last = last
            else:
                name, args = "install_snapshot", (meta(last + n, term), b"i%d" % term)
                new_last = last + n
            outcomes = []
            for store in (disk, memory):
                results: list[object] = []
                getattr(store, name)(*args).addBoth(results.append)
                clock.advance(1)
                (result,) = results
                outcomes.append(type(result.value) if isinstance(result, Failure) else result)
            self.assertEqual(outcomes[0], outcomes[1], (name, args))
            if outcomes[0] is None:
                last = new_last
        self.successResultOf(disk.close())
        self.assertEqual(DiskStorage(directory, _synchronous=True).load(), memory.load())
