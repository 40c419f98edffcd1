# -*- test-case-name: tests.transport.test_protocol -*-
"""
One peer connection: framing, the hello exchange and message dispatch.

The protocol only parses bytes and enforces the per-connection rules (hello
first and only once, Raft messages only on member connections, the
C{sender} of each message is the node that said hello).  Everything that
depends on the rest of the node (which cluster we are in, what a connection
is for, where messages go) is asked of a L{ConnectionOwner}, so the same
class serves outbound links, inbound connections and probes.

Nothing raised while handling received bytes escapes into Twisted: a peer
that sends garbage loses its connection, with a log line saying why, and
the node goes on.

Framing is written here rather than inherited from
L{twisted.protocols.basic.Int32StringReceiver} for two reasons: that class
concatenates its whole buffer on every read, which is quadratic for a large
frame arriving in many small reads, and it keeps parsing the frames that
follow one that made us drop the connection.
"""

from __future__ import annotations

import enum
from typing import Any
from typing import Protocol as _TypingProtocol

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from raft3d.raft import Message, ProtocolError, decode_message

from ._wire import (
    HEADER,
    Frame,
    Hello,
    UnsupportedVersion,
    Verdict,
    decode_payload,
    encode_frame,
    reject_map,
    shorten,
)

MAX_HANDSHAKE_FRAME = 64 * 1024
"""
The largest frame accepted before the handshake and on discovery
connections: a hello or a reject is a few hundred bytes, and a stranger
must not make us buffer C{max_frame} bytes per connection.
"""


class ConnectionOwner(_TypingProtocol):
    """
    What a L{PeerConnection} needs from whoever made it.
    """

    def local_hello(self) -> Hello:
        """
        The hello to send now (it may change when a cluster id is adopted).
        """

    def judge(self, conn: PeerConnection, hello: Hello) -> Verdict:
        """
        Decide what C{hello} allows, adopting its cluster id if so decided.
        """

    def ready(self, conn: PeerConnection) -> None:
        """
        The handshake succeeded; C{conn.remote} and C{conn.member} are set.
        """

    def deliver(self, conn: PeerConnection, message: Message) -> None:
        """
        A well-formed message arrived on a member connection.
        """

    def lost(self, conn: PeerConnection, reason: str) -> None:
        """
        The connection is closed; C{reason} says why, for the logs.
        """


class _State(enum.Enum):
    HANDSHAKE = "handshake"
    READY = "ready"
    CLOSED = "closed"


