"""
Tests for L{raft3d.transport._transport}: links, reconnection, adoption,
probes and shutdown, first over in-memory iosim pumps on a shared clock,
then over real sockets on 127.0.0.1.
"""

from __future__ import annotations

import random
from typing import Any, Callable

from twisted.internet import defer, reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.internet.task import deferLater
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from raft3d.raft import Heartbeat, IPeerTransport, Member, Message, RequestVote
from raft3d.service import BootstrapDiscovery, PeerSpec
from raft3d.transport import (
    DEFAULT_RAFT_LIMITS,
    ConnectionLimits,
    ProbeFailed,
    TCPPeerTransport,
    _transport,
)

from ._support import SECRET, LogCapture, Network, Node, hello, read_frames


def hb(sender: str, term: int = 1) -> Heartbeat:
    return Heartbeat(term=term, sender=sender, commit=0)


class PairTests(SynchronousTestCase):
    """
    Two or three transports joined by iosim pumps on one clock.
    """

    def setUp(self) -> None:
        self.net = Network()

    def test_provides_interface(self) -> None:
        """
        L{TCPPeerTransport} provides L{IPeerTransport}.
        """
        self.assertTrue(verifyObject(IPeerTransport, self.net.add("a").transport))

    def test_exchange_both_ways(self) -> None:
        """
        Once each side has dialled the other, messages flow both ways, each
        on its sender's own outbound connection.
        """
        a, b = self.net.add("a"), self.net.add("b")
        self.net.wire_all()
        self.net.run()
        self.assertEqual(a.transport.connected_peers(), {"b"})
        self.assertEqual(b.transport.connected_peers(), {"a"})
        a.transport.send("b", hb("a"))
        b.transport.send("a", hb("b", 2))
        self.net.run()
        self.assertEqual(b.inbox, [hb("a")])
        self.assertEqual(a.inbox, [hb("b", 2)])

    def test_three_nodes_adopt_bootstrapped_cluster(self) -> None:
        """
        Three fresh nodes with no cluster id stay apart until one is
        bootstrapped; then the others adopt its id, report it through
        C{on_cluster_id}, and everyone reaches everyone.
        """
        nodes = [self.net.add(n, "") for n in "abc"]
        self.net.wire_all()
        self.net.run()
        for n in nodes:
            self.assertEqual(n.transport.connected_peers(), frozenset())
        nodes[0].transport.set_cluster_id("K")
        self.net.run()
        self.net.advance(0.1)
        self.net.advance(0.1)
        for n in nodes:
            self.assertEqual(n.transport.cluster_id, "K")
            self.assertEqual(n.transport.connected_peers(), {"a", "b", "c"} - {n.transport.node_id})
        self.assertEqual((nodes[1].adopted, nodes[2].adopted, nodes[0].adopted), (["K"], ["K"], []))
        for n in nodes:
            for other in nodes:
                if other is not n:
                    n.transport.send(other.transport.node_id, hb(n.transport.node_id))
        self.net.run()
        for n in nodes:
            self.assertEqual(
                sorted(m.sender for m in n.inbox), sorted({"a", "b", "c"} - {n.transport.node_id})
            )

    def test_set_cluster_id_only_once(self) -> None:
        """
        A cluster id, once set, cannot be replaced by another.
        """
        a = self.net.add("a", "K")
        a.transport.set_cluster_id("K")
        self.assertRaises(ValueError, a.transport.set_cluster_id, "L")

    def test_send_while_disconnected_drops(self) -> None:
        """
        Messages to an unknown peer, or to a peer not yet connected, are
        dropped silently.
        """
        a, b = self.net.add("a"), self.net.add("b")
        a.transport.send("zz", hb("a"))
        a.transport.set_peers({"b": b.addr})
        a.transport.send("b", hb("a"))
        self.net.run()
        self.assertEqual(b.inbox, [])

    def test_cluster_mismatch(self) -> None:
        """
        Nodes of different clusters never exchange messages; both sides log
        why, and the dialler backs off.
        """
        a, b = self.net.add("a", "K"), self.net.add("b", "L")
        a.transport.set_peers({"b": b.addr})
        self.net.run()
        for _ in range(6):
            self.net.advance(2.5)
        self.assertEqual(a.transport.connected_peers(), frozenset())
        self.assertTrue(a.log.matching("refused the connection", "cluster id mismatch"))
        self.assertTrue(b.log.matching("Dropping connection", "cluster id mismatch"))
        delays = a.log.backoff_delays("b")
        self.assertEqual(len(delays), 7)
        self.assertTrue(delays[-1] > 1.5, delays)
        # The same failure is reported once, not on every attempt.
        self.assertEqual(len(a.log.matching("Cannot reach b")), 1)

    def test_backoff_and_jitter(self) -> None:
        """
        While a peer refuses connections, attempts back off from 50 ms,
        doubling up to 2 s, each within 20% jitter; the first success
        resets the backoff.
        """
        a = self.net.add("a", rng=random.Random(1))
        self.net.down.add(7001)
        b = self.net.add("b")
        a.transport.set_peers({"b": b.addr})
        self.net.run()
        for _ in range(9):
            [retry] = [c for c in self.net.reactor.getDelayedCalls() if c.active()]
            self.net.reactor.advance(retry.getTime() - self.net.reactor.seconds())
            self.net.run()
        delays = a.log.backoff_delays("b")
        expected = [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0, 2.0]
        self.assertEqual(len(delays), len(expected))
        for got, base in zip(delays, expected, strict=True):
            self.assertTrue(base * 0.8 <= got <= base * 1.2, (got, base))
        self.assertNotEqual(delays[-1], delays[-2], "no jitter")
        self.net.down.clear()
        self.net.advance(2.5)
        self.assertEqual(a.transport.connected_peers(), {"b"})
        self.net.link_pump("a", "b").clientIO.loseConnection()
        self.net.run()
        self.assertEqual(a.transport.connected_peers(), frozenset())
        self.assertTrue(0.04 <= a.log.backoff_delays("b")[-1] <= 0.06)

    def test_reconnect_after_loss(self) -> None:
        """
        When an established connection drops, the link is redialled after
        the first backoff step and messages flow again.
        """
        a, b = self.net.add("a"), self.net.add("b")
        self.net.wire_all()
        self.net.run()
        self.net.link_pump("a", "b").serverIO.loseConnection()
        self.net.run()
        self.assertEqual(a.transport.connected_peers(), frozenset())
        self.assertTrue(a.log.matching("Lost connection to node 'b'"))
        self.net.advance(0.07)
        self.assertEqual(a.transport.connected_peers(), {"b"})
        a.transport.send("b", hb("a"))
        self.net.run()
        self.assertEqual(b.inbox, [hb("a")])

    def test_partition_blocks_delivery(self) -> None:
        """
        Messages on a pump that is not pumped are not delivered until it is
        (the building block of simulated partitions).
        """
        a, b = self.net.add("a"), self.net.add("b")
        self.net.wire_all()
        self.net.run()
        pump = self.net.link_pump("a", "b")
        self.net.pumps.remove(pump)
        a.transport.send("b", hb("a"))
        self.net.run()
        self.assertEqual(b.inbox, [])
        self.net.pumps.append(pump)
        self.net.run()
        self.assertEqual(b.inbox, [hb("a")])

    def test_set_peers_changes(self) -> None:
        """
        Removing a peer closes its link for good; changing its address
        redials the new one; our own id in the map is ignored.
        """
        a, b, c = self.net.add("a"), self.net.add("b"), self.net.add("c")
        a.transport.set_peers({"a": a.addr, "b": b.addr})
        self.net.run()
        self.assertEqual(a.transport.connected_peers(), {"b"})
        a.transport.set_peers({})
        self.net.run()
        self.net.advance(5)
        self.assertEqual(a.transport.connected_peers(), frozenset())
        self.assertEqual(self.net.pumps, [])
        # b moves to c's old slot: a must end up connected to whoever
        # answers there as "b"; here c answers, so a refuses it.
        a.transport.set_peers({"b": c.addr})
        self.net.run()
        self.assertTrue(a.log.matching("expected node 'b' but 'c' answered"))
        a.transport.set_peers({"b": b.addr})
        self.net.run()
        self.assertEqual(a.transport.connected_peers(), {"b"})

    def test_set_peers_bad_address(self) -> None:
        """
        A malformed address is refused without changing the peers.
        """
        a, b = self.net.add("a"), self.net.add("b")
        a.transport.set_peers({"b": b.addr})
        self.net.run()
        self.assertRaises(ValueError, a.transport.set_peers, {"b": b.addr, "c": "nowhere"})
        self.assertEqual(a.transport.connected_peers(), {"b"})

    def test_inbound_connection_cuts_backoff(self) -> None:
        """
        When a peer we are backing off from dials us, it is back: we redial
        it at once instead of waiting out the backoff.
        """
        a, b = self.net.add("a"), self.net.add("b", start=False)
        a.transport.set_peers({"b": b.addr})
        for _ in range(8):
            self.net.advance(2.5)
        self.assertEqual(a.transport.connected_peers(), frozenset())
        retry = a.transport._links["b"].retry
        assert retry is not None
        self.assertGreater(retry.getTime() - self.net.reactor.seconds(), 1.0)
        b.transport.start(b.inbox.append)
        b.transport.set_peers({"a": a.addr})
        self.net.run()
        self.assertEqual(a.transport.connected_peers(), {"b"})
        self.assertEqual(b.transport.connected_peers(), {"a"})

    def test_newer_inbound_supersedes_older(self) -> None:
        """
        A new connection from a node closes the older one from the same
        node, which can only be dead (each node dials each peer once).
        """
        a, b = self.net.add("a"), self.net.add("b")
        a.transport.set_peers({"b": b.addr})
        self.net.run()
        old = self.net.link_pump("a", "b")
        self.net.pumps.remove(old)  # the old connection goes silent
        link = a.transport._links["b"]
        link.conn = None  # a believes it is gone and redials
        a.transport._dial(link)
        self.net.run()
        self.assertTrue(old.serverIO.disconnecting)
        a.transport.send("b", hb("a"))
        self.net.run()
        self.assertEqual(b.inbox, [hb("a")])

    def test_encode_once_per_broadcast(self) -> None:
        """
        The same message object sent to several peers is encoded once.
        """
        a, b, c = self.net.add("a"), self.net.add("b"), self.net.add("c")
        self.net.wire_all()
        self.net.run()
        calls: list[Message] = []
        real = _transport.encode_message

        def counting(message: Message) -> dict[str, Any]:
            calls.append(message)
            return real(message)

        self.patch(_transport, "encode_message", counting)
        message = hb("a")
        a.transport.send("b", message)
        a.transport.send("c", message)
        self.net.run()
        self.assertEqual(len(calls), 1)
        self.assertEqual((b.inbox, c.inbox), ([message], [message]))


