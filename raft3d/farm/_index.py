# -*- test-case-name: tests.farm.test_index -*-
"""
A sorted set of integers with cheap insertion, removal and "iterate after".

The status index needs jobs listed in creation order while jobs move between
statuses in any order; with a million jobs a plain sorted list would pay a
large memmove per change and a rescan per page.  This keeps the values in
blocks of bounded size (the layout of C{sortedcontainers.SortedList}, cut
down to what the farm needs): a change touches one block, a lookup is two
bisections.  Blocks are C{array("i")}, so a member costs 4 bytes rather than
an 8-byte reference to a 32-byte C{int}; sequence numbers therefore stay
below 2**31, far more objects than a node can hold.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from typing import Iterable, Iterator


class SortedSeqs:
    """
    A set of integers (creation sequence numbers) kept in ascending order.
    """

    _LOAD = 512
    """
    Target block size; blocks split at twice this.
    """

    def __init__(self, values: Iterable[int] = ()) -> None:
        ordered = sorted(set(values))
        load = self._LOAD
        self._blocks: list[array[int]] = [
            array("i", ordered[i : i + load]) for i in range(0, len(ordered), load)
        ]
        self._maxes: list[int] = [block[-1] for block in self._blocks]
        self._len = len(ordered)

    @classmethod
    def from_ascending(cls, values: array[int]) -> SortedSeqs:
        """
        A set of C{values}, which must be strictly ascending; cheaper than
        the constructor (no sort, no Python C{int} per value).
        """
        seqs = cls()
        load = cls._LOAD
        seqs._blocks = [values[i : i + load] for i in range(0, len(values), load)]
        seqs._maxes = [block[-1] for block in seqs._blocks]
        seqs._len = len(values)
        return seqs

    def __len__(self) -> int:
        return self._len

    def __contains__(self, value: int) -> bool:
        i = bisect_left(self._maxes, value)
        if i == len(self._maxes):
            return False
        block = self._blocks[i]
        j = bisect_left(block, value)
        return block[j] == value

    def __iter__(self) -> Iterator[int]:
        for block in self._blocks:
            yield from block

    def add(self, value: int) -> None:
        """
        Insert C{value}; nothing happens if it is already present.  Appending
        a new maximum (the common case: a new job) touches only the last
        block.
        """
        maxes = self._maxes
        if not maxes:
            self._blocks.append(array("i", [value]))
            maxes.append(value)
            self._len = 1
            return
        i = bisect_left(maxes, value)
        if i == len(maxes):
            i -= 1
            block = self._blocks[i]
            block.append(value)
            maxes[i] = value
        else:
            block = self._blocks[i]
            j = bisect_left(block, value)
            if block[j] == value:
                return
            block.insert(j, value)
        self._len += 1
        if len(block) > 2 * self._LOAD:
            half = self._LOAD
            self._blocks[i : i + 1] = [block[:half], block[half:]]
            maxes[i : i + 1] = [block[half - 1], block[-1]]

    def discard(self, value: int) -> None:
        """
        Remove C{value} if present.
        """
        maxes = self._maxes
        i = bisect_left(maxes, value)
        if i == len(maxes):
            return
        block = self._blocks[i]
        j = bisect_left(block, value)
        if block[j] != value:
            return
        del block[j]
        self._len -= 1
        if block:
            maxes[i] = block[-1]
        else:
            del self._blocks[i]
            del maxes[i]

    def iter_after(self, after: int) -> Iterator[int]:
        """
        Yield the values greater than C{after}, ascending.  The set must not
        change while the iterator is in use.
        """
        blocks = self._blocks
        i = bisect_right(self._maxes, after)
        if i == len(blocks):
            return
        block = blocks[i]
        for k in range(bisect_right(block, after), len(block)):
            yield block[k]
        for n in range(i + 1, len(blocks)):
            yield from blocks[n]
