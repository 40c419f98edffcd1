# -*- test-case-name: tests.service.test_channel -*-
"""
The HTTP connection of the API: C{twisted.web}'s L{HTTPChannel} with a
deadline for each request and JSON answers for broken HTTP.

C{twisted.web} already caps the request line and headers (16 KiB) and has
an idle timeout, but the idle timer restarts on every byte received, so a
client that sends a request one byte every few seconds ("slowloris") keeps
its connection forever.  L{GuardedHTTPChannel} gives every request a
deadline, from its first byte until its body is complete; a request that
misses it gets a 408 and the connection is closed.

C{twisted.web} answers malformed HTTP (a bad request line or header, a
duplicated or non-numeric C{Content-Length}, bad chunking) with a bare
C{400 Bad Request} and no body, and drops a line over its length limit
without any answer.  Clients of this API expect
C{{"error": {"code", "message"}}} for every error, so this channel answers
those in that shape too, and closes the connection, since the rest of the
stream cannot be trusted.  A body declared (or, chunked, found) larger than
the site's limit is answered with a 413 at once, without reading it.

The channel also reports to its L{Admission} (see
L{raft3d.transport.ConnectionLimiter}): it is pending while it waits for or
receives a request, established while one is being answered, and it closes
itself when evicted.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel, Request

from raft3d.transport import Admission, ThrottledLog

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
}


def error_response(status: int, code: str, message: str) -> bytes:
    """
    A whole HTTP/1.1 response carrying the API's JSON error, that closes
    the connection.
    """
    body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":")).encode(
        "utf-8"
    )
    reason = _REASONS.get(status, b"Error")
    head = (
        b"HTTP/1.1 %d %s\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % (status, reason, len(body))
    )
    return head + body


class GuardedHTTPChannel(HTTPChannel):
    """
    An L{HTTPChannel} with a per-request deadline and JSON errors; see the
    module docstring.  L{APISite} sets the instance attributes below when it
    builds one.

    @ivar request_timeout: seconds a client has to send a whole request,
        from its first byte; L{None} for no deadline.
    @ivar max_body_bytes: the largest request body accepted.
    @ivar admission: this connection's place in the site's limiter.
    @ivar timeouts: where missed deadlines are logged, throttled.
    """

    request_timeout: float | None = None
    max_body_bytes: int | None = None
    admission: Admission | None = None
    timeouts: ThrottledLog | None = None

    _deadline: IDelayedCall | None = None
    _answering = False
    _refused = False
    _head_lines = 0

    # -- IProtocol --------------------------------------------------------

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        if self.admission is not None:
            self.admission.on_evict = self._evicted

    def dataReceived(self, data: bytes) -> None:
        if self._refused or self._closing():
            # Nothing more will be answered on this connection (it was
            # refused, or its last response was meant to end it, as for
            # HTTP/1.0): bytes still arriving must not start a deadline.
            return
        if data and not self._answering and self._deadline is None:
            self._start_deadline()
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_deadline()
        if self.admission is not None:
            self.admission.release()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    # -- the request's life -------------------------------------------------

    def lineReceived(self, line: bytes) -> None:
        self._head_lines += 1
        super().lineReceived(line)  # type: ignore[no-untyped-call]

    def allHeadersReceived(self) -> None:
        limit = self.max_body_bytes
        if limit is not None and self.length is not None and self.length > limit:
            # Before Twisted would answer "Expect: 100-continue" and invite
            # the body.
            self._refuse(413, "payload_too_large", f"the body must be at most {limit} bytes")
            return
        super().allHeadersReceived()  # type: ignore[no-untyped-call]

    def rawDataReceived(self, data: bytes) -> None:
        super().rawDataReceived(data)
        if self._answering or self._refused or not self.requests:
            return
        if getattr(self.requests[-1], "body_too_large", False):
            limit = self.max_body_bytes
            self._refuse(413, "payload_too_large", f"the body must be at most {limit} bytes")

    def allContentReceived(self) -> None:
        self._stop_deadline()
        self._answering = True
        self._head_lines = 0
        if self.admission is not None:
            self.admission.established()
        super().allContentReceived()  # type: ignore[no-untyped-call]

    def requestDone(self, request: Request) -> None:
        # Before the base class replays pipelined bytes into dataReceived,
        # which starts the next request's deadline.
        self._answering = False
        if self.admission is not None:
            self.admission.pending()
        super().requestDone(request)  # type: ignore[no-untyped-call]

    # -- refusals -----------------------------------------------------------

    def _respondToBadRequestAndDisconnect(self) -> None:
        """
        Twisted's answer to malformed HTTP, here in the API's error shape.
        """
        self._refuse(400, "malformed_request", "the request is not well-formed HTTP/1.1")

    def lineLengthExceeded(self, line: bytes) -> None:
        limit = self.MAX_LENGTH
        if self._head_lines == 0:
            self._refuse(414, "uri_too_long", f"the request line must be at most {limit} bytes")
        else:
            self._refuse(431, "headers_too_large", f"each header must be at most {limit} bytes")

    def continue_request(self, waited: float) -> None:
        """
        Take over a connection whose client has been sending its request
        for C{waited} seconds already: what is left of the deadline
        applies.
        """
        timeout = self.request_timeout
        if timeout is not None and self._deadline is None:
            self._deadline = self.callLater(  # type: ignore[no-untyped-call]
                max(timeout - waited, 0.0), self._request_timed_out
            )

    def _request_timed_out(self) -> None:
        self._deadline = None
        if self.timeouts is not None and self.request_timeout is not None:
            log_request_timeout(self.timeouts, self.transport, self.request_timeout)
        self._refuse(
            408,
            "request_timeout",
            f"the request was not received within {self.request_timeout:g} s",
        )

    def _evicted(self) -> None:
        self._stop_deadline()
        self.setTimeout(None)  # type: ignore[no-untyped-call]
        self._refused = True
        if self.transport is not None:
            self.loseConnection()  # type: ignore[no-untyped-call]

    def _refuse(self, status: int, code: str, message: str) -> None:
        """
        Answer the request being received with an error and close the
        connection.  Only while no response is being written: then Twisted
        has sent nothing on this connection since the last response.
        """
        if self._refused:
            return
        if self._answering:
            # A response is in progress; no room for another.
            super()._respondToBadRequestAndDisconnect()  # type: ignore[no-untyped-call]
            return
        self._refused = True
        self._stop_deadline()
        self.setTimeout(None)  # type: ignore[no-untyped-call]
        transport = self.transport
        if transport is None or self._closing():
            return
        transport.write(error_response(status, code, message))
        self.loseConnection()  # type: ignore[no-untyped-call]
        if self.abortTimeout is not None:
            # As Twisted's own timeout does: a client that reads nothing
            # must not keep the socket.
            self._abortingCall = self.callLater(  # type: ignore[no-untyped-call]
                self.abortTimeout, self.forceAbortClient
            )

    def _closing(self) -> bool:
        return bool(getattr(self.transport, "disconnecting", False))

    def _start_deadline(self) -> None:
        timeout = self.request_timeout
        if timeout is not None:
            self._deadline = self.callLater(  # type: ignore[no-untyped-call]
                timeout, self._request_timed_out
            )

    def _stop_deadline(self) -> None:
        deadline, self._deadline = self._deadline, None
        if deadline is not None and deadline.active():
            deadline.cancel()


def log_request_timeout(log: ThrottledLog, transport: Any, seconds: float) -> None:
    """
    Log (throttled) that the client on C{transport} missed its deadline.
    """
    log.warn(
        "HTTP API: closing the connection from {peer}: it did not send a whole"
        " request within {seconds:g} s",
        peer=_describe(transport),
        seconds=seconds,
    )


def _describe(transport: Any) -> str:
    peer = getattr(transport, "getPeer", None)
    address = peer() if peer is not None else None
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return repr(address)
