"""
Fakes shared by the service tests: a peer transport that records what the
service asks of it and answers probes from a table, and a log capture.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Callable, Mapping

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import LogEvent, formatEvent, globalLogPublisher
from zope.interface import implementer

from raft3d.raft import IPeerTransport, Message
from raft3d.transport import ProbeFailed


@implementer(IPeerTransport)
class FakeTransport:
    """
    An L{IPeerTransport} with C{probe} and C{set_cluster_id}, like
    L{raft3d.transport.TCPPeerTransport}.

    @ivar answers: address to C{(node_id, cluster_id, http_addr)}, or to an
        error message for a failed probe; addresses not in it never answer
        (the probe's Deferred stays pending until cancelled).
    """

    def __init__(self) -> None:
        self.answers: dict[str, tuple[str, str, str] | str] = {}
        self.probed: list[str] = []
        self.pending: list[Deferred[tuple[str, str, str]]] = []
        self.started = False
        self.stopped = False
        self.cluster_id = ""
        self.peers: dict[str, str] = {}
        self.sent: list[tuple[str, Message]] = []
        self.receiver: Callable[[Message], None] | None = None

    def start(self, receiver: Callable[[Message], None]) -> None:
        self.started = True
        self.receiver = receiver

    def send(self, to: str, message: Message) -> None:
        self.sent.append((to, message))

    def set_peers(self, peers: Mapping[str, str]) -> None:
        self.peers = dict(peers)

    def set_cluster_id(self, cluster_id: str) -> None:
        self.cluster_id = cluster_id

    def stop(self) -> Deferred[None]:
        self.stopped = True
        return succeed(None)

    def probe(self, addr: str) -> Deferred[tuple[str, str, str]]:
        self.probed.append(addr)
        answer = self.answers.get(addr)
        if isinstance(answer, tuple):
            return succeed(answer)
        if isinstance(answer, str):
            return fail(ProbeFailed(f"probing {addr}: {answer}"))
        d: Deferred[tuple[str, str, str]] = Deferred()
        self.pending.append(d)
        return d


class LogCapture:
    """
    Collects the events published to the global log publisher while a test
    runs (call L{install} from C{setUp}).
    """

    def __init__(self) -> None:
        self.events: list[LogEvent] = []

    def install(self, test: Any) -> None:
        globalLogPublisher.addObserver(self.events.append)
        test.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self, level: str | None = None) -> list[str]:
        return [
            str(formatEvent(e))
            for e in self.events
            if level is None or getattr(e.get("log_level"), "name", None) == level
        ]

    def matching(self, *fragments: str, level: str | None = None) -> list[str]:
        return [line for line in self.lines(level) if all(f in line for f in fragments)]


def temp_dir(test: Any) -> str:
    """
    A fresh directory under the system's temporary directory, removed after
    the test (C{mktemp} would create it under the current directory, which
    is the repository when running pytest).
    """
    path = tempfile.mkdtemp(prefix="raft3d-test-")
    test.addCleanup(shutil.rmtree, path, ignore_errors=True)
    return os.path.join(path, "data")
