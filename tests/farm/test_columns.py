"""
Tests for L{raft3d.farm._columns}: compact columns give back exactly what
they were given, and L{IdIndex} behaves as a list plus a dict.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm import _columns
from raft3d.farm._columns import (
    ID_WIDTH,
    STAMP_WIDTH,
    FixedTextColumn,
    IdIndex,
    Interner,
    TextColumn,
)

STAMP = "2026-11-29T01:02:03.456Z"
UUID = "5f0c6a52-5b8e-4b7e-9a37-3c1d2e4f6a7b"

# Any text CBOR can carry (no lone surrogates), biased towards the usual
# widths and non-ASCII of the same UTF-8 length.
_TEXT = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.just(STAMP),
    st.just("é" * 12),
    st.just("\x00" * STAMP_WIDTH),
    st.builds(lambda n: f"2026-11-29T01:02:{n:02d}.000Z", st.integers(0, 59)),
)


class FixedTextColumnTests(SynchronousTestCase):
    """
    L{FixedTextColumn} keeps values of its width in place, others aside,
    and gives every value back.
    """

    def test_usual_width_in_place(self) -> None:
        """
        A value of the column's UTF-8 width takes exactly that many bytes
        and nothing aside; any other goes aside and still reads back.
        """
        column = FixedTextColumn(STAMP_WIDTH)
        column.append(STAMP)
        column.append("t0")
        column.append("é" * 12)
        self.assertEqual(len(column._buffer), 3 * STAMP_WIDTH)
        self.assertEqual(column._other, {1: "t0"})
        self.assertEqual([column[0], column[1], column[2]], [STAMP, "t0", "é" * 12])
        self.assertEqual(len(column), 3)

    def test_replace(self) -> None:
        """
        Replacing a value moves it in or out of the side map as its width
        requires, leaving the other values alone.
        """
        column = FixedTextColumn(STAMP_WIDTH)
        column.extend([STAMP, STAMP])
        column[0] = "later"
        self.assertEqual((column[0], column[1], column._other), ("later", STAMP, {0: "later"}))
        column[0] = STAMP.replace("03", "09")
        self.assertEqual((column[0], column._other), (STAMP.replace("03", "09"), {}))

    def test_copy(self) -> None:
        """
        A copy is equal and independent: replacing or adding values in
        either, aside or in place, leaves the other as it was.
        """
        column = FixedTextColumn(STAMP_WIDTH)
        column.extend([STAMP, "t1", STAMP])
        copy = column.copy()
        self.assertEqual(copy, column)
        column[0] = "later"
        column[1] = STAMP
        column.append("t3")
        copy[2] = "other"
        self.assertEqual(copy.values(0, 3), [STAMP, "t1", "other"])
        self.assertEqual(copy._other, {1: "t1", 2: "other"})
        self.assertEqual(column.values(0, 4), ["later", STAMP, STAMP, "t3"])

    def test_out_of_range(self) -> None:
        """
        Reading or replacing past the end raises L{IndexError}.
        """
        column = FixedTextColumn(ID_WIDTH)
        column.append(UUID)
        self.assertRaises(IndexError, column.__getitem__, 1)
        self.assertRaises(IndexError, column.__setitem__, 1, UUID)
        self.assertRaises(IndexError, column.__getitem__, -1)
        self.assertRaises(IndexError, column.pick, [0, 1])

    def test_equality(self) -> None:
        """
        Columns are equal when they hold the same values, whatever the mix
        of C{append} and C{extend} that built them.
        """
        a, b = FixedTextColumn(STAMP_WIDTH), FixedTextColumn(STAMP_WIDTH)
        a.extend([STAMP, "x", STAMP])
        for value in (STAMP, "x", STAMP):
            b.append(value)
        self.assertEqual(a, b)
        b[1] = "y"
        self.assertNotEqual(a, b)
        self.assertNotEqual(a, FixedTextColumn(ID_WIDTH))
        self.assertFalse(a == object())

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(
        st.lists(_TEXT, max_size=30),
        st.lists(st.tuples(st.integers(0, 29), _TEXT), max_size=10),
        st.integers(0, 32),
        st.integers(0, 32),
        st.booleans(),
    )
    def test_matches_list(
        self,
        values: list[str],
        changes: list[tuple[int, str]],
        start: int,
        stop: int,
        bulk: bool,
    ) -> None:
        """
        After any appends (one by one or in bulk) and replacements, every
        value and every C{values} range reads back as from a list.
        """
        column = FixedTextColumn(STAMP_WIDTH)
        model = list(values)
        if bulk:
            column.extend(values)
        else:
            for value in values:
                column.append(value)
        for seq, value in changes:
            if seq < len(model):
                column[seq] = value
                model[seq] = value
        self.assertEqual([column[seq] for seq in range(len(model))], model)
        self.assertEqual(column.values(start, stop), model[start:stop])
        picked = [seq for seq in (stop, start, 0, stop) if seq < len(model)]
        self.assertEqual(column.pick(picked), [model[seq] for seq in picked])


class TextColumnTests(SynchronousTestCase):
    """
    L{TextColumn} gives back strings of any length.
    """

    def test_values(self) -> None:
        """
        Empty, ASCII and non-ASCII values read back one by one and by range.
        """
        column = TextColumn(["a.gcode", "", "pièce ✓.gcode"])
        column.append("z")
        self.assertEqual([column[i] for i in range(4)], ["a.gcode", "", "pièce ✓.gcode", "z"])
        self.assertEqual(column.values(1, 3), ["", "pièce ✓.gcode"])
        self.assertEqual(column.values(2, 99), ["pièce ✓.gcode", "z"])
        self.assertEqual(column.values(3, 3), [])
        self.assertRaises(IndexError, column.__getitem__, 4)
        self.assertEqual(len(column), 4)
        self.assertEqual(column.pick([3, 0, 2]), ["z", "a.gcode", "pièce ✓.gcode"])
        self.assertEqual(column.pick([]), [])
        self.assertRaises(IndexError, column.pick, [4])
        self.assertRaises(IndexError, column.pick, [-1])

    def test_equality(self) -> None:
        """
        Columns holding the same values are equal, however built.
        """
        self.assertEqual(TextColumn(["a", "bc"]), TextColumn(["a", "bc"]))
        self.assertNotEqual(TextColumn(["a", "bc"]), TextColumn(["ab", "c"]))
        self.assertFalse(TextColumn() == object())

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(st.lists(_TEXT, max_size=20), st.lists(_TEXT, max_size=20), st.integers(0, 42))
    def test_matches_list(self, first: list[str], second: list[str], start: int) -> None:
        """
        Appends and bulk extends read back as from a list.
        """
        column = TextColumn(first)
        for value in second:
            column.append(value)
        model = first + second
        self.assertEqual([column[i] for i in range(len(model))], model)
        self.assertEqual(column.values(start, len(model)), model[start:])


class IdIndexTests(SynchronousTestCase):
    """
    L{IdIndex} numbers ids in order of addition and finds them again.
    """

    def test_add_and_get(self) -> None:
        """
        Ids get consecutive sequence numbers; lookups find them and miss
        anything else.
        """
        index = IdIndex()
        self.assertEqual([index.add(UUID), index.add("p1"), index.add("é")], [0, 1, 2])
        self.assertEqual([index.get(UUID), index.get("p1"), index.get("é")], [0, 1, 2])
        self.assertIsNone(index.get("p2"))
        self.assertIn("p1", index)
        self.assertNotIn(UUID.upper(), index)
        self.assertEqual((len(index), index.ids[0]), (3, UUID))

    def test_not_ids(self) -> None:
        """
        Looking up what cannot be an id (not a string, a lone surrogate)
        finds nothing rather than raising.
        """
        index = IdIndex()
        index.add("1")
        self.assertEqual([index.get(1), index.get(b"1"), index.get("\ud800")], [None] * 3)  # type: ignore[arg-type]
        self.assertIsNone(index.get("\ud800" + UUID[1:]))

    def test_independent(self) -> None:
        """
        Indexes share nothing: what one holds, a new one does not.
        """
        first = IdIndex()
        for n in range(100):
            first.add(f"id{n}")
        second = IdIndex()
        self.assertEqual([second.get(f"id{n}") for n in range(100)], [None] * 100)
        self.assertEqual(second.add("id7"), 0)
        self.assertEqual((first.get("id7"), second.get("id7")), (7, 0))

    def test_growth(self) -> None:
        """
        Thousands of ids (every shard grows several times) are all found,
        and absent ids are not.
        """
        index = IdIndex()
        ids = [f"{n:08x}-0000-4000-8000-000000000000" for n in range(5000)]
        for n, object_id in enumerate(ids):
            self.assertEqual(index.add(object_id), n)
        self.assertEqual([index.get(i) for i in ids], list(range(5000)))
        self.assertEqual([index.get(f"x{n}") for n in range(500)], [None] * 500)
        for size, slots in zip(index._counts, index._shards, strict=True):
            self.assertLessEqual(2 * size, len(slots))

    def test_reindex(self) -> None:
        """
        Ids added in bulk are found after C{reindex}, which reports none
        repeated.
        """
        index = IdIndex()
        index.add("first")
        index.extend([f"id{n}" for n in range(3000)])
        self.assertIsNone(index.reindex())
        self.assertEqual(index.get("first"), 0)
        self.assertEqual(index.get("id2999"), 3000)
        self.assertEqual(index.add("last"), 3001)
        self.assertEqual(index.get("last"), 3001)

    def test_reindex_repeat(self) -> None:
        """
        C{reindex} names an id added twice.
        """
        index = IdIndex()
        index.add("a")
        index.extend(["b", "c", "a"])
        self.assertEqual(index.reindex(), "a")

    def test_collisions(self) -> None:
        """
        With a hash that puts every id in one shard and one probe chain,
        adding, growing, bulk indexing and lookups all still work.
        """
        self.patch(_columns, "_hash", lambda value: 0)
        index = IdIndex()
        for n in range(40):
            index.add(f"c{n}")
        index.extend(["d0", "d1"])
        self.assertIsNone(index.reindex())
        self.assertEqual([index.get(f"c{n}") for n in range(40)], list(range(40)))
        self.assertEqual((index.get("d1"), index.get("nope")), (41, None))
        index.extend(["c7"])
        self.assertEqual(index.reindex(), "c7")

    def test_blank_slots(self) -> None:
        """
        An id of the usual width made of NUL bytes is not mistaken for the
        blank slot of an id stored aside, even on the same probe chain.
        """
        self.patch(_columns, "_hash", lambda value: 0)
        index = IdIndex()
        nul = "\x00" * ID_WIDTH
        self.assertEqual((index.add("short"), index.add(nul), index.add(UUID)), (0, 1, 2))
        self.assertEqual((index.get(nul), index.get("short"), index.get(UUID)), (1, 0, 2))
        self.assertIsNone(index.get("\x00" * 3))
        other = IdIndex()
        other.add("short")
        self.assertIsNone(other.get(nul))

    def test_equality(self) -> None:
        """
        Indexes are equal when they hold the same ids in the same order.
        """
        a, b = IdIndex(), IdIndex()
        for object_id in ("x", "y"):
            a.add(object_id)
        b.extend(["x", "y"])
        b.reindex()
        self.assertEqual(a, b)
        b.add("z")
        self.assertNotEqual(a, b)
        self.assertFalse(a == object())

    @settings(max_examples=100, deadline=None, derandomize=True)
    @given(st.lists(st.text(st.characters(blacklist_categories=("Cs",)), max_size=6), max_size=60))
    def test_matches_dict(self, candidates: list[str]) -> None:
        """
        Adding distinct ids one by one finds each at its position, like a
        C{dict} from id to position.
        """
        model: dict[str, int] = {}
        index = IdIndex()
        for object_id in candidates:
            if object_id not in model:
                self.assertNotIn(object_id, index)
                model[object_id] = index.add(object_id)
        self.assertEqual({i: index.get(i) for i in model}, model)
        self.assertEqual([index.ids[n] for n in range(len(model))], list(model))


class InternerTests(SynchronousTestCase):
    """
    L{Interner} keeps one string per value.
    """

    def test_shares(self) -> None:
        """
        Equal values come back as the first object seen.
        """
        intern = Interner()
        first = "".join(["Pru", "sa"])
        again = "".join(["Pr", "usa"])
        self.assertIsNot(first, again)
        self.assertIs(intern(first), first)
        self.assertIs(intern(again), first)
        self.assertEqual([v is first for v in intern.many([again, "x"])], [True, False])