class LearnedLinkTests(SynchronousTestCase):
    """
    A node that is not in our peer map but is connected to us as a member
    (the leader contacting a fresh node) is answered at the address of its
    hello.
    """

    def setUp(self) -> None:
        self.net = Network()
        self.leader = self.net.add("a", "K")
        self.fresh = self.net.add("b", "")
        self.leader.transport.set_peers({"b": self.fresh.addr})
        self.net.run()

    def answer(self) -> None:
        """
        b answers a, as Raft would: again on every message until it arrives.
        """
        for _ in range(3):
            self.fresh.transport.send("a", hb("b"))
            self.net.run()

    def test_fresh_node_answers_leader(self) -> None:
        """
        A fresh node with no peers adopts the leader's cluster and, when it
        answers the leader, dials the address of the leader's hello; the
        answer arrives without any C{set_peers} on the fresh node.
        """
        self.assertEqual(self.fresh.transport.connected_peers(), frozenset())
        self.answer()
        self.assertEqual(self.fresh.adopted, ["K"])
        self.assertEqual(self.fresh.transport.connected_peers(), {"a"})
        self.assertIn(hb("b"), self.leader.inbox)
        self.assertTrue(self.fresh.log.matching("Dialling a at 127.0.0.1:7000"))

    def test_unknown_node_without_connection_dropped(self) -> None:
        """
        A node we neither know from C{set_peers} nor from an inbound member
        connection is not dialled: the message is dropped.
        """
        self.fresh.transport.send("zz", hb("b"))
        self.net.run()
        self.assertEqual(self.net.reactor.tcpClients, [])
        self.assertNotIn("zz", self.fresh.transport._links)

    def test_set_peers_keeps_and_promotes(self) -> None:
        """
        C{set_peers} without the learned node keeps its link; with the same
        address it makes the link an ordinary member link, which a later
        C{set_peers} without it closes for good.
        """
        self.answer()
        self.fresh.transport.set_peers({})
        self.net.run()
        self.assertEqual(self.fresh.transport.connected_peers(), {"a"})
        self.fresh.transport.set_peers({"a": self.leader.addr})
        self.net.run()
        self.assertFalse(self.fresh.transport._links["a"].learned)
        self.assertEqual(self.fresh.transport.connected_peers(), {"a"})
        self.fresh.transport.set_peers({})
        self.net.advance(5)
        self.assertEqual(self.fresh.transport.connected_peers(), frozenset())
        self.assertNotIn("a", self.fresh.transport._links)

    def test_learned_link_forgotten_with_inbound(self) -> None:
        """
        When the learned node's connection to us closes, its link is closed
        and not redialled; once it dials us again we learn it again.
        """
        self.answer()
        self.leader.transport.set_peers({})
        self.net.advance(5)
        self.assertEqual(self.fresh.transport.connected_peers(), frozenset())
        self.assertNotIn("a", self.fresh.transport._links)
        self.assertEqual(self.net.pumps, [])
        self.leader.transport.set_peers({"b": self.fresh.addr})
        self.net.run()
        self.leader.inbox.clear()
        self.answer()
        self.assertIn(hb("b"), self.leader.inbox)

    def test_learned_address_changes(self) -> None:
        """
        If the learned node comes back listening elsewhere, the old learned
        link is dropped and the new address is dialled.
        """
        self.answer()
        moved = self.net.add("a", "K", port=7009)
        moved.transport.set_peers({"b": self.fresh.addr})
        self.net.run()
        self.answer()
        self.assertEqual(self.fresh.transport._links["a"].addr, "127.0.0.1:7009")
        self.assertIn(hb("b"), moved.inbox)


class ProbeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.net = Network()

    def test_probe_identity(self) -> None:
        """
        A probe learns the node id and cluster id listening at an address
        without the prober or the probed node adopting anything, then
        closes its connection.
        """
        a, b = self.net.add("a", ""), self.net.add("b", "K")
        d = a.transport.probe(b.addr)
        self.net.run()
        self.assertEqual(self.successResultOf(d), ("b", "K", ""))
        self.assertEqual((a.transport.cluster_id, a.adopted), ("", []))
        self.assertEqual(self.net.pumps, [])
        d = b.transport.probe(a.addr)
        self.net.run()
        self.assertEqual(self.successResultOf(d), ("a", "", ""))
        self.assertEqual(a.transport.cluster_id, "")

    def test_probe_http_address(self) -> None:
        """
        A probe also learns the HTTP address the probed node announces in
        its hello, which a bootstrapping node needs for the configuration.
        """
        a = self.net.add("a", "")
        b = self.net.add("b", "", http_addr="127.0.0.1:8001")
        d = a.transport.probe(b.addr)
        self.net.run()
        self.assertEqual(self.successResultOf(d), ("b", "", "127.0.0.1:8001"))

    def test_probe_other_cluster(self) -> None:
        """
        A probe answers even across clusters.
        """
        a, b = self.net.add("a", "J"), self.net.add("b", "K")
        d = a.transport.probe(b.addr)
        self.net.run()
        self.assertEqual(self.successResultOf(d), ("b", "K", ""))

    def test_probe_self(self) -> None:
        """
        Probing our own address tells us it is us.
        """
        a = self.net.add("a", "K")
        d = a.transport.probe(a.addr)
        self.net.run()
        self.assertEqual(self.successResultOf(d), ("a", "K", ""))

    def test_probe_before_start(self) -> None:
        """
        A transport can probe before it listens (to learn its peers' ids).
        """
        b = self.net.add("b", "K")
        a = self.net.add("a", "", start=False)
        d = a.transport.probe(b.addr)
        self.net.run()
        self.assertEqual(self.successResultOf(d), ("b", "K", ""))

    def test_probe_refused(self) -> None:
        """
        A refused connection fails the probe with L{ProbeFailed}.
        """
        a = self.net.add("a")
        d = a.transport.probe("127.0.0.1:9999")
        self.net.run()
        self.assertIn("127.0.0.1:9999", str(self.failureResultOf(d, ProbeFailed).value))

    def test_probe_bad_address(self) -> None:
        """
        A malformed address fails the probe at once.
        """
        a = self.net.add("a")
        self.failureResultOf(a.transport.probe("nowhere"), ProbeFailed)

    def test_probe_timeout(self) -> None:
        """
        A probe that gets no hello in time fails and closes its connection.
        """
        a = self.net.add("a")
        self.net.reactor.listenTCP(7001, _SilentFactory())
        d = a.transport.probe("127.0.0.1:7001")
        self.net.run()
        self.assertNoResult(d)
        self.net.advance(5.1)
        self.assertIn("no answer in time", str(self.failureResultOf(d, ProbeFailed).value))
        self.assertEqual(self.net.pumps, [])

    def test_probe_cancel(self) -> None:
        """
        Cancelling a probe stops its connection attempt.
        """
        a = self.net.add("a")
        d = a.transport.probe("127.0.0.1:7005")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(self.net.reactor.connectors[-1]._disconnected)
        self.assertEqual([c for c in self.net.reactor.getDelayedCalls() if c.active()], [])


