"""
Tests for L{raft3d.api._dispatch}.

The fast path must answer every request byte for byte as Klein does: twin
nodes, one serving with the fast path and one through Klein only, get the
same raw requests on the real stack (L{APISite} on a C{StringTransport}) and
must write the same bytes.  A spy on the resource's way to Klein tells which
path a request took.  Routing is also compared with werkzeug directly, on
generated paths, and L{Deadlines} is driven by a L{Clock}.
"""

from __future__ import annotations

import json
import re
from typing import Any, Callable
from urllib.parse import quote, unquote_to_bytes

from hypothesis import given, settings
from hypothesis import strategies as st
from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from werkzeug.exceptions import HTTPException
from werkzeug.routing import BaseConverter, Map

from raft3d.api import FarmAPI
from raft3d.api._app import _JSONKleinResource
from raft3d.api._dispatch import Deadlines, FastKleinResource, FastRoutes
from raft3d.raft import (
    CommitTimeout,
    NoLeader,
    NotLeader,
    ProposalDropped,
    StorageFull,
)
from raft3d.raft._node import LeaderDiskFull

from ..service._rawhttp import RawClient, RawResponse, make_site
from ._fakes import FOLLOWER, LEADER, Node

PRINTER, FILAMENT, JOB = "n1-id-1", "n1-id-2", "n1-id-3"
PRINTERS = "/api/v1/printers"
FILAMENTS = "/api/v1/filaments"
JOBS = "/api/v1/print_jobs"

_DATE = re.compile(rb"\r\nDate: [^\r]*")


def raw(
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    host: bytes | None = b"127.0.0.1:8001",
) -> bytes:
    """
    An HTTP/1.1 request, as bytes.
    """
    lines = [f"{method} {target} HTTP/1.1".encode()]
    if host is not None:
        lines.append(b"Host: " + host)
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}".encode())
    if body or method == "POST":
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


_FRAMING = frozenset({"date", "server", "content-length", "transfer-encoding", "connection"})


def _semantics(response: RawResponse) -> tuple[int, dict[str, list[str]], bytes]:
    """
    What a response says, without how it is framed.
    """
    headers = {k: v for k, v in response.headers.items() if k not in _FRAMING}
    return response.status, headers, response.body


class Twins:
    """
    Three identical nodes (same fake engine, ids and clock): the first
    served by C{twisted.web} with the fast path, the second through Klein
    only, the third on lean connections (L{raft3d.service._lean}).
    """

    def __init__(
        self,
        case: SynchronousTestCase,
        member: Any = LEADER,
        leader: Any = LEADER,
        http_client: Callable[[], Any] | None = None,
        **api_kwargs: Any,
    ) -> None:
        self.case = case
        self.nodes = [
            Node(member, leader, http_client() if http_client else None, **api_kwargs)
            for _ in range(3)
        ]
        resources = [
            node.api.resource(fast=fast)
            for node, fast in zip(self.nodes, (True, False, True), strict=True)
        ]
        self.sites = [
            make_site(resource, clock=node.clock, fast=resource if i == 2 else None)[0]
            for i, (node, resource) in enumerate(zip(self.nodes, resources, strict=True))
        ]
        self.slow = 0
        render_slow = _JSONKleinResource.render_slow

        def counting(resource: _JSONKleinResource, request: Any) -> Any:
            self.slow += 1
            return render_slow(resource, request)

        case.patch(_JSONKleinResource, "render_slow", counting)

    def engine(self, **attributes: Any) -> None:
        """
        Set the same attributes on all fake engines.
        """
        for node in self.nodes:
            for name, value in attributes.items():
                setattr(node.node, name, value)

    def advance(self, seconds: float) -> None:
        for node in self.nodes:
            node.clock.advance(seconds)

    def send(self, request: bytes, fast: bool, lean: bool | None = None) -> list[RawClient]:
        """
        Send C{request} to all three on new connections; the first takes
        the fast path if and only if C{fast}, the second always goes
        through Klein's routing, the third serves it itself if and only if
        C{lean} (by default, C{fast}) and otherwise hands it to the first's
        stack.
        """
        clients = []
        for i, site in enumerate(self.sites):
            before = self.slow
            client = RawClient(site)
            client.send(request)
            clients.append(client)
            taken_by_klein = self.slow - before
            expected = 0 if fast and i != 1 else 1
            self.case.assertEqual(taken_by_klein, expected, request[:200])
        self.case.assertEqual(clients[2].lean, fast if lean is None else lean, request[:200])
        return clients

    def same(self, clients: list[RawClient]) -> list[RawResponse]:
        """
        The first two wrote the same bytes (but the date), and the third
        the same responses but for their framing; their responses.
        """
        fast, klein = (_DATE.sub(b"", c.transport.value()) for c in clients[:2])
        self.case.assertEqual(fast, klein)
        responses = clients[0].responses()
        lean = clients[2].responses()
        self.case.assertEqual([_semantics(r) for r in lean], [_semantics(r) for r in responses])
        return responses

    def exchange(self, request: bytes, fast: bool = True, lean: bool | None = None) -> RawResponse:
        """
        One request, answered at once and alike by all three.
        """
        [response] = self.same(self.send(request, fast, lean))
        return response


