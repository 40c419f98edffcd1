"""
Tests for L{raft3d.service._lean}: the lean HTTP/1.1 connection serves what
it takes exactly as its fast path answers it, and hands everything else,
bytes and deadline included, to the guarded C{twisted.web} channel, whose
answers must then be byte for byte those of a guarded channel alone.  Raw
bytes on a L{StringTransport}, time on a L{Clock}.

That the API's answers are the same on lean connections as through
C{twisted.web} is checked in C{tests.api.test_dispatch}, request by
request.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http import datetimeToString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from raft3d.api import BoundedRequest, Route
from raft3d.service import APISite, HTTPLimits
from raft3d.service._lean import (
    MAX_BACKLOG_BYTES,
    MAX_HEAD_BYTES,
    AnswerMemo,
    HeadCache,
    LeanHTTPChannel,
    ParsedHead,
)

from ..api._fakes import Node
from ._fakes import LogCapture
from ._rawhttp import RawClient, make_site

_DATE = re.compile(rb"\r\nDate: [^\r]*")


class Toy(Resource):
    """
    A fast path and a C{twisted.web} leaf at once: C{GET /fast/<x>} and
    C{POST /fast/<x>} are taken by the fast path, C{/hold/<x>} too but
    answered only when the test fires it; anything else is rendered by
    C{twisted.web} (the same answer but for a marker header), so the tests
    can tell who answered.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.held: list[tuple[Any, Deferred[bytes]]] = []
        self.served: list[tuple[bytes, bytes, bytes]] = []
        self.lost: list[Any] = []

    def route(self, request: Any) -> Route | None:
        path = request.postpath
        if len(path) == 2 and path[0] in (b"fast", b"hold", b"boom") and path[1]:
            return path[0].decode(), {"x": path[1].decode("latin-1")}
        return None

    def serve(self, request: Any, found: Route) -> None:
        endpoint, kwargs = found
        body = request.content.read()
        self.served.append((request.method, request.uri, body))
        request.setHeader(b"content-type", b"application/json")
        answer = json.dumps({"x": kwargs["x"], "size": len(body)}).encode()
        if endpoint == "hold":
            d: Deferred[bytes] = Deferred()
            self.held.append((request, d))
            request.notifyFinish().addErrback(self.lost.append)
            d.addCallback(lambda b: (request.write(b), request.finish()))
            return
        if endpoint == "boom":
            request.processingFailed(_failure(RuntimeError("boom")))
            return
        request.setHeader("X-Extra", "a\r\nb")
        request.write(answer)
        request.finish()

    def render(self, request: Any) -> bytes:
        body = request.content.read()
        self.served.append((request.method, request.uri, body))
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"x-rendered-by", b"twisted.web")
        if request.postpath[:1] == [b"hold"]:
            return NOT_DONE_YET  # type: ignore[no-any-return]
        return json.dumps({"size": len(body)}).encode()


def _failure(error: Exception) -> Any:
    from twisted.python.failure import Failure

    try:
        raise error
    except Exception:
        return Failure()


class SmallRequest(BoundedRequest):
    max_body_bytes = 64


def get(path: bytes, *headers: bytes) -> bytes:
    return (
        b"GET "
        + path
        + b" HTTP/1.1\r\nHost: node\r\n"
        + b"".join(h + b"\r\n" for h in headers)
        + b"\r\n"
    )


def post(path: bytes, body: bytes, *headers: bytes) -> bytes:
    head = b"POST " + path + b" HTTP/1.1\r\nHost: node\r\n" + b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class LeanTestCase(SynchronousTestCase):
    limits = HTTPLimits(request_timeout=30.0, idle_timeout=60.0)

    def setUp(self) -> None:
        self.log = LogCapture()
        self.log.install(self)
        self.toy = Toy()
        self.site, self.clock = self.make(fast=True)

    def make(self, fast: bool, limits: HTTPLimits | None = None) -> tuple[APISite, Clock]:
        site, clock = make_site(self.toy, limits or self.limits, fast=self.toy if fast else None)
        site.requestFactory = SmallRequest
        return site, clock

    def client(self) -> RawClient:
        client = RawClient(self.site)
        self.assertIsInstance(client.channel, LeanHTTPChannel)
        return client

    def guarded_alone(self, data: bytes) -> bytes:
        """
        What a guarded C{twisted.web} channel alone writes for C{data}.
        """
        site, _ = self.make(fast=False)
        client = RawClient(site)
        client.send(data)
        return _DATE.sub(b"", client.transport.value())