class AuthenticatedTests(SynchronousTestCase):
    """
    Transports with peer secrets, joined by iosim pumps on one clock.
    """

    def setUp(self) -> None:
        self.net = Network()

    def exchange(self, *nodes: Node) -> None:
        """
        Every node sends a heartbeat to every other.
        """
        for n in nodes:
            for other in nodes:
                if other is not n:
                    n.transport.send(other.transport.node_id, hb(n.transport.node_id))
        self.net.run()

    def test_same_secret(self) -> None:
        """
        Two nodes with the same secret authenticate each other and exchange
        messages both ways.
        """
        a = self.net.add("a", "K", peer_secret=SECRET)
        b = self.net.add("b", "K", peer_secret=SECRET)
        self.assertTrue(a.transport.authenticates)
        self.net.wire_all()
        self.net.run()
        self.assertEqual(a.transport.connected_peers(), {"b"})
        self.assertEqual(b.transport.connected_peers(), {"a"})
        self.exchange(a, b)
        self.assertEqual((a.inbox, b.inbox), ([hb("b")], [hb("a")]))
        self.assertEqual(a.log.matching("Refused") + b.log.matching("Refused"), [])

    def test_different_secrets(self) -> None:
        """
        Nodes with different secrets refuse each other both ways, however
        long they retry: no message (not even a vote of term 1000) is
        delivered, and both log why.
        """
        a = self.net.add("a", "K", peer_secret=SECRET)
        b = self.net.add("b", "K", peer_secret=b"another secret entirely")
        self.net.wire_all()
        self.net.run()
        for _ in range(4):
            a.transport.send("b", RequestVote(1000, "a", 10**6, 1000))
            b.transport.send("a", RequestVote(1000, "b", 10**6, 1000))
            self.net.advance(2.5)
        self.assertEqual((a.inbox, b.inbox), ([], []))
        self.assertEqual(a.transport.connected_peers() | b.transport.connected_peers(), set())
        for n in (a, b):
            self.assertTrue(n.log.matching("Refused", "does not know this cluster's peer secret"))
            self.assertTrue(n.log.matching("refused the connection", "does not know"))

    def test_one_side_without_secret(self) -> None:
        """
        A node without a secret and one with a secret refuse each other
        both ways, each saying which side lacks the secret.
        """
        a = self.net.add("a", "K", peer_secret=SECRET)
        b = self.net.add("b", "K")
        self.net.wire_all()
        self.net.run()
        self.net.advance(0.1)
        self.exchange(a, b)
        self.assertEqual((a.inbox, b.inbox), ([], []))
        self.assertEqual(a.transport.connected_peers() | b.transport.connected_peers(), set())
        self.assertTrue(a.log.matching("Refused", "sent no nonce"))
        self.assertTrue(b.log.matching("Refused", "this node has none"))

    def test_adoption_with_secret(self) -> None:
        """
        Fresh nodes that share the secret adopt the bootstrapped node's
        cluster id, as without one, and everyone reaches everyone.
        """
        nodes = [self.net.add(n, "", peer_secret=SECRET) for n in "abc"]
        self.net.wire_all()
        self.net.run()
        nodes[0].transport.set_cluster_id("K")
        self.net.run()
        self.net.advance(0.1)
        self.net.advance(0.1)
        for n in nodes:
            self.assertEqual(n.transport.cluster_id, "K")
        self.exchange(*nodes)
        for n in nodes:
            self.assertEqual(len(n.inbox), 2)

    def test_probe_with_secret(self) -> None:
        """
        Probes between nodes that share the secret learn the node id,
        cluster id and HTTP address; a prober without the secret, or with
        another one, fails and learns nothing.
        """
        a = self.net.add("a", "", peer_secret=SECRET)
        b = self.net.add("b", "K", peer_secret=SECRET, http_addr="127.0.0.1:8001")
        d = a.transport.probe(b.addr)
        self.net.run()
        self.assertEqual(self.successResultOf(d), ("b", "K", "127.0.0.1:8001"))
        self.assertEqual(a.adopted, [])
        for stranger in (
            self.net.add("s", ""),
            self.net.add("t", "", peer_secret=b"a wrong secret, long enough"),
        ):
            d = stranger.transport.probe(b.addr)
            self.net.run()
            failure = self.failureResultOf(d, ProbeFailed)
            self.assertNotIn("'K'", failure.getErrorMessage())
            self.assertEqual(
                [line for line in stranger.log.lines() if "K" in line or "8001" in line], []
            )

    def test_bootstrap_discovery_with_secret(self) -> None:
        """
        L{BootstrapDiscovery} over real probes finds every peer when all
        the nodes share the secret.
        """
        a = self.net.add("a", "", peer_secret=SECRET, http_addr="127.0.0.1:8000")
        peers = [
            self.net.add(n, "", peer_secret=SECRET, http_addr=f"127.0.0.1:800{i}")
            for i, n in ((1, "b"), (2, "c"))
        ]
        discovery = BootstrapDiscovery(
            self.net.reactor,
            a.transport.probe,
            Member("a", a.addr, "127.0.0.1:8000"),
            tuple(PeerSpec(p.addr) for p in peers),
            log=a.log.logger,
        )
        d = discovery.start()
        self.net.run()
        configuration = self.successResultOf(d)
        self.assertEqual(
            [(m.node_id, m.http_addr) for m in configuration.members],
            [("a", "127.0.0.1:8000"), ("b", "127.0.0.1:8001"), ("c", "127.0.0.1:8002")],
        )


