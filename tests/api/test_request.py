"""
Tests for L{raft3d.api._request}: bounded bodies.
"""

from __future__ import annotations

import json
from io import BytesIO
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyChannel

from raft3d.api import MAX_BODY_BYTES, APIError, BoundedRequest
from raft3d.api._request import read_body


class SmallRequest(BoundedRequest):
    max_body_bytes = 10


class FakeRequest:
    """
    Just enough of a request for L{read_body}.
    """

    def __init__(self, body: bytes | None, content_length: bytes | None = None) -> None:
        self.content = None if body is None else BytesIO(body)
        self.headers = {} if content_length is None else {b"content-length": content_length}
        self.reads: list[int] = []
        if self.content is not None:
            original = self.content.read

            def read(size: int = -1) -> bytes:
                self.reads.append(size)
                return original(size)

            self.content.read = read  # type: ignore[method-assign]

    def getHeader(self, name: bytes) -> bytes | None:
        return self.headers.get(name)


class ReadBodyTests(SynchronousTestCase):
    """
    L{read_body} checks the declared length first and caps the read.
    """

    def read(self, request: Any, limit: int = 10) -> bytes:
        return read_body(request, limit)

    def assert413(self, request: Any) -> None:
        with self.assertRaises(APIError) as caught:
            self.read(request)
        self.assertEqual(
            (caught.exception.status, caught.exception.code), (413, "payload_too_large")
        )

    def test_default_limit(self) -> None:
        """
        The default limit is 1 MiB.
        """
        self.assertEqual(MAX_BODY_BYTES, 1 << 20)
        self.assertEqual(read_body(FakeRequest(b"x" * MAX_BODY_BYTES)), b"x" * MAX_BODY_BYTES)  # type: ignore[arg-type]

    def test_within_limit(self) -> None:
        """
        A body up to the limit is returned whole, from its start.
        """
        request = FakeRequest(b"0123456789", b"10")
        assert request.content is not None
        request.content.seek(5)
        self.assertEqual(self.read(request), b"0123456789")

    def test_no_body(self) -> None:
        """
        A request without content reads as empty.
        """
        self.assertEqual(self.read(FakeRequest(None)), b"")

    def test_declared_too_large(self) -> None:
        """
        A declared length over the limit is refused without reading.
        """
        request = FakeRequest(b"", b"11")
        self.assert413(request)
        self.assertEqual(request.reads, [])

    def test_undeclared_too_large(self) -> None:
        """
        Without a declared length (chunked), at most limit + 1 bytes are
        read before refusing.
        """
        request = FakeRequest(b"x" * 1000)
        self.assert413(request)
        self.assertEqual(request.reads, [11])

    def test_flagged(self) -> None:
        """
        A request flagged by L{BoundedRequest} is refused.
        """
        request = FakeRequest(b"")
        request.body_too_large = True  # type: ignore[attr-defined]
        self.assert413(request)

    def test_bad_content_length(self) -> None:
        """
        A non-numeric Content-Length is a 400.
        """
        with self.assertRaises(APIError) as caught:
            self.read(FakeRequest(b"", b"ten"))
        self.assertEqual(caught.exception.status, 400)


class BoundedRequestTests(SynchronousTestCase):
    """
    L{BoundedRequest} stops buffering at its limit.
    """

    def test_declared_too_large(self) -> None:
        """
        A declared length over the limit flags the request and buffers
        nothing of what follows.
        """
        request = SmallRequest(DummyChannel())
        request.gotLength(11)
        request.handleContentChunk(b"x" * 11)
        self.assertTrue(request.body_too_large)
        self.assertEqual(request.content.getvalue(), b"")

    def test_chunked_too_large(self) -> None:
        """
        Chunks are buffered until they would pass the limit; then what was
        buffered is dropped and the rest ignored.
        """
        request = SmallRequest(DummyChannel())
        request.gotLength(None)
        request.handleContentChunk(b"x" * 6)
        self.assertFalse(request.body_too_large)
        request.handleContentChunk(b"x" * 5)
        request.handleContentChunk(b"x" * 5)
        self.assertTrue(request.body_too_large)
        self.assertEqual(request.content.getvalue(), b"")

    def test_within_limit(self) -> None:
        """
        A body up to the limit is buffered normally.
        """
        request = SmallRequest(DummyChannel())
        request.gotLength(10)
        request.handleContentChunk(b"x" * 4)
        request.handleContentChunk(b"y" * 6)
        self.assertFalse(request.body_too_large)
        request.content.seek(0)
        self.assertEqual(request.content.read(), b"xxxxyyyyyy")

    def test_asterisk_target(self) -> None:
        """
        A request for C{*} (which Twisted answers itself, with an empty
        body and no content type) gets the API's JSON 404, whatever its
        method (found by the raw HTTP fuzzer).
        """
        for method in (b"GET", b"OPTIONS"):
            channel = DummyChannel()
            request = BoundedRequest(channel)
            request.method = method
            request.clientproto = b"HTTP/1.1"
            request._handleStar()
            written = channel.transport.written.getvalue()
            head, _, body = written.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 404"), head)
            self.assertIn(b"Content-Type: application/json", head)
            self.assertEqual(
                json.loads(body), {"error": {"code": "not_found", "message": "no such resource"}}
            )
