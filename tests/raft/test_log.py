# -*- test-case-name: tests.raft.test_log -*-
"""
Tests for L{raft3d.raft._log}: the in-memory log the core works on.

Off-by-one mistakes at the compaction boundary are what breaks Raft logs in
practice, so most tests here sit on C{offset}, C{offset + 1} and
C{last_index + 1}; a hypothesis test then compares the log against a plain
dictionary model for random sequences of operations.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import Entry, EntryType
from raft3d.raft._log import RaftLog


def run(first: int, *terms: int, size: int = 0) -> list[Entry]:
    """
    Entries starting at C{first} with the given C{terms}; payloads of
    C{size} bytes.
    """
    return [Entry(first + i, term, EntryType.NORMAL, bytes(size)) for i, term in enumerate(terms)]


class ConstructionTests(SynchronousTestCase):
    """
    A log is a contiguous run after its offset.
    """

    def test_empty(self) -> None:
        """
        An empty log from the beginning has nothing: first index 1, last
        index 0, last term 0, and only the sentinel at index 0 has a term.
        """
        log = RaftLog()
        self.assertEqual((log.first_index, log.last_index, log.last_term), (1, 0, 0))
        self.assertEqual(log.term_at(0), 0)
        self.assertIsNone(log.term_at(1))
        self.assertEqual(log.slice(1, 10), [])

    def test_entries_must_follow_offset(self) -> None:
        """
        Entries that do not start right after the offset are refused.
        """
        self.assertRaises(ValueError, RaftLog, 5, 2, run(7, 2))
        self.assertRaises(ValueError, RaftLog, 5, 2, run(5, 2))
        log = RaftLog(5, 2, run(6, 2, 3))
        self.assertEqual((log.first_index, log.last_index, log.last_term), (6, 7, 3))

    def test_unknown_offset_term(self) -> None:
        """
        A node restarted with a trailing window older than its snapshot may
        not know the term at the offset: it reads as L{None}, and an empty
        such log reports last term 0.
        """
        log = RaftLog(9, None)
        self.assertIsNone(log.term_at(9))
        self.assertEqual(log.last_term, 0)
        self.assertEqual(log.last_index, 9)


class TermAtTests(SynchronousTestCase):
    """
    L{RaftLog.term_at} answers for the offset and held entries only.
    """

    def test_boundaries(self) -> None:
        """
        Below the offset and after the last entry there is no term; at the
        offset there is the snapshot's term.
        """
        log = RaftLog(10, 3, run(11, 3, 4, 4))
        self.assertIsNone(log.term_at(9))
        self.assertEqual(log.term_at(10), 3)
        self.assertEqual(log.term_at(11), 3)
        self.assertEqual(log.term_at(13), 4)
        self.assertIsNone(log.term_at(14))
        self.assertEqual(log.entry(12), run(12, 4)[0])


class SliceTests(SynchronousTestCase):
    """
    L{RaftLog.slice} is inclusive and clipped to what is held.
    """

    def test_clipped(self) -> None:
        """
        Bounds outside the held range are clipped; an inverted range is
        empty.
        """
        log = RaftLog(10, 3, run(11, 3, 4, 4))
        self.assertEqual(log.slice(0, 100), run(11, 3, 4, 4))
        self.assertEqual(log.slice(12, 12), run(12, 4))
        self.assertEqual(log.slice(13, 12), [])
        self.assertEqual(log.slice(14, 20), [])
        self.assertEqual(log.slice(1, 10), [])

    def test_max_bytes(self) -> None:
        """
        The payload limit (with 24 bytes of overhead per entry) cuts the
        batch short, but at least one entry is returned even if it alone is
        larger, so a huge entry can still be replicated.
        """
        log = RaftLog(0, 0, run(1, 1, 1, 1, 1, size=100))
        self.assertEqual(len(log.slice(1, 4, max_bytes=124)), 1)
        self.assertEqual(len(log.slice(1, 4, max_bytes=248)), 2)
        self.assertEqual(len(log.slice(1, 4, max_bytes=10)), 1)
        self.assertEqual(len(log.slice(1, 4, max_bytes=10_000)), 4)


class MutationTests(SynchronousTestCase):
    """
    Append, truncate, compact and reset keep the log contiguous.
    """

    def test_append_contiguous_only(self) -> None:
        """
        An entry must come right after the last one; a gap or an overlap is
        a bug in the caller and raises.
        """
        log = RaftLog(0, 0, run(1, 1))
        self.assertRaises(ValueError, log.append, run(3, 1))
        self.assertRaises(ValueError, log.append, run(1, 2))
        log.append(run(2, 1, 2))
        self.assertEqual(log.last_index, 3)

    def test_truncate_after(self) -> None:
        """
        Truncation drops the entries after the index, may empty the log down
        to the offset, is a no-op past the end, and cannot reach into the
        compacted prefix.
        """
        log = RaftLog(10, 3, run(11, 3, 4, 4))
        log.truncate_after(20)
        self.assertEqual(log.last_index, 13)
        log.truncate_after(12)
        self.assertEqual((log.last_index, log.last_term), (12, 4))
        log.truncate_after(10)
        self.assertEqual((log.last_index, log.last_term), (10, 3))
        self.assertRaises(ValueError, log.truncate_after, 9)

    def test_compact(self) -> None:
        """
        Compaction moves the offset and remembers the term there; it never
        goes backwards and is clipped to the last index.
        """
        log = RaftLog(0, 0, run(1, 1, 2, 2, 3, 3))
        log.compact(2)
        self.assertEqual((log.offset, log.offset_term, log.first_index), (2, 2, 3))
        self.assertEqual(log.slice(1, 5), run(3, 2, 3, 3))
        log.compact(1)
        self.assertEqual(log.offset, 2)
        log.compact(99)
        self.assertEqual((log.offset, log.offset_term, log.last_index, log.last_term), (5, 3, 5, 3))
        log.append(run(6, 3))
        self.assertEqual(log.slice(0, 99), run(6, 3))

    def test_reset(self) -> None:
        """
        After a snapshot is installed the log is empty and continues after
        the snapshot, even if the snapshot is behind the old last index.
        """
        log = RaftLog(0, 0, run(1, 1, 2, 2, 3))
        log.reset(3, 9)
        self.assertEqual((log.offset, log.last_index, log.last_term), (3, 3, 9))
        self.assertIsNone(log.term_at(4))
        log.append(run(4, 9))
        self.assertEqual(log.last_index, 4)


class SearchTests(SynchronousTestCase):
    """
    The term searches behind the conflict hints (paper 5.3).
    """

    def setUp(self) -> None:
        # terms by index:  1 1 1 4 4 5 5 5 (indexes 1..8)
        self.log = RaftLog(0, 0, run(1, 1, 1, 1, 4, 4, 5, 5, 5))

    def test_first_index_of_term(self) -> None:
        """
        From any index, the first index of the run of that term, never below
        the given lower bound (the commit index + 1) nor the first held
        index.
        """
        log = self.log
        self.assertEqual(log.first_index_of_term(8, 1), 6)
        self.assertEqual(log.first_index_of_term(6, 1), 6)
        self.assertEqual(log.first_index_of_term(5, 1), 4)
        self.assertEqual(log.first_index_of_term(3, 1), 1)
        self.assertEqual(log.first_index_of_term(8, 7), 7)
        self.assertEqual(log.first_index_of_term(3, 5), 3)
        log.compact(2)
        self.assertEqual(log.first_index_of_term(3, 1), 3)

    def test_last_index_of_term(self) -> None:
        """
        The last index at or below the bound holding the term, or L{None}
        when the term is absent there (a term between two runs, a term
        higher than any, a term only above the bound).
        """
        log = self.log
        self.assertEqual(log.last_index_of_term(4, 8), 5)
        self.assertEqual(log.last_index_of_term(5, 7), 7)
        self.assertEqual(log.last_index_of_term(5, 100), 8)
        self.assertEqual(log.last_index_of_term(1, 8), 3)
        self.assertIsNone(log.last_index_of_term(3, 8))
        self.assertIsNone(log.last_index_of_term(9, 8))
        self.assertIsNone(log.last_index_of_term(5, 5))
        log.compact(4)
        self.assertIsNone(log.last_index_of_term(1, 8))

    def test_is_up_to_date(self) -> None:
        """
        Paper 5.4.1: "If the logs have last entries with different terms,
        then the log with the later term is more up-to-date.  If the logs
        end with the same term, then whichever log is longer is more
        up-to-date."  Equal logs count as up to date.
        """
        log = self.log  # ends at (8, 5)
        cases = [
            ((8, 5), True),
            ((9, 5), True),
            ((7, 5), False),
            ((1, 6), True),
            ((100, 4), False),
            ((0, 0), False),
        ]
        for (index, term), expected in cases:
            self.assertEqual(log.is_up_to_date(index, term), expected, (index, term))
        self.assertTrue(RaftLog().is_up_to_date(0, 0))


# -- model-based -------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 4), st.integers(0, 2)),
        st.tuples(st.just("truncate"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("compact"), st.integers(0, 30), st.just(0)),
        st.tuples(st.just("reset"), st.integers(0, 30), st.integers(0, 2)),
    ),
    max_size=40,
)


class ModelTests(SynchronousTestCase):
    """
    The log behaves like a dictionary of index to entry plus an offset.
    """

    @settings(max_examples=200, derandomize=True, database=None, deadline=None)
    @given(_ops)
    def test_against_model(self, ops: list[tuple[str, int, int]]) -> None:
        """
        After any sequence of appends (terms never decreasing), truncations,
        compactions and resets, every query agrees with a plain model: the
        held entries, term_at everywhere, last index/term, slices, and the
        two term searches.
        """
        log = RaftLog()
        model: dict[int, Entry] = {}
        offset, offset_term = 0, 0
        term = 1
        for op, a, b in ops:
            last = offset + len(model)
            if op == "append":
                term += b
                new = run(last + 1, *([term] * a))
                log.append(new)
                model.update((e.index, e) for e in new)
            elif op == "truncate":
                if a < offset:
                    self.assertRaises(ValueError, log.truncate_after, a)
                    continue
                log.truncate_after(a)
                model = {i: e for i, e in model.items() if i <= a}
            elif op == "compact":
                log.compact(a)
                if a > offset:
                    a = min(a, last)
                    offset_term = model[a].term if a in model else offset_term
                    offset = a
                    model = {i: e for i, e in model.items() if i > a}
            else:
                term += b
                log.reset(a, term)
                offset, offset_term, model = a, term, {}
            last = offset + len(model)
            self.assertEqual((log.offset, log.last_index), (offset, last))
            self.assertEqual(log.slice(0, last + 5), [model[i] for i in sorted(model)])
            self.assertEqual(log.term_at(offset), offset_term)
            for i in range(max(0, offset - 2), last + 3):
                expected = model[i].term if i in model else (offset_term if i == offset else None)
                self.assertEqual(log.term_at(i), expected)
            self.assertEqual(log.last_term, model[last].term if model else offset_term)
            for t in range(1, term + 1):
                held = [i for i, e in model.items() if e.term == t]
                self.assertEqual(log.last_index_of_term(t, last), max(held, default=None))
            for i in model:
                lower = offset + 1
                first = min(j for j, e in model.items() if e.term == model[i].term and j <= i)
                self.assertEqual(log.first_index_of_term(i, lower), max(first, lower))
