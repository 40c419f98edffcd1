# -*- test-case-name: tests.raft.test_slow_disk -*-
"""
A slow disk on one follower must not slow the cluster down.

Raft commits an entry once a majority holds it, so in a cluster of three
the leader and one fast follower are enough: commit latency and throughput
are those of the fast majority, and the slow follower only lags.  These
tests show it in the deterministic simulation, where one follower's
simulated fsync is 100 times slower than the others', and check the
converse as a control: when the I{majority} is slow, commit latency is
that of the slow disks, so the measure is able to see a stall.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import Configuration
from raft3d.raft._node import RaftNode
from raft3d.storage import MemoryStorage
from raft3d.testing import SimCluster

FAST = (0.0005, 0.004)
"""
The simulated fsync of a healthy disk: 0.5 to 4 ms (SimCluster's default).
"""

SLOW = (FAST[0] * 100, FAST[1] * 100)
"""
A disk 100 times slower: 50 to 400 ms per fsync.
"""

PROPOSALS = 300
INTERVAL = 0.01
STEP = 0.001


class SlowDiskCluster(SimCluster):
    """
    A simulated cluster in which the nodes named in C{slow} have a disk
    whose fsync takes L{SLOW} instead of L{FAST}.
    """

    def __init__(self, seed: int, slow: frozenset[str]) -> None:
        self.slow = slow
        self._given: set[str] = set()
        # Blocking writes complete in no simulated time: they would hide
        # the slow disk this cluster is about.
        super().__init__(seed, 3, fsync_delay=FAST, blocking_writes=0.0)

    def start(self, node_id: str, bootstrap: Configuration | None = None) -> RaftNode:
        if node_id in self.slow and node_id not in self._given:
            # Before its first start, while its disk is still blank.
            self._given.add(node_id)
            self.nodes[node_id].storage = MemoryStorage(
                self.clock, random.Random(self.rng.getrandbits(64)), fsync_delay=SLOW
            )
        return super().start(node_id, bootstrap)


class Load:
    """
    A steady stream of proposals to the leader, one every L{INTERVAL}
    seconds, recording each one's commit latency and how far the slowest
    node's applied index lagged behind the leader's commit index.
    """

    def __init__(self, cluster: SimCluster, leader: RaftNode) -> None:
        self.cluster = cluster
        self.leader = leader
        self.latencies: dict[int, float] = {}
        self.failures: list[Any] = []
        self.max_lag = 0

    def run(self, count: int = PROPOSALS) -> None:
        c = self.cluster
        for i in range(count):
            began = c.clock.seconds()
            d = self.leader.propose(("load", i))
            d.addCallbacks(
                lambda _, i=i, began=began: self.latencies.__setitem__(
                    i, c.clock.seconds() - began
                ),
                self.failures.append,
            )
            c.advance(INTERVAL, STEP)
            lag = self.leader.core.commit_index - min(n.applied_index for n in c.live())
            self.max_lag = max(self.max_lag, lag)
        c.run_until(lambda: len(self.latencies) + len(self.failures) == count, 10.0)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies.values())
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


class SlowFollowerTests(SynchronousTestCase):
    """
    One follower 100 times slower than the others.
    """

    def setUp(self) -> None:
        self.cluster = SlowDiskCluster(seed=2024, slow=frozenset({"n3"}))
        self.leader = self.cluster.wait_for_leader()
        self.cluster.result_of(self.leader.propose("warm-up"))
        self.slow = self.cluster.node("n3")

    def test_leader_is_fast(self) -> None:
        """
        The premise of the other tests: the bootstrap node, with a fast
        disk, leads, and the slow node follows it.
        """
        self.assertEqual(self.leader.node_id, "n1")
        self.assertEqual(self.slow.status().leader_id, "n1")

    def test_commit_latency_is_the_fast_majority_s(self) -> None:
        """
        Under a steady load of 100 proposals a second, every proposal
        commits faster than a single fsync of the slow disk: no commit ever
        waits for it.  The slow follower meanwhile lags behind, which shows
        that its disk really was the slow part.
        """
        load = Load(self.cluster, self.leader)
        load.run()
        self.assertEqual(load.failures, [])
        self.assertEqual(len(load.latencies), PROPOSALS)
        self.assertLess(max(load.latencies.values()), SLOW[0])
        self.assertLess(load.percentile(0.5), 4 * FAST[1])
        self.assertGreater(load.max_lag, 5)

    def test_no_election_and_catch_up(self) -> None:
        """
        The slow follower never times out or disturbs the leader (the term
        does not change), and once the load stops it catches up: it has
        stored and applied everything the leader committed.
        """
        term = self.leader.core.term
        load = Load(self.cluster, self.leader)
        load.run()
        c = self.cluster
        leader = self.leader

        def caught_up() -> bool:
            pr = leader.core.progress_of("n3")
            return (
                pr is not None
                and pr.match == leader.core.log.last_index
                and self.slow.applied_index == leader.core.commit_index
            )

        self.assertTrue(c.run_until(caught_up, 10.0), "the slow follower did not catch up")
        self.assertEqual({n.core.term for n in c.live()}, {term})
        self.assertIs(c.leader(), leader)
        c.check_log_matching()

    def test_throughput_of_a_burst(self) -> None:
        """
        A burst of 500 proposals made at once is committed as fast as in a
        cluster where every disk is fast (within one fast fsync).
        """
        slow = self.burst(self.cluster, self.leader)
        fast_cluster = SlowDiskCluster(seed=2024, slow=frozenset())
        fast_leader = fast_cluster.wait_for_leader()
        fast_cluster.result_of(fast_leader.propose("warm-up"))
        fast = self.burst(fast_cluster, fast_leader)
        self.assertLessEqual(slow, fast + FAST[1])

    def burst(self, cluster: SimCluster, leader: RaftNode) -> float:
        """
        Propose 500 commands in one turn; return the seconds until the last
        one committed.
        """
        began = cluster.clock.seconds()
        ds = [leader.propose(("burst", i)) for i in range(500)]
        done: list[float] = []
        for d in ds:
            d.addCallback(lambda _: done.append(cluster.clock.seconds()))
        self.assertTrue(cluster.run_until(lambda: len(done) == len(ds), 5.0))
        return max(done) - began


class SlowMajorityTests(SynchronousTestCase):
    """
    The control: with two slow followers the majority itself is slow.
    """

    def test_commit_latency_is_the_slow_majority_s(self) -> None:
        """
        When both followers have the slow disk, commits wait for one of
        them: the median commit latency is at least one slow fsync.  (So
        the measure of L{SlowFollowerTests} does see a stalled cluster.)
        """
        cluster = SlowDiskCluster(seed=2024, slow=frozenset({"n2", "n3"}))
        leader = cluster.wait_for_leader()
        self.assertEqual(leader.node_id, "n1")
        cluster.result_of(leader.propose("warm-up"), timeout=10.0)
        load = Load(cluster, leader)
        load.run(100)
        self.assertEqual(load.failures, [])
        self.assertGreaterEqual(load.percentile(0.5), SLOW[0])