class EquivalenceTests(SynchronousTestCase):
    """
    Requests the fast path takes, and those it leaves to Klein, are
    answered alike, errors included.
    """

    def setUp(self) -> None:
        self.twins = Twins(self)
        t = self.twins
        self.assertEqual(
            t.exchange(raw("POST", PRINTERS, b'{"company":"Prusa","model":"MK4"}')).status, 201
        )
        filament = b'{"type":"PLA","color":"red","total_weight_in_grams":1000}'
        self.assertEqual(t.exchange(raw("POST", FILAMENTS, filament)).status, 201)
        job = (
            f'{{"printer_id":"{PRINTER}","filament_id":"{FILAMENT}",'
            '"filepath":"a.gcode","print_weight_in_grams":100}'
        ).encode()
        self.assertEqual(t.exchange(raw("POST", JOBS, job)).status, 201)

    def check(self, cases: list[tuple[bytes, bool, int]]) -> None:
        for request, fast, status in cases:
            response = self.twins.exchange(request, fast)
            self.assertEqual(response.status, status, request[:200])
            self.assertEqual(response.header("content-type"), "application/json", request[:200])

    def test_writes(self) -> None:
        """
        Creates of all three kinds, with and without an Idempotency-Key,
        and refused ones (bad JSON, unknown fields, query parameters, too
        large, unknown references, not enough filament) are the same.
        """
        job = f'{{"printer_id":"{PRINTER}","filament_id":"{FILAMENT}","filepath":"f",'
        key = {"Idempotency-Key": "k-1"}
        self.check(
            [
                (raw("POST", PRINTERS, b'{"company":"a","model":"b"}'), True, 201),
                (raw("POST", PRINTERS, b'{"company":"a","model":"b"}', key), True, 201),
                (raw("POST", PRINTERS, b'{"company":"a","model":"b"}', key), True, 201),
                (
                    raw(
                        "POST",
                        FILAMENTS,
                        b'{"type":"PLA","color":"b","total_weight_in_grams":5}',
                        key,
                    ),
                    True,
                    422,
                ),
                (raw("POST", PRINTERS, b'{"company":"a"}'), True, 400),
                (raw("POST", PRINTERS, b"{bad"), True, 400),
                (raw("POST", PRINTERS + "?x=1", b'{"company":"a","model":"b"}'), True, 400),
                (
                    raw(
                        "POST",
                        PRINTERS,
                        b'{"company":"a","model":"b"}',
                        {"Content-Type": "application/x-www-form-urlencoded"},
                    ),
                    True,
                    201,
                ),
                (
                    raw(
                        "POST", FILAMENTS, b'{"type":"PETG","color":"b","total_weight_in_grams":5}'
                    ),
                    True,
                    201,
                ),
                (raw("POST", FILAMENTS, b'{"type":"wood","color":"b"}'), True, 400),
                (raw("POST", JOBS, (job + '"print_weight_in_grams":50}').encode()), True, 201),
                (raw("POST", JOBS, (job + '"print_weight_in_grams":5000}').encode()), True, 422),
                (raw("POST", JOBS, job.replace(PRINTER, "nope").encode() + b'"x":1}'), True, 400),
            ]
        )

    def test_body_too_large(self) -> None:
        """
        A body over the limit is the same 413.
        """
        small = Twins(self, max_body_bytes=40)
        for size, status in ((40, 400), (41, 413)):
            response = small.exchange(raw("POST", PRINTERS, b"x" * size))
            self.assertEqual(response.status, status)

    def test_status_changes(self) -> None:
        """
        Status changes (query or body, allowed or not, unknown or over-long
        job ids) are the same.
        """
        status = f"{JOBS}/{JOB}/status"
        self.check(
            [
                (raw("POST", status + "?status=running"), True, 200),
                (raw("POST", status, b'{"status":"Done"}'), True, 200),
                (raw("POST", status + "?status=Queued"), True, 409),
                (raw("POST", status + "?status=Paused"), True, 400),
                (raw("POST", status), True, 400),
                (raw("POST", f"{JOBS}/nope/status?status=Done"), True, 404),
                (raw("POST", f"{JOBS}/{'x' * 65}/status?status=Done"), True, 404),
                (raw("POST", f"{JOBS}/a%2Fb/status?status=Done"), False, 404),
                (raw("POST", f"{JOBS}//status?status=Done"), False, 405),
                (raw("GET", status), False, 405),
            ]
        )

    def test_reads(self) -> None:
        """
        Listings (pages with a Link, filters, stale reads, bad parameters),
        single objects and C{/status} are the same.
        """
        self.check(
            [
                (raw("GET", PRINTERS), True, 200),
                (raw("GET", FILAMENTS + "?limit=1&consistency=stale"), True, 200),
                (raw("GET", JOBS + "?status=queued&printer_id=" + PRINTER), True, 200),
                (raw("GET", PRINTERS + "?limit=0"), True, 400),
                (raw("GET", PRINTERS + "?cursor=abc"), True, 400),
                (raw("GET", JOBS + "?status=Paused"), True, 400),
                (raw("GET", PRINTERS + "?consistency=eventual"), True, 400),
                (raw("GET", f"{PRINTERS}/{PRINTER}"), True, 200),
                (raw("GET", f"{FILAMENTS}/{FILAMENT}?consistency=STALE"), True, 200),
                (raw("GET", f"{JOBS}/{JOB}"), True, 200),
                (raw("GET", f"{JOBS}/{JOB}?limit=3"), True, 400),
                (raw("GET", "/status"), True, 200),
            ]
        )
        page = self.twins.exchange(raw("GET", PRINTERS + "?limit=1"))
        self.assertIsNone(page.header("link"))
        self.twins.exchange(raw("POST", PRINTERS, b'{"company":"a","model":"b"}'))
        page = self.twins.exchange(raw("GET", PRINTERS + "?limit=1"))
        self.assertIn('rel="next"', page.header("link") or "")

    def test_odd_ids(self) -> None:
        """
        Ids are percent-decoded and taken as werkzeug takes them (UTF-8,
        spaces, dots, a literal %); an id with an encoded slash, an empty id
        or one that is not UTF-8 is left to Klein.
        """
        self.check(
            [
                (raw("GET", f"{PRINTERS}/%C3%A9t%C3%A9"), True, 404),
                (raw("GET", f"{PRINTERS}/a%20b"), True, 404),
                (raw("GET", f"{PRINTERS}/%25"), True, 404),
                (raw("GET", f"{PRINTERS}/.."), True, 404),
                (raw("GET", f"{PRINTERS}/."), True, 404),
                (raw("GET", f"{PRINTERS}/{'x' * 300}"), True, 404),
                (raw("GET", f"{PRINTERS}/n1-id-%31"), True, 200),
                (raw("GET", f"{PRINTERS}/a%2Fb"), False, 404),
                (raw("GET", f"{PRINTERS}/%2F"), False, 404),
                (raw("GET", f"{PRINTERS}/"), False, 404),
                (raw("GET", f"{PRINTERS}/%FF"), False, 400),
                (raw("GET", f"{PRINTERS}/%ED%A0%80"), False, 400),
            ]
        )

    def test_left_to_klein(self) -> None:
        """
        HEAD, other methods, lower-case methods, unknown paths, doubled and
        trailing slashes, and hosts that Klein refuses go through Klein.
        """
        self.check(
            [
                (raw("PUT", "/status"), False, 405),
                (raw("DELETE", PRINTERS), False, 405),
                (raw("POST", "/status"), False, 405),
                (raw("BREW", PRINTERS), False, 405),
                (raw("get", "/status"), False, 200),
                (raw("OPTIONS", PRINTERS), False, 405),
                (raw("GET", "/nope"), False, 404),
                (raw("GET", "/"), False, 404),
                (raw("GET", "/status/"), False, 404),
                (raw("GET", "/api/v1"), False, 404),
                (raw("GET", "//api/v1/printers"), False, 200),
                (raw("GET", "/api/v1//printers"), False, 308),
                (raw("GET", f"{PRINTERS}/{PRINTER}/"), False, 404),
                (raw("GET", "/status", host=b"\xff"), False, 400),
            ]
        )
        for method in ("HEAD", "GET"):
            # (A HEAD answer has no body, so no content type to check.)
            response = self.twins.exchange(raw(method, f"{PRINTERS}/{PRINTER}"), method == "GET")
            self.assertEqual(response.status, 200)
        # Klein fails before routing on a name werkzeug cannot IDNA-encode:
        # a JSON 400 on both paths, nothing logged as an error.
        response = self.twins.exchange(raw("GET", "/status", host=b"a..b"), False)
        self.assertEqual(response.status, 400)
        self.assertEqual(json.loads(response.body)["error"]["code"], "invalid_request")

    def test_hosts(self) -> None:
        """
        Host names with a port, IPv6 literals, international names and no
        Host header at all take the fast path and are answered alike.
        """
        for host in (b"example.com:8080", b"[::1]:8001", "bücher.example".encode(), None):
            response = self.twins.exchange(raw("GET", "/status", host=host), lean=host is not None)
            self.assertEqual(response.status, 200)


