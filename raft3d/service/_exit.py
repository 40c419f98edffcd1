# -*- test-case-name: tests.service.test_exit -*-
"""
Ending the process when the node cannot go on.

A node whose storage can no longer be trusted halts (L{RaftNode.on_fatal});
a node whose data directory is corrupt or belongs to another node must not
start.  Either way the right move is to exit with a non-zero status, so
that a supervisor (systemd's C{Restart=on-failure}) restarts it from disk
or an operator sees the failure.  C{twistd} has no way to choose its exit
status, so L{FatalExit} stops the reactor (services stop, files close) and
ends the process with its status once the shutdown is over, or after a
grace period if the shutdown hangs.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.logger import Logger

EXIT_FATAL = 70
"""
The exit status after the node halted (C{EX_SOFTWARE} of C{sysexits.h}):
restarting from disk is the cure.
"""

EXIT_CANNOT_START = 78
"""
The exit status when the node refuses to start (C{EX_CONFIG}): its data
directory is corrupt or belongs to another node or cluster.  Restarting
does not help, so the systemd unit lists it in C{RestartPreventExitStatus}.
"""


class FatalExit:
    """
    Call it with a reason (and a status, L{EXIT_FATAL} by default) to log
    it and end the process with that status.

    @param reactor: the running (or about to run) reactor.
    @param exit: ends the process at once; C{os._exit} because the reactor
        has already shut down when it is called.
    @param grace: seconds to wait for the shutdown before exiting anyway.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorCore,
        *,
        exit: Callable[[int], object] = os._exit,
        grace: float = 10.0,
    ) -> None:
        self._reactor = reactor
        self._exit = exit
        self._grace = grace
        self.reason: str | None = None
        self.status = EXIT_FATAL
        self._exited = False

    def __call__(self, reason: str, status: int = EXIT_FATAL) -> None:
        self.log.critical(
            "Fatal: {reason}. Exiting with status {status}.", reason=reason, status=status
        )
        if self.reason is not None:
            return
        self.reason = reason
        self.status = status
        self._reactor.addSystemEventTrigger("after", "shutdown", self._exit_now)
        self._reactor.callWhenRunning(self._stop)

    def _stop(self) -> None:
        IReactorTime(self._reactor).callLater(self._grace, self._exit_now)
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            pass

    def _exit_now(self) -> None:
        if self._exited:
            return
        self._exited = True
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        self._exit(self.status)
