"""
Hostile clients against one real C{twistd raft3d} node (a single-node
cluster: C{--bootstrap} with C{--peers} naming itself).

  - Processes that reach the Raft port without the cluster's identity (a
    wrong cluster id, no hello, a discovery hello, our own node id, garbage)
    are dropped and change nothing: the term and the log stay as they were
    and the node keeps serving.
  - Slowloris on the HTTP port: many connections dribbling request headers
    do not keep a normal client from being served, and each of them is
    closed, by the request deadline (408) or to make room for newcomers.
  - A burst of garbage connections on both ports leaves the node healthy.
  - A three-node cluster started with C{--peer-secret-file}: a process that
    knows the cluster id (and even a member's node id) but not the secret
    is refused on every node before its vote of term 1000 is read, learns
    neither the cluster id nor a node id from a discovery hello, and the
    cluster's terms do not move while it still takes writes.

Every wait is for a condition, with a deadline; nothing sleeps for
correctness.  The node runs with short timeouts (C{--http-request-timeout
4}, C{--raft-handshake-timeout 2}) so that the test is quick.
"""

from __future__ import annotations

import base64
import os
import random
import struct
from typing import Any, Coroutine

import attrs
import cbor2
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from raft3d.devcluster import NodeSpec
from raft3d.raft import AppendEntries, Entry, EntryType, Heartbeat, RequestVote, encode_message
from raft3d.testing import ProcessCluster
from raft3d.transport import parse_address
from raft3d.transport._wire import HEADER, Hello, auth_map, decode_payload, encode_frame

from ..service._rawhttp import parse_responses

SLOW_CONNECTIONS = 40
MAX_PENDING = 16
REQUEST_TIMEOUT = 4


@attrs.frozen
class TunedSpec(NodeSpec):
    """
    A node spec with extra flags after the usual ones.
    """

    extra: tuple[str, ...] = ()

    def raft3d_args(self) -> list[str]:
        return [*super().raft3d_args(), *self.extra]