class ServeTests(LeanTestCase):
    def test_get_and_post(self) -> None:
        """
        Requests the fast path takes are answered in one write with a
        Content-Length and a Date, kept alive, with header values cleaned of
        line breaks; twisted.web is not involved.
        """
        client = self.client()
        client.send(get(b"/fast/a"))
        client.send(post(b"/fast/b?q=1", b'{"k":1}'))
        self.assertTrue(client.lean)
        first, second = client.responses()
        self.assertEqual((first.status, first.json), (200, {"x": "a", "size": 0}))
        self.assertEqual((second.status, second.json), (200, {"x": "b", "size": 7}))
        for response in (first, second):
            self.assertEqual(response.header("content-type"), "application/json")
            self.assertEqual(response.header("x-extra"), "a b")
            self.assertIsNotNone(response.header("date"))
            self.assertIsNone(response.header("x-rendered-by"))
            self.assertIsNone(response.header("connection"))
        self.assertEqual(self.toy.served[1], (b"POST", b"/fast/b?q=1", b'{"k":1}'))
        self.assertFalse(client.closing)

    def test_percent_decoded_path(self) -> None:
        """
        The path segments are percent-decoded as twisted.web decodes them.
        """
        client = self.client()
        client.send(get(b"/fast/%C3%A9%20x"))
        [response] = client.responses()
        self.assertEqual(response.json["x"], "\xc3\xa9 x")

    def test_connection_close(self) -> None:
        """
        C{Connection: close} is honoured and announced; what follows it on
        the connection is not served.
        """
        client = self.client()
        client.send(get(b"/fast/a", b"Connection: keep-alive, Close") + get(b"/fast/b"))
        [response] = client.responses()
        self.assertEqual(response.header("connection"), "close")
        self.assertTrue(client.closing)
        self.assertEqual(len(self.toy.served), 1)

    def test_pipelined_in_order(self) -> None:
        """
        Pipelined requests are answered in order: one that waits holds back
        those behind it, which are served once it is answered.
        """
        client = self.client()
        client.send(get(b"/fast/a") + get(b"/hold/b") + post(b"/fast/c", b"xyz"))
        self.assertEqual([r.json["x"] for r in client.responses()], ["a"])
        [(_, d)] = self.toy.held
        d.callback(b'{"x":"b"}')
        self.assertEqual([r.json["x"] for r in client.responses()], ["a", "b", "c"])
        self.assertTrue(client.lean)

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
    def test_any_split(self, cuts: list[int]) -> None:
        """
        However the bytes are split, the answers are the same.
        """
        stream = get(b"/fast/a") + post(b"/fast/b", b"0123456789") + get(b"/fast/c?d=e")
        whole = self.client()
        whole.send(stream)
        pieces = self.client()
        offset = 0
        for cut in cuts:
            pieces.send(stream[offset : offset + cut])
            offset += cut
        pieces.send(stream[offset:])
        self.assertEqual(
            _DATE.sub(b"", pieces.transport.value()), _DATE.sub(b"", whole.transport.value())
        )
        self.assertEqual(len(whole.responses()), 3)

    def test_processing_failed(self) -> None:
        """
        A fast path that cannot answer at all gets a logged JSON 500, and
        the connection is closed.
        """
        client = self.client()
        client.send(get(b"/boom/a") + get(b"/fast/b"))
        [response] = client.responses()
        self.assertEqual(response.status, 500)
        self.assertEqual(response.json["error"]["code"], "internal_error")
        self.assertTrue(client.closing)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class HandOverTests(LeanTestCase):
    """
    What the lean channel does not take goes, with every byte it holds, to
    a guarded channel, which answers exactly as it would alone.
    """

    odd = [
        b"GET /other HTTP/1.1\r\nHost: node\r\n\r\n",
        b"HEAD /fast/a HTTP/1.1\r\nHost: node\r\n\r\n",
        b"PUT /fast/a HTTP/1.1\r\nHost: node\r\nContent-Length: 0\r\n\r\n",
        b"GET /fast/a HTTP/1.0\r\nHost: node\r\n\r\n",
        b"GET /fast/a HTTP/1.1\r\n\r\n",
        b"GET /fast/a HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET http://node/fast/a HTTP/1.1\r\nHost: node\r\n\r\n",
        b"GET /fast/a HTTP/1.1\r\nHost: node\r\n folded\r\n\r\n",
        b"GET /fast/a HTTP/1.1\r\nHost : node\r\n\r\n",
        b"GET /fast/a HTTP/1.1\nHost: node\n\n",
        b"GET /fast/a HTTP/1.1\r\nHost: no\nde\r\n\r\n",
        b"GET /fast/a HTTP/1.1\r\nHost: node\r\nX: \x00\r\n\r\n",
        b"\r\nGET /fast/a HTTP/1.1\r\nHost: node\r\n\r\n",
        b"POST /fast/a HTTP/1.1\r\nHost: node\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /fast/a HTTP/1.1\r\nHost: node\r\nContent-Length: +3\r\n\r\nabc",
        b"POST /fast/a HTTP/1.1\r\nHost: node\r\nContent-Length: 65\r\n\r\n" + b"x" * 65,
        b"POST /fast/a HTTP/1.1\r\nHost: node\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"POST /fast/a HTTP/1.1\r\nHost: node\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        b"GET /fast/a HTTP/1.1\r\nHost: node\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        b"GET /fast/" + b"a" * (MAX_HEAD_BYTES + 10) + b" HTTP/1.1\r\nHost: node\r\n\r\n",
        b"GET /fast/a HTTP/1.1\r\nHost: node\r\nX: " + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n",
        b"garbage\r\n\r\n",
        b"GET /fast/a HTTP/1.1\r\nHost: node\r\n" + b"A: b\r\n" * 501 + b"\r\n",
    ]

    def test_odd_requests(self) -> None:
        """
        Other paths, methods and versions, absolute targets, missing or
        repeated Hosts, folded, spaced, bare-LF or control-character
        headers, leading blank lines, repeated or signed lengths, bodies
        over the limit, chunked, C{Expect} and upgrade requests, huge heads,
        too many headers and garbage are all answered as by a guarded
        channel alone.
        """
        for data in self.odd:
            client = self.client()
            client.send(data)
            self.assertFalse(client.lean, data[:80])
            self.assertEqual(
                _DATE.sub(b"", client.transport.value()), self.guarded_alone(data), data[:80]
            )

    def test_after_lean_answers(self) -> None:
        """
        A connection served lean so far is handed over at the first request
        the lean channel does not take, with the rest of the pipeline.
        """
        client = self.client()
        client.send(get(b"/fast/a") + get(b"/other") + get(b"/fast/b"))
        responses = client.responses()
        self.assertFalse(client.lean)
        self.assertEqual(len(responses), 3)
        self.assertIsNone(responses[0].header("x-rendered-by"))
        self.assertEqual(responses[1].header("x-rendered-by"), "twisted.web")
        self.assertEqual(responses[2].header("x-rendered-by"), "twisted.web")
        client.send(get(b"/fast/c"))
        self.assertEqual(len(client.responses()), 4)

    def test_deadline_carried_over(self) -> None:
        """
        The guarded channel gets what is left of the request's deadline,
        not a new one.
        """
        client = self.client()
        client.send(b"POST /fast/a HTTP/1.1\r\nHost: node\r\n")
        self.clock.advance(20)
        client.send(b"Transfer-Encoding: chunked\r\n\r\n3\r\nab")
        self.assertFalse(client.lean)
        self.clock.advance(9.5)
        self.assertEqual(client.transport.value(), b"")
        self.clock.advance(0.5)
        [response] = client.responses()
        self.assertEqual(response.status, 408)
        self.assertTrue(client.closing)


