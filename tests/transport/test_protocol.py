"""
Tests for L{raft3d.transport._protocol}: one connection on a
L{StringTransport}, owned by a real L{TCPPeerTransport} on a
L{MemoryReactorClock}.
"""

from __future__ import annotations

from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import (
    Heartbeat,
    Message,
    ProtocolError,
    RequestVote,
    decode_message,
    encode_message,
)
from raft3d.transport import _protocol
from raft3d.transport._protocol import PeerConnection
from raft3d.transport._wire import Hello, auth_map

from ._support import (
    SECRET,
    Node,
    acceptor_mac,
    auth,
    cbor_values,
    challenge,
    frame,
    hello,
    hello_record,
    initiator_mac,
    messages,
    raw_frame,
    read_frames,
)

HB = Heartbeat(term=3, sender="b", commit=7, read_ctx=1)


class InboundTests(SynchronousTestCase):
    """
    The accepting side of a connection.
    """

    def setUp(self) -> None:
        self.node = Node("a", "C")
        self.proto, self.st = self.node.accept()

    def greet(self, **kwargs: Any) -> list[Any]:
        """
        Send a hello from node b (cluster C unless overridden); return the
        frames we answered with.
        """
        self.proto.dataReceived(hello(**kwargs))
        out = read_frames(self.st.value())
        self.st.clear()
        return out

    def assertDropped(self, *fragments: str) -> None:
        """
        The connection is being closed and a warning names the peer's
        address and contains C{fragments}.
        """
        self.assertTrue(self.st.disconnecting, "connection not closed")
        lines = self.node.log.matching("10.9.8.7:4321", *fragments)
        self.assertTrue(lines, f"no log line with {fragments}: {self.node.log.lines()}")

    def test_answers_hello_then_delivers(self) -> None:
        """
        The accepting side says nothing until the peer's hello, answers it
        with its own hello, then delivers the peer's messages.
        """
        self.assertEqual(self.st.value(), b"")
        [answer] = self.greet()
        self.assertEqual(
            answer,
            {"type": "hello", "v": 1, "cluster": "C", "node": "a", "addr": "127.0.0.1:7000"},
        )
        self.proto.dataReceived(frame(encode_message(HB)))
        self.assertEqual(self.node.inbox, [HB])
        self.assertFalse(self.st.disconnecting)

    def test_split_and_batched_frames(self) -> None:
        """
        Frames are reassembled whether they arrive a byte at a time or
        several in one read.
        """
        data = hello() + frame(encode_message(HB)) * 2
        for i in range(len(data)):
            self.proto.dataReceived(data[i : i + 1])
        self.proto.dataReceived(frame(encode_message(HB)) * 3 + frame(encode_message(HB))[:5])
        self.assertEqual(self.node.inbox, [HB] * 5)
        self.proto.dataReceived(frame(encode_message(HB))[5:])
        self.assertEqual(self.node.inbox, [HB] * 6)
        self.assertFalse(self.st.disconnecting)

    def test_large_frame_in_pieces(self) -> None:
        """
        A large frame arriving in many reads is delivered once complete.
        """
        self.greet()
        big = frame(
            {
                "type": "snap_resp",
                "term": 1,
                "from": "b",
                "li": 1,
                "off": 0,
                "done": False,
                "ok": True,
                "pad": b"x" * 300_000,
            }
        )
        for i in range(0, len(big), 4096):
            self.proto.dataReceived(big[i : i + 4096])
        self.assertEqual(len(self.node.inbox), 1)

    def test_oversized_length_prefix(self) -> None:
        """
        A length prefix above C{max_frame} closes the connection at once,
        without waiting for the payload, and says so in the log.
        """
        self.greet()
        self.proto.dataReceived((16 * 2**20 + 1).to_bytes(4, "big") + b"\x00")
        self.assertDropped("exceeds the limit")

    def test_small_limit_before_handshake(self) -> None:
        """
        Before the hello only small frames are accepted, so a stranger
        cannot make us buffer C{max_frame} bytes per connection.
        """
        self.proto.dataReceived((64 * 1024 + 1).to_bytes(4, "big"))
        self.assertDropped("exceeds the limit of 65536")

    def test_max_frame_configurable(self) -> None:
        """
        C{max_frame} sets the limit.
        """
        node = Node("a", "C", max_frame=100)
        proto, st = node.accept()
        proto.dataReceived(hello())
        proto.dataReceived(raw_frame(b"\x00" * 101))
        self.assertTrue(st.disconnecting)
        self.assertTrue(node.log.matching("101 bytes exceeds the limit of 100"))

    def test_garbled_cbor(self) -> None:
        """
        A payload that is not CBOR closes the connection.
        """
        self.greet()
        self.proto.dataReceived(raw_frame(b"\xff\xfe\xfd"))
        self.assertDropped("undecodable CBOR")

    def test_not_a_map(self) -> None:
        """
        A frame holding something other than a map closes the connection.
        """
        self.greet()
        self.proto.dataReceived(frame([1, 2, 3]))
        self.assertDropped("list, not a map")

    def test_unknown_type(self) -> None:
        """
        A map with an unknown C{type} closes the connection.
        """
        self.greet()
        self.proto.dataReceived(frame({"type": "gossip", "from": "b"}))
        self.assertDropped("unknown message type")

    def test_unhashable_type(self) -> None:
        """
        A C{type} that is a list is a protocol error, not a L{TypeError}
        escaping from C{decode_message}'s table lookup.
        """
        self.greet()
        self.proto.dataReceived(frame({"type": [1], "from": "b"}))
        self.assertDropped("'type' must be a string")

    def test_missing_field(self) -> None:
        """
        A message lacking a field closes the connection.
        """
        self.greet()
        raw = encode_message(HB)
        del raw["commit"]
        self.proto.dataReceived(frame(raw))
        self.assertDropped("lacks field 'commit'")

    def test_wrong_field_type(self) -> None:
        """
        A message with an ill-typed field closes the connection.
        """
        self.greet()
        self.proto.dataReceived(frame({**encode_message(HB), "term": "three"}))
        self.assertDropped("'term' must be a non-negative integer")

    def test_frame_before_hello(self) -> None:
        """
        A Raft message before the hello is a protocol error.
        """
        self.proto.dataReceived(frame(encode_message(HB)))
        self.assertDropped("'hb' frame before the hello")
        self.assertEqual(self.node.inbox, [])

    def test_second_hello(self) -> None:
        """
        A second hello is a protocol error.
        """
        self.greet()
        self.proto.dataReceived(hello())
        self.assertDropped("second hello")

    def test_malformed_hello(self) -> None:
        """
        A hello with an ill-typed field is a protocol error.
        """
        self.proto.dataReceived(hello(node=5))
        self.assertDropped("malformed hello")

    def test_cluster_mismatch(self) -> None:
        """
        A peer of another cluster gets a C{reject} frame naming both
        cluster ids, then the connection closes; the log says the same.
        """
        [reject] = self.greet(cluster="D")
        self.assertEqual(reject["type"], "reject")
        self.assertIn("cluster id mismatch: ours is 'C', theirs is 'D'", reject["reason"])
        self.assertDropped("cluster id mismatch")

    def test_version_mismatch(self) -> None:
        """
        A peer speaking another protocol version is told so and dropped.
        """
        [reject] = self.greet(v=2)
        self.assertEqual(reject["type"], "reject")
        self.assertIn("unsupported protocol version 2", reject["reason"])
        self.assertDropped("unsupported protocol version 2")

    def test_sender_spoofing(self) -> None:
        """
        A message whose C{sender} is not the node that said hello closes the
        connection and is not delivered.
        """
        self.greet()
        self.proto.dataReceived(frame(encode_message(Heartbeat(term=3, sender="c", commit=0))))
        self.assertDropped("claims to come from 'c'")
        self.assertEqual(self.node.inbox, [])

    def test_nothing_after_a_bad_frame(self) -> None:
        """
        Valid frames that follow an offending one in the same read are not
        delivered: the connection is already being dropped.
        """
        self.greet()
        self.proto.dataReceived(raw_frame(b"\xff") + frame(encode_message(HB)))
        self.assertTrue(self.st.disconnecting)
        self.assertEqual(self.node.inbox, [])

    def test_discovery_connection(self) -> None:
        """
        A peer without a cluster id gets our hello (for discovery) but its
        Raft messages are refused.
        """
        [answer] = self.greet(cluster="")
        self.assertEqual((answer["node"], answer["cluster"]), ("a", "C"))
        self.assertFalse(self.st.disconnecting)
        self.proto.dataReceived(frame(encode_message(HB)))
        self.assertDropped("outside our cluster")
        self.assertEqual(self.node.inbox, [])

    def test_own_probe(self) -> None:
        """
        A hello with our own node id and no cluster is our own probe:
        answered, not refused.  With a cluster id it is an impostor.
        """
        [answer] = self.greet(node="a", cluster="")
        self.assertEqual(answer["type"], "hello")
        proto, st = self.node.accept()
        proto.dataReceived(hello(node="a", cluster="C"))
        self.assertTrue(st.disconnecting)
        self.assertEqual(read_frames(st.value())[0]["type"], "reject")

    def test_handshake_timeout(self) -> None:
        """
        A peer that never says hello is dropped after the handshake timeout.
        """
        self.node.reactor.advance(4.9)
        self.assertFalse(self.st.disconnecting)
        self.node.reactor.advance(0.2)
        self.assertDropped("no hello within")

    def test_receiver_failure_is_contained(self) -> None:
        """
        An exception from the receiver is logged; the connection survives
        and later messages are still delivered.
        """
        node = Node("a", "C", start=False)
        calls: list[Message] = []

        def receiver(message: Message) -> None:
            calls.append(message)
            if len(calls) == 1:
                raise RuntimeError("boom")

        node.transport.start(receiver)
        proto, st = node.accept()
        proto.dataReceived(hello() + frame(encode_message(HB)) * 2)
        self.assertEqual(calls, [HB, HB])
        self.assertFalse(st.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 0)
        self.assertTrue(node.log.matching("Receiver failed on a Heartbeat"))

    def test_internal_error_contained(self) -> None:
        """
        An unexpected exception while handling a frame is logged with its
        traceback and drops the connection; it does not reach Twisted.
        """

        def broken(payload: bytes) -> object:
            raise RuntimeError("bug")

        self.patch(_protocol, "decode_payload", broken)
        self.proto.dataReceived(hello())
        self.assertDropped("internal error")
        self.assertTrue(self.node.log.matching("Unexpected error handling data from 10.9.8.7:4321"))


