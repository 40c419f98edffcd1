"""
Tests for L{raft3d.api._forward}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from raft3d.api._forward import Forwarded, forward, leader_url


class LeaderURLTests(SynchronousTestCase):
    """
    L{leader_url} keeps the path and query and accepts both address forms.
    """

    def test_host_port(self) -> None:
        """
        A C{host:port} address gets C{http://}; path and query are kept.
        """
        self.assertEqual(
            leader_url("127.0.0.1:8001", b"/api/v1/print_jobs/j/status?status=Done"),
            "http://127.0.0.1:8001/api/v1/print_jobs/j/status?status=Done",
        )

    def test_full_base(self) -> None:
        """
        A full base URL is used as given (trailing slash dropped).
        """
        self.assertEqual(
            leader_url("http://127.0.0.1:8001/", b"/status"), "http://127.0.0.1:8001/status"
        )

    def test_escapes(self) -> None:
        """
        Existing escapes are kept; raw non-ASCII bytes and spaces are
        escaped.
        """
        self.assertEqual(
            leader_url("h:1", b"/a%20b/\xc3\xa9 x?q=%FF"), "http://h:1/a%20b/%C3%A9%20x?q=%FF"
        )


class FakeResponse:
    def __init__(self, code: int, headers: dict[bytes, list[bytes]], body: bytes) -> None:
        self.code = code
        self.headers = Headers(headers)
        self._body = body

    def content(self) -> Deferred[bytes]:
        return succeed(self._body)


class FakeRequest:
    def __init__(self, headers: dict[bytes, bytes]) -> None:
        self.method = b"POST"
        self.uri = b"/api/v1/printers"
        self._headers = headers

    def getHeader(self, name: bytes) -> bytes | None:
        return self._headers.get(name)


class ForwardTests(SynchronousTestCase):
    """
    L{forward} replays the request and collects the relayed answer.
    """

    def setUp(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.response: Any = FakeResponse(
            201,
            {
                b"Content-Type": [b"application/json"],
                b"Location": [b"/api/v1/printers/x"],
                b"Server": [b"not relayed"],
            },
            b"{}",
        )

    def request(self, method: str, url: str, *, headers: Any = None, data: Any = None) -> Any:
        self.calls.append((method, url, headers, data))
        return self.response

    def test_replay(self) -> None:
        """
        Method, URL, body, Content-Type and Idempotency-Key are replayed
        with the forwarded marker; only the relevant answer headers are kept.
        """
        self.response = succeed(self.response)
        d = forward(
            self,
            Clock(),
            5.0,
            FakeRequest({b"content-type": b"application/json", b"idempotency-key": b"k"}),  # type: ignore[arg-type]
            "127.0.0.1:8001",
            b"{}",
        )
        self.assertEqual(
            self.successResultOf(d),
            Forwarded(
                201,
                {b"content-type": b"application/json", b"location": b"/api/v1/printers/x"},
                b"{}",
            ),
        )
        [(method, url, headers, data)] = self.calls
        self.assertEqual(
            (method, url, data), ("POST", "http://127.0.0.1:8001/api/v1/printers", b"{}")
        )
        self.assertEqual(
            headers,
            {
                b"X-Raft3D-Forwarded": [b"1"],
                b"Accept": [b"application/json"],
                b"content-type": [b"application/json"],
                b"idempotency-key": [b"k"],
            },
        )

    def test_empty_body(self) -> None:
        """
        An empty body is sent as no body, and absent headers are not
        invented.
        """
        self.response = succeed(self.response)
        forward(self, Clock(), 5.0, FakeRequest({}), "h:1", b"")  # type: ignore[arg-type]
        [(_, _, headers, data)] = self.calls
        self.assertIsNone(data)
        self.assertNotIn(b"content-type", headers)
        self.assertNotIn(b"idempotency-key", headers)

    def test_timeout(self) -> None:
        """
        No full answer within the timeout errbacks and cancels the attempt.
        """
        cancelled: list[object] = []
        self.response = Deferred(cancelled.append)
        clock = Clock()
        d = forward(self, clock, 2.0, FakeRequest({}), "h:1", b"")  # type: ignore[arg-type]
        clock.advance(1.9)
        self.assertNoResult(d)
        clock.advance(0.1)
        self.failureResultOf(d)
        self.assertEqual(len(cancelled), 1)