class FailureEquivalenceTests(SynchronousTestCase):
    """
    Engine errors, timeouts, unexpected failures, forwarding and hung-up
    clients are handled alike on both paths.
    """

    def test_engine_errors(self) -> None:
        """
        Every engine refusal of a write or read maps to the same answer,
        Retry-After included.
        """
        t = Twins(self)
        write = raw("POST", PRINTERS, b'{"company":"a","model":"b"}')
        for error in (
            NoLeader(),
            NotLeader(None),
            ProposalDropped(),
            CommitTimeout(),
            StorageFull("full"),
            LeaderDiskFull("full"),
        ):
            t.engine(propose_error=error)
            response = t.exchange(write)
            self.assertIn(response.status, (503, 507), error)
            self.assertEqual(response.header("retry-after"), "1")
        t.engine(read_error=NoLeader())
        self.assertEqual(t.exchange(raw("GET", PRINTERS)).status, 503)
        self.assertEqual(t.exchange(raw("GET", f"{PRINTERS}/x")).status, 503)

    def test_unexpected(self) -> None:
        """
        A handler raising, and a result that is not a farm result, are both
        a logged 500 and farm codes unknown here a 500 with their code.
        """
        t = Twins(self)

        def broken() -> Any:
            raise RuntimeError("secret")

        t.engine(status=broken)
        self.assertEqual(t.exchange(raw("GET", "/status")).status, 500)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3)
        t.engine(hold_proposals=True)
        for result, logged in (("garbage", 1), ({"error": {"code": "new", "message": "m"}}, 0)):
            clients = t.send(raw("POST", PRINTERS, b'{"company":"a","model":"b"}'), True)
            for node in t.nodes:
                node.node.held.pop().callback(result)
            [response] = t.same(clients)
            self.assertEqual(response.status, 500)
            self.assertEqual(len(self.flushLoggedErrors()), 3 * logged)

    def test_timeout(self) -> None:
        """
        A write or read the engine does not answer in time is the same 503
        on both, at the same moment.
        """
        t = Twins(self, request_timeout=2.5)
        t.engine(hold_proposals=True, hold_reads=True)
        for request in (raw("POST", PRINTERS, b'{"company":"a","model":"b"}'), raw("GET", JOBS)):
            clients = t.send(request, True)
            t.advance(2)
            self.assertEqual([c.transport.value() for c in clients], [b""] * 3)
            t.advance(0.5)
            [response] = t.same(clients)
            self.assertEqual((response.status, response.json["error"]["code"]), (503, "timeout"))

    def test_forwarded(self) -> None:
        """
        A write on a follower is forwarded and the leader's answer relayed
        alike.
        """
        leaders: list[Node] = []

        def client() -> Any:
            leaders.append(Node())
            return leaders[-1].stub

        t = Twins(self, FOLLOWER, LEADER, client)
        t.engine(propose_error=NotLeader(LEADER))
        response = t.exchange(raw("POST", PRINTERS, b'{"company":"a","model":"b"}'))
        self.assertEqual(
            (response.status, response.header("location")), (201, f"{PRINTERS}/n1-id-1")
        )
        self.assertEqual([len(leader.farm.printers().items) for leader in leaders], [1, 1, 1])

    def test_disconnect_while_forwarding(self) -> None:
        """
        A client hanging up while its write is being forwarded cancels the
        forward, as Klein does, and nothing is written or logged.
        """
        cancelled: list[Deferred[Any]] = []

        class Silent:
            def request(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
                return Deferred(cancelled.append)

        t = Twins(self, FOLLOWER, LEADER, Silent)
        t.engine(propose_error=NotLeader(LEADER))
        clients = t.send(raw("POST", PRINTERS, b'{"company":"a","model":"b"}'), True)
        self.assertEqual(cancelled, [])
        for client in clients:
            client.lose()
        self.assertEqual(len(cancelled), 3)
        self.assertEqual([c.transport.value() for c in clients], [b""] * 3)

    def test_disconnect_while_waiting(self) -> None:
        """
        A client hanging up while the engine works on its write or read
        leaves the engine's Deferred alone; its late result is dropped
        without a write or a logged error.
        """
        t = Twins(self)
        t.engine(hold_proposals=True, hold_reads=True)
        late = {"ok": {"printer": {"id": "late", "company": "a", "model": "b"}}}
        for request, result in (
            (raw("POST", PRINTERS, b'{"company":"a","model":"b"}'), late),
            (raw("GET", PRINTERS), 0),
        ):
            clients = t.send(request, True)
            for client in clients:
                client.lose()
            for node in t.nodes:
                [engine] = node.node.held + node.node.held_reads
                self.assertFalse(engine.called)
                engine.callback(result)
                del node.node.held[:], node.node.held_reads[:]
            t.advance(20)
            self.assertEqual([c.transport.value() for c in clients], [b""] * 3)


class _Toy:
    """
    A small Klein app to test the fast path's plumbing on its own.
    """

    app = Klein()

    def __init__(self) -> None:
        self.pending: Deferred[bytes] = Deferred()

    @app.route("/sync/<x>", methods=["GET"])
    def sync(self, request: Any, x: str) -> bytes:
        request.setHeader(b"x-seen", x.encode())
        return x.encode()

    @app.route("/later", methods=["GET"])
    def later(self, request: Any) -> Deferred[bytes]:
        return self.pending

    @app.route("/raise", methods=["GET"])
    def raises(self, request: Any) -> bytes:
        raise KeyError("k")

    @app.route("/coroutine", methods=["GET"])
    async def coroutine(self, request: Any) -> bytes:
        return await self.pending


class ToyResourceTests(SynchronousTestCase):
    """
    L{FastKleinResource} on an app of its own.
    """

    def setUp(self) -> None:
        self.toy = _Toy()
        self.errors: list[Failure] = []
        self.broken_handler = False

        def on_error(request: Any, failure: Failure) -> bytes:
            self.errors.append(failure)
            if self.broken_handler:
                raise ValueError("broken error handler")
            request.setResponseCode(599)
            return b"mapped"

        self.site, self.clock = make_site(FastKleinResource(self.toy.app, on_error))

    def get(self, path: str) -> RawClient:
        client = RawClient(self.site)
        client.send(raw("GET", path))
        return client

    def test_sync_and_later(self) -> None:
        """
        A body returned at once, or through a Deferred, or by a coroutine,
        is written and the response ended.
        """
        [response] = self.get("/sync/%C3%A9").responses()
        self.assertEqual(response.body, "é".encode())
        self.assertEqual(response.header("x-seen"), "é".encode().decode("latin-1"))
        for path in ("/later", "/coroutine"):
            self.toy.pending = Deferred()
            client = self.get(path)
            self.assertEqual(client.responses(), [])
            self.toy.pending.callback(b"done")
            self.assertEqual([r.body for r in client.responses()], [b"done"])

    def test_errors_mapped(self) -> None:
        """
        A handler raising or failing later is answered by the error mapping.
        """
        self.assertEqual(self.get("/raise").responses()[0].status, 599)
        client = self.get("/later")
        self.toy.pending.errback(KeyError("later"))
        self.assertEqual([r.status for r in client.responses()], [599])
        self.assertEqual([e.type for e in self.errors], [KeyError, KeyError])

    def test_broken_error_mapping(self) -> None:
        """
        If the mapping itself fails, twisted.web answers its 500, as Klein
        leaves it to do when no error handler is left.
        """
        self.broken_handler = True
        self.assertEqual(self.get("/raise").responses()[0].status, 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_disconnect(self) -> None:
        """
        A hung-up client cancels the handler's Deferred; the cancellation
        is silent, any other failure after that is logged, and nothing is
        mapped or written.
        """
        cancelled: list[object] = []
        self.toy.pending = Deferred(cancelled.append)
        client = self.get("/later")
        client.lose()
        self.assertEqual(len(cancelled), 1)
        self.toy.pending = Deferred(lambda d: d.errback(KeyError("while cancelling")))
        client = self.get("/later")
        client.lose()
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertEqual(self.errors, [])
        self.assertEqual(client.transport.value(), b"")


class RoutesTests(SynchronousTestCase):
    """
    L{FastRoutes} takes exactly the rules it can match as werkzeug would.
    """

    def test_farm_api(self) -> None:
        """
        Every route of the API is taken, without HEAD.
        """
        api, v1 = b"api", b"v1"
        expected = {(b"GET", (b"status",)): "status"}
        for kind in ("printer", "filament", "print_job"):
            plural = (kind + "s").encode()
            expected[(b"POST", (api, v1, plural))] = f"create_{kind}"
            expected[(b"GET", (api, v1, plural))] = f"list_{kind}s"
            expected[(b"GET", (api, v1, plural, None))] = f"get_{kind}"
        expected[(b"POST", (api, v1, b"print_jobs", None, b"status"))] = "set_print_job_status"
        self.assertEqual(FastRoutes(FarmAPI.app.url_map).routes(), expected)

    def test_clashes_left_to_klein(self) -> None:
        """
        Rules werkzeug would have to choose between (same method, paths in
        common, also through a trailing slash), rules with converters other
        than a plain string, with defaults or redirects, and the rules they
        could shadow are not taken; rules that only share paths under
        different methods are.
        """
        app = _toy_app()
        self.assertEqual(
            set(FastRoutes(app.url_map).routes()),
            {
                (b"GET", (b"m", None)),
                (b"POST", (b"m", b"x")),
                (b"GET", (b"s", b"")),
                (b"PUT", (b"n", None)),
            },
        )

    def test_other_converters(self) -> None:
        """
        A map whose string converter is not werkzeug's own is left to Klein
        entirely.
        """

        class Strict(BaseConverter):
            regex = "[a-z]+"

        app = Klein()
        app.url_map.converters["string"] = Strict

        @app.route("/a/<string:x>")
        def a(request: Any, x: str) -> bytes:
            return b""

        self.assertEqual(FastRoutes(app.url_map).routes(), {})


def _toy_app() -> Klein:
    app = Klein()

    def route(path: str, *methods: str, **kwargs: Any) -> None:
        def handler(request: Any, **kw: Any) -> bytes:
            return b""

        name = f"{path}:{','.join(methods)}:{len(kwargs)}"
        app.route(path, methods=list(methods), endpoint=name, **kwargs)(handler)

    route("/a/<x>", "GET")
    route("/a/b", "GET")
    route("/m/<x>", "GET")
    route("/m/x", "POST")
    route("/t/<x>", "GET")
    route("/t/u/", "GET")
    route("/s/", "GET")
    route("/c/<int:n>", "GET")
    route("/c/<x>", "GET")
    route("/d/<x>", "GET", defaults={"x": "one"})
    route("/e", "GET", redirect_to="/s/")
    route("/n/<string:y>", "PUT")
    return app


class _Request:
    """
    What L{FastRoutes.match} reads of a request.
    """

    def __init__(self, method: bytes, postpath: list[bytes], host: bytes) -> None:
        self.method = method
        self.postpath = postpath
        self.host = host

    def getRequestHostname(self) -> bytes:
        return self.host


def _werkzeug(url_map: Map, request: _Request) -> tuple[str, dict[str, Any]] | None:
    """
    What Klein's routing makes of C{request}: the endpoint and arguments, or
    C{None} for an error or a redirect.
    """
    path = b"/".join(request.postpath)
    if not path.startswith(b"/"):
        path = b"/" + path
    try:
        adapter = url_map.bind(
            request.host.decode("utf-8"),
            "",
            path_info=path.decode("utf-8"),
            default_method=request.method.decode("utf-8"),
        )
        rule, kwargs = adapter.match(return_rule=True)
    except (HTTPException, UnicodeError):
        return None
    return str(rule.endpoint), dict(kwargs)


_SEGMENTS = st.sampled_from(
    [b"api", b"v1", b"printers", b"filaments", b"print_jobs", b"status", b"", b"a", b"x"]
    + [b"m", b"s", b"t", b"u", b"c", b"d", b"e", b"n", b"b", b"1"]
) | st.binary(max_size=6)
_METHODS = st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"get", b"DELETE", b"OPTIONS"])
_HOSTS = st.sampled_from([b"127.0.0.1", b"a..b", b"\xff", "bücher".encode(), b"[::1]"])