class _SilentFactory:
    """
    A server factory whose protocol never answers.
    """

    def doStart(self) -> None:
        pass

    def buildProtocol(self, addr: object) -> Any:
        return Protocol()


class StopTests(SynchronousTestCase):
    def test_stop_closes_everything(self) -> None:
        """
        C{stop()} closes links, inbound connections and pending probes,
        cancels every timer and fires once all connections are gone;
        afterwards nothing is sent, dialled or delivered.
        """
        net = Network()
        a, b, c = net.add("a"), net.add("b"), net.add("c")
        net.wire_all()
        net.run()
        net.down.add(7002)
        stopped_c = c.transport.stop()
        net.run()
        self.successResultOf(stopped_c)
        self.assertEqual(a.transport.connected_peers(), {"b"})
        probe = a.transport.probe("127.0.0.1:7009")
        d = a.transport.stop()
        again = a.transport.stop()
        self.failureResultOf(probe, ProbeFailed)
        self.assertNoResult(d)
        net.run()
        self.successResultOf(d)
        self.successResultOf(again)
        self.successResultOf(a.transport.stop())
        a.transport.send("b", hb("a"))
        self.failureResultOf(a.transport.probe(b.addr), ProbeFailed)
        self.assertRaises(RuntimeError, a.transport.start, a.inbox.append)
        self.successResultOf(b.transport.stop())
        net.advance(10)
        self.assertEqual(net.pumps, [])
        self.assertEqual(net.reactor.tcpClients, [])
        self.assertEqual([call for call in net.reactor.getDelayedCalls() if call.active()], [])
        self.assertEqual(b.inbox, [])

    def test_stop_unstarted(self) -> None:
        """
        Stopping a transport that never started fires at once.
        """
        node = Node("a", start=False)
        self.successResultOf(node.transport.stop())


