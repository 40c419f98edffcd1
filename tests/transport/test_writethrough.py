"""
Tests for L{raft3d.transport._writethrough}: real TCP connections on
127.0.0.1, because the short cut exists only for Twisted's real TCP
transport.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from raft3d.transport import write_now
from raft3d.transport._writethrough import _rest


class _Collector(Protocol):
    def __init__(self, expected: int, done: Deferred[bytes]) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.expected = expected
        self.done = done

    def dataReceived(self, data: bytes) -> None:
        self.chunks.append(data)
        self.size += len(data)
        if self.size >= self.expected and not self.done.called:
            self.done.callback(b"".join(self.chunks))


class _Refusing:
    """
    A socket stand-in whose sends fail as a full socket's would.
    """

    def send(self, data: bytes) -> int:
        raise BlockingIOError()

    def sendmsg(self, parts: Any) -> int:
        raise BlockingIOError()


class WriteNowTests(TestCase):
    async def connect(self, expected: int) -> tuple[Any, Deferred[bytes]]:
        """
        A client transport connected to a server that fires the returned
        Deferred with the first C{expected} bytes it receives.
        """
        done: Deferred[bytes] = Deferred()
        reactor = IReactorTCP(_reactor)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(lambda: _Collector(expected, done))
        )
        self.addCleanup(port.stopListening)
        client = await TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(Protocol)
        )
        self.addCleanup(client.transport.loseConnection)
        return client.transport, done

    async def test_sent_at_once(self) -> None:
        """
        With nothing buffered, the bytes are in the socket before the call
        returns: nothing waits in the transport.
        """
        transport, done = await self.connect(11)
        write_now(transport, (b"hello ", b"world"))
        self.assertEqual((transport._tempDataBuffer, transport.dataBuffer), ([], b""))
        self.assertEqual(await done, b"hello world")

    async def test_order_kept_past_a_full_socket(self) -> None:
        """
        What the socket does not take is buffered by Twisted, and later
        writes queue behind it rather than overtake it.
        """
        big = bytes(range(256)) * (64 * 1024)
        transport, done = await self.connect(len(big) + 5)
        write_now(transport, (big[:100], big[100:]))
        self.assertTrue(transport._tempDataBuffer)
        write_now(transport, (b"after",))
        self.assertEqual(transport._tempDataBuffer[-1], b"after")
        self.assertEqual(await done, big + b"after")

    async def test_socket_refuses(self) -> None:
        """
        A send that fails leaves the bytes to Twisted, which sends them.
        """
        transport, done = await self.connect(3)
        real = transport.socket
        transport.socket = _Refusing()
        write_now(transport, (b"abc",))
        transport.socket = real
        self.assertEqual(transport._tempDataBuffer, [b"abc"])
        self.assertEqual(await done, b"abc")


class FallbackTests(SynchronousTestCase):
    def test_other_transports(self) -> None:
        """
        Any other transport simply gets C{writeSequence}.
        """
        transport = StringTransport()
        write_now(transport, (b"a", b"bc"))
        self.assertEqual(transport.value(), b"abc")

    def test_rest(self) -> None:
        """
        What is left after a partial send, across part boundaries.
        """
        parts = (b"abc", b"de", b"f")
        self.assertEqual(list(_rest(parts, 0)), [b"abc", b"de", b"f"])
        self.assertEqual(list(_rest(parts, 2)), [b"c", b"de", b"f"])
        self.assertEqual(list(_rest(parts, 3)), [b"de", b"f"])
        self.assertEqual(list(_rest(parts, 5)), [b"f"])
        self.assertEqual(list(_rest(parts, 6)), [])
