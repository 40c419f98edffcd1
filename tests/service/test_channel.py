"""
Tests for L{raft3d.service._channel}: the API's HTTP connection, with a
deadline for each request, JSON answers to broken HTTP, early 413s and its
place in the site's connection limiter.  Raw bytes on a L{StringTransport},
time on a L{Clock}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from raft3d.api import BoundedRequest
from raft3d.service import HTTPLimits
from raft3d.service._channel import error_response

from ._fakes import LogCapture
from ._rawhttp import RawClient, RawResponse, make_site, parse_responses

GET = b"GET /thing HTTP/1.1\r\nHost: node\r\n\r\n"


class Recorder(Resource):
    """
    A leaf that records each request and answers with the size of its
    body, or holds it open when asked to.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[bytes, bytes, bytes]] = []
        self.hold = False
        self.held: list[Any] = []

    def render(self, request: Any) -> Any:
        body = request.content.read()
        self.seen.append((request.method, request.uri, body))
        request.setHeader(b"content-type", b"application/json")
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        return json.dumps({"size": len(body)}).encode()


class SmallRequest(BoundedRequest):
    max_body_bytes = 10


def post(body: bytes, *headers: bytes) -> bytes:
    head = b"POST /thing HTTP/1.1\r\nHost: node\r\n" + b"".join(h + b"\r\n" for h in headers)
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


class ChannelTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.log = LogCapture()
        self.log.install(self)
        self.resource = Recorder()
        self.site, self.clock = make_site(self.resource)
        self.site.requestFactory = SmallRequest

    def client(self, **kwargs: Any) -> RawClient:
        return RawClient(self.site, **kwargs)

    def assertError(self, response: RawResponse, status: int, code: str) -> None:
        """
        C{response} is the API's JSON error with this status and code, and
        closes the connection.
        """
        self.assertEqual(response.status, status, response)
        self.assertEqual(response.header("content-type"), "application/json")
        self.assertEqual(response.header("connection"), "close")
        self.assertEqual(set(response.json), {"error"})
        self.assertEqual(response.json["error"]["code"], code)
        self.assertIsInstance(response.json["error"]["message"], str)

    def refused(self, data: bytes, status: int, code: str) -> RawClient:
        """
        Send C{data} on a new connection: it gets exactly this error, the
        connection closes and the resource never sees a request.
        """
        client = self.client()
        client.send(data)
        [response] = client.responses()
        self.assertError(response, status, code)
        self.assertTrue(client.closing)
        self.assertEqual(self.resource.seen, [])
        return client


