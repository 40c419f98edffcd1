# -*- test-case-name: tests.testing.test_simulation -*-
"""
The proof of the engine: seeded random fault schedules on simulated 3- and
5-node clusters, then named scenarios modelled on the classic Raft lab
suites.  Everything runs on one L{Clock}; a failing schedule prints its
seed, and C{python -m raft3d.testing --seed SEED} replays it exactly.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import (
    CommitTimeout,
    Configuration,
    Member,
    NotLeader,
    ProposalDropped,
    RaftError,
)
from raft3d.raft._core import Role
from raft3d.raft._messages import AppendEntriesResponse
from raft3d.testing import SimCluster, run_schedule
from raft3d.testing._cluster import SimNode

SCHEDULES = int(os.environ.get("RAFT3D_SIM_SCHEDULES", "520"))
"""
How many random schedules CI runs; raise it for a soak.
"""

_CHUNK = 40


class RandomScheduleTests(SynchronousTestCase):
    """
    Seeded random fault schedules: crashes that lose unsynced writes,
    partitions (symmetric and one-way), lossy, duplicating and reordering
    links, failing disks, leadership transfers, membership changes and
    snapshots under client load; afterwards the invariants and recovery are
    checked (see L{raft3d.testing._schedule}).
    """

    def _run_seeds(self, first: int) -> None:
        failures = []
        last = min(first + _CHUNK, SCHEDULES)
        for seed in range(first, last):
            try:
                run_schedule(seed)
            except AssertionError as e:
                failures.append(str(e))
        self.assertEqual(
            failures,
            [],
            "replay with: python -m raft3d.testing --seed SEED",
        )


def _add_chunks() -> None:
    for first in range(0, SCHEDULES, _CHUNK):

        def test(self: RandomScheduleTests, first: int = first) -> None:
            self._run_seeds(first)

        test.__name__ = f"test_seeds_{first:05d}"
        test.__doc__ = (
            f"Schedules with seeds {first} to {min(first + _CHUNK, SCHEDULES) - 1} keep "
            "every safety invariant and recover after healing."
        )
        setattr(RandomScheduleTests, test.__name__, test)


_add_chunks()


def _submit_all(cluster: SimCluster, values: list[Any], timeout: float = 20.0) -> None:
    client = cluster.client("scenario", attempts=100)
    for value in values:
        cluster.result_of(client.submit(value), timeout)


class ScenarioTests(SynchronousTestCase):
    """
    Named fault scenarios, each a story from the Raft paper or the lab
    suites built on it.
    """

    def test_initial_election(self) -> None:
        """
        A fresh cluster elects exactly one leader, every node agrees on it
        and on the term, and it stays leader while nothing fails.
        """
        for size in (3, 5):
            cluster = SimCluster(seed=size, size=size)
            leader = cluster.wait_for_leader(5.0)
            cluster.advance(3.0)
            self.assertIs(cluster.leader(), leader)
            for node in cluster.live():
                self.assertEqual(node.status().leader_id, leader.node_id)
                self.assertEqual(node.status().term, leader.core.term)
            self.assertEqual(
                [n.node_id for n in cluster.live() if n.core.role is Role.LEADER],
                [leader.node_id],
            )

    def test_reelection_after_leader_loss(self) -> None:
        """
        When the leader crashes a new one is elected in a higher term; the
        old leader restarts as a follower and does not disrupt it.
        """
        cluster = SimCluster(seed=11, size=3)
        old = cluster.wait_for_leader()
        old_term = old.core.term
        _submit_all(cluster, ["a", "b"])
        cluster.crash(old.node_id)
        new = cluster.wait_for_leader()
        self.assertNotEqual(new.node_id, old.node_id)
        self.assertGreater(new.core.term, old_term)
        term = new.core.term
        cluster.restart(old.node_id)
        cluster.advance(3.0)
        self.assertIs(cluster.leader(), new)
        self.assertEqual(new.core.term, term)
        cluster.heal_and_converge()

    def test_no_commit_without_majority(self) -> None:
        """
        A leader cut off with a minority cannot commit; the majority side
        elects a leader that does; after healing the minority's uncommitted
        proposals are dropped, never applied.
        """
        cluster = SimCluster(seed=5, size=5)
        leader = cluster.wait_for_leader()
        _submit_all(cluster, ["before"])
        ids = sorted(cluster.nodes)
        minority = {leader.node_id, next(i for i in ids if i != leader.node_id)}
        majority = set(ids) - minority
        cluster.network.partition(minority, majority)
        outcomes: list[Any] = []
        leader.propose("minority-write").addBoth(outcomes.append)
        cluster.advance(2.0)
        self.assertEqual(outcomes, [])
        new = cluster.wait_for_leader()
        self.assertIn(new.node_id, majority)
        _submit_all(cluster, ["majority-write"])
        cluster.network.heal()
        cluster.advance(3.0)
        self.assertEqual(len(outcomes), 1)
        self.assertIsInstance(outcomes[0], Failure)
        self.assertTrue(outcomes[0].check(ProposalDropped, CommitTimeout, NotLeader))
        cluster.heal_and_converge()
        for node in cluster.live():
            applied = [c for _, c in cluster.nodes[node.node_id].machine.items]  # type: ignore[union-attr]
            self.assertNotIn("minority-write", applied)
            self.assertIn("majority-write", applied)

    def test_partitioned_leader_rejoins(self) -> None:
        """
        An old leader that appended entries it could not commit rejoins
        after a new leader committed others: its uncommitted entries are
        overwritten and every log converges.
        """
        cluster = SimCluster(seed=21, size=3)
        old = cluster.wait_for_leader()
        _submit_all(cluster, ["x"])
        others = set(cluster.nodes) - {old.node_id}
        cluster.network.partition({old.node_id}, others)
        lost = [old.propose(f"lost-{i}") for i in range(5)]
        for d in lost:
            d.addErrback(lambda f: None)
        cluster.advance(0.5)
        self.assertGreater(old.core.log.last_index, old.core.commit_index)
        new = cluster.wait_for_leader()
        while new is old:
            cluster.advance(0.5)
            new = cluster.wait_for_leader()
        _submit_all(cluster, [f"kept-{i}" for i in range(5)])
        cluster.network.heal()
        cluster.heal_and_converge()
        self.assertNotEqual(cluster.leader(), None)
        for node in cluster.live():
            applied = [c for _, c in cluster.nodes[node.node_id].machine.items]  # type: ignore[union-attr]
            self.assertFalse([c for c in applied if str(c).startswith("lost-")])

    def test_fast_backup_over_conflicting_entries(self) -> None:
        """
        A follower holding hundreds of conflicting entries from an old term
        is repaired in a handful of round trips thanks to the conflict hint
        (term and first index of that term), not one entry per round trip.
        """
        cluster = SimCluster(seed=8, size=5)
        old = cluster.wait_for_leader()
        _submit_all(cluster, ["base"])
        ids = sorted(cluster.nodes)
        partner = next(i for i in ids if i != old.node_id)
        cluster.network.partition({old.node_id, partner}, set(ids) - {old.node_id, partner})
        for i in range(300):
            old.propose(f"stale-{i}").addErrback(lambda f: None)
        cluster.advance(1.0)
        new = cluster.wait_for_leader()
        while new.node_id in (old.node_id, partner):
            cluster.advance(0.5)
            new = cluster.wait_for_leader()
        for i in range(300):
            new.propose(f"fresh-{i}").addErrback(lambda f: None)
        cluster.advance(2.0)
        rejections: list[str] = []
        original = new.core.step

        def counting_step(m: Any) -> None:
            if isinstance(m, AppendEntriesResponse) and not m.success and m.term == new.core.term:
                rejections.append(m.sender)
            original(m)

        new.core.step = counting_step  # type: ignore[method-assign]
        cluster.network.heal()
        self.assertTrue(
            cluster.run_until(
                lambda: all(
                    cluster.node(i).core.log.last_index >= new.core.log.last_index
                    and cluster.node(i).applied_index >= new.core.commit_index
                    for i in ids
                ),
                20.0,
            )
        )
        self.assertLessEqual(rejections.count(old.node_id), 4)
        self.assertLessEqual(rejections.count(partner), 4)
        cluster.heal_and_converge()

    def test_figure_8(self) -> None:
        """
        Figure 8: leaders crash right after appending, others restart, over
        and over; an entry of an older term is never committed by counting
        replicas, so no node ever applies a different entry at an index.
        """
        for seed in range(6):
            cluster = SimCluster(seed=100 + seed, size=5)
            rng = cluster.rng
            for round_ in range(25):
                leader = cluster.leader()
                if leader is not None:
                    leader.propose(f"f8-{seed}-{round_}").addErrback(lambda f: None)
                cluster.advance(rng.choice([0.01, 0.05, 0.3]))
                if leader is not None and rng.random() < 0.7:
                    cluster.crash(leader.node_id)
                down = [i for i, s in cluster.nodes.items() if s.node is None]
                if len(down) >= 3 or (down and rng.random() < 0.5):
                    cluster.restart(rng.choice(down))
                cluster.client("f8", attempts=3).submit(f"client-{seed}-{round_}").addErrback(
                    lambda f: None
                )
            cluster.heal_and_converge()

    def test_figure_8_unreliable(self) -> None:
        """
        Figure 8 on a network that drops, duplicates, delays and reorders
        messages, with long-delayed stale messages arriving after healing.
        """
        for seed in range(4):
            cluster = SimCluster(seed=200 + seed, size=5)
            rng = cluster.rng
            network = cluster.network
            network.drop_rate, network.duplicate_rate = 0.1, 0.1
            network.reorder_rate, network.delay = 0.5, (0.001, 0.4)
            for round_ in range(40):
                client = cluster.client("f8u", attempts=2)
                client.submit(f"u-{seed}-{round_}").addErrback(lambda f: None)
                cluster.advance(rng.uniform(0.01, 0.2))
                leader = cluster.leader()
                if leader is not None and rng.random() < 0.2:
                    cluster.crash(leader.node_id)
                down = [i for i, s in cluster.nodes.items() if s.node is None]
                if down and (len(down) >= 3 or rng.random() < 0.3):
                    cluster.restart(rng.choice(down))
            cluster.heal_and_converge(timeout=60.0)

    def test_churn_with_crashes(self) -> None:
        """
        Clients keep writing while random nodes crash and restart, losing
        whatever they had not fsynced; every acknowledged write survives.
        """
        cluster = SimCluster(seed=31, size=5)
        rng = cluster.rng
        clients = [cluster.client(f"churn{i}", attempts=30) for i in range(4)]
        busy = [False] * len(clients)
        written = [0]

        def go(i: int) -> None:
            if busy[i]:
                return
            busy[i] = True
            written[0] += 1

            def done(_: Any) -> None:
                busy[i] = False

            clients[i].submit(["churn", i, written[0]]).addBoth(done)

        for _ in range(60):
            for i in range(len(clients)):
                go(i)
            cluster.advance(rng.uniform(0.05, 0.3))
            if rng.random() < 0.4:
                victim = rng.choice(sorted(cluster.nodes))
                cluster.crash(victim)
            down = [i for i, s in cluster.nodes.items() if s.node is None]
            if down and (len(down) >= 2 or rng.random() < 0.6):
                cluster.restart(rng.choice(down))
        cluster.heal_and_converge()
        self.assertGreater(len(cluster.invariants.acked), 20)

    def test_snapshot_to_lagging_follower(self) -> None:
        """
        A follower that was down while the leader compacted its log past it
        catches up through chunked InstallSnapshot and then the log.
        """
        cluster = SimCluster(seed=41, size=3)
        leader = cluster.wait_for_leader()
        lagging = next(i for i in sorted(cluster.nodes) if i != leader.node_id)
        cluster.crash(lagging)
        _submit_all(cluster, [f"v{i}" for i in range(120)])
        self.assertGreater(leader.core.log.offset, 0)
        node = cluster.restart(lagging)
        self.assertTrue(
            cluster.run_until(lambda: node.applied_index >= leader.core.commit_index, 20.0)
        )
        self.assertGreater(node.core.snapshot.index, 0)
        cluster.heal_and_converge()

    def test_snapshot_to_new_member(self) -> None:
        """
        A brand-new server added as a learner receives a snapshot, catches
        up, is promoted to voter and counts in the majority.
        """
        cluster = SimCluster(seed=43, size=3)
        leader = cluster.wait_for_leader()
        _submit_all(cluster, [f"v{i}" for i in range(100)])
        member = Member("n4", "sim:4", "http:4", voter=False)
        cluster.nodes["n4"] = SimNode("n4", cluster._new_storage(), member)
        newcomer = cluster.start("n4")
        cluster.result_of(leader.add_learner(member))
        cluster.result_of(leader.promote("n4"))
        self.assertIn("n4", leader.core.configuration.voters())
        self.assertTrue(
            cluster.run_until(lambda: newcomer.applied_index >= leader.core.commit_index, 10.0)
        )
        self.assertGreater(newcomer.core.snapshot.index, 0)
        # With two of four voters down, n4 is needed for a majority.
        down = [i for i in ("n1", "n2", "n3") if i != leader.node_id][:1]
        for i in down:
            cluster.crash(i)
        _submit_all(cluster, ["needs-n4"])
        cluster.heal_and_converge()

    def test_membership_changes_during_churn(self) -> None:
        """
        Servers are added, promoted and removed while nodes crash and the
        network drops messages; one change at a time is in flight and the
        cluster keeps its invariants.
        """
        cluster = SimCluster(seed=51, size=3)
        rng = cluster.rng
        cluster.network.drop_rate = 0.05
        client = cluster.client("m", attempts=40)
        for round_ in range(6):
            leader = cluster.wait_for_leader(20.0)
            node_id = f"m{round_}"
            member = Member(node_id, f"sim:{node_id}", "", voter=False)
            cluster.nodes[node_id] = SimNode(node_id, cluster._new_storage(), member)
            cluster.start(node_id)
            outcome: list[Any] = []
            leader.add_learner(member).addBoth(outcome.append)
            cluster.run_until(outcome.__len__, 5.0)
            leader = cluster.wait_for_leader(20.0)
            leader.promote(node_id).addErrback(lambda f: f.trap(RaftError))
            client.submit(["m", round_]).addErrback(lambda f: None)
            cluster.advance(1.0)
            voters = sorted(cluster.wait_for_leader(20.0).core.configuration.voters())
            if len(voters) > 3:
                leader = cluster.wait_for_leader(20.0)
                victim = rng.choice([v for v in voters if v != leader.node_id])
                leader.remove(victim).addErrback(lambda f: f.trap(RaftError))
            crash = rng.choice(sorted(cluster.nodes))
            cluster.crash(crash)
            cluster.advance(rng.uniform(0.2, 1.0))
            cluster.restart(crash)
        cluster.heal_and_converge()
        leader = cluster.wait_for_leader()
        self.assertGreaterEqual(len(leader.core.configuration.voters()), 3)

    def test_remove_leader(self) -> None:
        """
        A leader that removes itself keeps leading until the change commits,
        then steps down; the rest elect a new leader and the removed node
        never leads again.
        """
        cluster = SimCluster(seed=61, size=3)
        leader = cluster.wait_for_leader()
        _submit_all(cluster, ["a"])
        cluster.result_of(leader.remove(leader.node_id))
        cluster.advance(0.5)
        self.assertIsNot(leader.core.role, Role.LEADER)
        new = cluster.wait_for_leader()
        self.assertNotEqual(new.node_id, leader.node_id)
        self.assertNotIn(leader.node_id, new.core.configuration.ids())
        cluster.advance(5.0)
        self.assertIsNot(leader.core.role, Role.LEADER)
        _submit_all(cluster, ["b"])

    def test_leadership_transfer(self) -> None:
        """
        The leader hands over to a chosen follower with TimeoutNow; the
        target wins at once in the next term and writes continue.
        """
        cluster = SimCluster(seed=71, size=5)
        leader = cluster.wait_for_leader()
        _submit_all(cluster, [f"t{i}" for i in range(10)])
        target = sorted(set(cluster.nodes) - {leader.node_id})[-1]
        term = leader.core.term
        self.assertEqual(cluster.result_of(leader.transfer_leadership(target)), target)
        self.assertEqual(cluster.leader(), cluster.node(target))
        self.assertEqual(cluster.node(target).core.term, term + 1)
        _submit_all(cluster, ["after-transfer"])
        cluster.heal_and_converge()

    def test_read_index_not_stale_across_leader_change(self) -> None:
        """
        ReadIndex (thesis 6.4): after a write is acknowledged, a read on any
        node sees it, even when the old leader is partitioned away and still
        believes it leads; the deposed leader cannot confirm its leadership
        and serves no read.
        """
        cluster = SimCluster(seed=81, size=3)
        old = cluster.wait_for_leader()
        _submit_all(cluster, ["v1"])
        others = set(cluster.nodes) - {old.node_id}
        cluster.network.partition({old.node_id}, others)
        new = cluster.wait_for_leader()
        while new is old:
            cluster.advance(0.2)
            new = cluster.wait_for_leader()
        _submit_all(cluster, ["v2"])
        stale: list[Any] = []
        old.read_index().addBoth(stale.append)
        for node_id in sorted(others):
            node = cluster.node(node_id)
            index = cluster.result_of(node.read_index())
            machine = cluster.nodes[node_id].machine
            assert machine is not None
            self.assertIn("v2", [c for _, c in machine.items])
            self.assertGreaterEqual(node.applied_index, index)
        cluster.advance(3.0)
        self.assertEqual(len(stale), 1)
        self.assertIsInstance(stale[0], Failure)
        cluster.network.heal()
        self.assertTrue(cluster.run_until(lambda: old.status().leader_id == new.node_id, 5.0))
        index = cluster.result_of(old.read_index())
        machine = cluster.nodes[old.node_id].machine
        assert machine is not None
        self.assertIn("v2", [c for _, c in machine.items])
        self.assertGreaterEqual(old.applied_index, index)

    def test_session_retry_applies_once(self) -> None:
        """
        A proposal retried with the same session after its leader crashed
        (outcome unknown) is applied at most once, and the retry gets the
        first result (thesis 6.3).
        """
        cluster = SimCluster(seed=91, size=3)
        leader = cluster.wait_for_leader()
        first = cluster.result_of(leader.propose("once", ("client-x", 1)))
        again = cluster.result_of(leader.propose("once", ("client-x", 1)))
        self.assertEqual(first, again)
        follower = next(n for n in cluster.live() if n is not leader)
        cluster.crash(leader.node_id)
        new = cluster.wait_for_leader()
        self.assertEqual(cluster.result_of(new.propose("once", ("client-x", 1))), first)
        cluster.heal_and_converge()
        machine = cluster.nodes[follower.node_id].machine
        assert machine is not None
        self.assertEqual([c for _, c in machine.items].count("once"), 1)

    def test_superseded_retry_not_acknowledged(self) -> None:
        """
        A command whose session already moved on is not applied; its
        answer is an error result, which the simulated client does not
        count as an acknowledged write (so the durability check does not
        expect it).
        """
        cluster = SimCluster(seed=93, size=3)
        leader = cluster.wait_for_leader()
        client = cluster.client("late")
        cluster.result_of(leader.propose("second", (client.name, 2)))
        answer = cluster.result_of(client.submit("first"))
        self.assertEqual(answer["error"]["code"], "stale_session")
        self.assertNotIn("first", cluster.invariants.acked)
        cluster.heal_and_converge()

    def test_bootstrap_only_with_empty_storage(self) -> None:
        """
        Restarting the bootstrap node with the same arguments resumes from
        its storage instead of writing a second initial configuration.
        """
        cluster = SimCluster(seed=3, size=3)
        leader = cluster.wait_for_leader()
        _submit_all(cluster, ["kept"])
        cluster.crash("n1")
        node = cluster.start("n1", bootstrap=Configuration((Member("n1", "sim:1"),)))
        self.assertEqual(len(node.core.configuration.members), 3)
        cluster.heal_and_converge()
        self.assertIsNotNone(leader)

    def test_wiped_follower_is_repaired(self) -> None:
        """
        A follower whose disk was wiped (it lost entries it had
        acknowledged) is noticed by the leader, even in an idle cluster
        (the heartbeat's commit index exceeds the follower's log), and
        repaired with a snapshot and the log, without a leader change.
        """
        cluster = SimCluster(seed=17, size=3)
        leader = cluster.wait_for_leader()
        _submit_all(cluster, [f"w{i}" for i in range(100)])
        follower = next(i for i in sorted(cluster.nodes) if i != leader.node_id)
        cluster.advance(1.0)
        self.assertEqual(leader.core.progress_of(follower).match, leader.core.log.last_index)  # type: ignore[union-attr]
        cluster.wipe(follower)
        node = cluster.restart(follower)
        term = leader.core.term
        self.assertTrue(
            cluster.run_until(lambda: node.applied_index >= leader.core.commit_index, 10.0)
        )
        self.assertIs(cluster.leader(), leader)
        self.assertEqual(leader.core.term, term)
