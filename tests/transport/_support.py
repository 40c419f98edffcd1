"""
Fixtures shared by the transport tests: log capture, frame helpers (for
the authenticated handshake too), a single protocol on a
L{StringTransport}, and an in-memory network of transports joined by
L{twisted.test.iosim} pumps.
"""

from __future__ import annotations

import random
from typing import Any

import cbor2
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.failure import Failure
from twisted.test.iosim import FakeTransport, IOPump, connect

from raft3d.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryType,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Member,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from raft3d.transport import TCPPeerTransport
from raft3d.transport._protocol import PeerConnection
from raft3d.transport._wire import (
    HEADER,
    PROTOCOL_VERSION,
    Hello,
    auth_mac,
    auth_map,
    auth_transcript,
    challenge_map,
    decode_payload,
)

PEER_ADDRESS = IPv4Address("TCP", "10.9.8.7", 4321)


class LogCapture:
    """
    A L{Logger} whose events are kept for inspection.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.logger = Logger(namespace="test", observer=self.events.append)

    def lines(self, level: LogLevel | None = None) -> list[str]:
        return [formatEvent(e) for e in self.events if level is None or e.get("log_level") == level]

    def warnings(self) -> list[str]:
        return self.lines(LogLevel.warn)

    def matching(self, *fragments: str) -> list[str]:
        return [line for line in self.lines() if all(f in line for f in fragments)]

    def backoff_delays(self, node: str) -> list[float]:
        return [
            e["delay"]
            for e in self.events
            if e.get("log_format", "").startswith("Reconnecting") and e.get("node") == node
        ]


def frame(value: object) -> bytes:
    """
    One frame holding C{value} (any CBOR-encodable value).
    """
    payload = cbor2.dumps(value)
    return HEADER.pack(len(payload)) + payload


def raw_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def hello(node: str = "b", cluster: str = "C", addr: str = "10.9.8.7:7001", **extra: Any) -> bytes:
    """
    A hello frame; C{extra} adds keys (C{nonce=...}) or replaces them.
    """
    value: dict[str, Any] = {
        "type": "hello",
        "v": PROTOCOL_VERSION,
        "cluster": cluster,
        "node": node,
        "addr": addr,
    }
    value.update(extra)
    return frame(value)


def read_frames(data: bytes) -> list[Any]:
    """
    Split written bytes into decoded frame values.
    """
    out = []
    offset = 0
    while offset < len(data):
        (length,) = HEADER.unpack_from(data, offset)
        out.append(decode_payload(data[offset + 4 : offset + 4 + length]))
        offset += 4 + length
    assert offset == len(data), "partial frame written"
    return out


class Node:
    """
    A transport on a L{MemoryReactorClock} with captured log and inbox.
    """

    def __init__(
        self,
        node_id: str = "a",
        cluster: str = "C",
        *,
        reactor: MemoryReactorClock | None = None,
        addr: str | None = None,
        start: bool = True,
        **kwargs: Any,
    ) -> None:
        self.reactor = reactor if reactor is not None else MemoryReactorClock()
        self.log = LogCapture()
        self.inbox: list[Message] = []
        self.adopted: list[str] = []
        self.addr = addr if addr is not None else "127.0.0.1:7000"
        kwargs.setdefault("rng", random.Random(4))
        self.transport = TCPPeerTransport(
            self.reactor,
            node_id,
            self.addr,
            cluster,
            on_cluster_id=self.adopted.append,
            log=self.log.logger,
            **kwargs,
        )
        if start:
            self.transport.start(self.inbox.append)

    def accept(self) -> tuple[PeerConnection, StringTransport]:
        """
        Accept one inbound connection on a L{StringTransport}.
        """
        factory = self.reactor.tcpServers[-1][1]
        proto = factory.buildProtocol(PEER_ADDRESS)
        assert isinstance(proto, PeerConnection)
        st = StringTransport(peerAddress=PEER_ADDRESS)
        proto.makeConnection(st)
        return proto, st

    def dial(
        self, peer: str = "b", addr: str = "10.9.8.7:7001"
    ) -> tuple[PeerConnection, StringTransport]:
        """
        Add C{peer} and complete our outbound connection to it on a
        L{StringTransport}.
        """
        self.transport.set_peers({peer: addr})
        factory = self.reactor.tcpClients[-1][2]
        proto = factory.buildProtocol(PEER_ADDRESS)
        assert isinstance(proto, PeerConnection)
        st = StringTransport(peerAddress=PEER_ADDRESS)
        proto.makeConnection(st)
        return proto, st


class Network:
    """
    Several transports on one L{MemoryReactorClock}, each listening on its
    own port of 127.0.0.1; L{run} completes pending connection attempts
    with iosim pumps (or refuses them) and moves bytes until all is quiet.
    """

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        self.nodes: dict[str, Node] = {}
        self.pumps: list[IOPump] = []
        self.down: set[int] = set()

    def add(
        self, node_id: str, cluster: str = "C", *, port: int | None = None, **kwargs: Any
    ) -> Node:
        port = port if port is not None else 7000 + len(self.nodes)
        node = Node(node_id, cluster, reactor=self.reactor, addr=f"127.0.0.1:{port}", **kwargs)
        self.nodes[node_id] = node
        return node

    def wire_all(self) -> None:
        """
        Give every node every other node as a peer.
        """
        everyone = {nid: n.addr for nid, n in self.nodes.items()}
        for n in self.nodes.values():
            n.transport.set_peers(everyone)

    def _server_factory(self, port: int) -> Any:
        if port in self.down:
            return None
        for server_port, factory, _backlog, _iface in self.reactor.tcpServers:
            if server_port == port:
                return factory
        return None

    def complete(self) -> bool:
        """
        Complete or refuse every pending connection attempt.
        """
        progressed = False
        while self.reactor.tcpClients:
            host, port, client_factory, _timeout, _bind = self.reactor.tcpClients.pop(0)
            connector = self.reactor.connectors.pop(0)
            progressed = True
            if connector.stoppedConnecting or connector._disconnected:
                continue
            server_factory = self._server_factory(port)
            server = server_factory.buildProtocol(None) if server_factory is not None else None
            if server is None:
                client_factory.clientConnectionFailed(
                    connector, Failure(ConnectionRefusedError("refused"))
                )
                continue
            client = client_factory.buildProtocol(None)
            if client is None:
                continue
            client_io = FakeTransport(
                client,
                isServer=False,
                hostAddress=IPv4Address("TCP", "127.0.0.1", 40000 + len(self.pumps)),
                peerAddress=IPv4Address("TCP", host, port),
            )
            server_io = FakeTransport(
                server,
                isServer=True,
                hostAddress=IPv4Address("TCP", host, port),
                peerAddress=IPv4Address("TCP", "127.0.0.1", 40000 + len(self.pumps)),
            )
            self.pumps.append(
                connect(server, server_io, client, client_io, greet=False, clock=self.reactor)
            )
        return progressed

    def run(self) -> None:
        """
        Connect and pump until nothing moves (time does not advance).
        """
        for _ in range(1000):
            self.reactor.advance(0)
            moved = self.complete()
            for pump in list(self.pumps):
                if pump.flush(advanceClock=False):
                    moved = True
                if pump.clientIO.disconnected and pump.serverIO.disconnected:
                    self.pumps.remove(pump)
            if not moved:
                return
        raise AssertionError("network never settled")

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} pass, running the network after the clock moves.
        """
        self.reactor.advance(seconds)
        self.run()

    def link_pump(self, dialer: str, acceptor: str) -> IOPump:
        """
        The pump carrying C{dialer}'s outbound link to C{acceptor}.
        """
        conn = self.nodes[dialer].transport._links[acceptor].conn
        for pump in self.pumps:
            if pump.client is conn:
                return pump
        raise AssertionError(f"no live link from {dialer} to {acceptor}")