class DeadlineTests(ChannelTestCase):
    """
    Slow clients ("slowloris") cannot hold a connection by dribbling.
    """

    def test_dribbled_headers(self) -> None:
        """
        Headers sent a byte per second never trigger the 60 s idle timeout,
        but the request's 30 s deadline answers 408 and closes; the log says
        so once.
        """
        client = self.client()
        client.send(b"GET /thing HTTP/1.1\r\n")
        for _ in range(29):
            self.clock.advance(1)
            client.send(b"X")
        self.assertFalse(client.closing)
        self.assertEqual(client.transport.value(), b"")
        self.clock.advance(1)
        [response] = client.responses()
        self.assertError(response, 408, "request_timeout")
        self.assertIn("30 s", response.json["error"]["message"])
        self.assertTrue(client.closing)
        self.assertEqual(self.resource.seen, [])
        # Bytes after the refusal are ignored.
        client.send(b"\r\n\r\n" + GET)
        self.assertEqual(len(client.responses()), 1)
        [line] = self.log.matching("HTTP API: closing the connection from 10.1.2.3:40000")
        self.assertIn("did not send a whole request within 30 s", line)

    def test_timeouts_logged_throttled(self) -> None:
        """
        Many slow clients timing out together make one log line (with a
        count on the next one), not one each.
        """
        clients = [self.client(port=40000 + i) for i in range(20)]
        for client in clients:
            client.send(b"GET /")
        self.clock.advance(30)
        self.assertTrue(all(client.closing for client in clients))
        self.assertEqual(len(self.log.matching("did not send a whole request")), 1)
        late = self.client()
        late.send(b"GET /")
        self.clock.advance(30)
        [_, line] = self.log.matching("did not send a whole request")
        self.assertIn("(19 more since the last such line)", line)

    def test_dribbled_body(self) -> None:
        """
        A body that arrives too slowly misses the same deadline, counted
        from the request's first byte.
        """
        client = self.client()
        client.send(b"POST /thing HTTP/1.1\r\nContent-Length: 10\r\n\r\n")
        for _ in range(9):
            self.clock.advance(3)
            client.send(b"x")
        self.clock.advance(3)
        [response] = client.responses()
        self.assertError(response, 408, "request_timeout")

    def test_deadline_per_request(self) -> None:
        """
        Each request of a kept-alive connection gets its own deadline,
        started by its first byte, not by the connection.
        """
        client = self.client()
        client.send(GET)
        self.clock.advance(29)
        client.send(b"GET /th")
        self.clock.advance(29)
        self.assertEqual(len(client.responses()), 1)
        client.send(b"ing HTTP/1.1\r\n\r\n")
        self.clock.advance(100)
        self.assertEqual([r.status for r in client.responses()], [200, 200])
        self.assertEqual(len(self.resource.seen), 2)

    def test_slow_answer_not_timed_out(self) -> None:
        """
        Once a request is complete the deadline stops: a slow answer (a
        linearizable read waiting for the leader) is not cut short.
        """
        self.resource.hold = True
        client = self.client()
        client.send(GET)
        self.clock.advance(120)
        self.assertEqual(client.transport.value(), b"")
        self.assertFalse(client.closing)
        [request] = self.resource.held
        request.write(b"{}")
        request.finish()
        [response] = client.responses()
        self.assertEqual(response.status, 200)

    def test_pipelined_requests(self) -> None:
        """
        Requests sent back to back in one write are all answered, and the
        one buffered behind a slow answer gets its deadline only when it is
        read.
        """
        self.resource.hold = True
        client = self.client()
        client.send(GET + GET)
        self.clock.advance(60)
        self.resource.hold = False
        self.resource.held[0].finish()
        self.assertEqual([r.status for r in client.responses()], [200, 200])
        self.assertFalse(client.closing)

    def test_idle_connection(self) -> None:
        """
        A connection that sends nothing is closed by the idle timeout.
        """
        client = self.client()
        self.clock.advance(59)
        self.assertFalse(client.closing)
        self.clock.advance(1)
        self.assertTrue(client.closing)

    def test_configurable(self) -> None:
        """
        Both timeouts come from the site's L{HTTPLimits}; L{None} turns the
        request deadline off.
        """
        site, clock = make_site(self.resource, HTTPLimits(idle_timeout=5, request_timeout=2))
        fast = RawClient(site)
        fast.send(b"GET /")
        clock.advance(2)
        self.assertError(fast.responses()[0], 408, "request_timeout")
        idle = RawClient(site)
        clock.advance(5)
        self.assertTrue(idle.closing)
        site, clock = make_site(self.resource, HTTPLimits(request_timeout=None))
        patient = RawClient(site)
        for _ in range(100):
            clock.advance(1)
            patient.send(b"X")
        self.assertFalse(patient.closing)


class MalformedHTTPTests(ChannelTestCase):
    """
    Broken HTTP gets the API's JSON error and a closed connection, where
    Twisted would send a bare 400 or nothing at all.
    """

    def test_bad_framing(self) -> None:
        """
        A bad request line, a header without a colon or with a bad name, a
        duplicated or non-numeric C{Content-Length}, and an unknown or
        doubled transfer coding are 400 C{malformed_request}.
        """
        for data in (
            b"NONSENSE\r\n\r\n",
            b"GET /thing HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /thing HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"POST /thing HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
            b"POST /thing HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nab",
            b"POST /thing HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST /thing HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
            b"POST /thing HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST /thing HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        ):
            self.setUp()
            self.refused(data, 400, "malformed_request")

    def test_bad_chunks(self) -> None:
        """
        A chunked body that breaks the chunk syntax is a 400 too.
        """
        self.refused(
            b"POST /thing HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n",
            400,
            "malformed_request",
        )

    def test_too_many_headers(self) -> None:
        """
        More than Twisted's 500 headers is a 400.
        """
        headers = b"".join(b"X-%d: 1\r\n" % i for i in range(501))
        self.refused(b"GET /thing HTTP/1.1\r\n" + headers + b"\r\n", 400, "malformed_request")

    def test_long_lines(self) -> None:
        """
        A request line over 16 KiB is 414 C{uri_too_long}; a header line
        over it is 431 C{headers_too_large}, as is a head over 16 KiB in
        total (Twisted's bare 400 there).
        """
        self.refused(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n", 414, "uri_too_long")
        self.setUp()
        self.refused(b"GET /thing HTTP/1.1\r\nX-Big: " + b"a" * 20000, 431, "headers_too_large")
        self.setUp()
        many = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 1000) for i in range(20))
        self.refused(b"GET /thing HTTP/1.1\r\n" + many + b"\r\n", 400, "malformed_request")

    def test_error_response(self) -> None:
        """
        L{error_response} is a complete HTTP/1.1 response with a JSON body
        and a length, that closes the connection.
        """
        [response], rest = parse_responses(error_response(418, "teapot", "short and stout"))
        self.assertEqual(rest, b"")
        self.assertEqual(response.status, 418)
        self.assertEqual(response.json, {"error": {"code": "teapot", "message": "short and stout"}})
        self.assertEqual(response.header("connection"), "close")


