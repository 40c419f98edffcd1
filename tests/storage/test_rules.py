"""
Tests for L{raft3d.storage._rules}: the decisions both storages share.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import Entry, EntryType
from raft3d.storage._rules import (
    LogPlan,
    check_entries,
    check_log_against_snapshot,
    compaction_limit,
    fallback_covers,
    next_index,
    snapshots_to_delete,
)

from ._support import entries, meta


class CheckEntriesTests(SynchronousTestCase):
    """
    L{check_entries} refuses what cannot be stored.
    """

    def test_good(self) -> None:
        """
        Contiguous entries pass.
        """
        check_entries(entries(3, 6))

    def test_bad(self) -> None:
        """
        Gaps, index 0, negative terms and non-bytes payloads are refused.
        """
        e = Entry(1, 1, EntryType.NORMAL, b"")
        for bad in [
            (e, Entry(3, 1, EntryType.NORMAL, b"")),
            (Entry(0, 1, EntryType.NORMAL, b""),),
            (Entry(1, -1, EntryType.NORMAL, b""),),
            (Entry(1, 1, EntryType.NORMAL, "text"),),  # type: ignore[arg-type]
        ]:
            self.assertRaises(ValueError, check_entries, bad)


class LogPlanTests(SynchronousTestCase):
    """
    L{LogPlan} folds batches into one truncation and one append.
    """

    def test_append(self) -> None:
        """
        Batches that continue the log simply accumulate.
        """
        plan = LogPlan(5)
        plan.add(entries(5, 6))
        plan.add(entries(7, 7))
        self.assertIsNone(plan.truncate_at)
        self.assertEqual(plan.pending, list(entries(5, 7)))
        self.assertEqual(plan.next_index, 8)

    def test_truncate_stored(self) -> None:
        """
        A batch starting inside the stored log truncates it there.
        """
        plan = LogPlan(10)
        plan.add(entries(4, 5, term=2))
        self.assertEqual(plan.truncate_at, 4)
        self.assertEqual(plan.pending, list(entries(4, 5, term=2)))

    def test_truncate_pending(self) -> None:
        """
        A later batch overwriting part of an earlier pending one only
        replaces pending entries; the stored log is untouched.
        """
        plan = LogPlan(10)
        plan.add(entries(10, 15))
        plan.add(entries(12, 13, term=2))
        self.assertIsNone(plan.truncate_at)
        self.assertEqual(plan.pending, list(entries(10, 11) + entries(12, 13, term=2)))

    def test_truncate_below_pending(self) -> None:
        """
        A batch starting before everything pending truncates the stored log
        at the lowest point asked for.
        """
        plan = LogPlan(10)
        plan.add(entries(8, 12))
        plan.add(entries(6, 6, term=3))
        plan.add(entries(7, 7, term=3))
        self.assertEqual(plan.truncate_at, 6)
        self.assertEqual(plan.pending, list(entries(6, 7, term=3)))

    def test_gap(self) -> None:
        """
        A batch leaving a gap is refused and leaves the plan unchanged.
        """
        plan = LogPlan(5)
        plan.add(entries(5, 5))
        self.assertRaises(ValueError, plan.add, entries(7, 8))
        self.assertEqual(plan.pending, list(entries(5, 5)))

    def test_empty(self) -> None:
        """
        An empty batch changes nothing.
        """
        plan = LogPlan(5)
        plan.add(())
        self.assertEqual((plan.truncate_at, plan.pending, plan.next_index), (None, [], 5))


class SnapshotRulesTests(SynchronousTestCase):
    """
    The start-up rules relating log and snapshots.
    """

    def term_at(self, index: int) -> int:
        return 1 if index < 50 else 2

    def test_no_log(self) -> None:
        """
        An empty log is always fine.
        """
        self.assertEqual(check_log_against_snapshot(meta(10), None, None, self.term_at), "keep")
        self.assertEqual(check_log_against_snapshot(None, None, None, self.term_at), "keep")

    def test_no_snapshot(self) -> None:
        """
        Without a snapshot the log must start at 1.
        """
        self.assertEqual(check_log_against_snapshot(None, 1, 9, self.term_at), "keep")
        self.assertRaises(ValueError, check_log_against_snapshot, None, 2, 9, self.term_at)

    def test_gap_after_snapshot(self) -> None:
        """
        A log starting after C{snapshot.index + 1} misses entries.
        """
        self.assertRaises(ValueError, check_log_against_snapshot, meta(10), 12, 20, self.term_at)

    def test_continues(self) -> None:
        """
        A log starting right after the snapshot, or overlapping it with the
        same term at the snapshot's index, is kept.
        """
        self.assertEqual(check_log_against_snapshot(meta(10), 11, 20, self.term_at), "keep")
        self.assertEqual(check_log_against_snapshot(meta(60, 2), 1, 70, self.term_at), "keep")

    def test_discard(self) -> None:
        """
        A log ending before the snapshot, or disagreeing at its index, is
        discarded (what a crash inside install_snapshot leaves).
        """
        self.assertEqual(check_log_against_snapshot(meta(60, 2), 1, 59, self.term_at), "discard")
        self.assertEqual(check_log_against_snapshot(meta(60, 1), 1, 70, self.term_at), "discard")

    def test_fallback_covers(self) -> None:
        """
        An older snapshot may replace a damaged newer one only if the log
        holds every entry in between.
        """
        self.assertTrue(fallback_covers(10, 20, 5, 25))
        self.assertTrue(fallback_covers(10, 20, 11, 20))
        self.assertFalse(fallback_covers(10, 20, 12, 25))
        self.assertFalse(fallback_covers(10, 20, 5, 19))
        self.assertFalse(fallback_covers(0, 20, None, None))

    def test_retention(self) -> None:
        """
        All but the newest two snapshots are deleted.
        """
        self.assertEqual(snapshots_to_delete([(30, 2), (10, 1), (20, 1)]), [(10, 1)])
        self.assertEqual(snapshots_to_delete([(10, 1), (20, 1)]), [])

    def test_compaction_limit(self) -> None:
        """
        Compaction never goes beyond the newest snapshot, or anywhere
        without one.
        """
        self.assertEqual(compaction_limit(50, 30), 30)
        self.assertEqual(compaction_limit(20, 30), 20)
        self.assertEqual(compaction_limit(20, None), 0)

    def test_next_index(self) -> None:
        """
        The log continues after its last entry, else after the snapshot,
        else at 1.
        """
        self.assertEqual(next_index(7, 3), 8)
        self.assertEqual(next_index(None, 3), 4)
        self.assertEqual(next_index(None, None), 1)
