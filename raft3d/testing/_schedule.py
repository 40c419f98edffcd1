# -*- test-case-name: tests.testing.test_simulation -*-
"""
Seeded random fault schedules for the simulated cluster.

One seed fixes everything: cluster size, client load, the faults (crashes
with loss of unsynced writes, symmetric and one-way partitions, message
loss, duplication and reordering, failing disk writes), leadership
transfers, membership changes and snapshots.  After the faults the cluster
heals and L{SimCluster.heal_and_converge} checks that it recovers and that
nothing acknowledged was lost.  Replay a failure with::

    python -m raft3d.testing --seed SEED
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.python.failure import Failure

from ..raft import Member, RaftError
from ..raft._core import Role
from ._cluster import SimCluster


@attrs.define
class ScheduleReport:
    """
    What one schedule did, for the log of a run.
    """

    seed: int
    size: int
    faults: list[str] = attrs.Factory(list)
    acked: int = 0
    reads_checked: int = 0
    simulated_seconds: float = 0.0


class _Reader:
    """
    Issues linearizable reads and checks each one sees every write that was
    acknowledged before the read began (ReadIndex, thesis 6.4).
    """

    def __init__(self, cluster: SimCluster, report: ScheduleReport) -> None:
        self._cluster = cluster
        self._report = report

    def read(self) -> None:
        cluster = self._cluster
        live = cluster.live()
        if not live:
            return
        node = cluster.rng.choice(live)
        must_see = list(cluster.invariants.acked)
        machine = cluster.nodes[node.node_id].machine
        d = node.read_index()

        def ok(index: int) -> None:
            if cluster.nodes[node.node_id].node is not node:
                return
            assert machine is not None
            applied = {repr(c) for _, c in machine.items}
            for value in must_see:
                if repr(value) not in applied:
                    cluster.invariants.fail(
                        f"linearizable read: {node.node_id} read at {index} without {value!r}"
                    )
                    return
            self._report.reads_checked += 1

        d.addCallbacks(ok, _ignore_raft_errors)


def _ignore_raft_errors(f: Failure) -> Failure | None:
    """
    Errors the engine reports to clients are expected under faults.
    """
    return None if isinstance(f.value, RaftError) else f


def run_schedule(seed: int, size: int | None = None, duration: float = 12.0) -> ScheduleReport:
    """
    Run one random schedule and its final checks; raise
    L{InvariantViolation} (naming the seed) on failure.
    """
    rng_size = size or (3 if seed % 3 else 5)
    cluster = SimCluster(seed, rng_size)
    report = ScheduleReport(seed, rng_size)
    try:
        _drive(cluster, report, duration)
        cluster.heal_and_converge()
    except AssertionError as e:
        raise type(e)(f"seed {seed} (size {rng_size}): {e}\nfaults: {report.faults}") from e
    report.acked = len(cluster.invariants.acked)
    report.simulated_seconds = cluster.clock.seconds()
    return report


def _drive(cluster: SimCluster, report: ScheduleReport, duration: float) -> None:
    rng = cluster.rng
    network = cluster.network
    clients = [cluster.client(f"c{i}") for i in range(3)]
    reader = _Reader(cluster, report)
    counter = [0]
    busy = [False] * len(clients)
    down_until: dict[str, float] = {}
    spare = [0]

    def load(i: int) -> None:
        if busy[i]:
            return
        busy[i] = True
        counter[0] += 1
        d = clients[i].submit([clients[i].name, counter[0]])

        def done(_: Any) -> None:
            busy[i] = False

        d.addBoth(done)

    end = cluster.clock.seconds() + duration
    next_fault = cluster.clock.seconds() + rng.uniform(0.5, 1.5)
    while cluster.clock.seconds() < end:
        now = cluster.clock.seconds()
        for i in range(len(clients)):
            if rng.random() < 0.5:
                load(i)
        if rng.random() < 0.15:
            reader.read()
        for node_id, at in list(down_until.items()):
            if now >= at:
                del down_until[node_id]
                if cluster.nodes[node_id].node is None:
                    cluster.restart(node_id)
        if now >= next_fault:
            next_fault = now + rng.uniform(0.3, 1.5)
            report.faults.append(f"{now:.2f}:{_fault(cluster, rng, down_until, spare)}")
        cluster.advance(rng.uniform(0.01, 0.06))
    network.heal()


def _fault(cluster: SimCluster, rng: Any, down_until: dict[str, float], spare: list[int]) -> str:
    network = cluster.network
    ids = list(cluster.nodes)
    live = cluster.live()
    leader = cluster.leader()
    now = cluster.clock.seconds()
    kind = rng.choice(
        [
            "crash",
            "crash",
            "crash_leader",
            "partition",
            "isolate_leader",
            "one_way",
            "lossy",
            "heal",
            "heal",
            "transfer",
            "membership",
            "snapshot",
            "disk_errors",
        ]
    )
    if kind in ("crash", "crash_leader"):
        target = leader.node_id if (kind == "crash_leader" and leader) else rng.choice(ids)
        if cluster.nodes[target].node is not None:
            cluster.crash(target)
            down_until[target] = now + rng.uniform(0.1, 3.0)
        return f"{kind} {target}"
    if kind == "partition":
        shuffled = ids[:]
        rng.shuffle(shuffled)
        cut = rng.randrange(1, len(ids))
        network.partition(set(shuffled[:cut]), set(shuffled[cut:]))
        return f"partition {shuffled[:cut]}|{shuffled[cut:]}"
    if kind == "isolate_leader" and leader is not None:
        network.partition({leader.node_id}, set(ids) - {leader.node_id})
        return f"isolate {leader.node_id}"
    if kind == "one_way":
        a, b = rng.sample(ids, 2)
        network.block(a, b)
        return f"block {a}->{b}"
    if kind == "lossy":
        network.drop_rate = rng.choice([0.0, 0.05, 0.2])
        network.duplicate_rate = rng.choice([0.0, 0.05, 0.2])
        network.reorder_rate = rng.choice([0.0, 0.1, 0.5])
        network.delay = rng.choice([(0.001, 0.005), (0.001, 0.05), (0.01, 0.2)])
        return f"lossy drop={network.drop_rate} dup={network.duplicate_rate} delay={network.delay}"
    if kind == "heal":
        network.heal()
        network.delay = (0.001, 0.005)
        return "heal"
    if kind == "transfer" and leader is not None:
        leader.transfer_leadership(None).addErrback(_ignore_raft_errors)
        return f"transfer from {leader.node_id}"
    if kind == "membership" and leader is not None:
        return _membership(cluster, rng, leader, spare)
    if kind == "snapshot" and live:
        node = rng.choice(live)
        node.take_snapshot()
        return f"snapshot {node.node_id}"
    if kind == "disk_errors" and live:
        node = rng.choice(live)
        cluster.nodes[node.node_id].storage.fail_next_writes(rng.randint(1, 3))
        return f"disk errors {node.node_id}"
    return f"{kind} (skipped)"


def _membership(cluster: SimCluster, rng: Any, leader: Any, spare: list[int]) -> str:
    """
    Remove a follower, or add a fresh server as a learner and promote it
    once it has caught up, keeping at least three voters.
    """
    config = leader.core.configuration
    voters = sorted(config.voters())
    learners = sorted(config.ids() - config.voters())
    if learners:
        target = learners[0]
        leader.promote(target).addErrback(_ignore_raft_errors)
        return f"promote {target}"
    if len(voters) > 3 and rng.random() < 0.6:
        target = rng.choice([v for v in voters if v != leader.node_id])
        leader.remove(target).addErrback(_ignore_raft_errors)
        return f"remove {target}"
    spare[0] += 1
    node_id = f"s{spare[0]}"
    member = Member(node_id, f"sim:{node_id}", f"http:{node_id}", voter=False)
    from ._cluster import SimNode

    cluster.nodes[node_id] = SimNode(node_id, cluster._new_storage(), member)
    cluster.start(node_id)
    if leader.core.role is Role.LEADER:
        leader.add_learner(member).addErrback(_ignore_raft_errors)
    return f"add learner {node_id}"