class BodyLimitTests(ChannelTestCase):
    """
    Bodies over the request factory's limit are refused as soon as that is
    known, without reading them.
    """

    def test_declared_too_large(self) -> None:
        """
        A C{Content-Length} over the limit is answered 413 right after the
        headers, without the C{100 Continue} that would invite the body.
        """
        client = self.refused(
            b"POST /thing HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 11\r\n\r\n",
            413,
            "payload_too_large",
        )
        self.assertNotIn(b"100 Continue", client.transport.value())
        self.refused(
            b"POST /thing HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            413,
            "payload_too_large",
        )

    def test_chunked_too_large(self) -> None:
        """
        A chunked body without C{Content-Length} is refused with a 413 as
        soon as it passes the limit, and no more than the limit is ever
        buffered.
        """
        client = self.client()
        client.send(b"POST /thing HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        client.send(b"6\r\nxxxxxx\r\n")
        self.assertEqual(client.transport.value(), b"")
        assert client.channel is not None
        request = client.channel.requests[-1]
        client.send(b"6\r\nxxxxxx\r\n")
        self.assertLessEqual(len(request.content.getvalue()), 10)
        [response] = client.responses()
        self.assertError(response, 413, "payload_too_large")
        self.assertTrue(client.closing)
        client.send(b"1000\r\n" + b"x" * 4096)
        self.assertEqual(self.resource.seen, [])

    def test_chunked_within_limit(self) -> None:
        """
        A chunked body up to the limit reaches the resource whole.
        """
        client = self.client()
        client.send(
            b"POST /thing HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nabcd\r\n6\r\nefghij\r\n0\r\n\r\n"
        )
        self.assertEqual(self.resource.seen, [(b"POST", b"/thing", b"abcdefghij")])
        self.assertEqual(client.responses()[0].json, {"size": 10})

    def test_form_types_not_parsed(self) -> None:
        """
        A body declared as a form is not parsed by Twisted (which answered
        a bare 400 to a JSON body declared C{multipart/form-data}): it
        reaches the resource as it is.
        """
        client = self.client()
        client.send(post(b'{"a":1}', b"Content-Type: multipart/form-data; boundary=zz"))
        self.assertEqual(self.resource.seen, [(b"POST", b"/thing", b'{"a":1}')])
        self.assertEqual(client.responses()[0].status, 200)


class AdmissionTests(ChannelTestCase):
    """
    The channel keeps the site's limiter informed.
    """

    def test_pending_then_established(self) -> None:
        """
        A connection is pending until its request is complete, established
        while it is answered, pending again while kept alive, and frees its
        place when lost.
        """
        limiter = self.site.limiter
        self.resource.hold = True
        client = self.client()
        self.assertEqual((limiter.open_count, limiter.pending_count), (1, 1))
        client.send(b"GET /thing HTTP/1.1\r\n")
        self.assertEqual(limiter.pending_count, 1)
        client.send(b"\r\n")
        self.assertEqual(limiter.pending_count, 0)
        self.resource.held[0].finish()
        self.assertEqual(limiter.pending_count, 1)
        client.lose()
        self.assertEqual((limiter.open_count, limiter.pending_count), (0, 0))

    def test_cap_and_eviction(self) -> None:
        """
        Over C{max_connections} a connection is refused outright; over
        C{max_pending} the connection waiting longest is closed for the
        newcomer, while connections being answered are left alone.
        """
        site, clock = make_site(self.resource, HTTPLimits(max_connections=4, max_pending=2))
        self.resource.hold = True
        busy = RawClient(site)
        busy.send(GET)
        slow = RawClient(site)
        slow.send(b"GET /")
        clock.advance(1)
        idle = RawClient(site)
        self.assertFalse(slow.closing)
        newcomer = RawClient(site, host="10.9.9.9")
        self.assertFalse(newcomer.refused)
        self.assertTrue(slow.closing)
        self.assertFalse(idle.closing or busy.closing)
        # The evicted connection counts until it is gone.
        self.assertTrue(RawClient(site).refused)
        slow.lose()
        self.assertFalse(RawClient(site).refused)
        self.assertTrue(idle.closing)