class RawConnection(Protocol):
    """
    A client connection that records what the node writes and when it
    closes.
    """

    def __init__(self) -> None:
        self.received = b""
        self.closed = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Failure) -> None:
        self.closed = True

    def send(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def frames(self) -> list[Any]:
        """
        The peer frames received, decoded.
        """
        out, data = [], self.received
        while len(data) >= HEADER.size:
            (length,) = HEADER.unpack_from(data)
            if len(data) < HEADER.size + length:
                break
            out.append(decode_payload(data[HEADER.size : HEADER.size + length]))
            data = data[HEADER.size + length :]
        return out


async def connect(addr: str) -> RawConnection:
    host, port = parse_address(addr)
    protocol: RawConnection = await connectProtocol(
        TCP4ClientEndpoint(reactor, host, port, timeout=5), RawConnection()
    )
    return protocol


def frame(value: dict[str, Any]) -> bytes:
    return b"".join(encode_frame(value))


# Raft messages that would each change the term, a vote or the log.
HIGH_TERM = 1000
DISRUPTIVE = b"".join(
    frame(encode_message(m))
    for m in (
        RequestVote(HIGH_TERM, "intruder", 10**6, HIGH_TERM),
        AppendEntries(
            HIGH_TERM, "intruder", 0, 0, (Entry(1, HIGH_TERM, EntryType.NORMAL, b"evil"),), 1
        ),
        Heartbeat(HIGH_TERM, "intruder", 10**6),
    )
)


class HostileClientTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.cluster = ProcessCluster(self, reactor, nodes=1)
        spec = self.cluster.specs["node1"]
        self.cluster.specs["node1"] = TunedSpec(
            name=spec.name,
            raft_addr=spec.raft_addr,
            http_addr=spec.http_addr,
            raft_dir=spec.raft_dir,
            bootstrap=spec.bootstrap,
            peers=spec.peers,
            extra=(
                "--http-request-timeout",
                str(REQUEST_TIMEOUT),
                "--http-max-pending",
                str(MAX_PENDING),
                "--raft-handshake-timeout",
                "2",
            ),
        )
        self.cluster.start("node1")

    def run_test(self, body: Coroutine[Any, Any, None]) -> Deferred[None]:
        async def guarded() -> None:
            try:
                await self.cluster.leader()
                await body
                self.assertNoTraceback()
            except self.failureException:
                raise
            except Exception as e:
                self.cluster.fail(f"{type(e).__name__}: {e}")

        return Deferred.fromCoroutine(guarded())

    def assertNoTraceback(self) -> None:
        lines = self.cluster.output("node1").lines
        if any("Traceback" in line for line in lines):
            self.cluster.fail("the node logged a traceback")

    async def state(self) -> tuple[int, int, int, str | None]:
        status = await self.cluster.ok("GET", "node1", "/status")
        return status["term"], status["last_log_index"], status["commit_index"], status["leader_id"]

    async def settled_state(self) -> tuple[int, int, int, str | None]:
        """
        L{state} once node1 has committed its whole log: just after an
        election the new leader's first entries may not be committed yet,
        and would be by the time the state is compared.
        """

        async def settled() -> tuple[int, int, int, str | None] | None:
            state = await self.state()
            return state if state[1] == state[2] else None

        result: tuple[int, int, int, str | None] = await self.cluster.wait_for(
            "node1 to commit its whole log", settled
        )
        return result

    async def closed(self, what: str, connections: list[RawConnection]) -> None:
        async def all_closed() -> bool:
            return all(c.closed for c in connections)

        await self.cluster.wait_for(what, all_closed, deadline=20)

    async def serves_writes(self) -> None:
        await self.cluster.ok(
            "POST", "node1", "/api/v1/printers", {"company": "A", "model": "B"}, 201
        )

    # -- (a) the Raft port ----------------------------------------------------

    def test_strangers_on_the_raft_port(self) -> Deferred[None]:
        """
        Connections without the cluster's identity are dropped with a
        reject frame saying why, whatever they send after (votes, entries,
        heartbeats of term 1000 from an unknown node): the term, the log
        and the leader stay as they were, and the node still takes writes.
        """
        return self.run_test(self.strangers_on_the_raft_port())

    async def strangers_on_the_raft_port(self) -> None:
        c = self.cluster
        raft = c.specs["node1"].raft_addr
        before = await self.settled_state()
        intruder = Hello(cluster_id="not-this-cluster", node_id="intruder", addr="127.0.0.1:1")
        attacks = {
            "cluster id mismatch": frame(intruder.to_wire()) + DISRUPTIVE,
            "frame before the hello": DISRUPTIVE,
            "outside our cluster": frame(attrs.evolve(intruder, cluster_id="").to_wire())
            + DISRUPTIVE,
            "claims our own node id": frame(
                attrs.evolve(intruder, node_id="node1").to_wire() | {"cluster": "x"}
            )
            + DISRUPTIVE,
            "unsupported protocol version": frame(intruder.to_wire() | {"v": 99}) + DISRUPTIVE,
            "exceeds the limit": struct.pack(">I", 2**31) + DISRUPTIVE,
            "CBOR": struct.pack(">I", 3) + b"\xff\xff\xff" + DISRUPTIVE,
            "no hello within": b"",
        }
        connections = {}
        for reason, data in attacks.items():
            conn = await connect(raft)
            conn.send(data)
            connections[reason] = conn
        await self.closed("the node to drop every stranger", list(connections.values()))
        for reason, conn in connections.items():
            rejects = [f for f in conn.frames() if f.get("type") == "reject"]
            if not rejects or reason not in rejects[-1]["reason"]:
                c.fail(f"expected a reject saying {reason!r}, got {conn.frames()}")
        after = await self.state()
        self.assertEqual(after, before, c.tails())
        self.assertLess(after[0], HIGH_TERM)
        await self.serves_writes()
        self.assertEqual((await self.state())[1], before[1] + 1)

    # -- (b) slowloris ----------------------------------------------------------

    def test_slowloris(self) -> Deferred[None]:
        """
        Forty connections dribbling a request's headers (more than the
        node's sixteen pending places) do not keep a normal client from
        being served; every one of them is closed, the last ones with a
        JSON 408 once their request deadline passed.
        """
        return self.run_test(self.slowloris())

    async def slowloris(self) -> None:
        c = self.cluster
        http = c.specs["node1"].http_addr
        slow = []
        for _ in range(SLOW_CONNECTIONS):
            conn = await connect(http)
            conn.send(b"GET /status HTTP/1.1\r\nHost: node1\r\n")
            slow.append(conn)

        def dribble() -> None:
            for conn in slow:
                conn.send(b"X-Slow: 1\r\n")

        dribbler = LoopingCall(dribble)
        dribbler.clock = reactor
        dribbler.start(0.3)
        try:
            status = await c.ok("GET", "node1", "/status")
            self.assertTrue(status["is_leader"])
            await self.serves_writes()
            # Served while slow connections were still being held open.
            self.assertTrue(any(not conn.closed for conn in slow), c.tails())
            await self.closed("the node to close every slow connection", slow)
        finally:
            dribbler.stop()
        timed_out = []
        for conn in slow:
            responses, _ = parse_responses(conn.received)
            if responses:
                [response] = responses
                self.assertEqual(response.status, 408, response)
                self.assertEqual(response.json["error"]["code"], "request_timeout")
                timed_out.append(conn)
        # The newest MAX_PENDING - 1 waited out their deadline (the normal
        # client's connection took one place); older ones made room.
        self.assertGreaterEqual(len(timed_out), MAX_PENDING // 2, c.tails())
        self.assertLess(len(timed_out), SLOW_CONNECTIONS)
        await c.ok("GET", "node1", "/status")
        # One line per burst, not one per connection.
        lines = c.output("node1").lines
        for event in ("did not send a whole request", "closed the oldest"):
            logged = [line for line in lines if event in line]
            self.assertTrue(1 <= len(logged) <= 3, (event, logged))

    # -- (c) a garbage burst ---------------------------------------------------

    def test_garbage_burst(self) -> Deferred[None]:
        """
        A burst of connections to both ports sending random bytes (or
        nothing, or closing at once) leaves the node healthy: the
        connections are dropped or timed out, the state is unchanged, the
        node still serves reads and writes, and its refusals are logged a
        few lines at a time rather than one per connection.
        """
        return self.run_test(self.garbage_burst())

    async def garbage_burst(self) -> None:
        c = self.cluster
        spec = c.specs["node1"]
        before = await self.settled_state()
        rng = random.Random(20240501)
        connections = []
        for i in range(120):
            conn = await connect(spec.raft_addr if i % 2 else spec.http_addr)
            kind = i % 6
            if kind in (0, 1):
                conn.send(rng.randbytes(rng.randint(1, 2000)))
            elif kind == 2:
                conn.send(cbor2.dumps([[[[0] * 50] * 50]] * 20))
            elif kind == 3:
                conn.send(b"\r\n" * 500 + rng.randbytes(64))
            elif kind == 4 and conn.transport is not None:
                conn.transport.loseConnection()
            connections.append(conn)
        await self.closed("the node to drop every garbage connection", connections)
        self.assertEqual(await self.state(), before)
        await self.serves_writes()
        lines = c.output("node1").lines
        refused = [line for line in lines if "refused a connection" in line]
        self.assertLessEqual(len(refused), 3, refused)
        self.assertTrue(any("Dropping connection with" in line for line in lines), c.tails())


SECRET_CLUSTER = "secret-farm"


class AuthenticatedClusterTests(TestCase):
    """
    Strangers against a real three-node cluster whose peers share a secret.
    """

    timeout = 180

    def setUp(self) -> None:
        self.cluster = ProcessCluster(self, reactor, nodes=3)
        secret_file = os.path.join(self.cluster.directory, "peer-secret")
        with open(secret_file, "wb") as f:
            f.write(base64.b64encode(os.urandom(32)) + b"\n")
        os.chmod(secret_file, 0o600)
        self.cluster.extra_args = (
            "--peer-secret-file",
            secret_file,
            "--raft-handshake-timeout",
            "2",
            # Fewer spurious elections on a loaded machine: the test
            # compares terms before and after the attack.
            "--election-timeout",
            "1500",
        )
        # The bootstrap node names the cluster, so the test knows its id as
        # a stranger might (guessed, or read from an old log).
        spec = self.cluster.specs["node1"]
        self.cluster.specs["node1"] = TunedSpec(
            name=spec.name,
            raft_addr=spec.raft_addr,
            http_addr=spec.http_addr,
            raft_dir=spec.raft_dir,
            bootstrap=spec.bootstrap,
            peers=spec.peers,
            extra=("--cluster-id", SECRET_CLUSTER),
        )
        self.cluster.start_all()

    def test_strangers_with_the_cluster_id(self) -> Deferred[None]:
        """
        On every node, strangers that claim another member's node id are
        refused: a hello with the right cluster id but no nonce, one with a
        nonce that answers the challenge with a made-up MAC, a discovery
        hello, and one that never answers the challenge (dropped after the
        handshake timeout).  All but the last follow up with a vote (and
        entries and heartbeats) of term 1000 that no node acts on, and none
        of them receives the cluster id or a node id.  The nodes' terms
        stay where they were and the cluster still takes writes.
        """

        async def body() -> None:
            c = self.cluster
            leader = await c.converged()
            for name in c.specs:
                if not any(
                    "authenticate with the shared secret" in line for line in c.output(name).lines
                ):
                    c.fail(f"{name} did not say it authenticates its peers")
            before = {name: (await c.ok("GET", name, "/status"))["term"] for name in c.specs}
            connections: list[tuple[str, RawConnection]] = []
            for name, spec in c.specs.items():
                claimed = Hello(
                    cluster_id=SECRET_CLUSTER,
                    node_id="node2" if name != "node2" else "node3",
                    addr="127.0.0.1:1",
                )
                with_nonce = attrs.evolve(claimed, nonce=os.urandom(16))
                attacks = [
                    ("sent no nonce", frame(claimed.to_wire()) + DISRUPTIVE),
                    (
                        "does not know this cluster's peer secret",
                        frame(with_nonce.to_wire()) + frame(auth_map(os.urandom(32))) + DISRUPTIVE,
                    ),
                    (
                        "sent no nonce",
                        frame(attrs.evolve(claimed, cluster_id="").to_wire()) + DISRUPTIVE,
                    ),
                    ("not completed within", frame(with_nonce.to_wire())),
                ]
                for reason, data in attacks:
                    conn = await connect(spec.raft_addr)
                    conn.send(data)
                    connections.append((reason, conn))
            await self.closed([conn for _, conn in connections])
            for reason, conn in connections:
                rejects = [f for f in conn.frames() if f.get("type") == "reject"]
                if not rejects or reason not in rejects[-1]["reason"]:
                    c.fail(f"expected a reject saying {reason!r}, got {conn.frames()}")
                self.assertEqual(
                    {f["type"] for f in conn.frames()} - {"challenge", "reject"}, set()
                )
                for secret in (SECRET_CLUSTER.encode(), b"node1", b"node2", b"node3"):
                    self.assertNotIn(secret, conn.received, conn.frames())
            after = {name: (await c.ok("GET", name, "/status"))["term"] for name in c.specs}
            self.assertEqual(after, before, c.tails())
            await c.ok("POST", leader, "/api/v1/printers", {"company": "A", "model": "B"}, 201)
            for name in c.specs:
                lines = c.output(name).lines
                if any("Traceback" in line for line in lines):
                    c.fail(f"{name} logged a traceback")
                refused = [line for line in lines if "Refused" in line]
                # Four refusals per node, logged a few lines at a time.
                self.assertTrue(1 <= len(refused) <= 3, (name, refused))

        async def guarded() -> None:
            try:
                await body()
            except self.failureException:
                raise
            except Exception as e:
                self.cluster.fail(f"{type(e).__name__}: {e}")

        return Deferred.fromCoroutine(guarded())

    async def closed(self, connections: list[RawConnection]) -> None:
        async def all_closed() -> bool:
            return all(conn.closed for conn in connections)

        await self.cluster.wait_for("the nodes to drop every stranger", all_closed, deadline=20)
