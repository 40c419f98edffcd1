# -*- test-case-name: tests.service.test_http -*-
"""
The HTTP side of a node: the site that serves the API, a gate that holds
requests off until the Raft node has started, and the client pool used to
forward writes to the leader.

The gate exists because the bootstrap node binds its HTTP port at once (so
that a port clash fails the start) but cannot start its Raft node until
every peer has answered; meanwhile every request gets a 503 C{no_leader}
with C{Retry-After}, which clients already retry, rather than an error from
a node that has no state yet.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.web import http
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from raft3d.api import RETRY_AFTER_SECONDS, BoundedRequest

NOT_STARTED_MESSAGE = "this node is still starting (a bootstrap node waits for all its peers)"


class StartupGate(Resource):
    """
    A root resource that answers 503 until L{open}, then hands every request
    to C{target} unchanged (it is a leaf, so C{target} sees the whole path,
    exactly as if it were the root).
    """

    isLeaf = True

    def __init__(self, target: IResource) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._target = target
        self.is_open = False

    def open(self) -> None:
        """
        Let requests through from now on.
        """
        self.is_open = True

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


class APISite(Site):
    """
    The node's C{Site}: bounded request bodies, no "Starting factory" noise,
    and an access log only when one was asked for (C{--access-log}), since
    monitoring polls C{/status} all day.
    """

    noisy = False

    def __init__(self, resource: IResource, access_log: str | None = None) -> None:
        super().__init__(resource, logPath=access_log)  # type: ignore[no-untyped-call]
        self.requestFactory = BoundedRequest
        self._access_log = access_log

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