# -- hypothesis strategies ------------------------------------------------

_nat = st.integers(min_value=0, max_value=2**64 - 1)
_ids = st.text(min_size=1, max_size=12)
_entries = st.lists(
    st.builds(
        Entry,
        index=st.integers(min_value=1, max_value=2**63),
        term=_nat,
        type=st.sampled_from(EntryType),
        data=st.binary(max_size=64),
    ),
    max_size=4,
).map(tuple)
_configs = st.lists(
    st.builds(
        Member,
        node_id=_ids,
        raft_addr=st.text(max_size=20),
        http_addr=st.text(max_size=20),
        voter=st.booleans(),
    ),
    max_size=3,
).map(lambda ms: Configuration(tuple(ms)))


def messages(sender: st.SearchStrategy[str] = _ids) -> st.SearchStrategy[Message]:
    """
    Every kind of Raft message, with arbitrary well-typed fields.
    """
    b = st.booleans()
    return st.one_of(
        st.builds(RequestVote, _nat, sender, _nat, _nat, b, b),
        st.builds(RequestVoteResponse, _nat, sender, b, b),
        st.builds(AppendEntries, _nat, sender, _nat, _nat, _entries, _nat),
        st.builds(AppendEntriesResponse, _nat, sender, b, _nat, _nat, _nat, _nat, _nat),
        st.builds(Heartbeat, _nat, sender, _nat, _nat),
        st.builds(HeartbeatResponse, _nat, sender, _nat),
        st.builds(
            InstallSnapshot,
            _nat,
            sender,
            _nat,
            _nat,
            _configs,
            _nat,
            st.binary(max_size=64),
            b,
            _nat,
            _nat,
        ),
        st.builds(InstallSnapshotResponse, _nat, sender, _nat, _nat, b, b),
        st.builds(TimeoutNow, _nat, sender),
        st.builds(ReadIndexRequest, _nat, sender, _nat),
        st.builds(ReadIndexResponse, _nat, sender, _nat, _nat, b),
    )


