"""
Tests for L{raft3d.service._http}: the start-up gate, the site and the
forwarding client's pool service.
"""

from __future__ import annotations

import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.resource import Resource

from raft3d.api import BoundedRequest
from raft3d.service import NOT_STARTED_MESSAGE, APISite, ClientPoolService, StartupGate

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