class DifferentialTests(SynchronousTestCase):
    """
    On generated requests, whatever L{FastRoutes} matches, werkzeug matches
    to the same endpoint with the same arguments.
    """

    @settings(max_examples=400, derandomize=True, database=None, deadline=None)
    @given(_METHODS, st.lists(_SEGMENTS, min_size=1, max_size=6), _HOSTS)
    def test_same_match(self, method: bytes, postpath: list[bytes], host: bytes) -> None:
        """
        The fast match, when there is one, is werkzeug's match.
        """
        for url_map in (FarmAPI.app.url_map, _TOY_MAP):
            request = _Request(method, postpath, host)
            fast = FastRoutes(url_map).match(request)  # type: ignore[arg-type]
            if fast is not None:
                self.assertEqual(fast, _werkzeug(url_map, request))

    def test_matches_hot_paths(self) -> None:
        """
        The hot paths do match, with ids as werkzeug decodes them.
        """
        routes = FastRoutes(FarmAPI.app.url_map)
        for method, target, expected in [
            (b"GET", "/status", ("status", {})),
            (b"POST", PRINTERS, ("create_printer", {})),
            (b"GET", f"{JOBS}/{quote('é x%')}", ("get_print_job", {"job_id": "é x%"})),
            (b"POST", f"{JOBS}/j/status", ("set_print_job_status", {"job_id": "j"})),
        ]:
            postpath = [unquote_to_bytes(s) for s in target[1:].split("/")]
            request = _Request(method, postpath, b"localhost")
            self.assertEqual(routes.match(request), expected)  # type: ignore[arg-type]
            self.assertEqual(_werkzeug(FarmAPI.app.url_map, request), expected)


