# -*- test-case-name: tests.raft.test_progress -*-
"""
Tests for L{raft3d.raft._progress}: the leader's flow control per follower.

The three states mirror etcd/raft's tracker: PROBE sends one message and
waits, REPLICATE pipelines a bounded number of batches, SNAPSHOT sends
nothing until the snapshot is acknowledged.  A bug here shows up as a
follower that never catches up or a leader that floods a slow one.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft._progress import Progress, ProgressState


class ProbeTests(SynchronousTestCase):
    """
    While probing, one message at a time.
    """

    def test_starts_probing(self) -> None:
        """
        A new progress knows nothing: match 0, probing from the given next
        index, not paused.
        """
        pr = Progress(11, 4)
        self.assertEqual((pr.state, pr.match, pr.next), (ProgressState.PROBE, 0, 11))
        self.assertFalse(pr.is_paused())

    def test_pause_after_one_send(self) -> None:
        """
        After one send the probe is paused and C{next} does not move, so
        a rejection can be matched against it; an acknowledgement unpauses
        and moves C{next} past the match.
        """
        pr = Progress(11, 4)
        pr.sent(15)
        self.assertTrue(pr.is_paused())
        self.assertEqual(pr.next, 11)
        self.assertTrue(pr.acknowledge(15))
        self.assertFalse(pr.is_paused())
        self.assertEqual((pr.match, pr.next), (15, 16))

    def test_become_probe_never_below_match(self) -> None:
        """
        Probing again (after a rejection or a stall) restarts no lower than
        match + 1 and forgets what was in flight.
        """
        pr = Progress(1, 4)
        pr.acknowledge(10)
        pr.become_replicate()
        pr.sent(12)
        pr.become_probe(3)
        self.assertEqual((pr.state, pr.next), (ProgressState.PROBE, 11))
        self.assertEqual(list(pr.inflight), [])
        self.assertFalse(pr.is_paused())


class ReplicateTests(SynchronousTestCase):
    """
    While replicating, up to C{max_inflight} batches in flight.
    """

    def test_pipeline_up_to_max_inflight(self) -> None:
        """
        Each send advances C{next} optimistically and takes one slot; the
        progress pauses when all slots are taken.
        """
        pr = Progress(1, 3)
        pr.acknowledge(5)
        pr.become_replicate()
        self.assertEqual(pr.next, 6)
        for last in (7, 9, 11):
            self.assertFalse(pr.is_paused())
            pr.sent(last)
        self.assertEqual(pr.next, 12)
        self.assertTrue(pr.is_paused())

    def test_acknowledge_frees_inflight(self) -> None:
        """
        An acknowledgement frees every batch it covers, and only those; a
        stale acknowledgement moves nothing and reports no progress.
        """
        pr = Progress(1, 3)
        pr.become_replicate()
        for last in (2, 4, 6):
            pr.sent(last)
        self.assertTrue(pr.acknowledge(4))
        self.assertEqual(list(pr.inflight), [6])
        self.assertFalse(pr.is_paused())
        self.assertFalse(pr.acknowledge(3))
        self.assertEqual((pr.match, pr.next, list(pr.inflight)), (4, 7, [6]))
        self.assertTrue(pr.acknowledge(6))
        self.assertEqual(list(pr.inflight), [])


class SnapshotTests(SynchronousTestCase):
    """
    While a snapshot is sent, nothing else.
    """

    def test_snapshot_pauses(self) -> None:
        """
        In SNAPSHOT state the follower gets no appends, whatever its
        inflight count.
        """
        pr = Progress(1, 3)
        pr.become_snapshot(50)
        self.assertEqual((pr.state, pr.pending_snapshot), (ProgressState.SNAPSHOT, 50))
        self.assertTrue(pr.is_paused())

    def test_become_probe_after_snapshot(self) -> None:
        """
        After the snapshot, probing resumes after the snapshot's index even
        if the caller asks for less, so the leader does not ask for the same
        snapshot again.
        """
        pr = Progress(1, 3)
        pr.acknowledge(3)
        pr.become_snapshot(50)
        pr.become_probe(4)
        self.assertEqual((pr.state, pr.next, pr.pending_snapshot), (ProgressState.PROBE, 51, 0))
        self.assertFalse(pr.is_paused())

    def test_acknowledged_snapshot(self) -> None:
        """
        A follower that acknowledges beyond the snapshot resumes after what
        it acknowledged.
        """
        pr = Progress(1, 3)
        pr.become_snapshot(50)
        pr.acknowledge(60)
        pr.become_probe(pr.match + 1)
        self.assertEqual((pr.state, pr.match, pr.next), (ProgressState.PROBE, 60, 61))
