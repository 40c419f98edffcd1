"""
Tests for L{bench._net}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench._net import Timeout, check_loopback, free_ports, wait_for


class WaitForTests(SynchronousTestCase):
    """
    Polling with a deadline, on a fake clock.
    """

    def setUp(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def test_returns_value(self) -> None:
        """
        The first non-L{None} value is returned.
        """
        values = iter([None, None, 7])
        self.assertEqual(wait_for("x", lambda: next(values), 5, 1, self.clock, self.sleep), 7)
        self.assertEqual(self.now, 2.0)

    def test_times_out(self) -> None:
        """
        L{Timeout} names what was awaited once the deadline passes.
        """
        e = self.assertRaises(
            Timeout, wait_for, "the leader", lambda: None, 3, 1, self.clock, self.sleep
        )
        self.assertIn("the leader", str(e))


class LoopbackTests(SynchronousTestCase):
    """
    Only 127.0.0.1 is a target.
    """

    def test_check(self) -> None:
        """
        127.0.0.1 and localhost pass; anything else raises.
        """
        check_loopback("127.0.0.1")
        check_loopback("localhost")
        self.assertRaises(ValueError, check_loopback, "192.168.1.1")

    def test_free_ports(self) -> None:
        """
        The ports are distinct.
        """
        ports = free_ports(6)
        self.assertEqual(len(set(ports)), 6)
