"""
Fuzzing of the peer protocol's decoders, adding to the checks of
C{test_protocol.FuzzTests} (random bytes, random CBOR values, one mutated
field) and C{test_wire.DecodePayloadTests} (one example of each refusal):

  - the frame splitter gives the same outcome however the stream is cut
    into reads, and drops a connection on an oversized length prefix as
    soon as the prefix is complete, whatever the prefix;
  - the CBOR decoder refuses, quickly and with L{ProtocolError} only,
    containers and strings declared far larger than the payload, nesting
    of any depth past the limit (plain, indefinite-length or mixed), every
    tag number, and broken indefinite-length items;
  - every message decoder (each Raft message type, the hello) refuses any
    ill-shaped value with L{ProtocolError} only, down to the entries and
    members nested inside, and decodes what it accepts faithfully;
  - the node lives: after any number of garbage connections a member still
    connects and is heard, and no connection is left counted.

All derandomized, without an example database.
"""

from __future__ import annotations

import struct
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import Heartbeat, Message, ProtocolError, decode_message, encode_message
from raft3d.transport._protocol import MAX_HANDSHAKE_FRAME
from raft3d.transport._wire import MAX_DEPTH, Hello, decode_payload

from ._support import Node, cbor_values, frame, hello, messages, raw_frame

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

HB = Heartbeat(term=3, sender="b", commit=7, read_ctx=1)


def _head(major: int, length: int, width: int) -> bytes:
    """
    A CBOR item head of major type C{major} declaring C{length}, with its
    argument on C{width} bytes (1, 2, 4 or 8).
    """
    info = {1: 24, 2: 25, 4: 26, 8: 27}[width]
    return bytes([major << 5 | info]) + length.to_bytes(width, "big")


# -- the frame splitter -------------------------------------------------------

# A frame that is fine, and frames that must drop the connection.
_good = messages(sender=st.just("b")).map(lambda m: ("good", m, frame(encode_message(m))))
_bad = st.one_of(
    st.binary(min_size=1, max_size=20).map(lambda b: ("bad", None, raw_frame(b"\xff" + b))),
    cbor_values.filter(lambda v: not isinstance(v, dict)).map(lambda v: ("bad", None, frame(v))),
    st.just(("bad", None, frame(encode_message(Heartbeat(1, "c", 0))))),  # spoofed sender
    st.just(("bad", None, hello())),  # a second hello
    st.integers(16 * 2**20 + 1, 2**32 - 1).map(lambda n: ("bad", None, struct.pack(">I", n))),
)


