# -*- test-case-name: tests.raft.test_node -*-
"""
Tests for L{raft3d.raft._node.RaftNode}, the Twisted driver of the core:
batching, persistence ordering, applying, reads, snapshots and restarts, on
simulated time with simulated and real disks.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from typing import Any

from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import (
    AppendEntries,
    CommitTimeout,
    Configuration,
    Member,
    NotLeader,
    PersistBatch,
    RaftError,
    StorageFull,
)
from raft3d.raft._node import LeaderDiskFull, NodeSettings, RaftNode
from raft3d.storage import DiskStorage, MemoryStorage
from raft3d.testing import RecordingStateMachine, SimCluster, sim_settings
from raft3d.testing._cluster import Invariants
from raft3d.testing._network import SimNetwork, SimTransport


def _single(
    clock: Clock, storage: Any, settings: NodeSettings | None = None
) -> tuple[RaftNode, RecordingStateMachine]:
    machine = RecordingStateMachine("solo", Invariants())
    node = RaftNode(
        "solo",
        clock=clock,
        storage=storage,
        transport=SimTransport(SimNetwork(clock, random.Random(1)), "solo"),
        state_machine=machine,
        settings=settings or sim_settings(),
        rng=random.Random(2),
    )
    return node, machine


_SOLO = Configuration((Member("solo", "sim:solo", "http:solo"),))


def _run(clock: Clock, seconds: float) -> None:
    for _ in range(int(seconds / 0.01)):
        clock.advance(0.01)


class SingleNodeTests(SynchronousTestCase):
    """
    A one-node cluster: the simplest end-to-end path through the driver.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.storage = MemoryStorage(self.clock, random.Random(3), fsync_delay=(0.001, 0.002))
        self.node, self.machine = _single(self.clock, self.storage)
        self.node.start(bootstrap=_SOLO, cluster_id="c1")
        _run(self.clock, 2.0)

    def test_elects_itself(self) -> None:
        """
        A bootstrapped single voter becomes leader of term 2 on its own.
        """
        status = self.node.status()
        self.assertEqual((status.role, status.leader_id), ("Leader", "solo"))
        self.assertEqual(self.node.identity.cluster_id, "c1")

    def test_propose_fires_with_result_after_fsync(self) -> None:
        """
        A proposal fires with the state machine's result only after its
        entry is durable: not before the simulated fsync completes.
        """
        d = self.node.propose("hello")
        self.clock.advance(0)
        self.assertNoResult(d)
        _run(self.clock, 0.05)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertEqual([c for _, c in self.machine.items], ["hello"])

    def test_apply_listener_on_later_turn(self) -> None:
        """
        Apply listeners get (index, command, result) in log order, on a
        later reactor turn than the apply itself (never re-entrantly).
        """
        seen: list[tuple[int, Any, Any]] = []
        self.node.add_apply_listener(lambda *args: seen.append(args))
        d1 = self.node.propose("a")
        d2 = self.node.propose("b")
        _run(self.clock, 0.05)
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.assertEqual([(c, r) for _, c, r in seen], [("a", 1), ("b", 2)])
        self.assertLess(seen[0][0], seen[1][0])

    def test_read_index(self) -> None:
        """
        On a single voter a linearizable read is ready at the commit index
        without any message.
        """
        d = self.node.read_index()
        _run(self.clock, 0.05)
        self.assertEqual(self.successResultOf(d), self.node.status().commit_index)

    def test_sessions_apply_once(self) -> None:
        """
        The same (client, seq) proposed twice is applied once; both callers
        get the first result.
        """
        d1 = self.node.propose("once", ("c", 1))
        d2 = self.node.propose("once", ("c", 1))
        _run(self.clock, 0.05)
        self.assertEqual(self.successResultOf(d1), self.successResultOf(d2))
        self.assertEqual([c for _, c in self.machine.items], ["once"])

    def test_persist_failure_is_retried(self) -> None:
        """
        When the disk refuses writes (full), nothing is acknowledged: the
        proposal whose write failed is answered at once with
        L{CommitTimeout} (outcome unknown; a single voter cannot commit
        without its own write), not after the proposal timeout.  Once the
        disk accepts writes again the entry commits by itself, exactly once:
        a retry in the same session gets the first result.
        """
        self.storage.fail_next_writes(10_000)
        d = self.node.propose("after-full-disk", ("c", 1))
        _run(self.clock, 0.05)
        self.failureResultOf(d, CommitTimeout)
        _run(self.clock, 1.0)
        self.assertEqual(self.machine.items, [])
        self.assertTrue(self.node.disk_failing)
        self.storage.fail_next_writes(0)
        _run(self.clock, 0.5)
        self.assertFalse(self.node.disk_failing)
        self.assertEqual([c for _, c in self.machine.items], ["after-full-disk"])
        again = self.node.propose("after-full-disk", ("c", 1))
        _run(self.clock, 0.05)
        self.assertEqual(self.successResultOf(again), 1)
        self.assertEqual(len(self.machine.items), 1)

    def test_commit_timeout(self) -> None:
        """
        A proposal that cannot commit in time (its leader lost every
        follower) errbacks with CommitTimeout after the proposal timeout,
        which tells the client the outcome is unknown.
        """
        cluster = SimCluster(seed=21, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        others = {n.node_id for n in cluster.live()} - {leader.node_id}
        cluster.network.partition({leader.node_id}, others)
        d = leader.propose("stuck")
        cluster.advance(leader.settings.proposal_timeout - 0.5)
        self.assertNoResult(d)
        cluster.advance(1.0)
        self.failureResultOf(d, CommitTimeout)

    def test_snapshot_and_compaction(self) -> None:
        """
        Every snapshot_threshold applied entries a snapshot is written and
        the log compacted, keeping the trailing window.
        """
        for i in range(100):
            self.node.propose(i)
            _run(self.clock, 0.01)
        _run(self.clock, 0.5)
        status = self.node.status()
        self.assertGreaterEqual(status.snapshot_index, 40)
        self.assertEqual(
            self.node.core.log.offset,
            status.snapshot_index - self.node.settings.trailing_entries,
        )

    def test_restart_restores_snapshot_and_sessions(self) -> None:
        """
        After a crash the node restores its newest snapshot, including the
        session table, and replays the log: state and dedup survive.
        """
        d = self.node.propose("first", ("c", 1))
        for i in range(60):
            self.node.propose(i)
            _run(self.clock, 0.01)
        _run(self.clock, 0.5)
        first = self.successResultOf(d)
        items = list(self.machine.items)
        self.node.halt()
        node, machine = _single(self.clock, self.storage.crash())
        node.start(bootstrap=_SOLO, cluster_id="other")
        self.assertGreater(node.status().snapshot_index, 0)
        _run(self.clock, 2.0)
        self.assertEqual(machine.items, items)
        self.assertEqual(node.identity.cluster_id, "c1")
        again = node.propose("first", ("c", 1))
        _run(self.clock, 0.1)
        self.assertEqual(self.successResultOf(again), first)

    def test_bootstrap_after_plain_start(self) -> None:
        """
        A node first started without the bootstrap configuration (so its
        identity was recorded, but nothing of a cluster) can still be
        bootstrapped when restarted with it.
        """
        clock = Clock()
        storage = MemoryStorage(clock, random.Random(5), fsync_delay=(0.001, 0.002))
        node, _ = _single(clock, storage)
        node.start()
        _run(clock, 1.0)
        self.assertEqual(node.status().members, ())
        node.halt()
        again, _ = _single(clock, storage.crash())
        again.start(bootstrap=_SOLO, cluster_id="late")
        _run(clock, 2.0)
        self.assertEqual(again.status().role, "Leader")
        self.assertEqual(again.identity.cluster_id, "late")

    def test_wrong_node_data(self) -> None:
        """
        A data directory that belongs to another node refuses to start.
        """
        self.node.halt()
        machine = RecordingStateMachine("other", Invariants())
        impostor = RaftNode(
            "other",
            clock=self.clock,
            storage=self.storage.crash(),
            transport=SimTransport(SimNetwork(self.clock, random.Random(1)), "other"),
            state_machine=machine,
        )
        self.assertRaises(ValueError, impostor.start)


class BatchingTests(SynchronousTestCase):
    """
    Throughput by design: one reactor turn, one append, one fsync, one
    AppendEntries per follower.
    """

    def test_one_turn_one_batch(self) -> None:
        """
        Ten proposals made in one reactor turn become one storage save and
        one AppendEntries to each follower, carrying all ten entries.
        """
        cluster = SimCluster(seed=7, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(1.0)
        storage = cluster.nodes[leader.node_id].storage
        saves: list[PersistBatch] = []
        original_save = storage.save

        def save(batch: PersistBatch) -> Any:
            saves.append(batch)
            return original_save(batch)

        storage.save = save  # type: ignore[method-assign]
        appends: list[AppendEntries] = []
        original_send = cluster.network.send

        def send(source: str, destination: str, message: Any) -> None:
            if source == leader.node_id and isinstance(message, AppendEntries) and message.entries:
                appends.append(message)
            original_send(source, destination, message)

        cluster.network.send = send  # type: ignore[method-assign]
        ds = [leader.propose(i) for i in range(10)]
        cluster.clock.advance(0)
        self.assertEqual([len(b.entries) for b in saves], [10])
        self.assertEqual(sorted(len(m.entries) for m in appends), [10, 10])
        cluster.advance(0.5)
        for d in ds:
            self.successResultOf(d)

    def test_follower_refers_to_leader(self) -> None:
        """
        A proposal on a follower fails with NotLeader naming the leader, so
        the service can forward it.
        """
        cluster = SimCluster(seed=9, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = next(n for n in cluster.live() if n is not leader)
        d = follower.propose("x")
        cluster.clock.advance(0)
        f = self.failureResultOf(d, NotLeader)
        self.assertEqual(f.value.leader.node_id, leader.node_id)

    def test_follower_read_index(self) -> None:
        """
        A follower's read index comes from the leader and fires once the
        follower has applied up to it.
        """
        cluster = SimCluster(seed=13, size=3)
        leader = cluster.wait_for_leader()
        cluster.result_of(leader.propose("w"))
        follower = next(n for n in cluster.live() if n is not leader)
        index = cluster.result_of(follower.read_index())
        self.assertGreaterEqual(follower.applied_index, index)
        self.assertGreaterEqual(index, leader.core.commit_index - 1)


class DiskRestartTests(SynchronousTestCase):
    """
    The driver on the real file storage (inline writer for determinism).
    """

    def test_restart_with_same_arguments_resumes(self) -> None:
        """
        Restarting a bootstrapped node on its data directory with the very
        same arguments resumes from disk; the bootstrap is not repeated.
        """
        path = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, path, True)
        clock = Clock()
        storage = DiskStorage(path, reactor=clock, _synchronous=True)  # type: ignore[arg-type]
        node, machine = _single(clock, storage)
        node.start(bootstrap=_SOLO, cluster_id="disk")
        _run(clock, 2.0)
        results = []
        for i in range(5):
            d = node.propose(f"v{i}")
            _run(clock, 0.05)
            results.append(self.successResultOf(d))
        self.assertEqual(results, [1, 2, 3, 4, 5])
        self.successResultOf(node.stop())
        storage2 = DiskStorage(path, reactor=clock, _synchronous=True)  # type: ignore[arg-type]
        node2, machine2 = _single(clock, storage2)
        node2.start(bootstrap=_SOLO, cluster_id="different")
        _run(clock, 2.0)
        self.assertEqual([c for _, c in machine2.items], [f"v{i}" for i in range(5)])
        self.assertEqual(node2.identity.cluster_id, "disk")
        self.assertEqual(len(node2.core.configuration.members), 1)
        failure: list[Failure] = []
        node2.propose("v5").addErrback(failure.append)
        _run(clock, 0.1)
        self.assertEqual(failure, [])
        self.successResultOf(node2.stop())


class DiskFullTests(SynchronousTestCase):
    """
    A node whose log writes fail (a full disk) stays up, serves reads,
    refuses new writes at once instead of letting them time out, does not
    lead while it lasts, and recovers by itself when writes succeed again.
    """

    def test_single_node_refuses_writes_serves_reads(self) -> None:
        """
        A single voter with a full disk refuses new proposals at once with
        L{LeaderDiskFull} (a L{StorageFull} and a L{RaftError}): they were
        never written.  It keeps answering linearizable reads, and takes
        writes again once its disk does.
        """
        clock = Clock()
        storage = MemoryStorage(clock, random.Random(3), fsync_delay=(0.001, 0.002))
        node, machine = _single(clock, storage)
        node.start(bootstrap=_SOLO, cluster_id="c1")
        _run(clock, 2.0)
        before = node.propose("before")
        _run(clock, 0.05)
        self.successResultOf(before)
        storage.fail_next_writes(10_000)
        node.propose("in-flight").addErrback(lambda f: f.trap(CommitTimeout))
        _run(clock, 0.05)
        refused = node.propose("refused")
        clock.advance(0)
        failure = self.failureResultOf(refused, LeaderDiskFull)
        self.assertIsInstance(failure.value, StorageFull)
        self.assertIsInstance(failure.value, RaftError)
        read = node.read_index()
        _run(clock, 0.05)
        self.assertEqual(self.successResultOf(read), node.status().commit_index)
        self.assertEqual(node.status().role, "Leader")
        storage.fail_next_writes(0)
        _run(clock, 0.5)
        after = node.propose("after")
        _run(clock, 0.05)
        self.successResultOf(after)
        self.assertEqual([c for _, c in machine.items], ["before", "in-flight", "after"])

    def test_leader_hands_over(self) -> None:
        """
        A leader whose disk fills: the write in flight still commits (the
        two followers are a majority without it), new proposals on it are
        refused with L{LeaderDiskFull} at once, and it hands leadership to
        a healthy node, which takes writes.  The old leader follows the new
        one; once its disk accepts writes again it stores and applies
        everything, acknowledges again, and does not take leadership back.
        """
        cluster = SimCluster(seed=5, size=3)
        old = cluster.wait_for_leader()
        cluster.result_of(old.propose("before"))
        old_term = old.core.term
        cluster.nodes[old.node_id].storage.fail_next_writes(10**6)
        in_flight = old.propose("in-flight")
        cluster.advance(0.05)
        self.assertTrue(old.disk_failing)
        refused = old.propose("refused")
        cluster.clock.advance(0)
        self.failureResultOf(refused, LeaderDiskFull)
        self.assertEqual(cluster.result_of(in_flight, timeout=2.0), 2)
        self.assertTrue(
            cluster.run_until(
                lambda: (leader := cluster.leader()) is not None and leader is not old, 5.0
            ),
            "leadership did not move away from the full disk",
        )
        new = cluster.leader()
        assert new is not None
        self.assertGreater(new.core.term, old_term)
        self.assertEqual(cluster.result_of(new.propose("after")), 3)
        cluster.advance(1.0)
        self.assertEqual((old.status().role, old.status().leader_id), ("Follower", new.node_id))
        self.assertTrue(old.disk_failing)
        cluster.nodes[old.node_id].storage.fail_next_writes(0)

        def stored() -> bool:
            pr = new.core.progress_of(old.node_id)
            return (
                pr is not None
                and pr.match == new.core.log.last_index
                and old.applied_index == new.core.commit_index
            )

        self.assertTrue(cluster.run_until(stored, 3.0))
        self.assertFalse(old.disk_failing)
        machine = cluster.nodes[old.node_id].machine
        assert machine is not None
        self.assertEqual([c for _, c in machine.items], ["before", "in-flight", "after"])
        self.assertIs(cluster.leader(), new)

    def test_follower_full_disk_does_not_stall(self) -> None:
        """
        A follower whose disk fills does not stall the cluster or cause an
        election: proposals commit on the healthy majority as fast as
        before, the follower stays up and following, and once its disk
        takes writes again it acknowledges and applies everything.
        """
        cluster = SimCluster(seed=11, size=3)
        leader = cluster.wait_for_leader()
        cluster.result_of(leader.propose("before"))
        follower = next(n for n in cluster.live() if n is not leader)
        term = leader.core.term
        cluster.nodes[follower.node_id].storage.fail_next_writes(10**6)
        for i in range(20):
            self.assertEqual(cluster.result_of(leader.propose(i), timeout=0.2), i + 2)
        cluster.advance(2.0)
        self.assertTrue(follower.disk_failing)
        self.assertEqual((cluster.leader(), leader.core.term), (leader, term))
        self.assertEqual(
            (follower.status().role, follower.status().leader_id), ("Follower", leader.node_id)
        )
        self.assertLess(follower.applied_index, leader.core.commit_index)
        cluster.nodes[follower.node_id].storage.fail_next_writes(0)

        def acknowledged() -> bool:
            pr = leader.core.progress_of(follower.node_id)
            return (
                pr is not None
                and pr.match == leader.core.log.last_index
                and follower.applied_index == leader.core.commit_index
            )

        self.assertTrue(cluster.run_until(acknowledged, 3.0))
        self.assertFalse(follower.disk_failing)
        self.assertEqual(leader.core.term, term)
        self.assertGreaterEqual(cluster.result_of(follower.read_index()), 22)

    def test_failed_snapshot_backs_off(self) -> None:
        """
        A snapshot whose write fails is not retried on every turn (each
        attempt serializes the whole state machine) but after
        C{snapshot_retry_delay}; once the disk takes it, it is written.
        """
        clock = Clock()
        storage = MemoryStorage(clock, random.Random(3), fsync_delay=(0.001, 0.002))
        node, machine = _single(clock, storage)
        node.start(bootstrap=_SOLO, cluster_id="c1")
        _run(clock, 2.0)
        serialized = []
        original_snapshot = machine.snapshot

        def snapshot() -> bytes:
            serialized.append(clock.seconds())
            return original_snapshot()

        machine.snapshot = snapshot  # type: ignore[method-assign]
        original_save = storage.save_snapshot
        storage.save_snapshot = lambda meta, data: fail(StorageFull("full"))  # type: ignore[method-assign]
        for i in range(100):
            node.propose(i)
            _run(clock, 0.01)
        self.assertEqual(len(serialized), 1)
        _run(clock, node.settings.snapshot_retry_delay)
        node.propose("more")
        _run(clock, 0.05)
        self.assertEqual(len(serialized), 2)
        storage.save_snapshot = original_save  # type: ignore[method-assign]
        _run(clock, node.settings.snapshot_retry_delay)
        node.propose("again")
        _run(clock, 0.05)
        self.assertEqual(len(serialized), 3)
        self.assertGreaterEqual(node.status().snapshot_index, 100)
