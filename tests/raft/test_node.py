# -*- test-case-name: tests.raft.test_node -*-
"""
Tests for L{raft3d.raft._node.RaftNode}, the Twisted driver of the core:
batching, persistence ordering, applying, reads, snapshots and restarts, on
simulated time with simulated and real disks.
"""

from __future__ import annotations

import io
import random
import shutil
import tempfile
from functools import partial
from typing import Any, Callable

import cbor2
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from raft3d.raft import (
    AppendEntries,
    AppendEntriesResponse,
    CommitTimeout,
    Configuration,
    IBackgroundSnapshot,
    Member,
    NotLeader,
    PersistBatch,
    Propose,
    ProposeResponse,
    RaftError,
    StorageFull,
)
from raft3d.raft._node import (
    SNAPSHOT_FORMAT,
    LeaderDiskFull,
    NodeSettings,
    RaftNode,
    SnapshotWriter,
    bytes_written_by,
    write_snapshot_document,
)
from raft3d.storage import DiskStorage, MemoryStorage
from raft3d.testing import RecordingStateMachine, SimCluster, sim_settings
from raft3d.testing._cluster import Invariants
from raft3d.testing._network import SimNetwork, SimTransport


def _single(
    clock: Clock,
    storage: Any,
    settings: NodeSettings | None = None,
    machine: RecordingStateMachine | None = None,
    run_in_thread: Callable[[SnapshotWriter], Deferred[bytes]] | None = None,
) -> tuple[RaftNode, RecordingStateMachine]:
    if machine is None:
        machine = RecordingStateMachine("solo", Invariants())
    node = RaftNode(
        "solo",
        clock=clock,
        storage=storage,
        transport=SimTransport(SimNetwork(clock, random.Random(1)), "solo"),
        state_machine=machine,
        settings=settings or sim_settings(),
        rng=random.Random(2),
        run_in_thread=run_in_thread,
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
        disk accepts writes again the entry commits by itself (within the
        retry backoff, at most a second), exactly once: a retry in the same
        session gets the first result.  Meanwhile the node does not rewrite
        its log on every tick: attempts back off to one a second.
        """
        self.storage.fail_next_writes(10_000)
        saves: list[float] = []
        original_save = self.storage.save

        def save(batch: PersistBatch, blocking: bool = False) -> Any:
            saves.append(self.clock.seconds())
            return original_save(batch, blocking)

        self.storage.save = save  # type: ignore[method-assign]
        d = self.node.propose("after-full-disk", ("c", 1))
        _run(self.clock, 0.05)
        self.failureResultOf(d, CommitTimeout)
        _run(self.clock, 5.0)
        self.assertEqual(self.machine.items, [])
        self.assertTrue(self.node.disk_failing)
        late = [t for t in saves if t > saves[0] + 2.0]
        self.assertLessEqual(len(late), 4)
        self.assertGreaterEqual(len(late), 2)
        self.storage.fail_next_writes(0)
        _run(self.clock, 1.5)
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

        def save(batch: PersistBatch, blocking: bool = False) -> Any:
            saves.append(batch)
            return original_save(batch, blocking)

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

    def test_blocking_follower_writes(self) -> None:
        """
        Followers ask their storage for blocking writes, the leader never
        does; with C{blocking_follower_writes} off nobody does.  Either way
        every proposal commits.
        """
        for enabled in (True, False):
            cluster = SimCluster(
                seed=11, size=3, settings=sim_settings(blocking_follower_writes=enabled)
            )
            leader = cluster.wait_for_leader()
            cluster.advance(1.0)
            asked: dict[str, list[bool]] = {}
            for node_id, sim in cluster.nodes.items():
                original = sim.storage.save

                def save(
                    batch: PersistBatch,
                    blocking: bool = False,
                    node_id: str = node_id,
                    original: Any = original,
                    asked: dict[str, list[bool]] = asked,
                ) -> Any:
                    if batch.entries:
                        asked.setdefault(node_id, []).append(blocking)
                    return original(batch, blocking)

                sim.storage.save = save  # type: ignore[method-assign]
            ds = [leader.propose(i) for i in range(5)]
            cluster.advance(0.5)
            for d in ds:
                self.successResultOf(d)
            followers = sorted(n for n in cluster.nodes if n != leader.node_id)
            self.assertEqual(set(asked), {leader.node_id, *followers})
            self.assertEqual(set(asked[leader.node_id]), {False})
            for node_id in followers:
                self.assertEqual(set(asked[node_id]), {enabled}, node_id)

    def test_answer_before_commit_notice(self) -> None:
        """
        The leader answers a proposal before it sends the empty
        AppendEntries that tell the followers its entry is committed.
        """
        cluster = SimCluster(seed=7, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(1.0)
        events: list[str] = []
        index = leader.core.log.last_index + 1
        original_send = cluster.network.send

        def send(source: str, destination: str, message: Any) -> None:
            if (
                source == leader.node_id
                and isinstance(message, AppendEntries)
                and not message.entries
                and message.leader_commit >= index
            ):
                events.append(f"notice to {destination}")
            original_send(source, destination, message)

        cluster.network.send = send  # type: ignore[method-assign]
        d = leader.propose("x").addCallback(lambda result: events.append("answered"))
        cluster.advance(0.5)
        self.successResultOf(d)
        followers = sorted(n.node_id for n in cluster.live() if n is not leader)
        self.assertEqual(events[0], "answered")
        self.assertEqual(sorted(events[1:3]), [f"notice to {f}" for f in followers])

    def test_next_batch_carries_commit(self) -> None:
        """
        A proposal made just after the previous one is answered carries
        the news of its commit to the followers: no commit notice goes
        for it.  The last one's notice goes after the delay, and the
        followers apply everything.
        """
        cluster = SimCluster(seed=7, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(1.0)
        self.assertGreater(leader.settings.commit_notice_delay, 0)
        empty: list[int] = []
        original_send = cluster.network.send

        def send(source: str, destination: str, message: Any) -> None:
            if source == leader.node_id and isinstance(message, AppendEntries):
                if not message.entries:
                    empty.append(message.leader_commit)
            original_send(source, destination, message)

        cluster.network.send = send  # type: ignore[method-assign]
        first = leader.core.log.last_index + 1
        answered: list[int] = []

        def next_one(_: object, left: int) -> None:
            answered.append(leader.core.commit_index)
            if left:
                leader.propose(left).addCallback(next_one, left - 1)

        leader.propose("start").addCallback(next_one, 4)
        cluster.advance(0.5)
        last = first + 4
        self.assertEqual(answered[-1], last)
        self.assertEqual([c for c in empty if first <= c < last], [])
        self.assertIn(last, empty)
        for node in cluster.live():
            self.assertEqual(node.applied_index, last)

    def test_follower_answers_before_applying(self) -> None:
        """
        A follower told of a commit by the C{AppendEntries} that brings the
        next entry answers for that entry before it applies the committed
        one, and applies everything in order.
        """
        cluster = SimCluster(seed=7, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(1.0)
        follower = _follower(cluster, leader)
        machine = cluster.nodes[follower.node_id].machine
        assert machine is not None
        events: list[tuple[str, int]] = []
        original_apply = machine.apply

        def apply(index: int, command: Any) -> Any:
            events.append(("apply", index))
            return original_apply(index, command)

        machine.apply = apply  # type: ignore[method-assign]
        original_send = cluster.network.send

        def send(source: str, destination: str, message: Any) -> None:
            if source == follower.node_id and isinstance(message, AppendEntriesResponse):
                events.append(("answer", message.match_index))
            original_send(source, destination, message)

        cluster.network.send = send  # type: ignore[method-assign]
        first = leader.core.log.last_index + 1

        def next_one(_: object, left: int) -> None:
            if left:
                leader.propose(left).addCallback(next_one, left - 1)

        leader.propose("start").addCallback(next_one, 4)
        cluster.advance(0.5)
        applied = [i for kind, i in events if kind == "apply"]
        self.assertEqual(applied, list(range(first, first + 5)))
        for index in range(first, first + 4):
            self.assertLess(
                events.index(("answer", index + 1)), events.index(("apply", index)), events
            )

    def test_follower_refers_to_leader(self) -> None:
        """
        With relaying turned off, a proposal on a follower fails with
        NotLeader naming the leader, so the service can forward it.
        """
        cluster = SimCluster(seed=9, size=3, settings=sim_settings(forward_proposals=False))
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


@implementer(IBackgroundSnapshot)
class _FreezingMachine(RecordingStateMachine):
    """
    A recording state machine that counts how its snapshots are made.
    """

    def __init__(self, node_id: str, invariants: Invariants) -> None:
        super().__init__(node_id, invariants)
        self.snapshots = 0
        self.freezes = 0
        self.frozen_at: list[int] = []

    def snapshot(self) -> bytes:
        self.snapshots += 1
        return super().snapshot()

    def freeze(self) -> Callable[[], bytes]:
        self.freezes += 1
        items = list(self.items)
        self.frozen_at.append(len(items))
        return lambda: cbor2.dumps(items)


class SnapshotDocumentTests(SynchronousTestCase):
    """
    The snapshot document built without re-encoding the state machine's
    bytes is exactly what C{cbor2} would encode.
    """

    def test_same_bytes_as_cbor2(self) -> None:
        """
        For state-machine payloads around every CBOR length boundary, and
        any sessions, L{write_snapshot_document} writes C{cbor2.dumps} of the
        document.
        """
        sessions = [12.5, [["idem:k", 1, {"printer": {"id": "x"}}, 3.0]]]
        for size in (0, 1, 23, 24, 255, 256, 65535, 65536, 70000, (1 << 21) + 3):
            sm = bytes(range(256)) * (size // 256) + bytes(size % 256)
            expected = cbor2.dumps({"v": SNAPSHOT_FORMAT, "sm": sm, "sessions": sessions})
            whole = bytes_written_by(
                partial(write_snapshot_document, sm_chunks=[sm], sessions=sessions)
            )
            self.assertEqual(whole, expected, size)
            for step in (1, 7, 4096, 65536) if size < 1 << 17 else (65536, 1 << 21):
                chunks = [memoryview(sm)[i : i + step] for i in range(0, len(sm), step)]
                out = io.BytesIO(b"before")
                out.seek(0, io.SEEK_END)
                write_snapshot_document(out, chunks, sessions)
                self.assertEqual(out.getvalue(), b"before" + expected, (size, step))

    def test_too_large(self) -> None:
        """
        State machine bytes of 4 GiB or more are refused (their length
        would need a longer head than the one written ahead of them).
        """

        class Huge(bytes):
            def __len__(self) -> int:
                return 1 << 32

        out = io.BytesIO()
        self.assertRaises(ValueError, write_snapshot_document, out, [bytes(1 << 16), Huge()], [])


class _BulkyMachine(RecordingStateMachine):
    """
    A recording state machine whose snapshots weigh 40 KiB.
    """

    def snapshot(self) -> bytes:
        return super().snapshot() + bytes(40 * 1024)


def _caught_up(leader: RaftNode, follower: RaftNode) -> Callable[[], bool]:
    """
    Whether C{leader} knows C{follower} holds its whole log, and
    C{follower} has applied everything committed.
    """

    def check() -> bool:
        pr = leader.core.progress_of(follower.node_id)
        return (
            pr is not None
            and pr.match == leader.core.log.last_index
            and follower.applied_index == leader.core.commit_index
        )

    return check


def _follower(cluster: SimCluster, leader: RaftNode) -> RaftNode:
    return next(n for n in cluster.live() if n is not leader)


class _Tap:
    """
    Record the messages of some types crossing a L{SimNetwork}, and hold
    back those C{hold} accepts instead of sending them.
    """

    def __init__(self, network: SimNetwork, *types: type[Any]) -> None:
        self.seen: list[Any] = []
        self.held: list[tuple[str, str, Any]] = []
        self.hold: Any = lambda message: False
        self._send = network.send
        self._types = types
        network.send = self._intercept  # type: ignore[method-assign]

    def _intercept(self, source: str, destination: str, message: Any) -> None:
        if isinstance(message, self._types):
            self.seen.append(message)
            if self.hold(message):
                self.held.append((source, destination, message))
                return
        self._send(source, destination, message)

    def release(self) -> None:
        held, self.held = self.held, []
        for source, destination, message in held:
            self._send(source, destination, message)


class RelayTests(SynchronousTestCase):
    """
    A follower relays proposals to the leader over the peer connection
    (L{Propose}) and waits for the positions the leader answers with, so
    clients may write through any node.
    """

    def test_follower_proposal_applied(self) -> None:
        """
        Proposals made on a follower in one turn travel in one L{Propose},
        are appended once by the leader and fire on the follower with the
        state machine's results, in order.
        """
        cluster = SimCluster(seed=21, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        tap = _Tap(cluster.network, Propose, ProposeResponse)
        ds = [follower.propose(f"c{i}") for i in range(5)]
        results = [cluster.result_of(d) for d in ds]
        self.assertEqual(results, sorted(results))
        self.assertEqual([type(m) for m in tap.seen], [Propose, ProposeResponse])
        machine = cluster.nodes[leader.node_id].machine
        assert machine is not None
        applied = [c for _, c in machine.items]
        self.assertEqual(
            [c for c in applied if str(c).startswith("c")], [f"c{i}" for i in range(5)]
        )
        cluster.invariants.check()

    def test_session_applies_once(self) -> None:
        """
        A relayed proposal retried in the same session (after an unknown
        outcome) is applied once and the retry gets the first result.
        """
        cluster = SimCluster(seed=22, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        first = cluster.result_of(follower.propose("once", ("client", 1)))
        again = cluster.result_of(follower.propose("once", ("client", 1)))
        self.assertEqual(first, again)
        machine = cluster.nodes[leader.node_id].machine
        assert machine is not None
        self.assertEqual([c for _, c in machine.items].count("once"), 1)

    def test_answer_lost_is_unknown_outcome(self) -> None:
        """
        When the leader's answer never arrives the follower reports
        L{CommitTimeout} (outcome unknown) after C{forward_timeout}; the
        command was in fact applied, which is why the outcome is unknown
        and not a refusal.
        """
        cluster = SimCluster(seed=23, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        tap = _Tap(cluster.network, ProposeResponse)
        tap.hold = lambda message: True
        d = follower.propose("lost-answer")
        cluster.advance(cluster.settings.forward_timeout - 0.5)
        self.assertNoResult(d)
        cluster.advance(1.0)
        self.failureResultOf(d, CommitTimeout)
        machine = cluster.nodes[leader.node_id].machine
        assert machine is not None
        self.assertIn("lost-answer", [c for _, c in machine.items])

    def test_leader_change_gives_up_at_once(self) -> None:
        """
        A follower whose leader crashes before answering does not wait for
        C{forward_timeout} once it stops following that leader (its election
        timer fires): the relayed proposal's outcome is unknown
        (L{CommitTimeout}) as soon as leadership moves.
        """
        cluster = SimCluster(seed=29, size=3, settings=sim_settings(forward_timeout=60.0))
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        cluster.crash(leader.node_id)
        d = follower.propose("orphan")
        self.assertRaises(CommitTimeout, cluster.result_of, d, 5.0)
        self.assertNotEqual(follower.core.leader_id, leader.node_id)

    def test_answer_after_apply(self) -> None:
        """
        An answer that arrives after the follower applied the entries (a
        reordering network) still gives the right result.
        """
        cluster = SimCluster(seed=24, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        tap = _Tap(cluster.network, ProposeResponse)
        tap.hold = lambda message: True
        d = follower.propose("late")
        self.assertTrue(
            cluster.run_until(
                lambda: bool(tap.held) and follower.applied_index >= tap.held[0][2].positions[0][0],
                1.0,
            )
        )
        self.assertNoResult(d)
        tap.hold = lambda message: False
        tap.release()
        machine = cluster.nodes[follower.node_id].machine
        assert machine is not None
        # The recording machine answers with how many commands it holds.
        expected = [c for _, c in machine.items].index("late") + 1
        self.assertEqual(cluster.result_of(d), expected)

    def test_leader_refuses_when_not_leader(self) -> None:
        """
        A follower with a wrong idea of the leader relays to a node that
        does not lead: it answers C{not_leader} and appends nothing, and
        the follower fails the proposal with L{NotLeader}.
        """
        cluster = SimCluster(seed=25, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        other = next(n for n in cluster.live() if n not in (leader, follower))
        tap = _Tap(cluster.network, ProposeResponse)
        last = other.core.log.last_index
        follower.core.leader_id = other.node_id
        d = follower.propose("misdirected")
        self.assertRaises(NotLeader, cluster.result_of, d, 1.0)
        self.assertEqual([(m.sender, m.error) for m in tap.seen], [(other.node_id, "not_leader")])
        self.assertEqual(other.core.log.last_index, last)

    def test_malformed_and_stranger_refused(self) -> None:
        """
        The leader appends nothing for a payload its replicas could not
        apply (not a canonical C{[command, client, seq]}) or for a sender
        that is not a member, answers C{refused}, and ignores a duplicated
        message.
        """
        cluster = SimCluster(seed=26, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        tap = _Tap(cluster.network, ProposeResponse)
        last = leader.core.log.last_index
        good = cbor2.dumps(["ok", None, 0])
        bad_payloads = (
            b"",
            b"\xff",
            cbor2.dumps(["x", None]),
            cbor2.dumps(["x", 3, 0]),
            cbor2.dumps(["x", None, "0"]),
            good + b"trailing",
            b"\x9f" + good[1:] + b"\xff",
        )
        for i, payload in enumerate(bad_payloads):
            leader._receive(Propose(leader.core.term, follower.node_id, 100 + i, (good, payload)))
        leader._receive(Propose(leader.core.term, "stranger", 200, (good,)))
        cluster.clock.advance(0)
        self.assertEqual(leader.core.log.last_index, last)
        self.assertEqual({m.error for m in tap.seen}, {"refused"})
        self.assertEqual(len(tap.seen), len(bad_payloads) + 1)
        tap.seen.clear()
        message = Propose(leader.core.term, follower.node_id, 300, (good,))
        leader._receive(message)
        leader._receive(message)
        cluster.clock.advance(0)
        self.assertEqual(leader.core.log.last_index, last + 1)
        self.assertEqual([m.positions for m in tap.seen], [((last + 1, leader.core.term),)])

    def test_leader_disk_full(self) -> None:
        """
        A leader that cannot write its log refuses relayed proposals with
        C{disk_full}: the follower fails them at once with L{LeaderDiskFull}
        (certainly not applied).
        """
        cluster = SimCluster(seed=27, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        cluster.nodes[leader.node_id].storage.fail_next_writes(10**6)
        leader.propose("trigger").addErrback(lambda f: None)
        # Relay as soon as the leader knows, well before its next tick
        # hands leadership over (after which the outcome would be unknown).
        for _ in range(50):
            if leader.disk_failing:
                break
            cluster.clock.advance(0.001)
        self.assertTrue(leader.disk_failing)
        d = follower.propose("refused")
        self.assertRaises(LeaderDiskFull, cluster.result_of, d, 1.0)

    def test_no_leader_known(self) -> None:
        """
        A node that knows no leader cannot relay and fails at once with
        L{NotLeader} without a leader.
        """
        cluster = SimCluster(seed=28, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        follower.core.leader_id = None
        d = follower.propose("nowhere")
        cluster.clock.advance(0)
        failure = self.failureResultOf(d, NotLeader)
        self.assertIsNone(failure.value.leader)


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

        self.assertTrue(cluster.run_until(_caught_up(new, old), 3.0))
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

        self.assertTrue(cluster.run_until(_caught_up(leader, follower), 3.0))
        self.assertFalse(follower.disk_failing)
        self.assertEqual(leader.core.term, term)
        self.assertGreaterEqual(cluster.result_of(follower.read_index()), 22)

    def test_follower_cannot_store_snapshot(self) -> None:
        """
        A follower that needs a snapshot but cannot write it (disk full)
        stays up: nothing in memory changes, it keeps its applied state for
        stale reads, never halts, and retries the write until the disk takes
        it; then it installs the snapshot and catches up.
        """
        cluster = SimCluster(seed=33, size=3)
        leader = cluster.wait_for_leader()
        cluster.advance(0.5)
        follower = _follower(cluster, leader)
        fatal: list[str] = []
        follower.on_fatal = fatal.append
        cluster.network.partition({follower.node_id}, set(cluster.nodes) - {follower.node_id})
        for i in range(120):
            cluster.result_of(leader.propose(f"w{i}"))
        self.assertGreater(leader.core.snapshot.index, follower.applied_index)
        before = follower.applied_index
        storage = cluster.nodes[follower.node_id].storage
        storage.fail_next_writes(10**6)
        cluster.network.heal()
        cluster.advance(5.0)
        self.assertEqual(fatal, [])
        self.assertFalse(follower._halted)
        self.assertEqual(follower.applied_index, before)
        self.assertEqual(follower.core.snapshot.index, 0)
        staged = follower._staged
        assert staged is not None
        self.assertGreaterEqual(staged.failures, 2)
        storage.fail_next_writes(0)
        self.assertTrue(
            cluster.run_until(lambda: follower.applied_index == leader.core.commit_index, 10.0)
        )
        self.assertGreater(follower.core.snapshot.index, before)
        self.assertEqual(fatal, [])
        cluster.check_log_matching()
        cluster.invariants.check()

    def test_snapshot_encoded_in_thread(self) -> None:
        """
        With C{run_in_thread} and a state machine that can freeze itself,
        the node only freezes the state on the reactor; the encoding runs
        later (in the thread) while commands keep being applied, and the
        snapshot written holds exactly the state at its index: a restart
        restores it and replays the rest of the log.
        """
        clock = Clock()
        storage = MemoryStorage(clock, random.Random(3), fsync_delay=(0.001, 0.002))
        machine = _FreezingMachine("solo", Invariants())
        jobs: list[SnapshotWriter] = []
        results: list[Deferred[bytes]] = []

        def run_in_thread(work: SnapshotWriter) -> Deferred[bytes]:
            jobs.append(work)
            d: Deferred[bytes] = Deferred()
            results.append(d)
            return d

        settings = sim_settings(snapshot_threshold=30, snapshot_stagger=0.0, trailing_entries=4)
        node, _ = _single(clock, storage, settings, machine, run_in_thread)
        node.start(bootstrap=_SOLO, cluster_id="c1")
        _run(clock, 2.0)
        for i in range(40):
            node.propose(i)
            _run(clock, 0.01)
        self.assertEqual((len(jobs), machine.snapshots, machine.freezes), (1, 0, 1))
        frozen_at = machine.frozen_at[0]
        self.assertGreater(len(machine.items), frozen_at)
        results[0].callback(bytes_written_by(jobs[0]))
        _run(clock, 0.1)
        meta = node.status().snapshot_index
        self.assertGreater(meta, 0)
        loaded = storage.load()
        assert loaded.snapshot_data is not None
        sm_bytes = cbor2.loads(loaded.snapshot_data)["sm"]
        self.assertEqual(len(cbor2.loads(sm_bytes)), frozen_at)
        storage = storage.crash()
        again, restored = _single(clock, storage)
        again.start()
        _run(clock, 2.0)
        self.assertEqual(restored.items, machine.items[: len(restored.items)])
        self.assertEqual(len(restored.items), len(machine.items))

    def test_large_state_snapshots_less_often(self) -> None:
        """
        A snapshot is taken after C{snapshot_threshold} entries only once
        those entries carry a quarter (C{1 / snapshot_log_ratio}) of the
        last snapshot's size: a large state is not rewritten for a few
        small commands.
        """
        clock = Clock()
        storage = MemoryStorage(clock, random.Random(3), fsync_delay=(0.001, 0.002))
        settings = sim_settings(snapshot_threshold=10, snapshot_stagger=0.0, trailing_entries=4)
        node, _ = _single(clock, storage, settings, _BulkyMachine("solo", Invariants()))
        node.start(bootstrap=_SOLO, cluster_id="c1")
        _run(clock, 2.0)
        for i in range(12):
            node.propose(i)
            _run(clock, 0.01)
        first = node.status().snapshot_index
        self.assertGreater(first, 0)
        # Each entry is about 1 KiB of log; the snapshot is 40 KiB: the
        # next one needs about 10 KiB of log, so 10 entries are not enough.
        for _ in range(9):
            node.propose("x" * 1000)
            _run(clock, 0.01)
        self.assertEqual(node.status().snapshot_index, first)
        for _ in range(12):
            node.propose("y" * 1000)
            _run(clock, 0.01)
        self.assertGreater(node.status().snapshot_index, first)

    def test_snapshot_stagger(self) -> None:
        """
        With C{snapshot_stagger}, each snapshot waits for between 1 and 1 +
        stagger times the threshold entries, drawn anew each time (so the
        members of a cluster drift apart); without it, exactly the
        threshold.
        """
        for stagger, low, high in ((0.0, 10, 10), (0.5, 10, 15)):
            clock = Clock()
            storage = MemoryStorage(clock, random.Random(3), fsync_delay=(0.001, 0.002))
            settings = sim_settings(
                snapshot_threshold=10,
                snapshot_stagger=stagger,
                snapshot_log_ratio=1e9,
                trailing_entries=4,
            )
            node, _ = _single(clock, storage, settings)
            node.start(bootstrap=_SOLO, cluster_id="c1")
            _run(clock, 2.0)
            taken = [node.status().snapshot_index]
            for i in range(120):
                node.propose(i)
                _run(clock, 0.01)
                index = node.status().snapshot_index
                if index != taken[-1]:
                    taken.append(index)
            gaps = [b - a for a, b in zip(taken[1:], taken[2:], strict=False)]
            self.assertGreater(len(gaps), 4, taken)
            self.assertTrue(all(low <= gap <= high for gap in gaps), (stagger, gaps))
            if stagger:
                self.assertGreater(len(set(gaps)), 1, gaps)

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
