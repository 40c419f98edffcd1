# -*- test-case-name: tests.farm.test_stamps,tests.farm.test_state -*-
"""
Change stamps: the index of the log entry that last changed each object of
one kind, and the kind as a whole.

They let a server keep an answer about one object (a stale read) while
other objects change: the answer is as good as new for as long as the
object's stamp has not moved.  A stamp is not part of the farm's state:
snapshots do not carry it, equal states may have different stamps, and a
restored state starts every object at 0.  A stamp reader made before a
restore says so by returning -1, which no stamp ever is, so nothing kept
from before a restore is taken for current after it.
"""

from __future__ import annotations

from array import array
from typing import Callable

STALE: int = -1
"""
What a stamp reader returns once its state has been restored over: no
stamp is negative.
"""


class ChangeStamps:
    """
    The stamps of one kind of object, by sequence number.  Objects added
    before the first stamp (restored ones) read as 0.
    """

    def __init__(self) -> None:
        self._stamps = array("q")
        self.latest = 0
        """
        The index of the last entry that added or changed any object of
        this kind.
        """

    def __len__(self) -> int:
        return len(self._stamps)

    def stamp(self, seq: int, index: int) -> None:
        """
        Record that the entry at C{index} added or changed object C{seq}.
        """
        stamps = self._stamps
        if seq >= len(stamps):
            stamps.frombytes(bytes(8 * (seq + 1 - len(stamps))))
        stamps[seq] = index
        self.latest = index

    def __getitem__(self, seq: int) -> int:
        stamps = self._stamps
        return stamps[seq] if seq < len(stamps) else 0


def object_stamp(
    current: Callable[[], ChangeStamps], stamps: ChangeStamps, seq: int
) -> Callable[[], int]:
    """
    A function returning object C{seq}'s stamp in C{stamps} for as long as
    C{current()} is C{stamps}, and L{STALE} from then on.
    """

    def read() -> int:
        return stamps[seq] if current() is stamps else STALE

    return read


def kind_stamp(current: Callable[[], ChangeStamps], stamps: ChangeStamps) -> Callable[[], int]:
    """
    A function returning C{stamps.latest} for as long as C{current()} is
    C{stamps}, and L{STALE} from then on.
    """

    def read() -> int:
        return stamps.latest if current() is stamps else STALE

    return read
