# -*- test-case-name: tests.service.test_forked -*-
"""
Encoding snapshots in a forked child.

Encoding the snapshot of a large farm takes seconds of CPU.  In a thread it
shares the interpreter lock with the reactor, which then waits up to a
switch interval for it at every turn, for the whole encoding: that is the
p99 of every request answered meanwhile.  A child forked at that moment sees
the state as it was (copy on write) and has an interpreter of its own, so it
encodes on another core; the reactor pays for the fork (copying page tables,
milliseconds) and the thread pool for reading the result back.

The child closes every descriptor it inherited except the one it writes to,
so that it never holds a socket open for the parent (a client would not see
its connection close, a restarted node could not bind its ports), resets the
signal handlers the reactor installed, asks Linux to kill it if the node
dies first (its work would be for nobody, on a machine where the node is
restarting), and leaves with C{os._exit}: no reactor, log observer or
C{atexit} handler of the parent's runs in it.
"""

from __future__ import annotations

import ctypes
import gc
import os
import signal
import sys
import traceback
from functools import partial
from typing import IO, Callable, NoReturn, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from ..raft import bytes_written_by

_log = Logger()
_T = TypeVar("_T")

_PR_SET_PDEATHSIG = 1


def _find_prctl() -> Callable[..., int] | None:
    """
    Linux's C{prctl}, looked up once in the parent: a child forked from a
    process with threads must not load anything itself.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return prctl


_prctl = _find_prctl()


class ChildFailed(Exception):
    """
    The child did not produce the bytes: it raised (the traceback is in the
    message), or was killed.
    """


def run_in_child(reactor: IReactorThreads, work: Callable[[IO[bytes]], None]) -> Deferred[bytes]:
    """
    Call C{work} in a forked child with a file to write its result into
    (a seekable memory file), and fire with what it wrote: a snapshot's
    encoder writes each batch as it encodes it, and never holds the
    snapshot whole.

    When the process cannot fork (no memory for the page tables, too many
    processes), C{work} runs in the reactor's thread pool instead.

    @raise ChildFailed: (errback) if C{work} raised in the child or the
        child was killed.
    """
    try:
        out = os.memfd_create("raft3d-snapshot", os.MFD_CLOEXEC)
    except OSError as e:
        return _in_thread(reactor, work, e)
    parent = os.getpid()
    try:
        pid = os.fork()
    except OSError as e:
        os.close(out)
        return _in_thread(reactor, work, e)
    if pid == 0:
        _child(work, out, parent)
    return run_in_pool(reactor, partial(_collect, pid, out))


def run_in_pool(reactor: IReactorThreads, work: Callable[[], _T]) -> Deferred[_T]:
    """
    Call C{work} in a thread of the reactor's pool.
    """
    return deferToThreadPool(reactor, reactor.getThreadPool(), work)


def _in_thread(
    reactor: IReactorThreads, work: Callable[[IO[bytes]], None], e: OSError
) -> Deferred[bytes]:
    _log.warn("cannot fork to encode a snapshot ({error}); encoding in a thread", error=e)
    return run_in_pool(reactor, partial(bytes_written_by, work))


def _child(work: Callable[[IO[bytes]], None], out: int, parent: int) -> NoReturn:
    code = 1
    try:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:
            # The node died before the request above took effect.
            os._exit(1)
        # A collection would touch every object of the parent's state,
        # copying every page of it; this process lives for one call.
        gc.disable()
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        os.closerange(3, out)
        limit = os.sysconf("SC_OPEN_MAX")
        os.closerange(out + 1, limit if limit > 0 else 1 << 16)
        with open(out, "wb", closefd=False) as file:
            work(file)
        code = 0
    except BaseException:
        try:
            os.lseek(out, 0, os.SEEK_END)
            _write_all(out, traceback.format_exc().encode("utf-8", "replace"))
        except BaseException:
            pass
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _collect(pid: int, out: int) -> bytes:
    """
    Wait for the child (in a pool thread) and read what it wrote.
    """
    try:
        _, status = os.waitpid(pid, 0)
        size = os.fstat(out).st_size
        data = os.pread(out, size, 0)
        while len(data) < size:
            # Only a signal cuts a read of a memory file short.
            more = os.pread(out, size - len(data), len(data))
            if not more:
                break
            data += more
    finally:
        os.close(out)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        said = data[-4000:].decode("utf-8", "replace").strip()
        how = f"exited with {code}" if code > 0 else f"was killed by signal {-code}"
        raise ChildFailed(f"the snapshot encoder {how}" + (f": {said}" if said else ""))
    return data
