# -*- test-case-name: tests.transport.test_protocol -*-
"""
One peer connection: framing, the hello exchange and message dispatch.

The protocol only parses bytes and enforces the per-connection rules (hello
first and only once, Raft messages only on member connections, the
C{sender} of each message is the node that said hello).  Everything that
depends on the rest of the node (which cluster we are in, what a connection
is for, where messages go) is asked of a L{ConnectionOwner}, so the same
class serves outbound links, inbound connections and probes.

With a peer secret the handshake has an authentication step (see
L{raft3d.transport._wire}): the acceptor challenges the initiator's hello
and judges it only once the initiator's C{auth} frame is verified, then
answers with its hello and C{auth}; the initiator judges the answer only
once that C{auth} is verified.  Until then the connection is not a member
connection and carries no Raft message either way, and the handshake
timeout covers the whole exchange.  Authentication refusals are logged
through a shared L{ThrottledLog}: they are what a stranger can cause at
will.

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
import os
from typing import Any
from typing import Protocol as _TypingProtocol

import attrs
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

from ._limits import ThrottledLog
from ._wire import (
    HEADER,
    NONCE_SIZE,
    Frame,
    Hello,
    Role,
    UnsupportedVersion,
    Verdict,
    auth_mac,
    auth_map,
    auth_transcript,
    challenge_map,
    decode_payload,
    encode_frame,
    judge_auth,
    judge_nonce,
    nonce_field,
    reject_map,
    shorten,
)
from ._writethrough import write_now

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


class _Step(enum.Enum):
    """
    Where an authenticated handshake stands (only used with a secret).
    """

    #: Initiator: hello sent, waiting for the acceptor's challenge.
    #: Acceptor: waiting for the initiator's hello.
    HELLO = "hello"
    #: Initiator: auth sent, waiting for the acceptor's hello.
    ANSWER = "answer"
    #: Either side: waiting for the peer's auth frame.
    AUTH = "auth"


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

    With a C{secret}, the handshake authenticates both sides first (see the
    module docstring); C{auth_log} then throttles the log lines of refused
    authentications.

    @ivar remote: the peer's hello, once received (with a secret: once
        authenticated).
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
        secret: bytes | None = None,
        auth_log: ThrottledLog | None = None,
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
        self._secret = secret
        self._auth_log = auth_log
        self._step = _Step.HELLO
        # The hellos of an authenticated handshake: the initiator's (sent
        # or received) and, on the initiator, the acceptor's answer while
        # its auth frame is awaited.
        self._initiator_hello: Hello | None = None
        self._answer: Hello | None = None
        self._nonce = b""
        self._peer_nonce = b""

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
            hello = self._owner.local_hello()
            if self._secret is not None:
                self._nonce = os.urandom(NONCE_SIZE)
                hello = attrs.evolve(hello, nonce=self._nonce)
                self._initiator_hello = hello
            self._write(encode_frame(hello.to_wire()))

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
        write_now(transport, frame)

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
        elif kind == "challenge":
            self._challenge_received(value)
        elif kind == "auth":
            self._auth_received(value)
        elif self._state is _State.HANDSHAKE:
            if self._initiator_hello is None and self.remote is None:
                self._drop(f"{shorten(repr(kind), 40)} frame before the hello")
            else:
                self._drop(f"{shorten(repr(kind), 40)} frame before the handshake completed")
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
        if self._secret is None:
            refusal = judge_nonce(secret=False, nonce=hello.nonce)
            if refusal is not None:
                self._refuse(refusal, hello)
                return
            self._conclude(hello)
        elif self._initiator:
            self._answer_received(hello)
        elif self._step is not _Step.HELLO:
            self._drop("second hello")
        else:
            self._challenge(hello)

    def _conclude(self, hello: Hello) -> None:
        """
        Judge the peer's hello (with a secret: now that the peer has proved
        it knows it) and, if accepted, answer it (on the accepting side)
        and become ready.
        """
        self.remote = hello
        verdict = self._owner.judge(self, hello)
        if not verdict.accept:
            self._drop(verdict.reason)
            return
        self.member = verdict.member
        if not self._initiator:
            # After judge(): the answer carries a cluster id adopted from it.
            answer = self._owner.local_hello()
            if self._secret is None:
                self._write(encode_frame(answer.to_wire()))
            else:
                answer = attrs.evolve(answer, nonce=self._nonce)
                self._write(encode_frame(answer.to_wire()))
                self._send_auth("acceptor", answer)
        self._state = _State.READY
        self._cancel_timer()
        self._owner.ready(self)

    # -- authentication (only with a secret) ----------------------------

    def _challenge(self, hello: Hello) -> None:
        """
        Acceptor: the initiator said hello; ask it to prove it knows the
        secret before judging, let alone answering, its hello.
        """
        refusal = judge_nonce(secret=True, nonce=hello.nonce)
        if refusal is not None:
            self._refuse(refusal, hello)
            return
        self._initiator_hello = hello
        self._peer_nonce = hello.nonce
        self._nonce = os.urandom(NONCE_SIZE)
        self._step = _Step.AUTH
        self._write(encode_frame(challenge_map(self._nonce)))

    def _challenge_received(self, raw: dict[Any, Any]) -> None:
        """
        Initiator: the acceptor asks us to authenticate.
        """
        if self._secret is None:
            self._refuse(
                "peer authentication refused: the peer requires a peer secret and this"
                " node has none (--peer-secret-file)"
            )
            return
        if not self._initiator or self._state is not _State.HANDSHAKE:
            self._drop("unexpected challenge frame")
            return
        if self._step is not _Step.HELLO:
            self._drop("second challenge")
            return
        try:
            self._peer_nonce = nonce_field(raw, "challenge")
        except ProtocolError as e:
            self._drop(f"malformed challenge: {e}")
            return
        assert self._initiator_hello is not None
        self._step = _Step.ANSWER
        self._send_auth("initiator", None)

    def _answer_received(self, hello: Hello) -> None:
        """
        Initiator: the acceptor's hello, which must follow our auth frame
        and carry the nonce of its challenge.
        """
        if self._step is _Step.HELLO:
            self._refuse(
                "peer authentication failed: the peer answered without a challenge"
                " (it has no peer secret, and this node requires one)",
                hello,
            )
            return
        if self._step is not _Step.ANSWER:
            self._drop("second hello")
            return
        if hello.nonce != self._peer_nonce:
            self._refuse(
                "peer authentication failed: the hello's nonce is not the challenge's", hello
            )
            return
        self._answer = hello
        self._step = _Step.AUTH

    def _auth_received(self, raw: dict[Any, Any]) -> None:
        if self._secret is not None and (
            self._state is not _State.HANDSHAKE or self._step is not _Step.AUTH
        ):
            self._drop("unexpected auth frame")
            return
        claimed = self._answer if self._initiator else self._initiator_hello
        refusal = judge_auth(secret=self._secret, transcript=self._peer_transcript(), raw=raw)
        if refusal is not None:
            self._refuse(refusal, claimed)
            return
        assert claimed is not None
        self._conclude(claimed)

    def _peer_transcript(self) -> bytes:
        """
        The transcript the peer's auth frame must cover (C{b""} when there
        is none yet: the frame is refused before it matters).
        """
        initiator = self._initiator_hello
        if initiator is None:
            return b""
        if self._initiator:
            return auth_transcript(
                "acceptor",
                initiator=initiator,
                initiator_nonce=self._nonce,
                acceptor_nonce=self._peer_nonce,
                acceptor=self._answer,
            )
        return auth_transcript(
            "initiator",
            initiator=initiator,
            initiator_nonce=self._peer_nonce,
            acceptor_nonce=self._nonce,
        )

    def _send_auth(self, role: Role, answer: Hello | None) -> None:
        """
        Prove that we know the secret: C{role}'s HMAC over this
        connection's transcript (C{answer} is our hello, as the acceptor).
        """
        secret = self._secret
        initiator = self._initiator_hello
        assert secret is not None and initiator is not None
        if role == "initiator":
            transcript = auth_transcript(
                role,
                initiator=initiator,
                initiator_nonce=self._nonce,
                acceptor_nonce=self._peer_nonce,
            )
        else:
            transcript = auth_transcript(
                role,
                initiator=initiator,
                initiator_nonce=self._peer_nonce,
                acceptor_nonce=self._nonce,
                acceptor=answer,
            )
        self._write(encode_frame(auth_map(auth_mac(secret, transcript))))

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

    def _refuse(self, reason: str, claimed: Hello | None = None) -> None:
        """
        The peer failed (or cannot take part in) authentication: tell it
        why and close, logging through the throttled log because a stranger
        can make us do this as often as it likes.  The log line names the
        node id the peer claimed, which is unproven.
        """
        if self._state is _State.CLOSED:
            return
        reason = shorten(reason)
        peer = self.describe()
        if claimed is not None and self.remote is None:
            peer += f", which claims to be node {shorten(repr(claimed.node_id), 60)}"
        if self._auth_log is not None:
            self._auth_log.warn("Refused {peer}: {reason}", peer=peer, reason=reason)
        else:
            self._log.warn("Refused {peer}: {reason}", peer=peer, reason=reason)
        self.close(reason, notify=True)

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self.remote is None and self._initiator_hello is None:
            self._drop(f"no hello within {self._handshake_timeout} seconds")
        else:
            self._drop(
                f"handshake (peer authentication) not completed within"
                f" {self._handshake_timeout} seconds"
            )

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
