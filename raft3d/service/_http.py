# -*- test-case-name: tests.service.test_http -*-
"""
The HTTP side of a node: the site that serves the API, a gate that holds
requests off until the Raft node has started, and the client pool used to
forward writes to the leader.

The site also bounds what clients can hold (L{HTTPLimits}): connections in
total and still waiting for a complete request, the time a request may take
to arrive (see L{GuardedHTTPChannel}), and idle connections.

The gate exists because the bootstrap node binds its HTTP port at once (so
that a port clash fails the start) but cannot start its Raft node until
every peer has answered; meanwhile every request gets a 503 C{no_leader}
with C{Retry-After}, which clients already retry, rather than an error from
a node that has no state yet.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger
from twisted.web import http
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from raft3d.api import RETRY_AFTER_SECONDS, BoundedRequest, FastPath, Route
from raft3d.transport import Admission, ConnectionLimiter, ConnectionLimits, ThrottledLog

from ._channel import GuardedHTTPChannel
from ._lean import AnswerMemo, HeadCache, LeanHTTPChannel, LeanSweeper

NOT_STARTED_MESSAGE = "this node is still starting (a bootstrap node waits for all its peers)"


class StartupGate(Resource):
    """
    A root resource that answers 503 until L{open}, then hands every request
    to C{target} unchanged (it is a leaf, so C{target} sees the whole path,
    exactly as if it were the root).
    """

    isLeaf = True

    def __init__(self, target: IResource, fast: FastPath | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._target = target
        self._fast = fast
        self.is_open = False

    def open(self) -> None:
        """
        Let requests through from now on.
        """
        self.is_open = True

    def route(self, request: Any) -> Route | None:
        """
        As L{FastPath.route}: the route of C{fast} once open, and none
        before (the request then goes through C{twisted.web} to L{render}).
        """
        if self.is_open and self._fast is not None:
            return self._fast.route(request)
        return None

    def serve(self, request: Any, found: Route) -> None:
        assert self._fast is not None
        self._fast.serve(request, found)

    def render(self, request: IRequest) -> Any:
        if self.is_open:
            return self._target.render(request)  # type: ignore[no-untyped-call]
        assert isinstance(request, Request)
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"application/json")  # type: ignore[no-untyped-call]
        retry_after = str(RETRY_AFTER_SECONDS).encode("ascii")
        request.setHeader(b"retry-after", retry_after)  # type: ignore[no-untyped-call]
        body = {"error": {"code": "no_leader", "message": NOT_STARTED_MESSAGE}}
        return json.dumps(body, separators=(",", ":")).encode("utf-8")


def _positive_or_none(instance: Any, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive or None, not {value!r}")


@attrs.frozen
class HTTPLimits:
    """
    What the API's clients may hold.

    @ivar max_connections: connections open at once; more are refused.
    @ivar max_pending: connections waiting for or receiving a request at
        once (idle keep-alive connections included); a new connection
        closes the one that has been waiting the longest.
    @ivar idle_timeout: seconds a connection may stay silent (between
        requests, or in the middle of one) before it is closed.
    @ivar request_timeout: seconds a client has to send a whole request
        (request line, headers and body) from its first byte; a slower one
        gets a 408 and is closed.
    """

    max_connections: int = 900
    max_pending: int = 700
    idle_timeout: float | None = attrs.field(default=60.0, validator=_positive_or_none)
    request_timeout: float | None = attrs.field(default=30.0, validator=_positive_or_none)

    def connection_limits(self) -> ConnectionLimits:
        return ConnectionLimits(max_connections=self.max_connections, max_pending=self.max_pending)


class APISite(Site):
    """
    The node's C{Site}: bounded request bodies and connections (see
    L{HTTPLimits}), JSON answers to broken HTTP, no "Starting factory"
    noise, and an access log only when one was asked for
    (C{--access-log}), since monitoring polls C{/status} all day.

    Given a L{FastPath}, and no access log, its connections are
    L{LeanHTTPChannel}s, which serve the hot routes themselves and hand
    anything else to a L{GuardedHTTPChannel}.

    Form bodies are not parsed into C{request.args}: the API reads JSON
    whatever the declared type, and parsing a 1 MiB "multipart" body is
    work for nothing.
    """

    noisy = False
    protocol = GuardedHTTPChannel  # type: ignore[assignment]
    log_events = Logger()

    def __init__(
        self,
        resource: IResource,
        access_log: str | None = None,
        *,
        reactor: IReactorTime | None = None,
        limits: HTTPLimits = HTTPLimits(),
        fast: FastPath | None = None,
    ) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            resource,
            logPath=access_log,
            timeout=limits.idle_timeout,
            reactor=reactor,
            parsePOSTFormSubmission=False,
        )
        self.requestFactory = BoundedRequest
        self._access_log = access_log
        self.limits = limits
        clock: IReactorTime = self.reactor
        self.limiter = ConnectionLimiter(
            "HTTP API", limits.connection_limits(), clock, self.log_events
        )
        self._timeouts = ThrottledLog(clock, self.log_events)
        self._clock = clock
        self._fast = fast if access_log is None else None
        self.sweeper = LeanSweeper(
            clock, limits.request_timeout, limits.idle_timeout, self._timeouts
        )
        self.memo = AnswerMemo()
        self.heads = HeadCache()

    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress | None
    ) -> GuardedHTTPChannel | LeanHTTPChannel | None:
        admission = self.limiter.admit(addr)
        if admission is None:
            return None
        max_body = getattr(self.requestFactory, "max_body_bytes", None)
        if self._fast is not None and max_body is not None:
            return LeanHTTPChannel(
                self._fast,
                partial(self._guarded, addr),
                admission,
                self.sweeper,
                self._clock,
                max_body,
                self.memo,
                self.heads,
            )
        return self._guarded(addr, admission)

    def _guarded(self, addr: IAddress | None, admission: Admission) -> GuardedHTTPChannel:
        channel = super().buildProtocol(addr)  # type: ignore[no-untyped-call]
        assert isinstance(channel, GuardedHTTPChannel)
        channel.admission = admission
        channel.request_timeout = self.limits.request_timeout
        channel.max_body_bytes = getattr(self.requestFactory, "max_body_bytes", None)
        channel.timeouts = self._timeouts
        return channel

    def stopFactory(self) -> None:
        self.sweeper.stop()
        super().stopFactory()

    def log(self, request: http.Request) -> None:
        if self._access_log is not None:
            super().log(request)


class ClientPoolService(Service):
    """
    Closes the forwarding client's idle connections to the leader on
    shutdown, so that the process stops without dangling sockets.
    """

    def __init__(self, pool: HTTPConnectionPool) -> None:
        self._pool = pool

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        d: Deferred[None] = self._pool.closeCachedConnections()  # type: ignore[no-untyped-call]
        return d
