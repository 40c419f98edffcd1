# -*- test-case-name: tests.transport.test_transport -*-
"""
L{TCPPeerTransport}: the L{IPeerTransport} the node uses in production.

Each node dials every peer itself and sends only on its own outbound
connections; whatever arrives on an inbound connection goes to the
receiver.  A response therefore travels on the responder's own connection
to the requester.  This keeps the connection bookkeeping trivially
symmetric (no tie-breaking between two connections to the same pair) at the
price of two sockets per pair, which is nothing for a print farm.

Delivery is best effort, as Raft expects: while a peer is unreachable its
messages are dropped, and the link is redialled with capped, jittered
exponential backoff.  All timing comes from the injected reactor.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Literal, Mapping

import attrs
from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import (
    IAddress,
    IConnector,
    IDelayedCall,
    IListeningPort,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.protocol import ClientFactory, ServerFactory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from raft3d.raft import IPeerTransport, Message, encode_message

from ._limits import (
    DEFAULT_RAFT_LIMITS,
    Admission,
    ConnectionLimiter,
    ConnectionLimits,
    ThrottledLog,
)
from ._protocol import ConnectionOwner, PeerConnection
from ._wire import (
    DEFAULT_MAX_FRAME,
    Frame,
    Hello,
    Verdict,
    encode_frame,
    format_address,
    judge_hello,
    parse_address,
)

DEFAULT_MAX_BUFFER = 64 * 2**20
"""
The default bound on bytes queued for one peer before messages are dropped.
"""


class ProbeFailed(Exception):
    """
    L{TCPPeerTransport.probe} could not learn who listens at an address.
    """


@attrs.define(eq=False)
class _Link:
    """
    Our outbound connection to one peer, and its reconnection state.

    @ivar conn: the current connection, handshaking or ready.
    @ivar failures: consecutive failed attempts, for the backoff.
    @ivar problem: the last failure logged, so that a peer that stays down
        is reported once rather than on every attempt.
    @ivar learned: the address was not given by L{TCPPeerTransport.set_peers}
        but learned from the peer's own hello on its connection to us; the
        link lives only as long as that inbound connection.
    """

    node_id: str
    addr: str
    host: str
    port: int
    conn: PeerConnection | None = None
    connector: IConnector | None = None
    retry: IDelayedCall | None = None
    failures: int = 0
    problem: str | None = None
    closed: bool = False
    learned: bool = False


class _LinkOwner:
    def __init__(self, transport: TCPPeerTransport, link: _Link) -> None:
        self._transport = transport
        self._link = link

    def local_hello(self) -> Hello:
        return self._transport._hello()

    def judge(self, conn: PeerConnection, hello: Hello) -> Verdict:
        return self._transport._judge(conn, hello, self._link.node_id)

    def ready(self, conn: PeerConnection) -> None:
        self._transport._link_up(self._link, conn)

    def deliver(self, conn: PeerConnection, message: Message) -> None:
        self._transport._deliver(conn, message)

    def lost(self, conn: PeerConnection, reason: str) -> None:
        self._transport._link_lost(self._link, conn, reason)


class _InboundOwner:
    def __init__(self, transport: TCPPeerTransport) -> None:
        self._transport = transport

    def local_hello(self) -> Hello:
        return self._transport._hello()

    def judge(self, conn: PeerConnection, hello: Hello) -> Verdict:
        return self._transport._judge(conn, hello, None)

    def ready(self, conn: PeerConnection) -> None:
        self._transport._inbound_up(conn)

    def deliver(self, conn: PeerConnection, message: Message) -> None:
        self._transport._deliver(conn, message)

    def lost(self, conn: PeerConnection, reason: str) -> None:
        self._transport._inbound_lost(conn, reason)


class _DialFactory(ClientFactory):
    noisy = False

    def __init__(self, transport: TCPPeerTransport, link: _Link) -> None:
        self._transport = transport
        self._link = link

    def buildProtocol(self, addr: IAddress | None) -> PeerConnection | None:
        return self._transport._dialled(self._link)

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self._transport._dial_failed(self._link, connector, reason)


class _InboundFactory(ServerFactory):
    noisy = False

    def __init__(self, transport: TCPPeerTransport) -> None:
        self._transport = transport

    def buildProtocol(self, addr: IAddress | None) -> PeerConnection | None:
        return self._transport._accepted(addr)

    def logPrefix(self) -> str:
        return "Raft peer transport"


class _Probe(ClientFactory):
    """
    One L{TCPPeerTransport.probe}: its connection factory, the owner of its
    connection and its result, in one place.

    The probe says hello with an empty cluster id, so the node it reaches
    answers whatever cluster it is in and never adopts ours.  With a peer
    secret the probe authenticates like any connection: a node that has a
    secret answers only probes from nodes that share it.
    """

    noisy = False

    def __init__(self, transport: TCPPeerTransport, addr: str) -> None:
        self._transport = transport
        self.addr = addr
        self.deferred: Deferred[tuple[str, str, str]] = Deferred(self._cancelled)
        self.connector: IConnector | None = None
        self.conn: PeerConnection | None = None
        self.timer: IDelayedCall | None = None
        self.done = False

    # factory

    def buildProtocol(self, addr: IAddress | None) -> PeerConnection | None:
        if self.done:
            return None
        self.conn = self._transport._new_conn(self, initiator=True)
        return self.conn

    def clientConnectionFailed(self, connector: IConnector, reason: Failure) -> None:
        self.fail(reason.getErrorMessage())

    # owner

    def local_hello(self) -> Hello:
        return attrs.evolve(self._transport._hello(), cluster_id="")

    def judge(self, conn: PeerConnection, hello: Hello) -> Verdict:
        return judge_hello(
            local_node=self._transport.node_id,
            local_cluster="",
            hello=hello,
            expected_node=None,
            initiator=True,
            probing=True,
        )

    def ready(self, conn: PeerConnection) -> None:
        assert conn.remote is not None
        self._finish()
        remote = conn.remote
        self.deferred.callback((remote.node_id, remote.cluster_id, remote.http_addr))

    def deliver(self, conn: PeerConnection, message: Message) -> None:
        raise AssertionError("a probe connection is never a member connection")

    def lost(self, conn: PeerConnection, reason: str) -> None:
        self.fail(reason)

    # outcome

    def timed_out(self) -> None:
        self.timer = None
        self.fail("no answer in time")

    def fail(self, reason: str) -> None:
        if self.done:
            return
        self._finish()
        self.deferred.errback(ProbeFailed(f"probing {self.addr}: {reason}"))

    def _cancelled(self, d: Deferred[tuple[str, str, str]]) -> None:
        self._finish()

    def _finish(self) -> None:
        self.done = True
        self._transport._probes.discard(self)
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.conn is not None:
            self.conn.close("probe finished", abort=True)
        elif self.connector is not None:
            self.connector.disconnect()


_REDIAL = "redialling with our new cluster id"

_State = Literal["new", "running", "stopping", "stopped"]


@implementer(IPeerTransport)
class TCPPeerTransport:
    """
    Raft peer transport over TCP: length-prefixed CBOR frames with a
    cluster handshake (see C{docs/transport.md}).

    @param reactor: provides L{IReactorTCP} and L{IReactorTime}; the only
        source of sockets and time.
    @param node_id: this node's id, sent in every hello.
    @param listen_addr: C{"host:port"} to listen on; port 0 picks a free
        one (see L{listening_port}).
    @param cluster_id: our cluster id, or C{""} if this node has not been
        bootstrapped nor contacted by a cluster member yet.
    @param on_cluster_id: called with a cluster id adopted from a peer, so
        that the node can persist it.
    @param advertise_addr: the address peers should dial, sent in our
        hello; defaults to C{listen_addr} (with the real port if it was 0).
    @param http_addr: where this node serves HTTP, sent in our hello so
        that a bootstrapping node can learn it with L{probe}; C{""} omits it.
    @param max_frame: largest payload accepted or sent, in bytes.
    @param max_buffer: bytes that may queue for one peer before messages to
        it are dropped.
    @param rng: source of backoff jitter.
    @param limits: caps on inbound connections: in total, per remote host,
        and still in their handshake (see L{ConnectionLimiter}).
    @param handshake_timeout: seconds a connection has to complete its
        hello exchange (authentication included).
    @param peer_secret: the cluster's shared secret, or L{None}.  With a
        secret, every connection (probes included) proves both ends know
        it, with an HMAC over a transcript of both hellos and fresh nonces,
        before anything else: a peer that cannot is refused before it
        learns our node or cluster id.  Nodes with and without a secret
        cannot talk to each other.  See C{docs/transport.md}.
    """

    def __init__(
        self,
        reactor: IReactorTCP,
        node_id: str,
        listen_addr: str,
        cluster_id: str = "",
        *,
        on_cluster_id: Callable[[str], object] | None = None,
        advertise_addr: str | None = None,
        http_addr: str = "",
        max_frame: int = DEFAULT_MAX_FRAME,
        max_buffer: int = DEFAULT_MAX_BUFFER,
        rng: random.Random | None = None,
        log: Logger | None = None,
        initial_backoff: float = 0.05,
        max_backoff: float = 2.0,
        jitter: float = 0.2,
        connect_timeout: float = 5.0,
        handshake_timeout: float = 5.0,
        probe_timeout: float = 5.0,
        limits: ConnectionLimits = DEFAULT_RAFT_LIMITS,
        peer_secret: bytes | None = None,
    ) -> None:
        if not node_id:
            raise ValueError("node_id must not be empty")
        if peer_secret is not None and not peer_secret:
            raise ValueError("peer_secret must not be empty (use None for no secret)")
        self._tcp = reactor
        self._clock = IReactorTime(reactor)
        self._node_id = node_id
        self._listen_host, self._listen_port = parse_address(listen_addr)
        self._advertise_addr = advertise_addr
        self._http_addr = http_addr
        self._cluster_id = cluster_id
        self._on_cluster_id = on_cluster_id
        self._max_frame = max_frame
        self._max_buffer = max_buffer
        self._rng = rng if rng is not None else random.Random()
        self._log = log if log is not None else Logger(namespace="raft3d.transport")
        self._initial_backoff = initial_backoff
        self._max_backoff = max_backoff
        self._jitter = jitter
        self._connect_timeout = connect_timeout
        self._handshake_timeout = handshake_timeout
        self._probe_timeout = probe_timeout
        self._limiter = ConnectionLimiter("Raft port", limits, self._clock, self._log)
        self._admissions: dict[PeerConnection, Admission] = {}
        self._peer_secret = peer_secret
        self._auth_refusals = ThrottledLog(self._clock, self._log)

        self._state: _State = "new"
        self._receiver: Callable[[Message], None] | None = None
        self._port: IListeningPort | None = None
        self._links: dict[str, _Link] = {}
        self._conns: set[PeerConnection] = set()
        self._inbound: dict[str, PeerConnection] = {}
        self._inbound_owner = _InboundOwner(self)
        self._probes: set[_Probe] = set()
        self._refresh_call: IDelayedCall | None = None
        self._stop_waiters: list[Deferred[None]] = []
        self._last_message: Message | None = None
        self._last_frame: Frame | None = None

    # -- public ---------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def authenticates(self) -> bool:
        """
        Whether this transport has a peer secret, so that every connection
        authenticates.
        """
        return self._peer_secret is not None

    @property
    def cluster_id(self) -> str:
        """
        Our cluster id; C{""} until bootstrapped or adopted.
        """
        return self._cluster_id

    @property
    def advertised_address(self) -> str:
        """
        The raft address we announce in our hello.
        """
        if self._advertise_addr is not None:
            return self._advertise_addr
        port = self._listen_port
        if port == 0 and self._port is not None:
            port = self.listening_port()
        return format_address(self._listen_host, port)

    def start(self, receiver: Callable[[Message], None]) -> None:
        """
        Listen, dial the known peers and deliver their messages to
        C{receiver}.
        """
        if self._state != "new":
            raise RuntimeError(f"cannot start a transport that is {self._state}")
        self._receiver = receiver
        self._port = self._tcp.listenTCP(
            self._listen_port, _InboundFactory(self), interface=self._listen_host
        )
        self._state = "running"
        self._log.info(
            "Raft transport of {node} listening on {addr}",
            node=self._node_id,
            addr=self.advertised_address,
        )
        for link in self._links.values():
            self._dial(link)

    def listening_port(self) -> int:
        """
        The TCP port we listen on (useful after binding port 0).
        """
        if self._port is None:
            raise RuntimeError("the transport is not listening")
        port = getattr(self._port.getHost(), "port", None)
        assert isinstance(port, int)
        return port

    def set_peers(self, peers: Mapping[str, str]) -> None:
        """
        Replace the peers to dial (node id to raft address); our own id is
        ignored.  Links to removed peers, or peers whose address changed,
        are closed.

        @raise ValueError: if an address is not C{host:port}; nothing is
            changed then.
        """
        wanted = {nid: addr for nid, addr in peers.items() if nid != self._node_id}
        parsed = {nid: parse_address(addr) for nid, addr in wanted.items()}
        for nid, link in list(self._links.items()):
            if link.learned and nid not in wanted:
                continue
            if wanted.get(nid) != link.addr:
                del self._links[nid]
                self._close_link(link, "peer removed")
            else:
                link.learned = False
        for nid, addr in wanted.items():
            if nid not in self._links:
                host, port = parsed[nid]
                link = _Link(node_id=nid, addr=addr, host=host, port=port)
                self._links[nid] = link
                if self._state == "running":
                    self._dial(link)

    def send(self, to: str, message: Message) -> None:
        """
        Send C{message} to C{to} if our link to it is up; drop it otherwise.

        A node that is not one of our peers (L{set_peers}) but is connected
        to us as a member gets a link to the address of its hello: a fresh
        node, whose configuration is still empty, must answer the leader
        that contacts it before the log tells it who its peers are.
        """
        link = self._links.get(to)
        if link is None:
            self._learn_link(to)
            return
        conn = link.conn
        if conn is None or not conn.usable:
            return
        frame = self._encode(message)
        if frame is not None:
            conn.send_frame(frame)

    def connected_peers(self) -> frozenset[str]:
        """
        The peers that L{send} can reach right now.
        """
        return frozenset(
            nid for nid, link in self._links.items() if link.conn is not None and link.conn.usable
        )

    def set_cluster_id(self, cluster_id: str) -> None:
        """
        Set our cluster id once the node has been bootstrapped; links that
        were waiting for a common cluster are redialled.

        @raise ValueError: if a different cluster id is already set.
        """
        if cluster_id == self._cluster_id:
            return
        if self._cluster_id:
            raise ValueError(
                f"cluster id is already {self._cluster_id!r}; cannot change it to {cluster_id!r}"
            )
        self._cluster_id = cluster_id
        self._schedule_refresh()

    def probe(self, addr: str) -> Deferred[tuple[str, str, str]]:
        """
        Learn C{(node_id, cluster_id, http_addr)} of the node listening at
        C{addr}: connect, exchange hellos, close.  C{http_addr} is C{""} if
        the node does not announce one.  Fails with L{ProbeFailed}.
        """
        if self._state in ("stopping", "stopped"):
            return fail(ProbeFailed(f"probing {addr}: transport stopped"))
        try:
            host, port = parse_address(addr)
        except ValueError as e:
            return fail(ProbeFailed(f"probing {addr}: {e}"))
        probe = _Probe(self, addr)
        self._probes.add(probe)
        probe.timer = self._clock.callLater(self._probe_timeout, probe.timed_out)
        probe.connector = self._tcp.connectTCP(host, port, probe, timeout=self._probe_timeout)
        return probe.deferred

    def stop(self) -> Deferred[None]:
        """
        Close the listener, every connection and every pending attempt;
        fires once all are closed.  Pending probes fail.
        """
        if self._state == "stopped":
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._stop_waiters.append(waiter)
        if self._state == "stopping":
            return waiter
        self._state = "stopping"
        if self._refresh_call is not None and self._refresh_call.active():
            self._refresh_call.cancel()
        for link in self._links.values():
            self._close_link(link, "transport stopped", abort=True)
        for probe in list(self._probes):
            probe.fail("transport stopped")
        for conn in list(self._conns):
            conn.close("transport stopped", abort=True)
        waits: list[Deferred[Any]] = [conn.when_lost() for conn in self._conns]
        if self._port is not None:
            waits.append(maybeDeferred(self._port.stopListening))
        gatherResults(waits).addErrback(
            lambda f: self._log.failure("Error while stopping the transport", f)
        ).addBoth(self._stopped)
        return waiter

    # -- helpers for connections ----------------------------------------

    def _new_conn(self, owner: ConnectionOwner, *, initiator: bool) -> PeerConnection:
        conn = PeerConnection(
            owner,
            initiator=initiator,
            clock=self._clock,
            log=self._log,
            max_frame=self._max_frame,
            max_buffer=self._max_buffer,
            handshake_timeout=self._handshake_timeout,
            secret=self._peer_secret,
            auth_log=self._auth_refusals,
        )
        self._conns.add(conn)
        conn.when_lost().addCallback(lambda _: self._conns.discard(conn))
        return conn

    def _hello(self) -> Hello:
        return Hello(
            cluster_id=self._cluster_id,
            node_id=self._node_id,
            addr=self.advertised_address,
            http_addr=self._http_addr,
        )

    def _judge(self, conn: PeerConnection, hello: Hello, expected: str | None) -> Verdict:
        verdict = judge_hello(
            local_node=self._node_id,
            local_cluster=self._cluster_id,
            hello=hello,
            expected_node=expected,
            initiator=conn.initiator,
        )
        if verdict.adopt:
            self._adopt(verdict.adopt, conn)
        return verdict

    def _adopt(self, cluster_id: str, conn: PeerConnection) -> None:
        self._cluster_id = cluster_id
        self._log.info(
            "Joining cluster {cluster} as told by {peer}", cluster=cluster_id, peer=conn.describe()
        )
        if self._on_cluster_id is not None:
            try:
                self._on_cluster_id(cluster_id)
            except Exception:
                self._log.failure("on_cluster_id({cluster}) failed", cluster=cluster_id)
        self._schedule_refresh()

    def _deliver(self, conn: PeerConnection, message: Message) -> None:
        receiver = self._receiver
        if receiver is None or self._state != "running":
            return
        try:
            receiver(message)
        except Exception:
            self._log.failure(
                "Receiver failed on a {kind} from {peer}",
                kind=type(message).__name__,
                peer=conn.describe(),
            )

    def _encode(self, message: Message) -> Frame | None:
        # A leader broadcasts one heartbeat object to every peer: encode once.
        if message is self._last_message:
            return self._last_frame
        frame: Frame | None = encode_frame(encode_message(message))
        assert frame is not None
        if len(frame[1]) > self._max_frame:
            self._log.error(
                "Not sending a {kind} of {size} bytes: frames are limited to {limit}",
                kind=type(message).__name__,
                size=len(frame[1]),
                limit=self._max_frame,
            )
            frame = None
        self._last_message = message
        self._last_frame = frame
        return frame

    # -- outbound links -------------------------------------------------

    def _dial(self, link: _Link) -> None:
        link.retry = None
        if link.closed or self._state != "running":
            return
        try:
            link.connector = self._tcp.connectTCP(
                link.host, link.port, _DialFactory(self, link), timeout=self._connect_timeout
            )
        except Exception as e:
            self._link_down(link, f"cannot connect: {e}")

    def _dialled(self, link: _Link) -> PeerConnection | None:
        if link.closed or self._state != "running":
            return None
        conn = self._new_conn(_LinkOwner(self, link), initiator=True)
        link.conn = conn
        return conn

    def _dial_failed(self, link: _Link, connector: IConnector, reason: Failure) -> None:
        if connector is not link.connector:
            return
        link.connector = None
        self._link_down(link, reason.getErrorMessage())

    def _link_up(self, link: _Link, conn: PeerConnection) -> None:
        if link.conn is not conn:
            return
        if conn.member:
            self._log.info("Connected to {peer}", peer=conn.describe())
            link.failures = 0
            link.problem = None
        else:
            # Neither side knows a cluster yet: keep the connection, but
            # redial as soon as we learn one (see _refresh_links).
            self._log.debug("Connected to {peer}, outside any cluster", peer=conn.describe())

    def _link_lost(self, link: _Link, conn: PeerConnection, reason: str) -> None:
        if link.conn is not conn:
            return
        link.conn = None
        link.connector = None
        if conn.member and conn.remote is not None:
            self._log.info(
                "Lost connection to {peer}: {reason}", peer=conn.describe(), reason=reason
            )
            link.problem = reason
        self._link_down(link, reason)

    def _link_down(self, link: _Link, problem: str) -> None:
        if link.closed or self._state != "running":
            return
        if problem != link.problem:
            self._log.warn(
                "Cannot reach {node} at {addr}: {problem}; retrying",
                node=link.node_id,
                addr=link.addr,
                problem=problem,
            )
            link.problem = problem
        delay = self._backoff(link.failures)
        link.failures += 1
        self._log.debug(
            "Reconnecting to {node} in {delay:.3f} seconds", node=link.node_id, delay=delay
        )
        link.retry = self._clock.callLater(delay, self._dial, link)

    def _backoff(self, failures: int) -> float:
        base = min(self._initial_backoff * 2.0 ** min(failures, 32), self._max_backoff)
        return base * self._rng.uniform(1 - self._jitter, 1 + self._jitter)

    def _close_link(self, link: _Link, reason: str, *, abort: bool = False) -> None:
        link.closed = True
        if link.retry is not None and link.retry.active():
            link.retry.cancel()
        link.retry = None
        connector, link.connector = link.connector, None
        conn, link.conn = link.conn, None
        if conn is not None:
            conn.close(reason, abort=abort)
        elif connector is not None:
            connector.disconnect()

    def _schedule_refresh(self) -> None:
        # On the next turn: we may be inside some connection's dataReceived.
        if self._refresh_call is None or not self._refresh_call.active():
            self._refresh_call = self._clock.callLater(0, self._refresh_links)

    def _refresh_links(self) -> None:
        """
        Our cluster id changed: redial every link that is not a member
        connection, so that its hello carries the new id.
        """
        self._refresh_call = None
        if self._state != "running":
            return
        for link in self._links.values():
            link.failures = 0
            link.problem = None
            if link.conn is not None:
                if not link.conn.usable:
                    # Not a failure: keep _link_down from logging it as one.
                    link.problem = _REDIAL
                    link.conn.close(_REDIAL, abort=True)
            elif link.retry is not None:
                link.retry.cancel()
                self._dial(link)

    # -- inbound connections --------------------------------------------

    def _accepted(self, addr: IAddress | None) -> PeerConnection | None:
        if self._state != "running":
            return None
        admission = self._limiter.admit(addr)
        if admission is None:
            return None
        conn = self._new_conn(self._inbound_owner, initiator=False)
        self._admissions[conn] = admission
        admission.on_evict = lambda: self._evict(conn)
        return conn

    def _evict(self, conn: PeerConnection) -> None:
        """
        Make room for a newer inbound connection: C{conn} has been waiting
        the longest without becoming a member connection.
        """
        if conn.transport is not None:
            conn.close("too many connections are waiting for a handshake", notify=True)

    def _inbound_up(self, conn: PeerConnection) -> None:
        remote = conn.remote
        assert remote is not None
        if conn.member:
            # Only a member connection is safe from eviction: a discovery
            # connection carries nothing and a stranger can open many.
            admission = self._admissions.get(conn)
            if admission is not None:
                admission.established()
        else:
            self._log.debug("Discovery connection from {peer}", peer=conn.describe())
            return
        self._log.info(
            "Accepted connection from {peer}, which listens on {addr}",
            peer=conn.describe(),
            addr=remote.addr,
        )
        old = self._inbound.get(remote.node_id)
        self._inbound[remote.node_id] = conn
        if old is not None and old is not conn:
            # The peer dials us once; an older connection is a dead one
            # that TCP has not noticed yet (we never write to it).
            old.close("superseded by a newer connection from the same node", abort=True)
        link = self._links.get(remote.node_id)
        if link is not None and link.learned and link.addr != remote.addr:
            # It came back at another address: learn that one on next send.
            self._forget_link(link, "the peer now listens elsewhere")
        elif link is not None and link.retry is not None and link.retry.active():
            # It is back (it just dialled us): redial now rather than at
            # the end of a backoff that may have grown to max_backoff.
            link.retry.cancel()
            link.failures = 0
            self._dial(link)

    def _inbound_lost(self, conn: PeerConnection, reason: str) -> None:
        admission = self._admissions.pop(conn, None)
        if admission is not None:
            admission.release()
        remote = conn.remote
        if remote is not None and self._inbound.get(remote.node_id) is conn:
            del self._inbound[remote.node_id]
            self._log.info(
                "Connection from {peer} closed: {reason}", peer=conn.describe(), reason=reason
            )
            link = self._links.get(remote.node_id)
            if link is not None and link.learned:
                # Do not redial a node we only knew from its connection:
                # when it comes back it dials us, and we learn it again.
                self._forget_link(link, "its connection to us closed")

    def _learn_link(self, node_id: str) -> None:
        """
        Dial C{node_id} at the address of its hello on its inbound member
        connection, if it has one.
        """
        conn = self._inbound.get(node_id)
        if self._state != "running" or conn is None or conn.remote is None:
            return
        addr = conn.remote.addr
        try:
            host, port = parse_address(addr)
        except ValueError:
            return
        link = _Link(node_id=node_id, addr=addr, host=host, port=port, learned=True)
        self._links[node_id] = link
        self._log.info(
            "Dialling {node} at {addr}, the address it told us, to answer it",
            node=node_id,
            addr=addr,
        )
        self._dial(link)

    def _forget_link(self, link: _Link, reason: str) -> None:
        if self._links.get(link.node_id) is link:
            del self._links[link.node_id]
        self._close_link(link, reason)

    def _stopped(self, result: object) -> None:
        self._state = "stopped"
        self._port = None
        waiters, self._stop_waiters = self._stop_waiters, []
        for d in waiters:
            d.callback(None)