class FrameSplitterTests(SynchronousTestCase):
    def connect(self) -> tuple[Node, Any, Any]:
        node = Node("a", "C")
        proto, st_ = node.accept()
        proto.dataReceived(hello())
        return node, proto, st_

    @FUZZ
    @given(
        st.lists(_good, max_size=5),
        st.one_of(st.none(), _bad),
        st.lists(_good, max_size=2),
        st.lists(st.integers(1, 40), min_size=1, max_size=30),
    )
    def test_any_cut(
        self,
        before: list[tuple[str, Message, bytes]],
        bad: tuple[str, None, bytes] | None,
        after: list[tuple[str, Message, bytes]],
        cuts: list[int],
    ) -> None:
        """
        However a stream of frames is cut into reads (a byte at a time,
        many frames at once, a frame split anywhere), the messages before
        a bad frame are delivered in order, nothing after it is, and the
        connection is dropped exactly when a bad frame was sent.
        """
        stream = [*before, *([bad] if bad else []), *after]
        data = b"".join(item[2] for item in stream)
        node, proto, transport = self.connect()
        offset = 0
        for size in cuts * (len(data) // max(sum(cuts), 1) + 1):
            if offset >= len(data):
                break
            proto.dataReceived(data[offset : offset + size])
            offset += size
        expected = [m for _, m, _ in before] if bad else [m for _, m, _ in before + after]
        self.assertEqual(node.inbox, expected)
        self.assertEqual(bool(transport.disconnecting), bad is not None)

    @FUZZ
    @given(st.booleans(), st.integers(1, 2**32 - 1), st.binary(max_size=64))
    def test_length_prefixes(self, member: bool, length: int, rest: bytes) -> None:
        """
        Any length prefix over the limit (64 KiB before the hello, 16 MiB
        after) drops the connection as soon as its fourth byte arrives,
        fed one byte at a time, without waiting for the payload; one
        within the limit waits for it.
        """
        node = Node("a", "C")
        proto, transport = node.accept()
        if member:
            proto.dataReceived(hello())
        limit = 16 * 2**20 if member else MAX_HANDSHAKE_FRAME
        prefix = struct.pack(">I", length)
        for byte in prefix[:3]:
            proto.dataReceived(bytes([byte]))
            self.assertFalse(transport.disconnecting)
        proto.dataReceived(prefix[3:])
        self.assertEqual(bool(transport.disconnecting), length > limit)
        if length > limit:
            self.assertTrue(node.log.matching(f"frame of {length} bytes exceeds the limit"))
            # Whatever follows is not even looked at.
            proto.dataReceived(rest + frame(encode_message(HB)))
            self.assertEqual(node.inbox, [])
            self.assertEqual(len(proto._pending), 0)

    def test_limit_is_inclusive(self) -> None:
        """
        A frame of exactly the limit is read (and here refused for what it
        holds, not for its size).
        """
        node = Node("a", "C")
        proto, transport = node.accept()
        proto.dataReceived(struct.pack(">I", MAX_HANDSHAKE_FRAME))
        self.assertFalse(transport.disconnecting)
        proto.dataReceived(b"\x00" * MAX_HANDSHAKE_FRAME)
        self.assertTrue(transport.disconnecting)
        self.assertTrue(node.log.matching("trailing bytes"))
        self.assertFalse(node.log.matching("exceeds the limit"))


# -- the CBOR decoder ---------------------------------------------------------


class CBORBombTests(SynchronousTestCase):
    def refused(self, payload: bytes, *fragments: str) -> None:
        with self.assertRaises(ProtocolError) as caught:
            decode_payload(payload)
        for fragment in fragments:
            self.assertIn(fragment, str(caught.exception))

    @FUZZ
    @given(
        st.sampled_from([2, 3, 4, 5]),
        st.sampled_from([1, 2, 4, 8]),
        st.data(),
        st.binary(max_size=32),
    )
    def test_declared_but_absent(self, major: int, width: int, data: Any, present: bytes) -> None:
        """
        A byte string, text string, array or map declaring more bytes or
        items than the payload holds (up to 2**64 - 1) is refused; the
        declared size is never allocated up front.
        """
        length = data.draw(st.integers(len(present) + 1, 2 ** (8 * width) - 1))
        self.refused(_head(major, length, width) + present)

    @FUZZ
    @given(
        st.integers(MAX_DEPTH + 1, 100_000),
        st.lists(
            st.sampled_from([b"\x81", b"\x9f", b"\xa1\x61k", b"\xbf\x61k"]), min_size=1, max_size=4
        ),
    )
    def test_nesting_bombs(self, depth: int, openers: list[bytes]) -> None:
        """
        Containers nested deeper than the limit, definite or
        indefinite-length, arrays or maps, are refused for their depth.
        """
        payload = b"".join(openers[i % len(openers)] for i in range(depth)) + b"\x00"
        self.refused(payload, "depth")

    def test_depth_limit_exact(self) -> None:
        """
        Exactly C{MAX_DEPTH} levels decode; one more does not.
        """
        value: Any = 0
        for _ in range(MAX_DEPTH - 1):
            value = [value]
        self.assertEqual(decode_payload(cbor2.dumps({"k": value})), {"k": value})
        self.refused(cbor2.dumps({"k": [value]}), "depth")

    @FUZZ
    @given(st.integers(0, 2**64 - 1), cbor_values)
    def test_every_tag(self, tag: int, value: Any) -> None:
        """
        Every tag number, around any value, anywhere in a map, is refused.
        """
        self.refused(cbor2.dumps({"type": "hb", "x": [cbor2.CBORTag(tag, value)]}))

    def test_indefinite_items(self) -> None:
        """
        Terminated indefinite-length items decode to ordinary values;
        unterminated ones, a text string made of byte-string chunks, a
        nested indefinite chunk and a stray break are refused.
        """
        self.assertEqual(decode_payload(b"\xbf\x61a\x9f\x01\x02\xff\xff"), {"a": [1, 2]})
        self.assertEqual(decode_payload(b"\x5f\x41a\x41b\xff"), b"ab")
        for payload in (
            b"\x9f\x01\x02",
            b"\xbf\x61a\x01",
            b"\x5f\x41a",
            b"\x7f\x61a",
            b"\x7f\x41a\xff",
            b"\x5f\x5f\x41a\xff\xff",
            b"\xff",
            b"\xa1\x61a\xff",
        ):
            self.refused(payload)

    @FUZZ
    @given(st.binary(min_size=1, max_size=4096))
    def test_only_protocol_errors(self, payload: bytes) -> None:
        """
        Whatever the bytes, decoding either returns a value or raises
        L{ProtocolError}: no other exception reaches the connection.
        """
        try:
            decode_payload(payload)
        except ProtocolError:
            pass

    def test_wide_frames_bounded(self) -> None:
        """
        The most objects a stranger can make us build before its hello is
        bounded by the handshake frame limit: a 64 KiB map holding 65,000
        empty arrays is decoded (it is valid CBOR) and then refused as a
        hello, and the connection dropped.
        """
        count = MAX_HANDSHAKE_FRAME - 30
        payload = b"\xa2\x64type\x65hello\x64junk" + _head(4, count, 4) + b"\x80" * count
        self.assertLessEqual(len(payload), MAX_HANDSHAKE_FRAME)
        node = Node("a", "C")
        proto, transport = node.accept()
        proto.dataReceived(raw_frame(payload))
        self.assertTrue(transport.disconnecting)
        self.assertTrue(node.log.matching("malformed hello"))


# -- message decoders ---------------------------------------------------------

_ints = st.one_of(
    st.integers(0, 2**64 - 1),
    st.integers(-(2**64), -1),
    st.booleans(),
    st.floats(),
    st.sampled_from([0, 1, 2, 3]),
)
_entries = st.lists(
    st.one_of(
        st.tuples(_ints, _ints, _ints, st.binary(max_size=8) | cbor_values).map(list),
        st.lists(cbor_values, max_size=6),
        cbor_values,
    ),
    max_size=4,
)
_members = st.lists(
    st.one_of(
        st.tuples(st.text(max_size=4), st.text(max_size=4), st.text(max_size=4), st.booleans()).map(
            list
        ),
        st.lists(st.text(max_size=4) | st.booleans() | cbor_values, max_size=5),
        cbor_values,
    ),
    max_size=3,
)
_any_field = st.one_of(
    _ints, cbor_values, _entries, _members, st.text(max_size=8), st.binary(max_size=8)
)


@st.composite
def message_maps(draw: st.DrawFn) -> dict[str, Any]:
    """
    A map naming a real message type whose fields are each kept, dropped
    or replaced by a value of any kind, nested shapes included.
    """
    message = draw(messages(sender=st.just("b")))
    cls = type(message)
    raw: dict[str, Any] = {"type": message.TYPE}
    valid = encode_message(message)
    for key, _attr, _kind in cls._wire:
        choice = draw(st.integers(0, 3))
        if choice == 0:
            continue
        raw[key] = valid[key] if choice == 1 else draw(_any_field)
    for key in draw(st.lists(st.text(max_size=5), max_size=2)):
        raw[key] = draw(cbor_values)
    return raw


class MessageDecoderTests(SynchronousTestCase):
    @FUZZ
    @given(message_maps())
    def test_decoders_refuse_cleanly(self, raw: dict[str, Any]) -> None:
        """
        Every message decoder either refuses a map with L{ProtocolError}
        (never C{TypeError}, C{ValueError} or anything else) or decodes it
        to the message that encodes back to the same known fields; the
        wire round trip changes nothing.
        """
        value = decode_payload(cbor2.dumps(raw))
        try:
            message = decode_message(value)
        except ProtocolError:
            return
        except Exception as e:  # pragma: no cover - the point of the test
            self.fail(f"{type(e).__name__} from decode_message({raw!r}): {e}")
        encoded = encode_message(message)
        self.assertEqual({k: raw[k] for k in encoded}, encoded)

    @FUZZ
    @given(
        st.dictionaries(
            st.text(max_size=6) | st.sampled_from(["v", "node", "cluster", "addr", "http", "type"]),
            _any_field,
            max_size=7,
        )
    )
    def test_hello_decoder(self, raw: dict[str, Any]) -> None:
        """
        The hello decoder refuses any ill-shaped map with
        L{ProtocolError} only.
        """
        try:
            Hello.from_wire(raw)
        except ProtocolError:
            pass

    def test_booleans_are_not_integers(self) -> None:
        """
        C{True} is an C{int} in Python but not a term: an integer field
        holding a boolean, and an entry whose index is one, are refused.
        """
        good = encode_message(HB)
        self.assertRaises(ProtocolError, decode_message, {**good, "term": True})
        append = {
            "type": "append",
            "term": 1,
            "from": "b",
            "pli": 0,
            "plt": 0,
            "commit": 0,
            "ents": [[True, 1, 0, b""]],
        }
        self.assertRaises(ProtocolError, decode_message, append)

    @settings(FUZZ, max_examples=100)
    @given(message_maps())
    def test_connection_outcome(self, raw: dict[str, Any]) -> None:
        """
        On a member connection, such a map is delivered exactly when it
        decodes (and claims the right sender); otherwise the connection is
        dropped with a warning and nothing is delivered.
        """
        node = Node("a", "C")
        proto, transport = node.accept()
        proto.dataReceived(hello())
        proto.dataReceived(frame(raw))
        try:
            message: Message | None = decode_message(raw)
        except ProtocolError:
            message = None
        if message is not None and message.sender == "b":
            self.assertEqual(node.inbox, [message])
            self.assertFalse(transport.disconnecting)
        else:
            self.assertEqual(node.inbox, [])
            self.assertTrue(transport.disconnecting)
            self.assertTrue(node.log.warnings())


# -- the node lives -------------------------------------------------------------


class NodeLivesTests(SynchronousTestCase):
    @FUZZ
    @given(
        st.lists(
            st.lists(st.binary(max_size=40) | _bad.map(lambda b: b[2]), max_size=4),
            min_size=1,
            max_size=6,
        )
    )
    def test_member_heard_after_garbage(self, connections: list[list[bytes]]) -> None:
        """
        After any number of connections sending garbage (each dropped, or
        left waiting and then timed out), a member still connects and its
        messages are delivered; every connection closed frees its place.
        """
        node = Node("a", "C")
        garbage = []
        for chunks in connections:
            proto, transport = node.accept()
            for chunk in chunks:
                proto.dataReceived(chunk)
            garbage.append((proto, transport))
        node.reactor.advance(5.1)  # the handshake timeout
        for proto, transport in garbage:
            if not proto.usable:
                self.assertTrue(transport.disconnecting)
            proto.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(node.transport._limiter.open_count, 0)
        proto, transport = node.accept()
        proto.dataReceived(hello(node="m") + frame(encode_message(Heartbeat(4, "m", 0))))
        self.assertEqual(node.inbox[-1], Heartbeat(4, "m", 0))
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.flushLoggedErrors(), [])
