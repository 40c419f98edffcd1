"""
Tests for L{raft3d.transport._limits}: the admission control shared by the
Raft port and the HTTP API, and its throttled log.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from raft3d.transport import (
    DEFAULT_RAFT_LIMITS,
    Admission,
    ConnectionLimiter,
    ConnectionLimits,
    ThrottledLog,
)
from raft3d.transport._limits import remote_host

from ._support import LogCapture


def address(host: str = "10.0.0.1", port: int = 5000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


class Closer:
    """
    Stands for a connection: records that the limiter evicted it.
    """

    def __init__(self, admission: Admission) -> None:
        self.closed = False
        admission.on_evict = self.close

    def close(self) -> None:
        self.closed = True


class LimitsTests(SynchronousTestCase):
    def test_validation(self) -> None:
        """
        Every cap is at least 1; the per-host cap may be absent.
        """
        self.assertRaises(ValueError, ConnectionLimits, 0, 1)
        self.assertRaises(ValueError, ConnectionLimits, 1, 0)
        self.assertRaises(ValueError, ConnectionLimits, 1, 1, 0)
        self.assertIsNone(ConnectionLimits(1, 1).max_per_host)

    def test_raft_defaults(self) -> None:
        """
        The Raft port admits 128 connections, 32 per host and 32 still in
        their handshake.
        """
        self.assertEqual(DEFAULT_RAFT_LIMITS, ConnectionLimits(128, 32, 32))

    def test_remote_host(self) -> None:
        """
        Per-host caps count IP addresses, v4 or v6, whatever the port.
        """
        self.assertEqual(remote_host(address("10.0.0.1", 1)), "10.0.0.1")
        self.assertEqual(remote_host(IPv6Address("TCP", "::1", 2)), "::1")
        self.assertEqual(remote_host(None), "None")


class LimiterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.log = LogCapture()

    def limiter(
        self, total: int = 4, pending: int = 4, per_host: int | None = None
    ) -> ConnectionLimiter:
        return ConnectionLimiter(
            "Test port", ConnectionLimits(total, pending, per_host), self.clock, self.log.logger
        )

    def test_total_cap(self) -> None:
        """
        Connections over the total cap are refused, with a warning naming
        the listener, the client and the cap; releasing one makes room.
        """
        limiter = self.limiter(total=2)
        first = limiter.admit(address())
        assert first is not None
        first.established()
        second = limiter.admit(address())
        assert second is not None
        second.established()
        self.assertIsNone(limiter.admit(address("10.0.0.2")))
        self.assertEqual(limiter.open_count, 2)
        self.assertTrue(
            self.log.matching("Test port: refused a connection from 10.0.0.2", "limit is 2")
        )
        first.release()
        first.release()  # idempotent
        self.assertEqual(limiter.open_count, 1)
        self.assertIsNotNone(limiter.admit(address("10.0.0.2")))

    def test_per_host_cap(self) -> None:
        """
        One host may hold at most C{max_per_host} connections; others are
        not affected.
        """
        limiter = self.limiter(total=10, per_host=2)
        for _ in range(2):
            self.assertIsNotNone(limiter.admit(address("10.0.0.1")))
        self.assertIsNone(limiter.admit(address("10.0.0.1", 9999)))
        self.assertEqual(limiter.host_count("10.0.0.1"), 2)
        self.assertIsNotNone(limiter.admit(address("10.0.0.2")))
        self.assertTrue(self.log.matching("from that host", "limit is 2"))

    def test_eviction_of_oldest_pending(self) -> None:
        """
        When too many connections are pending, a newcomer is admitted and
        the connection pending the longest is closed; established ones are
        never closed, and one that went back to pending counts from then.
        """
        limiter = self.limiter(total=10, pending=2)
        a, b = limiter.admit(address("10.0.0.1")), limiter.admit(address("10.0.0.2"))
        assert a is not None and b is not None
        closers = {"a": Closer(a), "b": Closer(b)}
        a.established()
        a.pending()  # back to waiting: now younger than b
        c = limiter.admit(address("10.0.0.3"))
        assert c is not None
        self.assertEqual((closers["a"].closed, closers["b"].closed), (False, True))
        self.assertTrue(b.evicted)
        self.assertEqual(limiter.pending_count, 2)
        # An evicted connection stays counted until it is really gone, and
        # its later reports change nothing.
        self.assertEqual(limiter.open_count, 3)
        b.pending()
        self.assertEqual(limiter.pending_count, 2)
        b.release()
        self.assertEqual(limiter.open_count, 2)
        self.assertTrue(
            self.log.matching("Test port: 2 connections are pending", "from 10.0.0.2", "10.0.0.3")
        )

    def test_established_not_evicted(self) -> None:
        """
        Established connections do not count as pending, so they leave room
        and are never chosen; with nothing that can be closed (not yet
        connected) a newcomer is refused instead.
        """
        limiter = self.limiter(total=10, pending=1)
        a = limiter.admit(address())
        assert a is not None
        closer = Closer(a)
        a.established()
        b = limiter.admit(address())
        assert b is not None
        self.assertFalse(closer.closed)
        self.assertEqual(limiter.pending_count, 1)
        # b has no on_evict yet: it cannot be closed, so c is refused.
        self.assertIsNone(limiter.admit(address()))
        self.assertTrue(self.log.matching("none can be closed"))

    def test_refusals_throttled(self) -> None:
        """
        A flood of refusals logs one line per interval, and the next line
        says how many were left out.
        """
        limiter = self.limiter(total=1)
        self.assertIsNotNone(limiter.admit(address()))
        for _ in range(50):
            self.assertIsNone(limiter.admit(address()))
        self.assertEqual(len(self.log.matching("refused")), 1)
        self.clock.advance(10)
        self.assertIsNone(limiter.admit(address()))
        lines = self.log.matching("refused")
        self.assertEqual(len(lines), 2)
        self.assertIn("(49 more since the last such line)", lines[1])


class ThrottledLogTests(SynchronousTestCase):
    def test_interval(self) -> None:
        """
        Lines come at most once per interval; each reports what it left out.
        """
        clock = Clock()
        capture = LogCapture()
        log = ThrottledLog(clock, capture.logger, interval=5)
        self.assertTrue(log.warn("event {n}", n=1))
        self.assertFalse(log.warn("event {n}", n=2))
        clock.advance(4.9)
        self.assertFalse(log.warn("event {n}", n=3))
        self.assertEqual(log.suppressed, 2)
        clock.advance(0.1)
        self.assertTrue(log.warn("event {n}", n=4))
        self.assertEqual(
            capture.warnings(), ["event 1", "event 4 (2 more since the last such line)"]
        )
        self.assertEqual(log.suppressed, 0)
