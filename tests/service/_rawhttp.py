"""
Raw HTTP/1.1 against an L{APISite} on a L{StringTransport}, for tests that
must send what no well-behaved client would (dribbled bytes, duplicated
C{Content-Length}, broken chunking...) and read exactly what the server
wrote.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.resource import IResource

from raft3d.api import FastPath
from raft3d.service import APISite, GuardedHTTPChannel, HTTPLimits
from raft3d.service._lean import LeanHTTPChannel


@attrs.frozen
class RawResponse:
    """
    One parsed response.

    @ivar headers: lower-cased names to their values.
    """

    status: int
    headers: dict[str, list[str]]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class Unparsable(Exception):
    """
    The server wrote something that is not a sequence of HTTP responses.
    """


def _chunked(data: bytes, offset: int) -> tuple[bytes, int] | None:
    body = b""
    while True:
        end = data.find(b"\r\n", offset)
        if end < 0:
            return None
        size = int(data[offset:end].split(b";")[0], 16)
        offset = end + 2
        if size == 0:
            if data[offset : offset + 2] != b"\r\n":
                return None
            return body, offset + 2
        if len(data) < offset + size + 2:
            return None
        body += data[offset : offset + size]
        offset += size + 2


def parse_responses(data: bytes) -> tuple[list[RawResponse], bytes]:
    """
    Split what a server wrote into complete responses (interim 1xx ones
    left out) and the incomplete rest.

    @raise Unparsable: if it is not HTTP/1.0 or 1.1 responses.
    """
    responses: list[RawResponse] = []
    offset = 0
    while offset < len(data):
        end = data.find(b"\r\n\r\n", offset)
        if end < 0:
            break
        head = data[offset:end].split(b"\r\n")
        version, _, rest = head[0].partition(b" ")
        if version not in (b"HTTP/1.0", b"HTTP/1.1") or not rest[:3].isdigit():
            raise Unparsable(data[offset : offset + 80])
        status = int(rest[:3])
        headers: dict[str, list[str]] = {}
        for line in head[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise Unparsable(line)
            headers.setdefault(name.strip().lower().decode("latin-1"), []).append(
                value.strip().decode("latin-1")
            )
        start = end + 4
        if 100 <= status < 200:
            offset = start
            continue
        if "content-length" in headers:
            stop = start + int(headers["content-length"][0])
            if stop > len(data):
                break
            body, offset = data[start:stop], stop
        elif headers.get("transfer-encoding") == ["chunked"]:
            parsed = _chunked(data, start)
            if parsed is None:
                break
            body, offset = parsed
        else:
            # Delimited by the end of the connection (HTTP/1.0): the last.
            body, offset = data[start:], len(data)
        responses.append(RawResponse(status, headers, body))
    return responses, data[offset:]


class RawClient:
    """
    One client connection to an L{APISite}, driven by hand.
    """

    def __init__(self, site: APISite, host: str = "10.1.2.3", port: int = 40000) -> None:
        self.address = IPv4Address("TCP", host, port)
        protocol = site.buildProtocol(self.address)
        self.transport = StringTransport(peerAddress=self.address)
        self.refused = protocol is None
        self.channel: GuardedHTTPChannel | LeanHTTPChannel | None = protocol
        if protocol is not None:
            protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        assert self.channel is not None
        self.channel.dataReceived(data)

    @property
    def lean(self) -> bool:
        """
        Whether the lean channel has served everything so far itself.
        """
        return isinstance(self.channel, LeanHTTPChannel) and self.channel.inner is None

    @property
    def closing(self) -> bool:
        return bool(self.transport.disconnecting)

    def responses(self) -> list[RawResponse]:
        """
        Every complete response written so far.
        """
        return parse_responses(self.transport.value())[0]

    def lose(self) -> None:
        """
        The connection closes (as the reactor would report it).
        """
        assert self.channel is not None
        self.channel.connectionLost(Failure(ConnectionDone()))


def make_site(
    resource: IResource,
    limits: HTTPLimits | None = None,
    clock: Clock | None = None,
    fast: FastPath | None = None,
) -> tuple[APISite, Clock]:
    """
    An L{APISite} on a fake clock (with lean connections if given C{fast}).
    """
    clock = clock if clock is not None else Clock()
    return APISite(resource, reactor=clock, limits=limits or HTTPLimits(), fast=fast), clock
