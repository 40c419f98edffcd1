"""
Tests for L{raft3d.service._forked}: encoding in a forked child, on real
processes and the real reactor.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import sys
import time
from typing import IO, Any, Callable

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from raft3d.service import ChildFailed, _forked, run_in_child

reactor: Any = _reactor


def _writes(data: bytes) -> Callable[[IO[bytes]], None]:
    """
    Work that writes C{data}, in the process it runs in.
    """
    return lambda out: out.write(data) and None


def _write_pid(out: IO[bytes]) -> None:
    """
    Write the id of the process this runs in.
    """
    out.write(str(os.getpid()).encode())


class RunInChildTests(TestCase):
    """
    L{run_in_child} fires with the bytes the function wrote, in the child,
    into the file it was given.
    """

    @inlineCallbacks
    def test_returns_bytes(self) -> Any:
        """
        Large results (far more than a pipe holds) come back whole, also
        when written out of order, and the child worked on the state as it
        was when it was forked: a change the parent makes afterwards is not
        in them.
        """
        state = [bytes([i % 251]) * 1000 for i in range(20_000)]

        def work(out: IO[bytes]) -> None:
            out.write(bytes(7))
            out.write(state[0][7:])
            for piece in state[1:]:
                out.write(piece)
            out.seek(0)
            out.write(state[0][:7])
            out.seek(0, os.SEEK_END)

        expected = b"".join(state)
        d = run_in_child(reactor, work)
        state.clear()
        data = yield d
        self.assertEqual(data, expected)
        self.assertEqual(len(data), 20_000_000)

    @inlineCallbacks
    def test_runs_in_another_process(self) -> Any:
        """
        The function runs in a child: its process id is not ours.
        """
        data = yield run_in_child(reactor, _write_pid)
        self.assertNotEqual(int(data), os.getpid())

    @inlineCallbacks
    def test_empty(self) -> Any:
        """
        An empty result is a result.
        """
        data = yield run_in_child(reactor, lambda out: None)
        self.assertEqual(data, b"")

    @inlineCallbacks
    def test_raises(self) -> Any:
        """
        An exception in the child fails the Deferred with L{ChildFailed},
        whose message carries the child's traceback.
        """

        def work(out: IO[bytes]) -> None:
            out.write(b"half a snapshot")
            out.seek(0)
            raise RuntimeError("no room on the build plate")

        d = run_in_child(reactor, work)
        failure = yield self.assertFailure(d, ChildFailed)
        self.assertIn("exited with 1", str(failure))
        self.assertIn("RuntimeError: no room on the build plate", str(failure))

    @inlineCallbacks
    def test_killed(self) -> Any:
        """
        A child killed by a signal fails the Deferred with L{ChildFailed}
        naming the signal.
        """

        def work(out: IO[bytes]) -> None:
            os.kill(os.getpid(), 9)

        failure = yield self.assertFailure(run_in_child(reactor, work), ChildFailed)
        self.assertIn("killed by signal 9", str(failure))

    @inlineCallbacks
    def test_inherited_descriptors_closed(self) -> Any:
        """
        The child holds none of the parent's descriptors: a listening socket
        of the parent is closed in the child, so closing it in the parent
        frees the port at once.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        fd = listener.fileno()

        def work(out: IO[bytes]) -> None:
            try:
                os.fstat(fd)
            except OSError as e:
                out.write(errno.errorcode[e.errno].encode())
                return
            out.write(b"open")

        data = yield run_in_child(reactor, work)
        self.assertEqual(data, b"EBADF")

    @inlineCallbacks
    def test_cannot_fork(self) -> Any:
        """
        When the process cannot fork, the function runs in the reactor's
        thread pool instead, and that is logged.
        """

        def refuse() -> int:
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")

        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.patch(_forked.os, "fork", refuse)
        data = yield run_in_child(reactor, _write_pid)
        self.assertEqual(int(data), os.getpid())
        warned = [e for e in events if e.get("log_namespace") == _forked.__name__]
        self.assertEqual(len(warned), 1)
        self.assertIn("encoding in a thread", warned[0]["log_format"])
        self.assertIn("Resource temporarily unavailable", str(warned[0]["error"]))

    def test_concurrent(self) -> Deferred[Any]:
        """
        Several children at once each answer with their own result.
        """
        ds = [run_in_child(reactor, _writes(b"%d" % i * 1000)) for i in range(4)]
        d = gatherResults(ds)
        d.addCallback(lambda got: self.assertEqual(got, [b"%d" % i * 1000 for i in range(4)]))
        return d


_ORPHAN_SCRIPT = """
import os, sys, time
from twisted.internet import reactor
from raft3d.service import run_in_child

def work(out):
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(120)

reactor.callWhenRunning(run_in_child, reactor, work)
reactor.run()
"""


def _gone(pid: int) -> bool:
    """
    Whether process C{pid} has exited (a zombie waiting for its new parent
    to reap it counts as exited).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True


class OrphanTests(TestCase):
    """
    A child whose node dies does not outlive it.
    """

    def test_dies_with_the_node(self) -> None:
        """
        When the node's process is killed (SIGKILL) while its child is
        encoding, the child is killed too instead of finishing its work
        for nobody.
        """
        if not sys.platform.startswith("linux"):
            raise self.skipTest("parent death signals are Linux's")
        pid_file = self.mktemp()
        node = subprocess.Popen(
            [sys.executable, "-c", _ORPHAN_SCRIPT, pid_file],
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        self.addCleanup(node.wait)
        self.addCleanup(lambda: node.poll() is None and node.kill())
        deadline = time.monotonic() + 60
        while not os.path.exists(pid_file):
            self.assertIsNone(node.poll(), "the node exited before its child started")
            self.assertLess(time.monotonic(), deadline, "the child never started")
            time.sleep(0.05)
        with open(pid_file) as f:
            child = int(f.read())
        self.addCleanup(lambda: _gone(child) or os.kill(child, signal.SIGKILL))
        self.assertFalse(_gone(child))
        node.kill()
        node.wait()
        deadline = time.monotonic() + 30
        while not _gone(child):
            self.assertLess(time.monotonic(), deadline, "the child outlived its node")
            time.sleep(0.05)
