"""
Tests for L{raft3d.service._http}: the start-up gate, the site and the
forwarding client's pool service.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.resource import Resource

from raft3d.api import BoundedRequest
from raft3d.service import (
    NOT_STARTED_MESSAGE,
    APISite,
    ClientPoolService,
    GuardedHTTPChannel,
    HTTPLimits,
    StartupGate,
)
from raft3d.transport import ConnectionLimits

from ._fakes import temp_dir


class _Echo(Resource):
    """
    A leaf that answers with the path it was given.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b"/".join([b"", *request.postpath])


class StartupGateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.gate = StartupGate(_Echo())
        self.client = StubTreq(self.gate)

    def get(self, url: str) -> tuple[int, Any, bytes]:
        response = self.successResultOf(self.client.get(url))
        body = self.successResultOf(self.client.content(response))
        return response.code, response.headers, body

    def test_closed(self) -> None:
        """
        Before the node has started every request gets a 503 C{no_leader}
        in the API's error shape, with C{Retry-After}, so clients retry.
        """
        code, headers, body = self.get("http://node/api/v1/printers")
        self.assertEqual(code, 503)
        self.assertEqual(headers.getRawHeaders("retry-after"), ["1"])
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(
            json.loads(body), {"error": {"code": "no_leader", "message": NOT_STARTED_MESSAGE}}
        )

    def test_open(self) -> None:
        """
        Once open, requests reach the target with their whole path, as if
        the target were the root.
        """
        self.gate.open()
        self.assertEqual(
            self.get("http://node/api/v1/printers?limit=1")[:3:2], (200, b"/api/v1/printers")
        )
        self.assertEqual(self.get("http://node/status")[2], b"/status")


class APISiteTests(SynchronousTestCase):
    def test_bounded_requests(self) -> None:
        """
        The site builds L{BoundedRequest}s, so huge bodies are not buffered,
        and is quiet about starting.
        """
        site = APISite(_Echo())
        self.assertIs(site.requestFactory, BoundedRequest)
        self.assertFalse(site.noisy)

    def test_access_log_only_when_asked(self) -> None:
        """
        Without C{--access-log} no request is logged (monitoring polls
        C{/status} constantly); with it, requests go to the access log.
        """
        logged: list[object] = []
        self.patch(http.HTTPFactory, "log", lambda factory, request: logged.append(request))
        request = object()
        APISite(_Echo()).log(request)  # type: ignore[arg-type]
        self.assertEqual(logged, [])
        APISite(_Echo(), temp_dir(self)).log(request)  # type: ignore[arg-type]
        self.assertEqual(logged, [request])


class APISiteLimitsTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """
        By default the site admits 900 connections, 700 of them waiting
        for a request, closes silent connections after 60 s and gives each
        request 30 s to arrive; it does not parse form bodies.
        """
        self.assertEqual(
            HTTPLimits(),
            HTTPLimits(max_connections=900, max_pending=700, idle_timeout=60, request_timeout=30),
        )
        site = APISite(_Echo(), reactor=Clock())
        self.assertEqual(site.timeOut, 60)
        self.assertFalse(site._parsePOSTFormSubmission)
        self.assertEqual(site.limiter.limits, ConnectionLimits(900, 700))

    def test_validation(self) -> None:
        """
        Timeouts are positive or L{None}; caps are at least 1 (checked when
        the site is built).
        """
        self.assertRaises(ValueError, HTTPLimits, idle_timeout=0)
        self.assertRaises(ValueError, HTTPLimits, request_timeout=-1)
        self.assertIsNone(HTTPLimits(idle_timeout=None).idle_timeout)
        self.assertRaises(ValueError, APISite, _Echo(), reactor=Clock(), limits=HTTPLimits(0))

    def test_channels(self) -> None:
        """
        Each connection gets a L{GuardedHTTPChannel} configured from the
        limits and the request factory's body limit, and admitted by the
        site's limiter; over the cap there is no protocol at all, so
        Twisted closes the socket at once.
        """
        limits = HTTPLimits(max_connections=1, idle_timeout=7, request_timeout=3)
        site = APISite(_Echo(), reactor=Clock(), limits=limits)
        channel = site.buildProtocol(IPv4Address("TCP", "10.0.0.1", 1))
        assert channel is not None
        self.assertIsInstance(channel, GuardedHTTPChannel)
        self.assertEqual((channel.timeOut, channel.request_timeout), (7, 3))
        self.assertEqual(channel.max_body_bytes, BoundedRequest.max_body_bytes)
        self.assertIsNotNone(channel.admission)
        self.assertIsNone(site.buildProtocol(IPv4Address("TCP", "10.0.0.2", 1)))


class _Pool:
    def __init__(self) -> None:
        self.closing: Deferred[None] = Deferred()

    def closeCachedConnections(self) -> Deferred[None]:
        return self.closing


class ClientPoolServiceTests(SynchronousTestCase):
    def test_stop_closes_connections(self) -> None:
        """
        Stopping the service closes the pool's idle connections and waits
        until they are closed.
        """
        pool = _Pool()
        service = ClientPoolService(pool)  # type: ignore[arg-type]
        service.startService()
        d = service.stopService()
        self.assertNoResult(d)
        pool.closing.callback(None)
        self.successResultOf(d)
        self.assertFalse(service.running)
