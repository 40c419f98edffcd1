# -*- test-case-name: tests.api.test_request -*-
"""
Bounded request bodies.

C{twisted.web} buffers a whole request body (in memory, or in a temporary
file past 100 kB) before the resource sees it, whatever its size.  The API
refuses bodies over L{MAX_BODY_BYTES} twice over: L{read_body} checks the
declared C{Content-Length} before touching the body and never reads more than
the limit plus one byte; and L{BoundedRequest}, the request factory the
service should give its C{Site}, stops buffering at the limit, so a huge or
chunked upload costs no memory or disk before the 413.
"""

from __future__ import annotations

from io import BytesIO
from typing import IO, Any, Callable, ClassVar, Final, Protocol

from twisted.web.http_headers import Headers
from twisted.web.server import Request

from ._errors import APIError
from ._json import to_json_bytes

MAX_BODY_BYTES: Final = 1024 * 1024
"""
Largest request body accepted (1 MiB).
"""


class HTTPRequest(Protocol):
    """
    The part of C{twisted.web}'s request the API uses, typed (the
    C{IRequest} interface is not).
    """

    method: bytes
    uri: bytes
    path: bytes
    postpath: list[bytes]
    requestHeaders: Headers
    content: IO[bytes] | None

    def getHeader(self, key: bytes) -> bytes | None: ...

    def setHeader(self, name: bytes | str, value: bytes | str) -> None: ...

    def setResponseCode(self, code: int, message: bytes | None = None) -> None: ...

    def getRequestHostname(self) -> bytes: ...


def mark_reusable(request: object, version_of: Callable[[], int]) -> None:
    """
    Say that the answer about to be given to C{request} depends on nothing
    but the request's bytes and on the state at the version C{version_of}
    returns now (a stale read): a server may send the same answer to the
    same bytes again while C{version_of} still returns that version.

    A request with no C{reusable_at} method (C{twisted.web}'s) is left
    alone: its server keeps no such memo.
    """
    reusable_at = getattr(request, "reusable_at", None)
    if reusable_at is not None:
        reusable_at(version_of)


def too_large(limit: int) -> APIError:
    return APIError(413, "payload_too_large", f"the body must be at most {limit} bytes")


class BoundedRequest(Request):
    """
    A C{twisted.web} request that keeps at most C{max_body_bytes} of its
    body and flags the rest.  Use it as the C{Site}'s C{requestFactory}.

    @ivar body_too_large: the declared or received body exceeded the limit;
        what was buffered has been dropped.
    """

    max_body_bytes: ClassVar[int] = MAX_BODY_BYTES
    body_too_large: bool = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > self.max_body_bytes:
            self._drop_body()
            return
        super().gotLength(length)  # type: ignore[no-untyped-call]

    def handleContentChunk(self, data: bytes) -> None:
        if self.body_too_large:
            return
        content: IO[bytes] | None = self.content
        if content is not None and content.tell() + len(data) > self.max_body_bytes:
            self._drop_body()
            return
        super().handleContentChunk(data)  # type: ignore[no-untyped-call]

    def _handleStar(self) -> None:
        """
        Twisted answers a request for C{*} (the asterisk form, meant for a
        server-wide C{OPTIONS}) itself, with an empty body and no content
        type.  The API has no such resource: answer it as any unknown path,
        in JSON.
        """
        body = to_json_bytes({"error": {"code": "not_found", "message": "no such resource"}})
        self.setResponseCode(404)
        self.setHeader(b"content-type", b"application/json")  # type: ignore[no-untyped-call]
        self.setHeader(b"content-length", b"%d" % len(body))  # type: ignore[no-untyped-call]
        self.write(body)  # type: ignore[no-untyped-call]
        self.finish()  # type: ignore[no-untyped-call]

    def _drop_body(self) -> None:
        old: Any = getattr(self, "content", None)
        if old is not None:
            old.close()
        self.body_too_large = True
        self.content = BytesIO()


def read_body(request: HTTPRequest, limit: int = MAX_BODY_BYTES) -> bytes:
    """
    Return the request body, at most C{limit} bytes of it.

    @raise APIError: 413 if the declared length, the L{BoundedRequest}
        flag or the body itself exceeds C{limit}.
    """
    if getattr(request, "body_too_large", False):
        raise too_large(limit)
    declared = request.getHeader(b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise too_large(limit)
        except ValueError:
            raise APIError(400, "invalid_request", "invalid Content-Length")
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data: bytes = content.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit)
    return data
