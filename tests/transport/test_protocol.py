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

from raft3d.raft import Heartbeat, Message, ProtocolError, decode_message, encode_message
from raft3d.transport import _protocol
from raft3d.transport._protocol import PeerConnection

from ._support import Node, cbor_values, frame, hello, messages, raw_frame, read_frames

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
