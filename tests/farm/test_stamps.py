"""
Tests for L{raft3d.farm._stamps}: change stamps and their readers.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm._stamps import STALE, ChangeStamps, kind_stamp, object_stamp


class ChangeStampsTests(SynchronousTestCase):
    """
    L{ChangeStamps} on its own.
    """

    def test_unstamped_read_zero(self) -> None:
        """
        Objects never stamped (restored ones) read as 0, those stamped as
        their last stamp; C{latest} follows every stamp.
        """
        stamps = ChangeStamps()
        stamps.stamp(2, 7)
        self.assertEqual([stamps[seq] for seq in range(4)], [0, 0, 7, 0])
        self.assertEqual((len(stamps), stamps.latest), (3, 7))
        stamps.stamp(0, 9)
        stamps.stamp(2, 11)
        self.assertEqual([stamps[seq] for seq in range(3)], [9, 0, 11])
        self.assertEqual(stamps.latest, 11)

    def test_readers_go_stale(self) -> None:
        """
        A reader follows its stamps while they are current and returns
        L{STALE} once they are replaced.
        """
        stamps = ChangeStamps()
        current = [stamps]
        one = object_stamp(lambda: current[0], stamps, 1)
        every = kind_stamp(lambda: current[0], stamps)
        self.assertEqual((one(), every()), (0, 0))
        stamps.stamp(1, 5)
        stamps.stamp(0, 6)
        self.assertEqual((one(), every()), (5, 6))
        current[0] = ChangeStamps()
        self.assertEqual((one(), every()), (STALE, STALE))
