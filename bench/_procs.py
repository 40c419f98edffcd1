# -*- test-case-name: tests.bench.test_procs -*-
"""
Every process the benchmark starts goes through one L{Supervisor}, so that
every one of them is stopped (SIGTERM, then SIGKILL after a grace period)
whatever happens: normal end, an exception, Ctrl-C or a SIGTERM to the
harness.

Children run in a session of their own: the terminal's Ctrl-C reaches only
the harness, which then stops them itself, one process group at a time, by
id.  The harness turns SIGTERM and SIGHUP into L{Interrupted} so that its
C{finally} blocks run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from types import FrameType, TracebackType
from typing import IO, Callable, Sequence

import attrs

GRACE = 10.0
"""
Seconds a process gets to exit after SIGTERM before SIGKILL.
"""


class Interrupted(BaseException):
    """
    The harness got SIGTERM or SIGHUP; like C{KeyboardInterrupt}, it unwinds
    through every C{finally}.
    """


def install_signal_handlers() -> None:
    """
    Make SIGTERM and SIGHUP raise L{Interrupted} in the main thread.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


@attrs.define(eq=False)
class Child:
    """
    One started process.

    @ivar log_path: where its standard output and error go (L{None}: a pipe,
        read with L{Supervisor.wait_output}).
    """

    name: str
    argv: list[str]
    popen: subprocess.Popen[bytes]
    log_path: str | None
    log_file: IO[bytes] | None
    started: float

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None


class Supervisor:
    """
    Starts processes and guarantees they are stopped.

    Use as a context manager: leaving it stops every child still running.
    """

    def __init__(self, say: Callable[[str], None] = print, grace: float = GRACE) -> None:
        self._say = say
        self._grace = grace
        self.children: list[Child] = []

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        log_path: str | None = None,
    ) -> Child:
        """
        Start C{argv} in a new session; its output goes to C{log_path}
        (appended) or to a pipe.
        """
        log_file: IO[bytes] | None = None
        if log_path is not None:
            log_file = open(log_path, "ab")
            out: int | IO[bytes] = log_file
        else:
            out = subprocess.PIPE
        try:
            popen = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            if log_file is not None:
                log_file.close()
            raise
        child = Child(name, list(argv), popen, log_path, log_file, time.monotonic())
        self.children.append(child)
        return child

    def signal(self, child: Child, signum: int) -> None:
        """
        Send C{signum} to C{child}'s process group (its own session).
        """
        if not child.running:
            return
        try:
            os.killpg(child.pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            # The group is gone and its id reused; signal the process itself.
            try:
                os.kill(child.pid, signum)
            except ProcessLookupError:
                pass

    def stop(self, child: Child, grace: float | None = None) -> int | None:
        """
        SIGTERM, then SIGKILL after C{grace} seconds; returns the exit status.
        """
        return self.stop_many([child], grace)[0]

    def kill(self, child: Child) -> int | None:
        """
        SIGKILL (a crash) and reap.
        """
        self.signal(child, signal.SIGKILL)
        status = child.popen.wait()
        self._close(child)
        return status

    def stop_many(self, children: Sequence[Child], grace: float | None = None) -> list[int | None]:
        """
        Stop several children at once (SIGTERM to all, then SIGKILL to those
        still running after C{grace}).
        """
        grace = self._grace if grace is None else grace
        for child in children:
            self.signal(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            remaining = deadline - time.monotonic()
            try:
                child.popen.wait(timeout=max(0.0, remaining))
            except subprocess.TimeoutExpired:
                self._say(f"{child.name} (pid {child.pid}) ignored SIGTERM; SIGKILL")
                self.signal(child, signal.SIGKILL)
                child.popen.wait()
        statuses: list[int | None] = []
        for child in children:
            self._close(child)
            statuses.append(child.popen.returncode)
        return statuses

    def stop_all(self) -> None:
        """
        Stop every child still running, and reap those that already ended.
        Safe to call more than once, and from a C{finally} block during
        Ctrl-C: a second Ctrl-C while waiting goes straight to SIGKILL.
        """
        running = [c for c in self.children if c.running]
        try:
            self.stop_many(running)
        except BaseException:
            for child in running:
                self.signal(child, signal.SIGKILL)
            for child in running:
                child.popen.wait()
            raise
        finally:
            for child in self.children:
                self._close(child)

    def wait_output(self, child: Child, timeout: float) -> tuple[int | None, str]:
        """
        Wait up to C{timeout} seconds for a piped child; stop it if it is
        still running then.  Returns its status and output.
        """
        try:
            out, _ = child.popen.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._say(f"{child.name} still running after {timeout:.0f} s; stopping it")
            self.stop(child, grace=2.0)
            out, _ = child.popen.communicate()
        self._close(child)
        return child.popen.returncode, (out or b"").decode("utf-8", "replace")

    def _close(self, child: Child) -> None:
        if child.log_file is not None and not child.running:
            child.log_file.close()
            child.log_file = None