class AdoptionTests(SynchronousTestCase):
    def test_inbound_adoption(self) -> None:
        """
        A fresh node (cluster C{""}) adopts the cluster id of the first
        member that says hello: C{on_cluster_id} is called, the answer
        carries the adopted id, and messages are delivered.
        """
        node = Node("a", "")
        proto, st = node.accept()
        proto.dataReceived(hello(cluster="C"))
        self.assertEqual(node.adopted, ["C"])
        self.assertEqual(node.transport.cluster_id, "C")
        self.assertEqual(read_frames(st.value())[0]["cluster"], "C")
        proto.dataReceived(frame(encode_message(HB)))
        self.assertEqual(node.inbox, [HB])

    def test_no_second_adoption(self) -> None:
        """
        Once adopted, the cluster id is fixed: a peer of another cluster is
        refused.
        """
        node = Node("a", "")
        node.accept()[0].dataReceived(hello(cluster="C"))
        proto, st = node.accept()
        proto.dataReceived(hello(node="c", cluster="D"))
        self.assertTrue(st.disconnecting)
        self.assertEqual(node.adopted, ["C"])

    def test_callback_failure_contained(self) -> None:
        """
        A failing C{on_cluster_id} is logged; the adoption still happens.
        """
        node = Node("a", "", start=False)

        def explode(cluster_id: str) -> None:
            raise OSError("disk full")

        node.transport._on_cluster_id = explode
        node.transport.start(node.inbox.append)
        proto, st = node.accept()
        proto.dataReceived(hello(cluster="C"))
        self.assertEqual(node.transport.cluster_id, "C")
        self.assertFalse(st.disconnecting)
        self.assertTrue(node.log.matching("on_cluster_id(C) failed"))

    def test_outbound_adoption(self) -> None:
        """
        A fresh node also adopts the cluster id from the answer to its own
        hello.
        """
        node = Node("a", "")
        proto, st = node.dial()
        self.assertEqual(read_frames(st.value())[0]["cluster"], "")
        proto.dataReceived(hello(cluster="C"))
        self.assertEqual(node.adopted, ["C"])
        self.assertEqual(node.transport.connected_peers(), {"b"})