class DeadlineTests(LeanTestCase):
    def test_request_timeout(self) -> None:
        """
        A request not received whole in time gets the API's JSON 408, is
        logged, and the connection closes (and is aborted if the client
        does not read).
        """
        client = self.client()
        client.send(b"GET /fast/a HTTP/1.1\r\n")
        self.clock.advance(29)
        self.assertEqual(client.transport.value(), b"")
        self.clock.advance(1)
        [response] = client.responses()
        self.assertEqual(
            (response.status, response.json["error"]["code"]), (408, "request_timeout")
        )
        self.assertEqual(response.header("connection"), "close")
        self.assertTrue(client.closing)
        self.assertEqual(len(self.log.matching("did not send a whole request within 30 s")), 1)
        client.send(get(b"/fast/b"))
        self.assertEqual(len(client.responses()), 1)
        self.clock.advance(15)
        self.assertTrue(client.transport.disconnected)

    def test_deadline_per_request(self) -> None:
        """
        Each request has its own deadline, from its first byte; time spent
        answering one does not count against the next.
        """
        client = self.client()
        for _ in range(3):
            self.clock.advance(20)
            client.send(b"GET /fast/a HTTP/1.1\r\n")
            self.clock.advance(20)
            client.send(b"Host: node\r\n\r\n")
        self.assertEqual([r.status for r in client.responses()], [200] * 3)
        client.send(get(b"/hold/a") + b"GET /fast/b HTTP/1.1\r\n")
        self.clock.advance(100)
        self.assertEqual(len(client.responses()), 3)
        self.toy.held[0][1].callback(b"{}")
        self.clock.advance(29)
        self.assertEqual(len(client.responses()), 4)
        self.clock.advance(1)
        self.assertEqual(client.responses()[-1].status, 408)

    def test_idle_timeout(self) -> None:
        """
        An idle connection is closed; one whose answer is awaited is not.
        """
        client = self.client()
        client.send(get(b"/hold/a"))
        self.clock.advance(200)
        self.assertFalse(client.closing)
        self.toy.held[0][1].callback(b"{}")
        self.clock.advance(59)
        self.assertFalse(client.closing)
        self.clock.advance(1)
        self.assertTrue(client.closing)

    def test_sweeper_idle(self) -> None:
        """
        The one timer runs only while there are lean connections.
        """
        self.assertEqual(self.clock.getDelayedCalls(), [])
        client = self.client()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        client.lose()
        self.clock.advance(1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.client()
        self.site.stopFactory()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FlowTests(LeanTestCase):
    def test_lost_while_answering(self) -> None:
        """
        A client gone while its answer is awaited: the request learns it,
        the late answer is dropped, and its place in the limiter is freed.
        """
        client = self.client()
        client.send(get(b"/hold/a"))
        self.assertEqual(self.site.limiter.open_count, 1)
        client.lose()
        self.assertEqual(len(self.toy.lost), 1)
        self.toy.held[0][1].callback(b"{}")
        self.assertEqual(client.transport.value(), b"")
        self.assertEqual(self.site.limiter.open_count, 0)

    def test_not_reading_answers(self) -> None:
        """
        While the transport cannot take more, nothing more is served and
        the client is not read; both resume together.
        """
        client = self.client()
        channel = client.channel
        assert isinstance(channel, LeanHTTPChannel)
        channel.pauseProducing()
        self.assertEqual(client.transport.producerState, "paused")
        client.send(get(b"/fast/a") + get(b"/fast/b"))
        self.assertEqual(client.responses(), [])
        channel.resumeProducing()
        self.assertEqual(client.transport.producerState, "producing")
        self.assertEqual(len(client.responses()), 2)

    def test_backlog(self) -> None:
        """
        Reading stops when too much is piled up behind a request being
        answered, and resumes once it is.
        """
        client = self.client()
        client.send(get(b"/hold/a"))
        client.send(get(b"/fast/b") * (MAX_BACKLOG_BYTES // len(get(b"/fast/b")) + 1))
        self.assertEqual(client.transport.producerState, "paused")
        self.toy.held[0][1].callback(b"{}")
        self.assertEqual(client.transport.producerState, "producing")
        self.assertGreater(len(client.responses()), MAX_BACKLOG_BYTES // 40)

    def test_evicted(self) -> None:
        """
        A connection waiting for a request is evicted by the limiter when
        it needs room; one being answered is not.
        """
        site, _ = self.make(True, HTTPLimits(max_connections=10, max_pending=1))
        busy = RawClient(site)
        busy.send(get(b"/hold/a"))
        idle = RawClient(site, port=40001)
        self.assertFalse(idle.closing)
        RawClient(site, port=40002)
        self.assertTrue(idle.closing)
        self.assertFalse(busy.closing)

    def test_access_log_means_twisted_web(self) -> None:
        """
        With an access log every connection is a twisted.web one, which
        logs each request.
        """
        site = APISite(self.toy, "-", reactor=Clock(), fast=self.toy)
        self.assertNotIsInstance(RawClient(site).channel, LeanHTTPChannel)


class AnswerMemoTests(SynchronousTestCase):
    """
    Stale reads answered again from the site's L{AnswerMemo}, through the
    real API on a fake node: the same bytes as a fresh answer, and only
    while what was read is unchanged and the C{Date} second is the same.
    """

    def setUp(self) -> None:
        self.node = Node()
        resource = self.node.api.resource()
        self.site, self.clock = make_site(resource, clock=self.node.clock, fast=resource)
        self.client = RawClient(self.site)
        created = self.exchange(_post(b"/api/v1/printers", b'{"company":"Prusa","model":"MK4"}'))
        self.printer = created.json["id"]
        self.served = 0
        serve = resource.serve

        def counting(request: Any, found: Route) -> None:
            self.served += 1
            serve(request, found)

        self.patch(resource, "serve", counting)

    def exchange(self, request: bytes) -> Any:
        """
        Send C{request} and return its answer, read off a clean transport.
        """
        self.client.transport.clear()
        self.client.send(request)
        (response,) = self.client.responses()
        self.last = self.client.transport.value()
        return response

    def stale(self, extra: bytes = b"") -> bytes:
        return _get(f"/api/v1/printers/{self.printer}?consistency=stale".encode(), extra)

    def test_answered_again(self) -> None:
        """
        The second stale read of an object is answered from the memo, with
        the same bytes.
        """
        first = self.exchange(self.stale())
        first_bytes = self.last
        self.assertEqual(first.status, 200)
        second = self.exchange(self.stale())
        self.assertEqual((self.served, len(self.site.memo)), (1, 1))
        self.assertEqual(self.last, first_bytes)
        self.assertEqual(second.json, first.json)
        self.assertTrue(self.client.lean)

    def test_pipelined(self) -> None:
        """
        Pipelined copies of a request are each answered, in order, once
        the first answer is kept.
        """
        self.exchange(self.stale())
        self.client.transport.clear()
        self.client.send(self.stale() * 3 + _get(b"/api/v1/printers?consistency=stale"))
        responses = self.client.responses()
        self.assertEqual([r.status for r in responses], [200] * 4)
        self.assertEqual(responses[3].json[0]["id"], self.printer)
        self.assertEqual(self.served, 2)

    def test_kept_while_others_change(self) -> None:
        """
        A kept answer about one object is used again while other objects
        are created and changed.
        """
        first = self.exchange(self.stale())
        self.exchange(_post(b"/api/v1/printers", b'{"company":"Bambu","model":"X1"}'))
        self.exchange(
            _post(b"/api/v1/filaments", b'{"type":"PLA","color":"red","total_weight_in_grams":9}')
        )
        served = self.served
        again = self.exchange(self.stale())
        self.assertEqual((self.served, again.json), (served, first.json))

    def test_not_after_it_changes(self) -> None:
        """
        Once a job moves, or a Done job takes weight off its spool, the
        kept answers about them are not used again.
        """
        spool = self.exchange(
            _post(b"/api/v1/filaments", b'{"type":"PLA","color":"red","total_weight_in_grams":9}')
        ).json["id"]
        body = {"printer_id": self.printer, "filament_id": spool, "filepath": "a.gcode"}
        job = self.exchange(
            _post(b"/api/v1/print_jobs", json.dumps({**body, "print_weight_in_grams": 4}).encode())
        ).json["id"]
        read_job = _get(f"/api/v1/print_jobs/{job}?consistency=stale".encode())
        read_spool = _get(f"/api/v1/filaments/{spool}?consistency=stale".encode())
        self.assertEqual(self.exchange(read_job).json["status"], "Queued")
        self.assertEqual(self.exchange(read_spool).json["remaining_weight_in_grams"], 9)
        for status in (b"Running", b"Done"):
            self.exchange(
                _post(b"/api/v1/print_jobs/" + job.encode() + b"/status?status=" + status, b"")
            )
            self.assertEqual(self.exchange(read_job).json["status"], status.decode())
        self.assertEqual(self.exchange(read_spool).json["remaining_weight_in_grams"], 5)

    def test_not_after_restore(self) -> None:
        """
        A kept answer is not used once the state was replaced by a
        snapshot, even by an equal one.
        """
        self.exchange(self.stale())
        self.node.farm.restore(self.node.farm.snapshot())
        self.exchange(self.stale())
        self.assertEqual(self.served, 2)

    def test_not_after_apply(self) -> None:
        """
        Once the node applied anything to a kind, a kept listing of it is
        not used again: a list read sees the printer created since.
        """
        listing = _get(b"/api/v1/printers?consistency=stale")
        self.assertEqual(len(self.exchange(listing).json), 1)
        self.exchange(_post(b"/api/v1/printers", b'{"company":"Bambu","model":"X1"}'))
        self.assertEqual(len(self.exchange(listing).json), 2)
        self.assertEqual(self.served, 3)

    def test_not_in_another_second(self) -> None:
        """
        An answer is not sent again once its C{Date} is past.
        """
        self.exchange(self.stale())
        self.clock.advance(1)
        self.exchange(self.stale())
        self.assertEqual(self.served, 2)
        self.assertIn(b"Date: " + datetimeToString(int(self.clock.seconds())), self.last)

    def test_only_stale_reads(self) -> None:
        """
        Linearizable reads, reads that close the connection or carry a
        body, errors and writes are never kept.
        """
        requests = [
            _get(f"/api/v1/printers/{self.printer}".encode()),
            self.stale(b"Content-Length: 2\r\n") + b"{}",
            _get(b"/api/v1/printers/nope?consistency=stale"),
            _post(b"/api/v1/printers", b'{"company":"Bambu","model":"X1"}'),
        ]
        for request in requests * 2:
            self.exchange(request)
        self.assertEqual(len(self.site.memo), 0)
        self.assertEqual(self.served, 8)
        closing = RawClient(self.site)
        closing.send(self.stale(b"Connection: close\r\n"))
        self.assertEqual(closing.responses()[0].status, 200)
        self.assertEqual(len(self.site.memo), 0)


class AnswerMemoLimitsTests(SynchronousTestCase):
    """
    L{AnswerMemo} on its own.
    """

    def test_bounded(self) -> None:
        """
        A full memo starts over; an answer over the size limit is not kept.
        """
        memo = AnswerMemo(max_entries=2, max_answer_bytes=4)
        version = lambda: 7  # noqa: E731
        memo.put(b"a", b"1", version, 7, 0)
        memo.put(b"b", b"2", version, 7, 0)
        memo.put(b"b", b"3", version, 7, 0)
        self.assertEqual((len(memo), memo.get(b"b", 0)), (2, b"3"))
        memo.put(b"c", b"4", version, 7, 0)
        self.assertEqual((len(memo), memo.get(b"a", 0), memo.get(b"c", 0)), (1, None, b"4"))
        memo.put(b"d", b"12345", version, 7, 0)
        self.assertIsNone(memo.get(b"d", 0))

    def test_stale_entries_dropped(self) -> None:
        """
        An entry of another version or second is dropped when found.
        """
        memo = AnswerMemo()
        current = [7]
        memo.put(b"a", b"1", lambda: current[0], 7, 0)
        self.assertIsNone(memo.get(b"a", 1))
        self.assertEqual(len(memo), 0)
        memo.put(b"a", b"1", lambda: current[0], 7, 0)
        current[0] = 8
        self.assertIsNone(memo.get(b"a", 0))
        self.assertEqual(len(memo), 0)


def _get(target: bytes, extra: bytes = b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n" + extra + b"\r\n"


def _post(target: bytes, body: bytes) -> bytes:
    return (
        b"POST "
        + target
        + b" HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )


class HeadCacheTests(SynchronousTestCase):
    """
    Heads read again from the site's L{HeadCache}: the same requests as
    from a fresh reading, through the real API on a fake node.
    """

    def setUp(self) -> None:
        self.node = Node()
        resource = self.node.api.resource()
        self.site, self.clock = make_site(resource, clock=self.node.clock, fast=resource)
        self.client = RawClient(self.site)

    def exchange(self, request: bytes) -> Any:
        self.client.transport.clear()
        self.client.send(request)
        (response,) = self.client.responses()
        return response

    def test_same_answers(self) -> None:
        """
        A create and a read sent twice with the same head are each read
        once and answered as fresh requests: two printers, each found.
        """
        body = b'{"company":"Prusa","model":"MK4"}'
        listing = _get(b"/api/v1/printers")
        first = self.exchange(_post(b"/api/v1/printers", body))
        self.assertEqual(len(self.exchange(listing).json), 1)
        self.assertEqual(len(self.site.heads), 2)
        self.patch(LeanHTTPChannel, "_read_head", lambda *a: self.fail("read again"))
        second = self.exchange(_post(b"/api/v1/printers", body))
        self.assertEqual((first.status, second.status), (201, 201))
        self.assertNotEqual(first.json["id"], second.json["id"])
        self.assertEqual(len(self.exchange(listing).json), 2)
        self.assertTrue(self.client.lean)

    def test_path_not_shared(self) -> None:
        """
        Serving a request moves its path segments (as Klein does); the
        next request with the same head still routes from the whole path.
        """
        created = self.exchange(_post(b"/api/v1/printers", b'{"company":"A","model":"B"}'))
        target = f"/api/v1/printers/{created.json['id']}".encode()
        for _ in range(3):
            self.assertEqual(self.exchange(_get(target)).json, created.json)

    def test_handed_over_not_kept(self) -> None:
        """
        A head the lean connection does not take is not kept.
        """
        client = RawClient(self.site)
        client.send(b"GET /api/v1/printers HTTP/1.0\r\nHost: x\r\n\r\n")
        self.assertEqual(client.responses()[0].status, 200)
        self.assertFalse(client.lean)
        self.assertEqual(len(self.site.heads), 0)

    def test_bounded(self) -> None:
        """
        A full cache starts over; a long head is not kept.
        """
        cache = HeadCache(max_entries=2, max_head_bytes=8)
        parsed = ParsedHead(b"GET", b"/a", {}, b"h", False, 0)
        cache.put(b"a", parsed)
        cache.put(b"b", parsed)
        self.assertEqual(len(cache), 2)
        cache.put(b"c", parsed)
        self.assertEqual((len(cache), cache.get(b"a"), cache.get(b"c")), (1, None, parsed))
        cache.put(b"123456789", parsed)
        self.assertIsNone(cache.get(b"123456789"))
