"""
Tests for L{raft3d.farm._index.SortedSeqs}.
"""

from __future__ import annotations

from array import array

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm._index import SortedSeqs


class SmallBlocks(SortedSeqs):
    """
    Tiny blocks, so that splits and block removals happen in small tests.
    """

    _LOAD = 2


class SortedSeqsTests(SynchronousTestCase):
    """
    L{SortedSeqs} behaves as a sorted set.
    """

    def test_empty(self) -> None:
        """
        An empty set has no members and iterates nothing.
        """
        s = SortedSeqs()
        self.assertEqual((len(s), list(s), list(s.iter_after(-1)), 3 in s), (0, [], [], False))
        s.discard(3)
        self.assertEqual(len(s), 0)

    def test_initial_values(self) -> None:
        """
        Initial values are deduplicated and sorted.
        """
        s = SmallBlocks([5, 1, 3, 3, 9, 7])
        self.assertEqual(list(s), [1, 3, 5, 7, 9])
        self.assertEqual(len(s), 5)

    def test_from_ascending(self) -> None:
        """
        A set made from ascending values equals one made by the
        constructor, and keeps working as a set.
        """
        values = array("i", range(0, 41, 3))
        made = SmallBlocks.from_ascending(values)
        self.assertEqual((list(made), len(made)), (list(values), len(values)))
        self.assertEqual(list(made.iter_after(10)), [12, 15, 18, 21, 24, 27, 30, 33, 36, 39])
        made.add(4)
        made.discard(9)
        self.assertEqual(list(made), sorted({*values, 4} - {9}))
        self.assertEqual(list(SortedSeqs.from_ascending(array("i"))), [])

    def test_iter_after(self) -> None:
        """
        C{iter_after} yields exactly the members greater than its argument,
        across blocks.
        """
        s = SmallBlocks(range(0, 20, 2))
        self.assertEqual(list(s.iter_after(5)), [6, 8, 10, 12, 14, 16, 18])
        self.assertEqual(list(s.iter_after(6)), [8, 10, 12, 14, 16, 18])
        self.assertEqual(list(s.iter_after(-1)), list(range(0, 20, 2)))
        self.assertEqual(list(s.iter_after(18)), [])

    def test_add_twice(self) -> None:
        """
        Adding a member again changes nothing.
        """
        s = SmallBlocks([1, 2, 3, 4, 5])
        s.add(3)
        s.add(5)
        self.assertEqual((list(s), len(s)), ([1, 2, 3, 4, 5], 5))

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(
        st.lists(st.tuples(st.booleans(), st.integers(min_value=0, max_value=40)), max_size=120),
        st.integers(min_value=-1, max_value=41),
    )
    def test_matches_set(self, ops: list[tuple[bool, int]], after: int) -> None:
        """
        Any sequence of adds and discards leaves the same members as a
        Python set, in order, with consistent length, membership and
        C{iter_after}.
        """
        s = SmallBlocks()
        model: set[int] = set()
        for add, value in ops:
            if add:
                s.add(value)
                model.add(value)
            else:
                s.discard(value)
                model.discard(value)
        self.assertEqual(list(s), sorted(model))
        self.assertEqual(len(s), len(model))
        self.assertEqual(list(s.iter_after(after)), sorted(v for v in model if v > after))
        for value in range(-1, 42):
            self.assertEqual(value in s, value in model)
