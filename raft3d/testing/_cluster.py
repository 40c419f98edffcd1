# -*- test-case-name: tests.testing.test_simulation -*-
"""
A whole simulated cluster: several L{RaftNode}s on one L{Clock}, a
L{SimNetwork}, and L{MemoryStorage} disks that lose what was not fsynced
when a node crashes.  L{Invariants} watches every node all along and the
final checks run after the faults heal.

Everything random flows from one seed, so C{python -m raft3d.testing
--seed N} replays a failing schedule exactly.
"""

from __future__ import annotations

import random
from typing import Any, Callable

import attrs
import cbor2
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from ..raft import (
    CommitTimeout,
    Configuration,
    IStateMachine,
    Member,
    NoLeader,
    NotLeader,
    RaftError,
)
from ..raft._core import Role
from ..raft._node import NodeSettings, RaftNode
from ..storage import MemoryStorage
from ._network import SimNetwork, SimTransport


class InvariantViolation(AssertionError):
    """
    A safety property of Raft did not hold.
    """


class Invariants:
    """
    What must hold at every moment of every run (paper figure 3), recorded
    as violations rather than raised, because the node guards its state
    machine calls.
    """

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.leaders: dict[int, str] = {}
        self.applied: dict[int, Any] = {}
        self.acked: list[Any] = []

    def fail(self, message: str) -> None:
        self.violations.append(message)

    def leader_elected(self, term: int, node: str) -> None:
        known = self.leaders.setdefault(term, node)
        if known != node:
            self.fail(f"election safety: {known} and {node} both lead term {term}")

    def command_applied(self, node: str, index: int, command: Any) -> None:
        known = self.applied.setdefault(index, command)
        if known != command:
            self.fail(
                f"state machine safety: {node} applied {command!r} at {index}, "
                f"another node applied {known!r}"
            )

    def check(self) -> None:
        if self.violations:
            raise InvariantViolation("; ".join(self.violations[:5]))


@implementer(IStateMachine)
class RecordingStateMachine:
    """
    Appends every command to a list; the result is the list's length, which
    is the same on every replica only if they all apply the same commands.
    """

    def __init__(self, node_id: str, invariants: Invariants) -> None:
        self.node_id = node_id
        self.items: list[tuple[int, Any]] = []
        self._invariants = invariants

    def apply(self, index: int, command: Any) -> Any:
        self._invariants.command_applied(self.node_id, index, command)
        self.items.append((index, command))
        return len(self.items)

    def snapshot(self) -> bytes:
        return cbor2.dumps(self.items)

    def restore(self, data: bytes) -> None:
        self.items = [(i, c) for i, c in cbor2.loads(data)]
        for index, command in self.items:
            self._invariants.command_applied(self.node_id, index, command)


@attrs.define
class SimNode:
    """
    One server of the simulation, across its crashes and restarts.
    """

    node_id: str
    storage: MemoryStorage
    member: Member
    node: RaftNode | None = None
    machine: RecordingStateMachine | None = None
    requests: set[Deferred[Any]] = attrs.field(factory=set)


def sim_settings(**overrides: Any) -> NodeSettings:
    """
    Settings that make snapshots, compaction and chunked InstallSnapshot
    happen within a short simulated run.
    """
    defaults: dict[str, Any] = dict(
        tick_interval=0.05,
        election_ticks=10,
        heartbeat_ticks=2,
        max_inflight=8,
        max_append_bytes=512,
        snapshot_threshold=40,
        snapshot_stagger=0.5,
        commit_notice_delay=0.002,
        trailing_entries=8,
        snapshot_chunk_size=97,
        snapshot_window=3,
        snapshot_timeout=3.0,
        proposal_timeout=3.0,
        read_timeout=2.0,
    )
    defaults.update(overrides)
    return NodeSettings(**defaults)


