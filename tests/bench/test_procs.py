"""
Tests for L{bench._procs}: every child is stopped.
"""

from __future__ import annotations

import signal
import sys

from twisted.trial.unittest import SynchronousTestCase

from bench._procs import Child, Supervisor

STUBBORN = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('ready', flush=True); time.sleep(60)"
)
POLITE = "import sys, time; print('ready', flush=True); time.sleep(60)"


class SupervisorTests(SynchronousTestCase):
    """
    SIGTERM first, SIGKILL after the grace period, on exit of the context.
    """

    def spawn(self, sup: Supervisor, code: str) -> Child:
        child = sup.spawn("child", [sys.executable, "-c", code])
        assert child.popen.stdout is not None
        self.assertEqual(child.popen.stdout.readline(), b"ready\n")
        return child

    def test_stop_all_on_exit(self) -> None:
        """
        Leaving the context stops a child with SIGTERM, and kills one that
        ignores it once the grace period is over.
        """
        said: list[str] = []
        with Supervisor(said.append, grace=0.5) as sup:
            polite = self.spawn(sup, POLITE)
            stubborn = self.spawn(sup, STUBBORN)
        self.assertEqual(polite.popen.returncode, -signal.SIGTERM)
        self.assertEqual(stubborn.popen.returncode, -signal.SIGKILL)
        self.assertEqual(len(said), 1)

    def test_stop_all_on_error(self) -> None:
        """
        An exception inside the context still stops the children.
        """
        sup = Supervisor(lambda _: None, grace=5)
        with self.assertRaises(RuntimeError):
            with sup:
                child = self.spawn(sup, POLITE)
                raise RuntimeError("boom")
        self.assertFalse(child.running)

    def test_wait_output(self) -> None:
        """
        A piped child's output is collected; one that overruns is stopped.
        """
        with Supervisor(lambda _: None, grace=5) as sup:
            quick = sup.spawn("quick", [sys.executable, "-c", "print('hello')"])
            status, output = sup.wait_output(quick, 30)
            self.assertEqual((status, output), (0, "hello\n"))
            slow = sup.spawn("slow", [sys.executable, "-c", POLITE])
            status, output = sup.wait_output(slow, 0.5)
            self.assertEqual((status, output), (-signal.SIGTERM, "ready\n"))
