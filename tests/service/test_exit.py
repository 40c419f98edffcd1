"""
Tests for L{raft3d.service._exit}: ending the process with a status after
a clean shutdown.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from raft3d.service import EXIT_CANNOT_START, EXIT_FATAL, FatalExit

from ._fakes import LogCapture


class FatalExitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.exits: list[int] = []
        self.fatal = FatalExit(self.reactor, exit=self.exits.append, grace=10)
        self.log = LogCapture()
        self.log.install(self)

    def shut_down(self) -> None:
        """
        Run the shutdown triggers as a stopping reactor would.
        """
        for phase in ("before", "during", "after"):
            for trigger, args, kwargs in self.reactor.triggers.get(phase, {}).get("shutdown", []):
                trigger(*args, **kwargs)

    def test_running_reactor(self) -> None:
        """
        On a running reactor the reason is logged as critical, the reactor
        is stopped, and the process exits with L{EXIT_FATAL} only after the
        shutdown (services stopped, files closed).
        """
        self.reactor.running = True
        self.fatal("disk on fire")
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.exits, [])
        self.shut_down()
        self.assertEqual(self.exits, [EXIT_FATAL])
        [line] = self.log.matching("Fatal: disk on fire", level="critical")
        self.assertIn(f"status {EXIT_FATAL}", line)
        self.reactor.advance(10)
        self.assertEqual(self.exits, [EXIT_FATAL])

    def test_before_running(self) -> None:
        """
        During start-up (before the reactor runs) the stop waits until the
        reactor runs; the status given is the one used.
        """
        self.fatal("bad directory", EXIT_CANNOT_START)
        self.assertFalse(self.reactor.hasStopped)
        self.reactor.running = True
        for call, args, kwargs in self.reactor.whenRunningHooks:
            call(*args, **kwargs)
        self.assertTrue(self.reactor.hasStopped)
        self.shut_down()
        self.assertEqual(self.exits, [EXIT_CANNOT_START])

    def test_grace_period(self) -> None:
        """
        If the shutdown hangs, the process exits anyway after the grace
        period.
        """
        self.reactor.running = True
        self.fatal("stuck")
        self.reactor.advance(9.9)
        self.assertEqual(self.exits, [])
        self.reactor.advance(0.1)
        self.assertEqual(self.exits, [EXIT_FATAL])

    def test_second_reason_logged_only(self) -> None:
        """
        A second fatal error is logged but the first one decides the status
        and nothing is scheduled twice.
        """
        self.reactor.running = True
        self.fatal("first", EXIT_CANNOT_START)
        self.fatal("second")
        self.assertEqual(self.fatal.reason, "first")
        self.assertEqual(len(self.log.matching("Fatal:")), 2)
        self.shut_down()
        self.assertEqual(self.exits, [EXIT_CANNOT_START])