def describe_address(address: IAddress | None) -> str:
    """
    C{host:port} of a TCP address, or its C{repr} for anything else.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if isinstance(host, str) and isinstance(port, int):
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return repr(address)


@implementer(IPushProducer)
class PeerConnection(Protocol):
    """
    A connection to another node, in either direction.

    It registers itself as the transport's streaming producer; the transport
    pauses it when its write buffer passes its own small threshold and
    resumes it once drained.  While paused, the bytes written are counted,
    and once they would exceed C{max_buffer} further frames are dropped
    (Raft retries) instead of growing the buffer without bound.

    @ivar remote: the peer's hello, once received.
    @ivar member: whether Raft messages may flow on this connection.
    @ivar close_reason: why we closed it, if we did.
    """

    remote: Hello | None = None
    member: bool = False
    close_reason: str | None = None

    def __init__(
        self,
        owner: ConnectionOwner,
        *,
        initiator: bool,
        clock: IReactorTime,
        log: Logger,
        max_frame: int,
        max_buffer: int,
        handshake_timeout: float,
    ) -> None:
        self._owner = owner
        self._initiator = initiator
        self._clock = clock
        self._log = log
        self._max_frame = max_frame
        self._max_buffer = max_buffer
        self._handshake_timeout = handshake_timeout
        self._state = _State.HANDSHAKE
        self._pending = bytearray()
        self._need = HEADER.size
        self._timer: IDelayedCall | None = None
        self._where = "?"
        self._paused = False
        self._queued = 0
        self._overflowing = False
        self._dropped_frames = 0
        self._lost = False
        self._lost_waiters: list[Deferred[None]] = []

    # -- reporting ------------------------------------------------------

    @property
    def initiator(self) -> bool:
        """
        Whether this side opened the connection.
        """
        return self._initiator

    @property
    def usable(self) -> bool:
        """
        Whether Raft messages may be sent on this connection now.
        """
        return self._state is _State.READY and self.member

    def describe(self) -> str:
        """
        Name the peer for log lines: its node id once known, and its address.
        """
        if self.remote is not None:
            return f"node {self.remote.node_id!r} ({self._where})"
        return self._where

    def __repr__(self) -> str:
        direction = "to" if self._initiator else "from"
        return f"<PeerConnection {direction} {self.describe()} {self._state.value}>"

    def when_lost(self) -> Deferred[None]:
        """
        A L{Deferred} that fires once L{connectionLost} has run.
        """
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._lost_waiters.append(d)
        return d

    # -- IProtocol ------------------------------------------------------

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        self._where = describe_address(transport.getPeer())
        tcp = ITCPTransport(transport, None)
        if tcp is not None:
            tcp.setTcpNoDelay(True)
            tcp.setTcpKeepAlive(True)
        registerProducer = getattr(transport, "registerProducer", None)
        if registerProducer is not None:
            registerProducer(self, True)
        self._timer = self._clock.callLater(self._handshake_timeout, self._handshake_timed_out)
        if self._initiator:
            self._write(encode_frame(self._owner.local_hello().to_wire()))

    def dataReceived(self, data: bytes) -> None:
        if self._state is _State.CLOSED:
            return
        try:
            self._receive(data)
        except Exception:
            self._log.failure("Unexpected error handling data from {peer}", peer=self.describe())
            try:
                self._drop("internal error while handling a frame")
            except Exception:
                self._log.failure("Could not drop the connection with {peer}", peer=self.describe())

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._lost:
            return
        self._lost = True
        self._state = _State.CLOSED
        self._cancel_timer()
        self._pending = bytearray()
        why = self.close_reason or reason.getErrorMessage()
        try:
            self._owner.lost(self, why)
        except Exception:
            self._log.failure("Error forgetting {peer}", peer=self.describe())
        waiters, self._lost_waiters = self._lost_waiters, []
        for d in waiters:
            d.callback(None)

    # -- IPushProducer (the transport tells us about its write buffer) --

    def pauseProducing(self) -> None:
        if not self._paused:
            self._paused = True
            self._queued = 0

    def resumeProducing(self) -> None:
        self._paused = False
        self._queued = 0
        if self._overflowing:
            self._overflowing = False
            self._log.info(
                "Send buffer to {peer} drained; {dropped} messages were dropped",
                peer=self.describe(),
                dropped=self._dropped_frames,
            )
            self._dropped_frames = 0

    def stopProducing(self) -> None:
        pass

    # -- sending --------------------------------------------------------

    def send_frame(self, frame: Frame) -> bool:
        """
        Write an encoded message if the connection is usable and its write
        buffer has room; return whether it was written.
        """
        if not self.usable:
            return False
        if self._paused:
            size = HEADER.size + len(frame[1])
            if self._queued + size > self._max_buffer:
                self._dropped_frames += 1
                if not self._overflowing:
                    self._overflowing = True
                    self._log.warn(
                        "Send buffer to {peer} holds more than {limit} bytes; "
                        "dropping messages until it drains",
                        peer=self.describe(),
                        limit=self._max_buffer,
                    )
                return False
            self._queued += size
        self._write(frame)
        return True

    def close(self, reason: str, *, notify: bool = False, abort: bool = False) -> None:
        """
        Close the connection on purpose (not because the peer misbehaved).

        @param notify: send a C{reject} frame carrying C{reason} first.
        @param abort: drop buffered data and close at once.
        """
        if self._lost:
            return
        if self.close_reason is None:
            self.close_reason = reason
        if self._state is not _State.CLOSED:
            self._state = _State.CLOSED
            if notify:
                self._write(encode_frame(reject_map(reason)))
        self._cancel_timer()
        transport = self.transport
        assert transport is not None
        if abort:
            abortConnection = getattr(transport, "abortConnection", None)
            if abortConnection is not None:
                abortConnection()
                return
        transport.loseConnection()

    def _write(self, frame: Frame) -> None:
        transport = self.transport
        assert transport is not None
        transport.writeSequence(frame)

    # -- receiving ------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        if self._pending:
            self._pending += data
            if len(self._pending) < self._need:
                return
            data = bytes(self._pending)
            self._pending = bytearray()
        elif len(data) < self._need:
            self._pending += data
            return
        end = len(data)
        offset = 0
        header_size = HEADER.size
        while self._state is not _State.CLOSED:
            if end - offset < header_size:
                self._need = header_size
                break
            (length,) = HEADER.unpack_from(data, offset)
            if length > (self._max_frame if self.member else MAX_HANDSHAKE_FRAME):
                self.lengthLimitExceeded(length)
                return
            start = offset + header_size
            stop = start + length
            if stop > end:
                self._need = stop - offset
                break
            offset = stop
            self._frame_received(data[start:stop])
        else:
            return
        if offset < end:
            self._pending += data[offset:] if offset else data

    def lengthLimitExceeded(self, length: int) -> None:
        """
        A length prefix announced a frame larger than C{max_frame} (or, on a
        connection that carries no Raft messages, than
        L{MAX_HANDSHAKE_FRAME}).
        """
        limit = self._max_frame if self.member else MAX_HANDSHAKE_FRAME
        self._drop(f"frame of {length} bytes exceeds the limit of {limit}")

    def _frame_received(self, payload: bytes) -> None:
        try:
            value = decode_payload(payload)
        except ProtocolError as e:
            self._drop(str(e))
            return
        if not isinstance(value, dict):
            self._drop(f"frame holds a {type(value).__name__}, not a map")
            return
        kind = value.get("type")
        if kind == "hello":
            self._hello_received(value)
        elif kind == "reject":
            self._reject_received(value)
        elif self._state is _State.HANDSHAKE:
            self._drop(f"{shorten(repr(kind), 40)} frame before the hello")
        elif not self.member:
            self._drop("Raft message on a connection from outside our cluster")
        elif not isinstance(kind, str):
            self._drop("frame 'type' must be a string")
        else:
            self._message_received(value)

    def _hello_received(self, raw: dict[Any, Any]) -> None:
        if self._state is not _State.HANDSHAKE:
            self._drop("second hello")
            return
        try:
            hello = Hello.from_wire(raw)
        except UnsupportedVersion as e:
            self._drop(str(e))
            return
        except ProtocolError as e:
            self._drop(f"malformed hello: {e}")
            return
        self.remote = hello
        verdict = self._owner.judge(self, hello)
        if not verdict.accept:
            self._drop(verdict.reason)
            return
        self.member = verdict.member
        if not self._initiator:
            # After judge(): the answer carries a cluster id adopted from it.
            self._write(encode_frame(self._owner.local_hello().to_wire()))
        self._state = _State.READY
        self._cancel_timer()
        self._owner.ready(self)

    def _reject_received(self, raw: dict[Any, Any]) -> None:
        reason = raw.get("reason")
        text = shorten(reason if isinstance(reason, str) else repr(reason))
        self._log.warn("{peer} refused the connection: {reason}", peer=self.describe(), reason=text)
        self.close(f"refused by peer: {text}")

    def _message_received(self, raw: dict[Any, Any]) -> None:
        try:
            message = decode_message(raw)
        except (ProtocolError, TypeError, ValueError) as e:
            self._drop(f"malformed message: {e}")
            return
        remote = self.remote
        assert remote is not None
        if message.sender != remote.node_id:
            self._drop(f"message claims to come from {shorten(repr(message.sender), 60)}")
            return
        self._owner.deliver(self, message)

    # -- failure --------------------------------------------------------

    def _drop(self, reason: str) -> None:
        """
        The peer broke the protocol: say why (in our log and to the peer)
        and close.
        """
        if self._state is _State.CLOSED:
            return
        reason = shorten(reason)
        self._log.warn(
            "Dropping connection with {peer}: {reason}", peer=self.describe(), reason=reason
        )
        self.close(reason, notify=True)

    def _handshake_timed_out(self) -> None:
        self._timer = None
        self._drop(f"no hello within {self._handshake_timeout} seconds")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