class InboundLimitTests(SynchronousTestCase):
    """
    The Raft port's admission control: total and per-host caps, and
    eviction of the connection that has waited longest for its handshake.
    """

    def setUp(self) -> None:
        self.node = Node("a", "C", limits=ConnectionLimits(5, 2, 3))

    def accept_from(self, host: str, port: int = 4000) -> tuple[Any, StringTransport]:
        """
        Offer the listener a connection from C{host}; the protocol is
        L{None} if refused.
        """
        addr = IPv4Address("TCP", host, port)
        factory = self.node.reactor.tcpServers[-1][1]
        proto = factory.buildProtocol(addr)
        st = StringTransport(peerAddress=addr)
        if proto is not None:
            proto.makeConnection(st)
        return proto, st

    def test_default_limits(self) -> None:
        """
        Without C{limits} the transport applies L{DEFAULT_RAFT_LIMITS}.
        """
        self.assertEqual(Node("a").transport._limiter.limits, DEFAULT_RAFT_LIMITS)

    def test_per_host_cap(self) -> None:
        """
        A host over its cap is refused before a byte is read, with a
        warning; other hosts still get in.
        """
        for port in range(3):
            proto, _ = self.accept_from("10.0.0.9", 4000 + port)
            proto.dataReceived(hello(node=f"n{port}"))
        refused, _ = self.accept_from("10.0.0.9", 4100)
        self.assertIsNone(refused)
        self.assertTrue(self.node.log.matching("Raft port: refused a connection from 10.0.0.9"))
        self.assertIsNotNone(self.accept_from("10.0.0.10")[0])

    def test_total_cap_and_release(self) -> None:
        """
        Over the total cap connections are refused; a closed connection
        frees its place.
        """
        accepted = []
        for i in range(5):
            proto, _ = self.accept_from(f"10.0.1.{i}")
            proto.dataReceived(hello(node=f"n{i}"))
            accepted.append(proto)
        self.assertIsNone(self.accept_from("10.0.2.1")[0])
        accepted[0].connectionLost(Failure(ConnectionDone()))
        self.assertIsNotNone(self.accept_from("10.0.2.1")[0])

    def test_oldest_handshake_evicted(self) -> None:
        """
        With two connections still waiting for their hello, a third closes
        the oldest (telling it why); member connections are never evicted.
        """
        member, _ = self.accept_from("10.0.0.1")
        member.dataReceived(hello(node="b"))
        silent1, st1 = self.accept_from("10.0.0.2")
        silent2, st2 = self.accept_from("10.0.0.3")
        newcomer, st3 = self.accept_from("10.0.0.4")
        self.assertTrue(st1.disconnecting)
        self.assertEqual(
            read_frames(st1.value())[-1],
            {"type": "reject", "reason": "too many connections are waiting for a handshake"},
        )
        self.assertFalse(st2.disconnecting or st3.disconnecting)
        self.assertTrue(member.usable)
        self.assertTrue(self.node.log.matching("closed the oldest, from 10.0.0.2"))

    def test_discovery_connections_stay_evictable(self) -> None:
        """
        A discovery connection (a hello without a cluster id) is answered
        but still counts as waiting, so strangers cannot pile them up.
        """
        discovery, st = self.accept_from("10.0.0.2")
        discovery.dataReceived(hello(node="x", cluster=""))
        self.assertEqual(read_frames(st.value())[0]["type"], "hello")
        self.accept_from("10.0.0.3")
        self.accept_from("10.0.0.4")
        self.assertTrue(st.disconnecting)