cbor_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64) + 1, max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
"""
Arbitrary CBOR-encodable values (no tags).
"""


# -- authenticated handshakes ----------------------------------------------

SECRET = b"correct horse battery staple"
"""
The peer secret of the authenticated tests.
"""


def challenge(nonce: bytes) -> bytes:
    """
    A C{challenge} frame.
    """
    return frame(challenge_map(nonce))


def auth(mac: bytes) -> bytes:
    """
    An C{auth} frame.
    """
    return frame(auth_map(mac))


def hello_record(
    node: str = "b", cluster: str = "C", addr: str = "10.9.8.7:7001", nonce: bytes = b""
) -> Hello:
    """
    The L{Hello} that L{hello} with the same arguments sends.
    """
    return Hello(cluster_id=cluster, node_id=node, addr=addr, nonce=nonce)


def initiator_mac(initiator: Hello, acceptor_nonce: bytes, secret: bytes = SECRET) -> bytes:
    """
    The MAC an initiator that said C{initiator} sends after a challenge.
    """
    transcript = auth_transcript(
        "initiator",
        initiator=initiator,
        initiator_nonce=initiator.nonce,
        acceptor_nonce=acceptor_nonce,
    )
    return auth_mac(secret, transcript)


def acceptor_mac(initiator: Hello, acceptor: Hello, secret: bytes = SECRET) -> bytes:
    """
    The MAC an acceptor sends with its hello C{acceptor}.
    """
    transcript = auth_transcript(
        "acceptor",
        initiator=initiator,
        initiator_nonce=initiator.nonce,
        acceptor_nonce=acceptor.nonce,
        acceptor=acceptor,
    )
    return auth_mac(secret, transcript)