class OutboundTests(SynchronousTestCase):
    """
    The dialling side of a connection.
    """

    def setUp(self) -> None:
        self.node = Node("a", "C")
        self.proto, self.st = self.node.dial()

    def test_hello_first(self) -> None:
        """
        The dialling side sends its hello as soon as it connects, and sends
        messages once the answer arrived.
        """
        [h] = read_frames(self.st.value())
        self.assertEqual(
            h, {"type": "hello", "v": 1, "cluster": "C", "node": "a", "addr": "127.0.0.1:7000"}
        )
        self.st.clear()
        msg = Heartbeat(term=1, sender="a", commit=0)
        self.node.transport.send("b", msg)
        self.assertEqual(self.st.value(), b"", "sent before the handshake")
        self.proto.dataReceived(hello())
        self.node.transport.send("b", msg)
        self.assertEqual(read_frames(self.st.value()), [encode_message(msg)])

    def test_rejected(self) -> None:
        """
        A C{reject} frame closes the connection and its reason is logged.
        """
        self.proto.dataReceived(frame({"type": "reject", "reason": "cluster id mismatch"}))
        self.assertTrue(self.st.disconnecting)
        self.assertTrue(
            self.node.log.matching("10.9.8.7:4321", "refused the connection", "cluster id mismatch")
        )

    def test_wrong_node_answers(self) -> None:
        """
        If another node than the peer we dialled answers, we refuse it.
        """
        self.proto.dataReceived(hello(node="z"))
        self.assertTrue(self.st.disconnecting)
        self.assertTrue(self.node.log.matching("expected node 'b' but 'z' answered"))

    def test_buffer_bound(self) -> None:
        """
        While the transport's write buffer is full (producer paused), writes
        are counted; past C{max_buffer} messages are dropped with a single
        warning, and sending resumes once the buffer drains.
        """
        node = Node("a", "C", max_buffer=1000)
        proto, st = node.dial()
        proto.dataReceived(hello())
        st.clear()
        msg = Heartbeat(term=1, sender="a", commit=0)
        size = len(frame(encode_message(msg)))
        proto.pauseProducing()
        for _ in range(100):
            node.transport.send("b", msg)
        self.assertEqual(len(st.value()), (1000 // size) * size)
        self.assertEqual(len(node.log.matching("Send buffer", "holds more than 1000 bytes")), 1)
        proto.pauseProducing()  # repeated pauses do not reset the count
        node.transport.send("b", msg)
        self.assertEqual(len(st.value()), (1000 // size) * size)
        proto.resumeProducing()
        self.assertTrue(node.log.matching("drained", str(100 + 1 - 1000 // size)))
        st.clear()
        node.transport.send("b", msg)
        self.assertEqual(len(st.value()), size)

    def test_oversized_message_not_sent(self) -> None:
        """
        A message that would exceed C{max_frame} is not sent (the peer would
        drop the connection) and an error is logged.
        """
        node = Node("a", "C", max_frame=64)
        proto, st = node.dial()
        proto.dataReceived(hello())
        st.clear()
        node.transport.send("b", Heartbeat(term=1, sender="a" * 100, commit=0))
        self.assertEqual(st.value(), b"")
        self.assertTrue(node.log.matching("Not sending a Heartbeat"))


def _fresh_inbound(handshake: bool) -> tuple[Node, PeerConnection, StringTransport]:
    node = Node("a", "C")
    proto, st = node.accept()
    if handshake:
        proto.dataReceived(hello())
    return node, proto, st


class FuzzTests(SynchronousTestCase):
    """
    Whatever a peer sends, nothing escapes into Twisted: each frame is
    either delivered as exactly what C{decode_message} makes of it, or the
    connection is dropped.
    """

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.booleans(), st.lists(st.binary(max_size=64), max_size=6))
    def test_random_bytes(self, handshake: bool, chunks: list[bytes]) -> None:
        """
        Random bytes, before or after the handshake, never raise.
        """
        node, proto, transport = _fresh_inbound(handshake)
        for chunk in chunks:
            proto.dataReceived(chunk)
        if node.inbox:
            self.assertTrue(handshake)
        # Dropped exactly when a warning says why.
        self.assertEqual(transport.disconnecting, bool(node.log.warnings()))

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(cbor_values, min_size=1, max_size=4))
    def test_random_cbor_values(self, values: list[Any]) -> None:
        """
        Random CBOR values in well-formed frames are delivered when they
        decode to a message from the peer and drop the connection otherwise.
        """
        node, proto, transport = _fresh_inbound(True)
        self._check(node, proto, transport, values)

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(messages(sender=st.just("b")), st.data())
    def test_mutated_messages(self, message: Message, data: st.DataObject) -> None:
        """
        A valid message with one field deleted or replaced by a random value
        is delivered or dropped, never raises.
        """
        node, proto, transport = _fresh_inbound(True)
        raw = encode_message(message)
        key = data.draw(st.sampled_from(sorted(raw)))
        if data.draw(st.booleans()):
            del raw[key]
        else:
            raw[key] = data.draw(cbor_values)
        self._check(node, proto, transport, [raw])

    def _check(
        self, node: Node, proto: PeerConnection, transport: StringTransport, values: list[Any]
    ) -> None:
        expected: list[Message] = []
        for value in values:
            proto.dataReceived(frame(value))
            if transport.disconnecting:
                break
            expected.append(self._expect(value))
        self.assertEqual(node.inbox, expected)

    def _expect(self, value: Any) -> Message:
        try:
            message = decode_message(value)
        except (ProtocolError, TypeError) as e:
            self.fail(f"delivered an undecodable value {value!r}: {e}")
        self.assertEqual(message.sender, "b")
        return message

    def test_random_bytes_found_no_crash_on_tags(self) -> None:
        """
        A tagged value in a frame (here a datetime) drops the connection
        rather than reaching C{decode_message}.
        """
        node, proto, transport = _fresh_inbound(True)
        proto.dataReceived(raw_frame(cbor2.dumps({"type": "hb", "x": cbor2.CBORTag(1, 0)})))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(node.inbox, [])


NONCE_B = bytes(range(100, 116))
VOTE = RequestVote(term=1000, sender="b", last_log_index=10**6, last_log_term=1000)


class AuthAcceptorTests(SynchronousTestCase):
    """
    The accepting side of a connection when the node has a peer secret.
    """

    def setUp(self) -> None:
        self.node = Node("node-alpha", "cluster-k7", peer_secret=SECRET)
        self.proto, self.st = self.node.accept()

    def take(self, st: StringTransport | None = None) -> list[Any]:
        st = st if st is not None else self.st
        out = read_frames(st.value())
        st.clear()
        return out

    def challenged(
        self, proto: PeerConnection, st: StringTransport, cluster: str = "cluster-k7"
    ) -> bytes:
        """
        Say hello as node b with L{NONCE_B}; return the challenge's nonce.
        """
        proto.dataReceived(hello(cluster=cluster, nonce=NONCE_B))
        [challenge_frame] = self.take(st)
        self.assertEqual(set(challenge_frame), {"type", "nonce"})
        self.assertEqual(challenge_frame["type"], "challenge")
        nonce: bytes = challenge_frame["nonce"]
        return nonce

    def assertRefused(self, st: StringTransport, *fragments: str) -> None:
        """
        The connection is closed after a reject frame with C{fragments},
        and nothing else was sent: no hello, so nothing about the node.
        """
        self.assertTrue(st.disconnecting, "connection not closed")
        frames = read_frames(st.value())
        self.assertEqual([f["type"] for f in frames], ["reject"], frames)
        for fragment in fragments:
            self.assertIn(fragment, frames[0]["reason"])
        self.assertNotIn(b"node-alpha", st.value())
        self.assertNotIn(b"cluster-k7", st.value())

    def test_challenge_reveals_nothing(self) -> None:
        """
        A hello with a nonce is answered with a challenge holding a fresh
        16-byte nonce and nothing else: no node id, no cluster id, no
        address.  The connection is not a member connection yet.
        """
        nonce = self.challenged(self.proto, self.st)
        self.assertEqual(len(nonce), 16)
        self.assertNotEqual(nonce, NONCE_B)
        self.assertFalse(self.proto.member)
        self.assertIsNone(self.proto.remote)
        self.assertFalse(self.st.disconnecting)
        other, other_st = self.node.accept()
        self.assertNotEqual(self.challenged(other, other_st), nonce)

    def test_authenticated_peer_is_member(self) -> None:
        """
        Once the initiator's auth frame checks out, the acceptor answers
        with its hello (carrying the challenge's nonce) and its own auth
        frame, whose MAC covers both hellos and both nonces; then messages
        flow.
        """
        nonce = self.challenged(self.proto, self.st)
        initiator = hello_record(cluster="cluster-k7", nonce=NONCE_B)
        self.proto.dataReceived(auth(initiator_mac(initiator, nonce)))
        answer, auth_frame = self.take()
        self.assertEqual(answer["type"], "hello")
        self.assertEqual((answer["node"], answer["cluster"]), ("node-alpha", "cluster-k7"))
        self.assertEqual(answer["nonce"], nonce)
        self.assertEqual(
            auth_frame,
            {"type": "auth", "mac": acceptor_mac(initiator, Hello.from_wire(answer))},
        )
        self.assertTrue(self.proto.member)
        self.proto.dataReceived(frame(encode_message(HB)))
        self.assertEqual(self.node.inbox, [HB])

    def test_wrong_secret(self) -> None:
        """
        An auth frame made with another secret is refused with a reject
        saying so; the Raft messages that follow it in the same read (a
        vote of term 1000) are never delivered, and nothing about the node
        is sent.
        """
        nonce = self.challenged(self.proto, self.st)
        initiator = hello_record(cluster="cluster-k7", nonce=NONCE_B)
        mac = initiator_mac(initiator, nonce, secret=b"a guess at the secret")
        self.proto.dataReceived(auth(mac) + frame(encode_message(VOTE)))
        self.assertRefused(self.st, "does not know this cluster's peer secret")
        self.assertEqual(self.node.inbox, [])
        self.assertFalse(self.proto.member)
        self.assertTrue(
            self.node.log.matching("Refused 10.9.8.7:4321, which claims to be node 'b'")
        )

    def test_no_nonce(self) -> None:
        """
        A hello without a nonce, even with the right cluster id, is refused
        at once: the peer has no secret.
        """
        self.proto.dataReceived(hello(cluster="cluster-k7") + frame(encode_message(VOTE)))
        self.assertRefused(self.st, "sent no nonce")
        self.assertEqual(self.node.inbox, [])

    def test_discovery_hello_learns_nothing(self) -> None:
        """
        A stranger's discovery hello (empty cluster id), with or without a
        nonce, learns nothing: a bare challenge it cannot answer, or a
        reject.
        """
        self.proto.dataReceived(hello(cluster=""))
        self.assertRefused(self.st, "sent no nonce")
        proto, st = self.node.accept()
        proto.dataReceived(hello(cluster="", nonce=NONCE_B))
        self.assertEqual(set(read_frames(st.value())[0]), {"type", "nonce"})
        proto.dataReceived(auth(b"\0" * 32))
        self.assertTrue(st.disconnecting)
        self.assertNotIn(b"node-alpha", st.value())
        self.assertNotIn(b"cluster-k7", st.value())

    def test_message_before_auth(self) -> None:
        """
        A Raft message between the hello and the auth frame is a protocol
        error; it is not delivered.
        """
        self.challenged(self.proto, self.st)
        self.proto.dataReceived(frame(encode_message(VOTE)))
        self.assertRefused(self.st, "before the handshake completed")
        self.assertEqual(self.node.inbox, [])

    def test_out_of_order_frames(self) -> None:
        """
        An auth frame before the hello, a second hello and a challenge sent
        to the acceptor are refused.
        """
        self.proto.dataReceived(auth(b"\0" * 32))
        self.assertRefused(self.st, "unexpected auth frame")
        proto, st = self.node.accept()
        self.challenged(proto, st)
        proto.dataReceived(hello(cluster="cluster-k7", nonce=NONCE_B))
        self.assertRefused(st, "second hello")
        proto, st = self.node.accept()
        self.challenged(proto, st)
        proto.dataReceived(challenge(NONCE_B))
        self.assertRefused(st, "unexpected challenge")

    def test_replayed_auth(self) -> None:
        """
        Everything an authenticated peer sent on one connection, replayed
        byte for byte on a new one, is refused: the new challenge has a
        new nonce, so the recorded MAC does not fit.
        """
        nonce = self.challenged(self.proto, self.st)
        initiator = hello_record(cluster="cluster-k7", nonce=NONCE_B)
        recorded = auth(initiator_mac(initiator, nonce)) + frame(encode_message(HB))
        self.proto.dataReceived(recorded)
        self.assertEqual(self.node.inbox, [HB])
        proto, st = self.node.accept()
        self.challenged(proto, st)
        proto.dataReceived(recorded)
        self.assertRefused(st, "does not know this cluster's peer secret")
        self.assertEqual(self.node.inbox, [HB])

    def test_auth_timeout(self) -> None:
        """
        The handshake timeout covers the authentication step: a peer that
        says hello but never answers the challenge is dropped.
        """
        self.challenged(self.proto, self.st)
        self.node.reactor.advance(4.9)
        self.assertFalse(self.st.disconnecting)
        self.node.reactor.advance(0.2)
        self.assertRefused(self.st, "not completed within 5.0 seconds")

    def test_refusals_throttled(self) -> None:
        """
        Refused authentications are logged at most once per 10 seconds; the
        next line counts the ones left out.
        """
        for _ in range(5):
            proto, st = self.node.accept()
            proto.dataReceived(hello(cluster="cluster-k7"))
            self.assertTrue(st.disconnecting)
        self.assertEqual(len(self.node.log.matching("Refused")), 1)
        self.node.reactor.advance(10)
        proto, st = self.node.accept()
        proto.dataReceived(hello(cluster="cluster-k7"))
        [_, line] = self.node.log.matching("Refused")
        self.assertIn("4 more since the last such line", line)

    def test_no_adoption_before_auth(self) -> None:
        """
        A fresh node adopts a cluster id only from a peer that proved it
        knows the secret: a stranger's hello with any cluster id changes
        nothing.
        """
        node = Node("a", "", peer_secret=SECRET)
        proto, st = node.accept()
        nonce = self.challenged(proto, st, cluster="K")
        proto.dataReceived(auth(b"\1" * 32))
        self.assertEqual((node.transport.cluster_id, node.adopted), ("", []))
        proto, st = node.accept()
        nonce = self.challenged(proto, st, cluster="K")
        self.assertEqual(node.adopted, [])
        proto.dataReceived(auth(initiator_mac(hello_record(cluster="K", nonce=NONCE_B), nonce)))
        self.assertEqual(node.adopted, ["K"])


class AuthWithoutSecretTests(SynchronousTestCase):
    """
    A node without a peer secret meeting one that has one.
    """

    def test_hello_with_nonce(self) -> None:
        """
        An acceptor without a secret refuses a hello with a nonce, saying
        it has no secret, rather than answer with its identity.
        """
        node = Node("a", "C")
        proto, st = node.accept()
        proto.dataReceived(hello(nonce=NONCE_B))
        [reject] = read_frames(st.value())
        self.assertIn("this node has none", reject["reason"])
        self.assertTrue(st.disconnecting)
        self.assertEqual(node.adopted, [])

    def test_auth_and_challenge(self) -> None:
        """
        An auth frame or a challenge sent to a node without a secret is
        refused, whatever the handshake's state.
        """
        node = Node("a", "C")
        proto, st = node.accept()
        proto.dataReceived(hello() + auth(b"\0" * 32) + frame(encode_message(HB)))
        self.assertEqual(read_frames(st.value())[-1]["type"], "reject")
        self.assertIn("no peer secret", read_frames(st.value())[-1]["reason"])
        self.assertEqual(node.inbox, [])
        proto, st = node.dial()
        proto.dataReceived(challenge(NONCE_B))
        self.assertTrue(st.disconnecting)
        self.assertIn("requires a peer secret", read_frames(st.value())[-1]["reason"])


class AuthInitiatorTests(SynchronousTestCase):
    """
    The dialling side of a connection when the node has a peer secret.
    """

    def setUp(self) -> None:
        self.node = Node("a", "C", peer_secret=SECRET)
        self.proto, self.st = self.node.dial()
        [sent] = read_frames(self.st.value())
        self.st.clear()
        self.sent = Hello.from_wire(sent)

    def answer(self, *, nonce: bytes = NONCE_B, secret: bytes = SECRET, **kwargs: Any) -> None:
        """
        Challenge with C{nonce}, check the auth frame, then answer with b's
        hello and the auth frame made with C{secret}.
        """
        self.proto.dataReceived(challenge(nonce))
        self.assertEqual(read_frames(self.st.value()), [auth_map(initiator_mac(self.sent, nonce))])
        self.st.clear()
        self.assertEqual(self.node.transport.connected_peers(), frozenset())
        answer = hello_record(nonce=nonce, **kwargs)
        self.proto.dataReceived(
            hello(nonce=nonce, **kwargs) + auth(acceptor_mac(self.sent, answer, secret))
        )

    def test_hello_carries_nonce(self) -> None:
        """
        The initiator's hello carries a fresh 16-byte nonce, another on
        every connection.
        """
        self.assertEqual(len(self.sent.nonce), 16)
        proto, st = self.node.dial("c")
        self.assertNotEqual(read_frames(st.value())[0]["nonce"], self.sent.nonce)

    def test_mutual_authentication(self) -> None:
        """
        After the challenge, the initiator's auth and the acceptor's hello
        and auth, the link is up and carries messages.
        """
        self.answer()
        self.assertEqual(self.node.transport.connected_peers(), {"b"})
        msg = Heartbeat(term=1, sender="a", commit=0)
        self.node.transport.send("b", msg)
        self.assertEqual(read_frames(self.st.value()), [encode_message(msg)])

    def test_acceptor_with_wrong_secret(self) -> None:
        """
        An acceptor whose auth frame is made with another secret is
        refused: the link never comes up and nothing is adopted from it.
        """
        node = Node("a", "", peer_secret=SECRET)
        self.proto, self.st = node.dial()
        self.sent = Hello.from_wire(read_frames(self.st.value())[0])
        self.st.clear()
        self.node = node
        self.answer(secret=b"some other secret", cluster="K")
        self.assertTrue(self.st.disconnecting)
        self.assertIn("does not know", read_frames(self.st.value())[-1]["reason"])
        self.assertEqual((node.transport.connected_peers(), node.adopted), (frozenset(), []))

    def test_acceptor_without_secret(self) -> None:
        """
        An acceptor that answers with a plain hello instead of a challenge
        has no secret: refused.
        """
        self.proto.dataReceived(hello())
        self.assertTrue(self.st.disconnecting)
        self.assertIn("without a challenge", read_frames(self.st.value())[-1]["reason"])
        self.assertEqual(self.node.transport.connected_peers(), frozenset())

    def test_answer_with_other_nonce(self) -> None:
        """
        The acceptor's hello must carry its challenge's nonce.
        """
        self.proto.dataReceived(challenge(NONCE_B))
        self.proto.dataReceived(hello(nonce=bytes(16)))
        self.assertTrue(self.st.disconnecting)
        self.assertIn("not the challenge's", read_frames(self.st.value())[-1]["reason"])

    def test_malformed_challenge(self) -> None:
        """
        A challenge without a 16-byte nonce, or a second challenge, is a
        protocol error.
        """
        self.proto.dataReceived(frame({"type": "challenge", "nonce": b"short"}))
        self.assertTrue(self.st.disconnecting)
        self.assertIn("malformed challenge", read_frames(self.st.value())[-1]["reason"])
        proto, st = self.node.dial("c")
        proto.dataReceived(challenge(NONCE_B) + challenge(NONCE_B))
        self.assertIn("second challenge", read_frames(st.value())[-1]["reason"])


class AuthFuzzTests(SynchronousTestCase):
    """
    Without the secret, nothing a stranger sends reaches the node.
    """

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        st.booleans(),
        st.binary(min_size=32, max_size=32),
        st.lists(messages(st.just("b")), min_size=1, max_size=4),
        st.lists(cbor_values, max_size=3),
    )
    def test_no_delivery_without_the_secret(
        self, nonce: bool, mac: bytes, raft: list[Message], junk: list[Any]
    ) -> None:
        """
        A hello naming a cluster for a fresh node to adopt (with or without
        a nonce), a guessed MAC, then Raft messages and arbitrary CBOR: the
        connection is refused, nothing is delivered or adopted, and the
        node's identity is never sent.
        """
        node = Node("node-alpha", "", peer_secret=SECRET)
        proto, st_ = node.accept()
        data = hello(cluster="K", **({"nonce": NONCE_B} if nonce else {})) + auth(mac)
        data += b"".join(frame(encode_message(m)) for m in raft)
        data += b"".join(frame(v) for v in junk)
        proto.dataReceived(data)
        self.assertTrue(st_.disconnecting)
        self.assertEqual((node.inbox, node.adopted), ([], []))
        self.assertNotIn(b"node-alpha", st_.value())