# -- real sockets -------------------------------------------------------------


class RealSocketTests(TestCase):
    """
    Transports on the real reactor, on 127.0.0.1 with ports picked by the
    system.  Trial fails these tests if anything is left in the reactor.
    """

    timeout = 30

    def setUp(self) -> None:
        self.nodes: dict[str, tuple[TCPPeerTransport, list[Message], LogCapture]] = {}

    def make(
        self, node_id: str, cluster: str = "K", peer_secret: bytes | None = None
    ) -> TCPPeerTransport:
        log = LogCapture()
        inbox: list[Message] = []
        t = TCPPeerTransport(
            reactor,
            node_id,
            "127.0.0.1:0",
            cluster,
            log=log.logger,
            rng=random.Random(7),
            peer_secret=peer_secret,
        )
        t.start(inbox.append)
        self.addCleanup(t.stop)
        self.nodes[node_id] = (t, inbox, log)
        return t

    def wire(self) -> None:
        peers = {nid: t.advertised_address for nid, (t, _, _) in self.nodes.items()}
        for t, _, _ in self.nodes.values():
            t.set_peers(peers)

    async def wait_for(
        self, condition: Callable[[], bool], what: str, deadline: float = 10.0
    ) -> None:
        """
        Poll C{condition} until it holds, failing after C{deadline} seconds.
        """
        clock = IReactorTime(reactor)
        give_up = clock.seconds() + deadline
        while not condition():
            if clock.seconds() > give_up:
                self.fail(f"timed out waiting for {what}")
            await deferLater(clock, 0.005, lambda: None)

    async def exchange(self) -> None:
        """
        Every node sends to every other (re-sending, as Raft would, until
        delivered) and each receives from all the others.
        """
        ids = sorted(self.nodes)
        term = max((m.term for _, inbox, _ in self.nodes.values() for m in inbox), default=0) + 1

        def done() -> bool:
            for nid, (t, _, _) in self.nodes.items():
                for other in ids:
                    if other != nid:
                        t.send(other, RequestVote(term, nid, 0, 0))
            return all(
                {m.sender for m in inbox if m.term == term} == set(ids) - {nid}
                for nid, (_, inbox, _) in self.nodes.items()
            )

        await self.wait_for(done, "every node to hear from every other")

    @defer.inlineCallbacks
    def test_three_nodes(self) -> Any:
        """
        Three transports over real TCP deliver messages all ways.
        """
        for n in "abc":
            self.make(n)
        self.wire()
        yield Deferred.fromCoroutine(self.exchange())

    @defer.inlineCallbacks
    def test_three_nodes_with_secret(self) -> Any:
        """
        Three transports sharing a peer secret authenticate over real TCP
        and deliver messages all ways; a probe between them works.
        """
        for n in "abc":
            self.make(n, peer_secret=SECRET)
        self.wire()
        yield Deferred.fromCoroutine(self.exchange())
        a, b = self.nodes["a"][0], self.nodes["b"][0]
        result = yield a.probe(b.advertised_address)
        self.assertEqual(result, ("b", "K", ""))

    @defer.inlineCallbacks
    def test_reconnect_after_kill(self) -> Any:
        """
        Killing one side's connection makes the dialler reconnect after a
        backoff delay; delivery resumes.
        """
        a, b = self.make("a"), self.make("b")
        self.wire()
        yield Deferred.fromCoroutine(self.exchange())
        conn = a._links["b"].conn
        assert conn is not None and conn.transport is not None
        b._inbound["a"].transport.abortConnection()
        yield Deferred.fromCoroutine(
            self.wait_for(lambda: a._links["b"].conn is not conn, "a to notice the loss")
        )
        log = self.nodes["a"][2]
        [delay] = log.backoff_delays("b")
        self.assertTrue(0.04 <= delay <= 0.06, delay)
        yield Deferred.fromCoroutine(self.exchange())
        self.assertEqual(a.connected_peers(), {"b"})
        self.assertEqual(b.connected_peers(), {"a"})

    @defer.inlineCallbacks
    def test_probe(self) -> Any:
        """
        A probe over real TCP learns the listener's identity.
        """
        a = self.make("a", "")
        b = self.make("b", "K")
        result = yield a.probe(b.advertised_address)
        self.assertEqual(result, ("b", "K", ""))
        self.assertEqual(a.cluster_id, "")

    @defer.inlineCallbacks
    def test_probe_refused(self) -> Any:
        """
        Probing a closed port fails with L{ProbeFailed}.
        """
        a = self.make("a")
        b = self.make("b")
        port = b.listening_port()
        yield b.stop()
        with self.assertRaises(ProbeFailed):
            yield a.probe(f"127.0.0.1:{port}")

    @defer.inlineCallbacks
    def test_stop_is_clean(self) -> Any:
        """
        Stopping connected transports (and one with a peer that is down)
        leaves nothing in the reactor; trial checks that after the test.
        """
        a, b = self.make("a"), self.make("b")
        self.wire()
        yield Deferred.fromCoroutine(self.exchange())
        yield b.stop()
        yield Deferred.fromCoroutine(
            self.wait_for(lambda: a._links["b"].retry is not None, "a to schedule a redial")
        )
        yield a.stop()
        self.assertEqual(a._conns, set())
