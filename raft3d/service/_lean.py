# -*- test-case-name: tests.service.test_lean -*-
"""
A lean HTTP/1.1 connection for the API's hot routes.

A profile of a loaded leader found C{twisted.web}'s HTTP machinery (line
parsing, the C{Request} object and its headers, resource traversal, chunked
framing, the producer dance for every response) costing more CPU than the
consensus core and the farm together.  L{LeanHTTPChannel} parses the common
case itself, a well-formed C{GET} or C{POST} in HTTP/1.1 with a
C{Content-Length} body, hands it to the API's L{FastPath} (the same
handlers and error mapping C{twisted.web} reaches), and writes the answer
in one piece with a C{Content-Length}.

Anything else is not its business.  A request the fast path does not take,
or that is in any way unusual (another method or version, chunked or
C{Expect} bodies, a body over the limit, an upgrade, folded, duplicated or
odd headers, no C{Host}, a head larger than L{MAX_HEAD_BYTES}), hands the
connection, with the bytes it holds, to a L{GuardedHTTPChannel} for good.
So broken or hostile HTTP gets exactly the answers it gets from
C{twisted.web} (JSON 400, 413, 414, 431...), and the lean parser only has
to be right about what it accepts.

What the guarded channel bounds, this one bounds too: a request must arrive
whole within the site's request timeout (408), an idle connection is
closed, the connection's place in the site's limiter is pending while it
waits for a request and established while one is answered, and it stops
reading while its answers cannot be written (or while a pipelined backlog
piles up behind one being answered).  Those deadlines are checked by one
L{LeanSweeper} per site rather than a timer per request, so they may fire
up to its resolution late.

A head the connection took is kept, parsed and routed, in the site's
L{HeadCache}: clients send the same heads again and again, and the next
one with the same bytes is not read again.

An answer the API marks as reusable (a stale read: see
L{raft3d.api.mark_reusable}) is kept in the site's L{AnswerMemo}, keyed by
the exact bytes of the request's head, and sent again for the same bytes
without parsing them while the part of the state it read (one object, or
one kind for a listing) is at the same version and the
C{Date} it carries is still the current second: dashboards polling an
object cost little more than the system calls that move the bytes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from io import BytesIO
from typing import Callable, ClassVar, Final, Protocol, cast
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime, ITCPTransport
from twisted.internet.protocol import Protocol as TwistedProtocol
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES, HTTPChannel, datetimeToString
from zope.interface import implementer

from raft3d.api import FastPath, Route
from raft3d.transport import Admission, ThrottledLog, write_now

from ._channel import GuardedHTTPChannel, error_response, log_request_timeout

MAX_HEAD_BYTES: Final = 16384
"""
The largest request line and headers taken here; a larger head goes to
C{twisted.web}, whose limits answer it.
"""

MAX_BACKLOG_BYTES: Final = 65536
"""
Pipelined bytes buffered behind a request being answered before reading
stops.
"""

_HEAD: Final = re.compile(
    rb"(GET|POST) (/[!-~]*) HTTP/1\.1"
    rb"((?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t\x20-\x7e\x80-\xff]*)*)"
)
"""
A head taken here: the request line, then header lines with a token for a
name and no control characters but tab in the value (so no bare CR or LF
anywhere).
"""

_HOST: Final = re.compile(rb"\[?(?P<host>.*?)\]?(:\d+)?")
_HOST_SPECIALS: Final = (b":", b"[", b"]")
_MAX_LENGTH_DIGITS: Final = 12
_MAX_HEADERS: Final = HTTPChannel.maxHeaders
_LINEAR_WHITESPACE: Final = re.compile(rb"\r\n|\r|\n")
_NO_BODY: Final = frozenset({204, 304})
_HANDED_OVER: Final = frozenset({b"transfer-encoding", b"expect", b"upgrade"})
_INTERNAL_ERROR: Final = b'{"error":{"code":"internal_error","message":"internal server error"}}'


class AnswerMemo:
    """
    Answers that may be sent again, keyed by the bytes of a request head
    (request line and headers, for a request with no body).

    An answer is used only while the version it was made at is still
    current and within the second named by its C{Date}; a stale entry is
    dropped when it is found.  Each entry holds one answer, and a full memo
    starts over, so it costs at most C{max_entries} answers of at most
    C{max_answer_bytes}.
    """

    def __init__(self, max_entries: int = 1024, max_answer_bytes: int = 16384) -> None:
        self._max_entries = max_entries
        self._max_answer_bytes = max_answer_bytes
        self._answers: dict[bytes, tuple[bytes, Callable[[], int], int, int]] = {}

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, head: bytes, second: int) -> bytes | None:
        """
        The answer to send again for C{head} in C{second}, if any.
        """
        found = self._answers.get(head)
        if found is None:
            return None
        answer, version_of, version, made_in = found
        if made_in != second or version_of() != version:
            del self._answers[head]
            return None
        return answer

    def put(
        self, head: bytes, answer: bytes, version_of: Callable[[], int], version: int, second: int
    ) -> None:
        """
        Keep C{answer}, made in C{second} from the state at C{version}.
        """
        if len(answer) > self._max_answer_bytes:
            return
        if len(self._answers) >= self._max_entries and head not in self._answers:
            self._answers.clear()
        self._answers[head] = (answer, version_of, version, second)


class _Transport(Protocol):
    """
    What a lean channel needs of its (TCP) transport.
    """

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def registerProducer(self, producer: object, streaming: bool) -> None: ...

    def unregisterProducer(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


class Fallback(Protocol):
    """
    Builds the C{twisted.web} connection that takes over from a lean one.
    """

    def __call__(self, admission: Admission) -> GuardedHTTPChannel: ...


@lru_cache(maxsize=64)
def _canonical(name: bytes) -> bytes:
    """
    C{content-type} as C{Content-Type} (the few names the API sets are
    remembered).
    """
    return b"-".join(part.capitalize() for part in name.split(b"-"))


def _bytes(value: bytes | str) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


class _RawHeaders:
    """
    The request's headers by lower-case name, with the one method of
    C{twisted.web}'s L{Headers} the API uses.
    """

    __slots__ = ("_headers",)

    def __init__(self, headers: dict[bytes, list[bytes]]) -> None:
        self._headers = headers

    def getRawHeaders(self, name: bytes, default: list[bytes] | None = None) -> list[bytes] | None:
        return self._headers.get(name.lower(), default)


class ParsedHead:
    """
    What a request head says, once checked: everything a L{LeanRequest}
    is made of, and the route the fast path gave it.  Shared by every
    request with the same head bytes (see L{HeadCache}), so never changed.
    """

    __slots__ = (
        "method",
        "uri",
        "path",
        "postpath",
        "headers",
        "raw_headers",
        "hostname",
        "close",
        "length",
        "route",
    )

    def __init__(
        self,
        method: bytes,
        uri: bytes,
        headers: dict[bytes, list[bytes]],
        hostname: bytes,
        close: bool,
        length: int,
    ) -> None:
        self.method = method
        self.uri = uri
        self.path = path = uri.partition(b"?")[0]
        segments = path[1:].split(b"/")
        self.postpath = tuple([unquote_to_bytes(s) for s in segments] if b"%" in path else segments)
        self.headers = headers
        self.raw_headers = _RawHeaders(headers)
        self.hostname = hostname
        self.close = close
        self.length = length
        self.route: Route | None = None


class HeadCache:
    """
    Request heads already parsed and routed, by their exact bytes.

    Clients send the same head again and again (the same headers to the
    same endpoint), and reading one (the regular expression, the header
    table, the route) is a good part of what a request costs.  What a head
    says, and whether the lean connection takes it, depends on its bytes
    alone (and on the site's limits and routes, which do not change once
    it serves), so a head seen before need not be read again.  Only heads
    of up to C{max_head_bytes} are kept, and a full cache starts over.
    """

    def __init__(self, max_entries: int = 1024, max_head_bytes: int = 1024) -> None:
        self._max_entries = max_entries
        self.max_head_bytes = max_head_bytes
        self._heads: dict[bytes, ParsedHead] = {}

    def __len__(self) -> int:
        return len(self._heads)

    def get(self, head: bytes) -> ParsedHead | None:
        return self._heads.get(head)

    def put(self, head: bytes, parsed: ParsedHead) -> None:
        if len(head) > self.max_head_bytes:
            return
        if len(self._heads) >= self._max_entries:
            self._heads.clear()
        self._heads[head] = parsed


class LeanRequest:
    """
    One request on a L{LeanHTTPChannel}: the part of C{twisted.web}'s
    request that the API's handlers and the fast path use.

    The response is collected (L{setResponseCode}, L{setHeader},
    L{write}) and sent in one piece by L{finish}.
    """

    body_too_large: ClassVar[bool] = False
    _log: ClassVar[Logger] = Logger()

    def __init__(self, channel: LeanHTTPChannel, parsed: ParsedHead) -> None:
        self.channel = channel
        self.method = parsed.method
        self.uri = parsed.uri
        self.path = parsed.path
        self.prepath: list[bytes] = []
        self.postpath = list(parsed.postpath)
        self._headers = parsed.headers
        self.requestHeaders = parsed.raw_headers
        self.content: BytesIO | None = None
        self.close = parsed.close
        self.code = 200
        self.headers_out: dict[bytes, tuple[bytes, bytes]] = {}
        self._hostname = parsed.hostname
        self._body: list[bytes] = []
        self.finished = False
        self._disconnected = False
        self._notify: list[Deferred[None]] = []
        self.head: bytes | None = None
        self.reusable: tuple[Callable[[], int], int] | None = None

    def reusable_at(self, version_of: Callable[[], int]) -> None:
        """
        The answer depends on this request's bytes and the state at the
        version C{version_of} returns now, nothing else (see
        L{raft3d.api.mark_reusable}).
        """
        self.reusable = (version_of, version_of())

    def getHeader(self, key: bytes) -> bytes | None:
        values = self._headers.get(key.lower())
        return values[-1] if values else None

    def getRequestHostname(self) -> bytes:
        return self._hostname

    def setResponseCode(self, code: int, message: bytes | None = None) -> None:
        if not isinstance(code, int):
            raise TypeError("HTTP response code must be int")
        self.code = code

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        raw_name = _bytes(name)
        raw_value = _LINEAR_WHITESPACE.sub(b" ", _bytes(value))
        self.headers_out[raw_name.lower()] = (_canonical(raw_name), raw_value)

    def write(self, data: bytes) -> None:
        if self.finished:
            raise RuntimeError("write() called after finish()")
        if not self._disconnected:
            self._body.append(data)

    def finish(self) -> None:
        if self.finished:
            raise RuntimeError("finish() called twice")
        self.finished = True
        if self._disconnected:
            return
        for d in self._notify:
            d.callback(None)
        self._notify = []
        self.channel.respond(self)

    def notifyFinish(self) -> Deferred[None]:
        if self._disconnected:
            return fail(ConnectionLost())
        if self.finished:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._notify.append(d)
        return d

    def processingFailed(self, reason: Failure) -> None:
        """
        Even the error mapping failed: log it, answer a bare 500 and close.
        """
        self._log.failure(
            "unhandled error serving {method} {uri}", reason, method=self.method, uri=self.uri
        )
        if self.finished or self._disconnected:
            return
        self._body = [_INTERNAL_ERROR]
        self.code = 500
        self.headers_out = {}
        self.setHeader(b"content-type", b"application/json")
        self.close = True
        self.finish()

    def connection_lost(self, reason: Failure) -> None:
        self._disconnected = True
        notify, self._notify = self._notify, []
        for d in notify:
            d.errback(reason)

    def response(self, date: bytes) -> bytes:
        """
        The whole response, head and body.
        """
        code = self.code
        lines = [b"HTTP/1.1 %d %s" % (code, RESPONSES.get(code, b"Unknown Status"))]
        lines.extend(name + b": " + value for name, value in self.headers_out.values())
        body = b"".join(self._body)
        if code in _NO_BODY:
            body = b""
        else:
            lines.append(b"Content-Length: %d" % len(body))
        lines.append(b"Date: " + date)
        if self.close:
            lines.append(b"Connection: close")
        lines.append(b"")
        lines.append(body)
        return b"\r\n".join(lines)


class _Head:
    """
    A parsed request head, waiting for its body.
    """

    __slots__ = ("request", "found", "start", "end")

    def __init__(self, request: LeanRequest, found: Route, start: int, end: int) -> None:
        self.request = request
        self.found = found
        self.start = start
        self.end = end


@implementer(IPushProducer)
class LeanHTTPChannel(TwistedProtocol):
    """
    One client connection to the API; see the module docstring.

    @param fast: the API's fast path.
    @param fallback: builds the guarded C{twisted.web} channel taking over.
    @param admission: this connection's place in the site's limiter.
    @param sweeper: checks this connection's deadlines.
    @param max_body_bytes: a larger declared body goes to C{twisted.web},
        which answers 413.
    @param memo: the site's reusable answers, if it keeps them.
    @param heads: the site's parsed heads, if it keeps them.
    """

    def __init__(
        self,
        fast: FastPath,
        fallback: Fallback,
        admission: Admission,
        sweeper: LeanSweeper,
        clock: IReactorTime,
        max_body_bytes: int,
        memo: AnswerMemo | None = None,
        heads: HeadCache | None = None,
    ) -> None:
        self._memo = memo
        self._heads = heads
        self._fast = fast
        self._fallback = fallback
        self._admission = admission
        self._sweeper = sweeper
        self._clock = clock
        self._max_body = max_body_bytes
        self._chunks: list[bytes] = []
        self._size = 0
        self._head: _Head | None = None
        self._request: LeanRequest | None = None
        self._parsing = False
        self._write_paused = False
        self._reading = True
        self.inner: GuardedHTTPChannel | None = None
        self._closed_at: float | None = None
        self._since: float | None = None
        self._last = 0.0
        self._date = (-1, b"")

    # -- IProtocol -----------------------------------------------------------

    @property
    def _link(self) -> _Transport | None:
        return cast("_Transport | None", self.transport)

    def connectionMade(self) -> None:
        transport = self._link
        assert transport is not None
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)
        transport.registerProducer(self, True)
        self._admission.on_evict = self._evicted
        self._last = self._clock.seconds()
        self._sweeper.add(self)

    def dataReceived(self, data: bytes) -> None:
        inner = self.inner
        if inner is not None:
            inner.dataReceived(data)
            return
        if self._closed_at is not None or not data:
            return
        now = self._clock.seconds()
        self._last = now
        if self._since is None and self._request is None:
            self._since = now
        self._chunks.append(data)
        self._size += len(data)
        if self._request is None:
            self._parse()
        else:
            self._update_reading()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        inner = self.inner
        if inner is not None:
            inner.connectionLost(reason)
            return
        if self._closed_at is None:
            self._closed_at = self._clock.seconds()
        self._sweeper.discard(self)
        self._admission.release()
        request, self._request = self._request, None
        if request is not None:
            request.connection_lost(reason)

    # -- IPushProducer: the transport cannot take more for now ---------------

    def pauseProducing(self) -> None:
        self._write_paused = True
        self._update_reading()

    def resumeProducing(self) -> None:
        self._write_paused = False
        self._update_reading()
        if self._request is None:
            self._parse()

    def stopProducing(self) -> None:
        pass

    # -- requests ------------------------------------------------------------

    def _parse(self) -> None:
        """
        Serve the complete requests buffered, one at a time, until one must
        wait for the engine, more bytes are needed, or the connection was
        handed over or closed.

        The buffer is joined once and walked with an offset, so a pipelined
        burst is not copied once per request.
        """
        if self._parsing:
            return
        self._parsing = True
        try:
            while (
                self._request is None
                and self._size
                and self.inner is None
                and self._closed_at is None
                and not self._write_paused
            ):
                head = self._head
                if head is not None and head.end > self._size:
                    return
                if len(self._chunks) > 1:
                    self._chunks = [b"".join(self._chunks)]
                buffer = self._chunks[0]
                offset = len(buffer) - self._size
                if head is None:
                    if self._memo is not None and self._answer_again(buffer, offset):
                        continue
                    head = self._parse_head(buffer, offset)
                    if head is None:
                        return
                    if head.end > self._size:
                        self._head = head
                        return
                self._head = None
                request = head.request
                request.content = BytesIO(buffer[offset + head.start : offset + head.end])
                self._size -= head.end
                self._request = request
                self._since = None
                self._admission.established()
                self._fast.serve(request, head.found)
        finally:
            self._parsing = False
            if self._size and len(self._chunks) == 1 and len(self._chunks[0]) > self._size:
                # Keep only what is left, once per call.
                self._chunks = [self._chunks[0][-self._size :]]
            elif not self._size:
                self._chunks = []
            if self.inner is None and self._closed_at is None:
                self._update_reading()

    def _answer_again(self, buffer: bytes, offset: int) -> bool:
        """
        Send a kept answer if the request at C{offset} is one whose answer
        may be sent again (see L{AnswerMemo}), and consume the request.
        """
        assert self._memo is not None
        end = buffer.find(b"\r\n\r\n", offset, offset + MAX_HEAD_BYTES + 4)
        if end < 0:
            return False
        now = self._clock.seconds()
        answer = self._memo.get(buffer[offset : end + 4], int(now))
        if answer is None:
            return False
        self._size -= end + 4 - offset
        self._admission.established()
        write_now(self.transport, (answer,))
        self._await_next(now)
        return True

    def _await_next(self, now: float) -> None:
        """
        An answer went out: wait for the next request, whose deadline runs
        from now if some of its bytes are already here.
        """
        self._last = now
        self._admission.pending()
        self._since = now if self._size else None

    def _parse_head(self, buffer: bytes, offset: int) -> _Head | None:
        """
        The head of the request at C{offset} in C{buffer} if this channel
        takes the request; otherwise C{None}, having handed the connection
        over if it will not take it.  Positions in the head are relative to
        C{offset}.
        """
        end = buffer.find(b"\r\n\r\n", offset, offset + MAX_HEAD_BYTES + 4)
        if end < 0:
            # Twisted may take a bare LF as the end of a line: such a head
            # may be complete for it.
            if (
                len(buffer) - offset > MAX_HEAD_BYTES
                or buffer.find(b"\n\n", offset) >= 0
                or buffer.find(b"\n\r\n", offset) >= 0
            ):
                self._hand_over(buffer[offset:])
            return None
        start = end + 4 - offset
        raw = buffer[offset : end + 4]
        heads = self._heads
        parsed = heads.get(raw) if heads is not None else None
        if parsed is not None:
            request = LeanRequest(self, parsed)
        else:
            found = self._read_head(buffer, offset, end)
            if found is None:
                self._hand_over(buffer[offset:])
                return None
            parsed, request = found
            if heads is not None:
                heads.put(raw, parsed)
        route = parsed.route
        assert route is not None
        if self._memo is not None and not parsed.length and not parsed.close:
            request.head = raw
        return _Head(request, route, start, start + parsed.length)

    def _read_head(
        self, buffer: bytes, offset: int, end: int
    ) -> tuple[ParsedHead, LeanRequest] | None:
        """
        Parse and route the head in C{buffer[offset:end]}, and make its
        request; or C{None} if this connection does not take it.
        """
        head = _HEAD.fullmatch(buffer, offset, end)
        if head is None:
            return None
        lines = head.group(3).split(b"\r\n")
        if len(lines) - 1 > _MAX_HEADERS:
            # Twisted refuses so many (431); so must this connection.
            return None
        headers: dict[bytes, list[bytes]] = {}
        for raw in lines[1:]:
            name, _, value = raw.partition(b":")
            name = name.lower()
            value = value.strip(b" \t")
            if name in headers:
                headers[name].append(value)
            else:
                headers[name] = [value]
        return self._request_from(head.group(1), head.group(2), headers)

    def _request_from(
        self, method: bytes, uri: bytes, headers: dict[bytes, list[bytes]]
    ) -> tuple[ParsedHead, LeanRequest] | None:
        """
        The parsed head, routed, and its request, if the request is plain
        enough to be served here.
        """
        if not _HANDED_OVER.isdisjoint(headers):
            return None
        hosts = headers.get(b"host")
        lengths = headers.get(b"content-length", [b"0"])
        if hosts is None or len(hosts) != 1 or len(lengths) != 1:
            return None
        declared = lengths[0]
        if not declared.isdigit() or len(declared) > _MAX_LENGTH_DIGITS:
            return None
        length = int(declared)
        if length > self._max_body:
            return None
        close = False
        connection = headers.get(b"connection")
        if connection is not None:
            tokens = {t.strip().lower() for v in connection for t in v.split(b",")}
            if b"upgrade" in tokens:
                return None
            close = b"close" in tokens
        hostname = hosts[0]
        if any(c in hostname for c in _HOST_SPECIALS):
            # A port or an IPv6 literal: what twisted.web takes as the name.
            match = _HOST.fullmatch(hostname)
            assert match is not None
            hostname = match.group("host")
        parsed = ParsedHead(method, uri, headers, hostname, close, length)
        request = LeanRequest(self, parsed)
        parsed.route = self._fast.route(request)
        if parsed.route is None:
            return None
        return parsed, request

    def respond(self, request: LeanRequest) -> None:
        """
        Send C{request}'s answer (its C{finish}) and go on to the next.
        """
        if request is not self._request or self.transport is None:
            return
        now = self._clock.seconds()
        second = int(now)
        if self._date[0] != second:
            self._date = (second, datetimeToString(second))  # type: ignore[no-untyped-call]
        answer = request.response(self._date[1])
        write_now(self.transport, (answer,))
        if request.reusable is not None and request.head is not None and request.code == 200:
            assert self._memo is not None
            version_of, version = request.reusable
            self._memo.put(request.head, answer, version_of, version, second)
        self._request = None
        if request.close:
            self._last = now
            self._close(now)
            return
        self._await_next(now)
        self._parse()

    def _update_reading(self) -> None:
        """
        Read from the client unless its answers cannot be written, or a
        backlog has piled up behind the request being answered.
        """
        transport = self._link
        reading = not self._write_paused and (
            self._request is None or self._size <= MAX_BACKLOG_BYTES
        )
        if reading != self._reading and transport is not None:
            self._reading = reading
            if reading:
                transport.resumeProducing()
            else:
                transport.pauseProducing()

    def _hand_over(self, buffer: bytes) -> None:
        """
        Let a guarded C{twisted.web} channel serve this connection from
        C{buffer} on, with what is left of the current request's deadline.
        """
        transport = self._link
        assert transport is not None
        self._chunks, self._size, self._head = [], 0, None
        self._sweeper.discard(self)
        transport.unregisterProducer()
        if not self._reading:
            self._reading = True
            transport.resumeProducing()
        inner = self._fallback(self._admission)
        self.inner = inner
        inner.makeConnection(transport)  # type: ignore[no-untyped-call]
        if self._since is not None:
            inner.continue_request(self._clock.seconds() - self._since)
        inner.dataReceived(buffer)

    # -- deadlines and closing -------------------------------------------------

    def expire(self, now: float) -> None:
        """
        Enforce this connection's deadlines (those of its L{LeanSweeper}).
        """
        request_timeout = self._sweeper.request_timeout
        idle_timeout = self._sweeper.idle_timeout
        transport = self._link
        if transport is None or self.inner is not None:
            return
        if self._closed_at is not None:
            if now - self._closed_at >= self._sweeper.abort_timeout:
                transport.abortConnection()
            return
        if self._since is not None and request_timeout is not None:
            if now - self._since >= request_timeout:
                log_request_timeout(self._sweeper.timeouts, transport, request_timeout)
                transport.write(
                    error_response(
                        408,
                        "request_timeout",
                        f"the request was not received within {request_timeout:g} s",
                    )
                )
                self._close(now)
            return
        if self._request is None and idle_timeout is not None and now - self._last >= idle_timeout:
            self._close(now)

    def _evicted(self) -> None:
        if self._closed_at is None:
            self._close(self._clock.seconds())

    def _close(self, now: float) -> None:
        """
        Stop serving and close once what was written is sent (or abort if
        the client does not read it in time).
        """
        self._closed_at = now
        self._since = None
        self._chunks, self._size, self._head = [], 0, None
        assert self.transport is not None
        self.transport.loseConnection()


class LeanSweeper:
    """
    The deadlines of a site's lean connections, checked every
    C{resolution} seconds by one timer that runs only while there are
    connections.

    @ivar request_timeout: seconds a request may take to arrive whole
        (L{None}: no limit).
    @ivar idle_timeout: seconds a connection may wait for a request
        (L{None}: no limit).
    @ivar abort_timeout: seconds a closing connection may take to drain
        before it is aborted.
    @ivar timeouts: where missed request deadlines are logged, throttled.
    """

    def __init__(
        self,
        clock: IReactorTime,
        request_timeout: float | None,
        idle_timeout: float | None,
        timeouts: ThrottledLog,
        abort_timeout: float = 15.0,
        resolution: float = 1.0,
    ) -> None:
        self._clock = clock
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.timeouts = timeouts
        self.abort_timeout = abort_timeout
        self._resolution = resolution
        self._channels: set[LeanHTTPChannel] = set()
        self._call: IDelayedCall | None = None

    def add(self, channel: LeanHTTPChannel) -> None:
        self._channels.add(channel)
        if self._call is None:
            self._call = self._clock.callLater(self._resolution, self._sweep)

    def discard(self, channel: LeanHTTPChannel) -> None:
        self._channels.discard(channel)

    def _sweep(self) -> None:
        self._call = None
        now = self._clock.seconds()
        for channel in list(self._channels):
            channel.expire(now)
        if self._channels:
            self._call = self._clock.callLater(self._resolution, self._sweep)

    def stop(self) -> None:
        """
        Cancel the timer (the site stops listening).
        """
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()