class SimCluster:
    """
    A cluster of L{RaftNode}s driven by one seed.

    @param blocking_writes: the chance that a follower's write is completed
        at once (see L{MemoryStorage}), so that both ways a save can end
        are explored.
    """

    def __init__(
        self,
        seed: int,
        size: int = 3,
        *,
        settings: NodeSettings | None = None,
        fsync_delay: tuple[float, float] = (0.0005, 0.004),
        blocking_writes: float = 0.5,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.network = SimNetwork(self.clock, random.Random(self.rng.getrandbits(64)))
        self.invariants = Invariants()
        self.settings = settings or sim_settings()
        self._fsync_delay = fsync_delay
        self._blocking_writes = blocking_writes
        self.nodes: dict[str, SimNode] = {}
        self._clients = 0
        self.configuration = Configuration(
            tuple(Member(f"n{i}", f"sim:{i}", f"http:{i}") for i in range(1, size + 1))
        )
        for member in self.configuration.members:
            self.nodes[member.node_id] = SimNode(member.node_id, self._new_storage(), member)
        for i, member in enumerate(self.configuration.members):
            self.start(member.node_id, bootstrap=self.configuration if i == 0 else None)

    def _new_storage(self) -> MemoryStorage:
        return MemoryStorage(
            self.clock,
            random.Random(self.rng.getrandbits(64)),
            fsync_delay=self._fsync_delay,
            blocking_writes=self._blocking_writes,
        )

    # -- life cycle ---------------------------------------------------------------

    def start(self, node_id: str, bootstrap: Configuration | None = None) -> RaftNode:
        sim = self.nodes[node_id]
        machine = RecordingStateMachine(node_id, self.invariants)
        node = RaftNode(
            node_id,
            clock=self.clock,
            storage=sim.storage,
            transport=SimTransport(self.network, node_id),
            state_machine=machine,
            settings=self.settings,
            rng=random.Random(self.rng.getrandbits(64)),
        )
        node.add_event_listener(lambda event: self._on_event(node, event))
        node.on_fatal = lambda reason: self._supervise(node_id, node)
        node.start(bootstrap=bootstrap, cluster_id="sim")
        sim.node, sim.machine = node, machine
        return node

    def request(self, node_id: str, answer: Deferred[Any]) -> Deferred[Any]:
        """
        What a client connected to C{node_id} gets for a request the node
        will answer with C{answer}: that answer, or an unknown outcome if
        the node crashes first.
        """
        requests = self.nodes[node_id].requests
        outcome: Deferred[Any] = Deferred()
        requests.add(outcome)

        def settle(result: Any) -> None:
            requests.discard(outcome)
            if not outcome.called:
                if isinstance(result, Failure):
                    outcome.errback(result)
                else:
                    outcome.callback(result)

        answer.addBoth(settle)
        return outcome

    def _on_event(self, node: RaftNode, event: tuple[str, ...]) -> None:
        if event[0] != "leader" or event[1] != node.node_id:
            return
        term = int(event[2])
        self.invariants.leader_elected(term, node.node_id)
        core = node.core
        if core.role is Role.LEADER and core.term == term:
            # Leader completeness: the new leader holds every entry any
            # node has applied.
            for index in self.invariants.applied:
                if index > core.log.last_index:
                    self.invariants.fail(
                        f"leader completeness: {node.node_id} leads term {term} "
                        f"without applied entry {index}"
                    )
                    break

    def _supervise(self, node_id: str, node: RaftNode) -> None:
        """
        A node halted on a storage failure: like a supervisor (systemd)
        would, kill it and start it again from what its disk holds.
        """

        def restart() -> None:
            if self.nodes[node_id].node is node:
                self.crash(node_id)
                self.restart(node_id)

        self.clock.callLater(0.5, restart)

    def crash(self, node_id: str) -> None:
        """
        Kill a node: unsynced writes may be lost, in-flight work vanishes.
        """
        sim = self.nodes[node_id]
        if sim.node is None:
            return
        sim.node.halt()
        self.network.detach(node_id)
        requests, sim.requests = sim.requests, set()
        for request in requests:
            # The client's connection to the dead server is reset: it
            # cannot tell whether its request took effect.
            request.errback(CommitTimeout(f"{node_id} crashed; outcome unknown"))
        sim.storage = sim.storage.crash()
        sim.node = sim.machine = None

    def restart(self, node_id: str) -> RaftNode:
        return self.start(node_id)

    def wipe(self, node_id: str) -> None:
        """
        Replace a (crashed) node's disk with an empty one.
        """
        self.crash(node_id)
        self.nodes[node_id].storage = self._new_storage()

    def live(self) -> list[RaftNode]:
        return [s.node for s in self.nodes.values() if s.node is not None]

    def node(self, node_id: str) -> RaftNode:
        node = self.nodes[node_id].node
        assert node is not None, f"{node_id} is down"
        return node

    # -- time ----------------------------------------------------------------------

    def advance(self, seconds: float, step: float | None = None) -> None:
        step = step or self.settings.tick_interval / 2
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.clock.advance(min(step, end - self.clock.seconds()))
            self.invariants.check()
        self.check_log_matching()

    def check_log_matching(self) -> None:
        """
        Log matching (paper 5.3): if two logs hold an entry with the same
        index and term, they are identical up to that index (within what
        both still hold in memory).
        """
        live = self.live()
        for i, a in enumerate(live):
            for b in live[i + 1 :]:
                la, lb = a.core.log, b.core.log
                low = max(la.first_index, lb.first_index)
                high = min(la.last_index, lb.last_index)
                while high >= low and la.term_at(high) != lb.term_at(high):
                    high -= 1
                if high >= low and la.slice(low, high) != lb.slice(low, high):
                    self.invariants.fail(
                        f"log matching: {a.node_id} and {b.node_id} agree on the term "
                        f"at {high} but differ before it"
                    )
        self.invariants.check()

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """
        Advance simulated time until C{predicate()} or C{timeout} seconds.
        """
        end = self.clock.seconds() + timeout
        step = self.settings.tick_interval / 2
        while not predicate():
            if self.clock.seconds() >= end:
                return False
            self.clock.advance(step)
            self.invariants.check()
        return True

    def leader(self) -> RaftNode | None:
        """
        The live leader of the highest term, if any.
        """
        leaders = [n for n in self.live() if n.core.role is Role.LEADER]
        return max(leaders, key=lambda n: n.core.term) if leaders else None

    def wait_for_leader(self, timeout: float = 10.0) -> RaftNode:
        assert self.run_until(lambda: self.leader() is not None, timeout), "no leader elected"
        leader = self.leader()
        assert leader is not None
        return leader

    def result_of(self, d: Deferred[Any], timeout: float = 10.0) -> Any:
        """
        Advance time until C{d} fires; return its result or raise its error.
        """
        box: list[Any] = []
        d.addBoth(box.append)
        assert self.run_until(lambda: bool(box), timeout), "deferred did not fire in time"
        if isinstance(box[0], Failure):
            box[0].raiseException()
        return box[0]

    # -- clients ---------------------------------------------------------------------

    def client(self, name: str, attempts: int = 12) -> SimClient:
        """
        A new client; its session id is unique even if C{name} is reused.
        """
        self._clients += 1
        return SimClient(self, f"{name}#{self._clients}", attempts)

    def members(self) -> list[str]:
        leader = self.leader()
        config = leader.core.configuration if leader else self.configuration
        return [m.node_id for m in config.members]

    # -- final checks ------------------------------------------------------------------

    def heal_and_converge(self, timeout: float = 30.0) -> None:
        """
        Heal every fault, restart every node, then check liveness (a leader
        commits a new proposal) and convergence (every member applied the
        same commands, every acknowledged one exactly once).
        """
        self.network.heal()
        for sim in self.nodes.values():
            sim.storage.fail_next_writes(0)
            if sim.node is None and sim.node_id in self.members():
                self.restart(sim.node_id)
        probe = self.client("final-probe", attempts=int(timeout / 0.2))
        done: list[Any] = []
        probe.submit(("probe", self.seed)).addBoth(done.append)
        if not self.run_until(lambda: bool(done), timeout):
            raise InvariantViolation("liveness: no proposal committed after healing")
        if isinstance(done[0], Failure):
            raise InvariantViolation(f"liveness: final proposal failed: {done[0].value!r}")
        leader = self.wait_for_leader(timeout)
        members = [m for m in self.members() if self.nodes[m].node is not None]

        def converged() -> bool:
            target = leader.core.commit_index
            return all(self.node(m).applied_index >= target for m in members)

        self.check_log_matching()
        if not self.run_until(converged, timeout):
            raise InvariantViolation(
                "convergence: members did not apply up to the leader's commit index: "
                + ", ".join(f"{m}={self.node(m).applied_index}" for m in members)
                + f" leader {leader.node_id}={leader.core.commit_index}"
            )
        reference: list[tuple[int, Any]] | None = None
        for m in members:
            machine = self.nodes[m].machine
            assert machine is not None
            items = [(i, c) for i, c in machine.items if i <= leader.core.commit_index]
            if reference is None:
                reference = items
            elif items != reference:
                raise InvariantViolation(f"convergence: {m} applied a different sequence")
            commands = [c for _, c in items]
            seen = set()
            for c in commands:
                key = cbor2.dumps(c)
                if key in seen:
                    raise InvariantViolation(f"exactly-once: {m} applied {c!r} twice")
                seen.add(key)
            for value in self.invariants.acked:
                if cbor2.dumps(value) not in seen:
                    raise InvariantViolation(f"durability: acknowledged {value!r} missing on {m}")
        self.check_log_matching()


class SimClient:
    """
    A client that submits one command at a time with a session, retrying on
    another node after errors, as the HTTP front end would.
    """

    def __init__(self, cluster: SimCluster, name: str, attempts: int = 12) -> None:
        self._cluster = cluster
        self.name = name
        self._seq = 0
        self._attempts = attempts

    def submit(self, command: Any) -> Deferred[Any]:
        self._seq += 1
        session = (self.name, self._seq)
        result: Deferred[Any] = Deferred()
        cluster = self._cluster

        def attempt(left: int, target: str | None) -> None:
            live = cluster.live()
            node = None
            if target is not None:
                node = cluster.nodes[target].node if target in cluster.nodes else None
            if node is None:
                if not live:
                    retry(left, None, NoLeader("no node up"))
                    return
                node = cluster.rng.choice(live)
            d = cluster.request(node.node_id, node.propose(command, session))

            def ok(value: Any) -> None:
                # An error result (a superseded sequence number, when a
                # retry lands after the session's next command) says the
                # command was not applied: it is not an acknowledgement.
                if not (isinstance(value, dict) and "error" in value):
                    cluster.invariants.acked.append(command)
                result.callback(value)

            def failed(f: Failure) -> None:
                error = f.value
                if not isinstance(error, RaftError):
                    result.errback(f)
                    return
                hint = None
                if isinstance(error, NotLeader) and error.leader is not None:
                    hint = error.leader.node_id
                retry(left, hint, error)

            d.addCallbacks(ok, failed)

        def retry(left: int, hint: str | None, error: Exception) -> None:
            if left <= 1:
                result.errback(error)
                return
            delay = 0.01 if hint else 0.2
            cluster.clock.callLater(delay, attempt, left - 1, hint)

        attempt(self._attempts, None)
        return result