_TOY_MAP = _toy_app().url_map


class DeadlinesTests(SynchronousTestCase):
    """
    L{Deadlines} behaves as one C{callLater} per Deferred did, with one
    timer.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.deadlines = Deadlines(self.clock, 10, lambda: TimeoutError("late"))

    def test_already_fired(self) -> None:
        """
        A Deferred that has fired is given back as it is, with no timer.
        """
        d = succeed(3)
        self.assertIs(self.deadlines.follow(d), d)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_result_and_failure(self) -> None:
        """
        Results and failures in time are passed on, and consumed from the
        engine's Deferred.
        """
        a: Deferred[int] = Deferred()
        b: Deferred[int] = Deferred()
        out_a, out_b = self.deadlines.follow(a), self.deadlines.follow(b)
        a.callback(7)
        b.errback(KeyError("k"))
        self.assertEqual(self.successResultOf(out_a), 7)
        self.failureResultOf(out_b, KeyError)
        self.assertIsNone(self.successResultOf(a))
        self.assertIsNone(self.successResultOf(b))

    def test_expiry(self) -> None:
        """
        A Deferred not fired after the timeout gives the expiry error; the
        engine's Deferred is not cancelled and its late result is dropped.
        """
        cancels: list[object] = []
        engine: Deferred[int] = Deferred(cancels.append)
        out = self.deadlines.follow(engine)
        self.clock.advance(9.999)
        self.assertNoResult(out)
        self.clock.advance(0.001)
        self.failureResultOf(out, TimeoutError)
        engine.callback(1)
        self.assertEqual(cancels, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """
        Cancelling the Deferred given out does not cancel the engine's.
        """
        cancels: list[object] = []
        engine: Deferred[int] = Deferred(cancels.append)
        out = self.deadlines.follow(engine)
        out.cancel()
        self.failureResultOf(out, CancelledError)
        engine.callback(1)
        self.assertEqual(cancels, [])

    def test_one_timer(self) -> None:
        """
        Many Deferreds need one timer, run at most once per resolution; each
        expires within the resolution after its own deadline, never before,
        and the timer stops once none is left.
        """
        runs: list[float] = []
        call_later = self.clock.callLater

        def counting(delay: float, f: Callable[[], None]) -> Any:
            runs.append(delay)
            return call_later(delay, f)

        self.patch(self.clock, "callLater", counting)
        deadlines: list[float] = []
        expired: list[float] = []
        for _ in range(50):
            out = self.deadlines.follow(Deferred())
            deadlines.append(self.clock.seconds() + 10)
            out.addErrback(lambda f: expired.append(self.clock.seconds()))
            self.clock.advance(0.01)
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(9.4)
        for _ in range(150):
            self.clock.advance(0.005)
            self.assertLessEqual(len(self.clock.getDelayedCalls()), 1)
        for deadline, at in zip(deadlines, expired, strict=True):
            self.assertTrue(deadline <= at <= deadline + 0.1 + 0.005, (deadline, at))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # Set once, then due every 0.1 s over the half second of deadlines.
        self.assertLessEqual(len(runs), 7)
        self.assertGreaterEqual(min(runs), 0.1)

    def test_paused(self) -> None:
        """
        A Deferred that has fired but waits on another one is still timed.
        """
        inner: Deferred[int] = Deferred()
        outer: Deferred[int] = Deferred()
        outer.callback(0)
        outer.addCallback(lambda _: inner)
        out = self.deadlines.follow(outer)
        self.clock.advance(10)
        self.failureResultOf(out, TimeoutError)

    def test_fired_ones_dropped(self) -> None:
        """
        Deferreds that fired in time neither expire nor keep the timer
        busy: it runs once for the deadline at the head, then stops.
        """
        outs = []
        for _ in range(5):
            engine: Deferred[int] = Deferred()
            outs.append(self.deadlines.follow(engine))
            engine.callback(1)
        self.clock.advance(10)
        self.assertEqual([self.successResultOf(out) for out in outs], [1] * 5)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_follow_while_expiring(self) -> None:
        """
        Following a new Deferred from the callback of an expiring one keeps
        every deadline.
        """
        later: list[Deferred[int]] = []
        first = self.deadlines.follow(Deferred())
        second = self.deadlines.follow(Deferred())

        def again(failure: Failure) -> None:
            later.append(self.deadlines.follow(Deferred()))

        first.addErrback(again)
        self.clock.advance(10)
        self.failureResultOf(second, TimeoutError)
        self.assertNoResult(later[0])
        self.clock.advance(10)
        self.failureResultOf(later[0], TimeoutError)
