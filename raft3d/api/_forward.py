# -*- test-case-name: tests.api.test_forward -*-
"""
Forwarding a write from a follower to the leader.

Any node accepts writes: when the engine answers L{NotLeader} with a known
leader, the follower replays the client's request (method, path and query,
body, C{Content-Type}, C{Idempotency-Key}) against the leader's HTTP address
and relays the answer.  The replay carries L{FORWARDED_HEADER}; a node that
receives a forwarded request and is not the leader either answers 503 rather
than forwarding again, so a stale view of leadership can never make requests
loop between nodes.

The leader makes the ids and timestamps of the objects it creates, exactly
as if the client had asked it directly; the follower only relays bytes.
"""

from __future__ import annotations

from typing import Any, Final, Protocol
from urllib.parse import quote_from_bytes

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.http_headers import Headers

from ._request import HTTPRequest

FORWARDED_HEADER: Final = b"X-Raft3D-Forwarded"

_RELAYED_HEADERS: Final = (b"content-type", b"location", b"retry-after", b"link")
_URI_SAFE: Final = "/?&=%:@!$'()*+,;~-._"


class HTTPResponse(Protocol):
    """
    What forwarding needs of a response (treq's C{_Response}).
    """

    @property
    def code(self) -> int: ...

    @property
    def headers(self) -> Headers: ...

    def content(self) -> Deferred[bytes]: ...


class HTTPClient(Protocol):
    """
    What forwarding needs of an HTTP client: the C{request} of the C{treq}
    module, of a C{treq.HTTPClient} or of C{treq.testing.StubTreq}.
    """

    def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[bytes, list[bytes]] | None = ...,
        data: bytes | None = ...,
    ) -> Deferred[Any]: ...


@attrs.frozen
class Forwarded:
    """
    The leader's answer, ready to relay.

    @ivar headers: the relayed headers (lower-case names).
    """

    code: int
    headers: dict[bytes, bytes]
    body: bytes


def leader_url(http_addr: str, request_uri: bytes) -> str:
    """
    The URL of the same request on the leader at C{http_addr}
    (C{host:port}, or a full C{http://} base).
    """
    base = http_addr if "://" in http_addr else f"http://{http_addr}"
    return base.rstrip("/") + quote_from_bytes(request_uri, safe=_URI_SAFE)


def forward(
    client: HTTPClient,
    clock: IReactorTime,
    timeout: float,
    request: HTTPRequest,
    http_addr: str,
    body: bytes,
) -> Deferred[Forwarded]:
    """
    Replay C{request} (whose body was C{body}) on the leader at C{http_addr}.

    Fires with the leader's answer, whatever its status; errbacks if the
    leader cannot be reached or has not answered in full within C{timeout}
    seconds (the attempt is then cancelled).
    """
    headers: dict[bytes, list[bytes]] = {
        FORWARDED_HEADER: [b"1"],
        b"Accept": [b"application/json"],
    }
    for name in (b"content-type", b"idempotency-key"):
        value = request.getHeader(name)
        if value is not None:
            headers[name] = [value]
    method = request.method.decode("ascii")
    url = leader_url(http_addr, request.uri)
    d: Deferred[Any] = client.request(method, url, headers=headers, data=body or None)

    def read(response: HTTPResponse) -> Deferred[Forwarded]:
        relayed = {}
        for name in _RELAYED_HEADERS:
            values = response.headers.getRawHeaders(name)
            if values:
                relayed[name] = values[0]

        def done(content: bytes) -> Forwarded:
            return Forwarded(response.code, relayed, content)

        return response.content().addCallback(done)

    d.addCallback(read)
    d.addTimeout(timeout, clock)
    return d
