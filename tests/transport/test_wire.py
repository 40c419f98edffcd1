"""
Tests for L{raft3d.transport._wire}: strict payload decoding, the hello
record, the handshake decision tables and the authentication transcript.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import cbor2
from hypothesis import given, settings
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import Message, ProtocolError, decode_message, encode_message
from raft3d.raft._messages import MESSAGE_TYPES
from raft3d.transport import format_address, parse_address
from raft3d.transport._wire import (
    AUTH_CONTEXT,
    HEADER,
    MAC_SIZE,
    PROTOCOL_VERSION,
    Hello,
    UnsupportedVersion,
    Verdict,
    auth_mac,
    auth_map,
    auth_transcript,
    challenge_map,
    decode_payload,
    encode_frame,
    judge_auth,
    judge_hello,
    judge_nonce,
    nonce_field,
    shorten,
)

from ._support import messages


class AddressTests(SynchronousTestCase):
    def test_host_port(self) -> None:
        """
        C{host:port} splits at the last colon.
        """
        self.assertEqual(parse_address("raft-1.farm:7000"), ("raft-1.farm", 7000))

    def test_bracketed_ipv6(self) -> None:
        """
        A bracketed IPv6 host loses its brackets, and formatting adds them
        back.
        """
        self.assertEqual(parse_address("[::1]:7000"), ("::1", 7000))
        self.assertEqual(format_address("::1", 7000), "[::1]:7000")
        self.assertEqual(format_address("10.0.0.1", 1), "10.0.0.1:1")

    def test_bad_addresses(self) -> None:
        """
        A missing, non-numeric or out-of-range port is a L{ValueError}.
        """
        for bad in ("localhost", "host:", "host:x1", "host:70000", "host:-1"):
            self.assertRaises(ValueError, parse_address, bad)


class DecodePayloadTests(SynchronousTestCase):
    def test_map(self) -> None:
        """
        A plain CBOR map decodes to a dict.
        """
        self.assertEqual(
            decode_payload(cbor2.dumps({"type": "x", "n": [1, b"2"]})),
            {"type": "x", "n": [1, b"2"]},
        )

    def test_frame_header(self) -> None:
        """
        L{encode_frame} prefixes the CBOR payload with its big-endian length.
        """
        header, payload = encode_frame({"a": 1})
        self.assertEqual(header, len(payload).to_bytes(4, "big"))
        self.assertEqual(HEADER.size, 4)
        self.assertEqual(cbor2.loads(payload), {"a": 1})

    def test_garbage(self) -> None:
        """
        Bytes that are not CBOR, truncated CBOR and an empty payload are
        L{ProtocolError}s.
        """
        for bad in (
            b"",
            b"\xff\xff",
            cbor2.dumps({"a": b"x" * 10})[:-3],
            b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff",
        ):
            self.assertRaises(ProtocolError, decode_payload, bad)

    def test_trailing_bytes(self) -> None:
        """
        A payload holds exactly one CBOR value: anything after it is refused
        (plain C{cbor2.loads} would silently ignore it).
        """
        exc = self.assertRaises(ProtocolError, decode_payload, cbor2.dumps({"a": 1}) + b"\x01")
        self.assertIn("trailing", str(exc))

    def test_tags_refused(self) -> None:
        """
        Every CBOR tag is refused: dates, bignums, fractions, unknown tags
        and the shared references that could build a cyclic structure.
        """
        for tag, value in (
            (0, "2020-01-01T00:00:00Z"),
            (1, 5),
            (2, b"\x01"),
            (30, [1, 2]),
            (4242, 1),
        ):
            self.assertRaises(ProtocolError, decode_payload, cbor2.dumps(cbor2.CBORTag(tag, value)))
        cyclic = bytes.fromhex("d81c81d81d00")  # shareable([sharedref(0)])
        self.assertRaises(ProtocolError, decode_payload, cyclic)

    def test_depth_limited(self) -> None:
        """
        Nesting deeper than 16 containers is refused.
        """
        value: object = 1
        for _ in range(20):
            value = [value]
        self.assertRaises(ProtocolError, decode_payload, cbor2.dumps(value))

    def test_keys_must_be_strings(self) -> None:
        """
        Map keys other than strings are refused, as are duplicate keys.
        """
        self.assertRaises(ProtocolError, decode_payload, cbor2.dumps({1: 2}))
        duplicate = bytes.fromhex("a2616101616102")  # {"a": 1, "a": 2}
        self.assertRaises(ProtocolError, decode_payload, duplicate)

    @settings(max_examples=150, deadline=None)
    @given(messages())
    def test_message_round_trip(self, message: Message) -> None:
        """
        Every message survives encoding into a frame and strict decoding.
        """
        header, payload = encode_frame(encode_message(message))
        self.assertEqual(HEADER.unpack(header), (len(payload),))
        self.assertEqual(decode_message(decode_payload(payload)), message)


class HelloTests(SynchronousTestCase):
    def test_round_trip(self) -> None:
        """
        A hello survives L{Hello.to_wire} and L{Hello.from_wire}, and carries
        the protocol version.
        """
        h = Hello(cluster_id="C", node_id="n1", addr="h:1")
        wire = h.to_wire()
        self.assertEqual(wire["type"], "hello")
        self.assertEqual(wire["v"], PROTOCOL_VERSION)
        self.assertEqual(Hello.from_wire(wire), h)

    def test_http_address(self) -> None:
        """
        The HTTP address travels as the optional C{"http"} key: omitted when
        empty, read as C{""} when absent (an older peer), and held to the
        same rules as C{"addr"} when present.
        """
        plain = Hello(cluster_id="C", node_id="n1", addr="h:1")
        self.assertNotIn("http", plain.to_wire())
        with_http = Hello(cluster_id="C", node_id="n1", addr="h:1", http_addr="h:8000")
        self.assertEqual(with_http.to_wire()["http"], "h:8000")
        self.assertEqual(Hello.from_wire(with_http.to_wire()), with_http)
        self.assertEqual(Hello.from_wire(plain.to_wire()).http_addr, "")
        for bad in (3, None, "a" * 400):
            self.assertRaises(ProtocolError, Hello.from_wire, {**plain.to_wire(), "http": bad})

    def test_version_first(self) -> None:
        """
        Another version is reported as such even when the other fields are
        missing, so that the peer learns the real problem.
        """
        exc = self.assertRaises(UnsupportedVersion, Hello.from_wire, {"type": "hello", "v": 2})
        self.assertIn("version 2", str(exc))

    def test_malformed(self) -> None:
        """
        A missing or ill-typed field, an empty node id or an overlong id is a
        L{ProtocolError}.
        """
        good = Hello(cluster_id="C", node_id="n1", addr="h:1").to_wire()
        for key, value in (
            ("v", True),
            ("v", "1"),
            ("node", ""),
            ("node", 3),
            ("cluster", None),
            ("addr", b"h:1"),
            ("cluster", "c" * 300),
            ("addr", "a" * 400),
        ):
            self.assertRaises(ProtocolError, Hello.from_wire, {**good, key: value})
        for key in ("v", "node", "cluster", "addr"):
            self.assertRaises(
                ProtocolError, Hello.from_wire, {k: v for k, v in good.items() if k != key}
            )

    def test_shorten(self) -> None:
        """
        L{shorten} caps text quoted from a peer in log lines.
        """
        self.assertEqual(shorten("abc"), "abc")
        self.assertEqual(len(shorten("x" * 1000)), 200)


def _judge(
    local_cluster: str,
    remote_cluster: str,
    *,
    remote_node: str = "b",
    expected: str | None = None,
    initiator: bool = False,
    probing: bool = False,
) -> Verdict:
    return judge_hello(
        local_node="a",
        local_cluster=local_cluster,
        hello=Hello(cluster_id=remote_cluster, node_id=remote_node, addr="h:1"),
        expected_node=expected,
        initiator=initiator,
        probing=probing,
    )


class JudgeHelloTests(SynchronousTestCase):
    def test_same_cluster(self) -> None:
        """
        Peers of the same non-empty cluster exchange messages.
        """
        self.assertEqual(_judge("C", "C"), Verdict(accept=True, member=True))
        self.assertEqual(
            _judge("C", "C", expected="b", initiator=True), Verdict(accept=True, member=True)
        )

    def test_cluster_mismatch(self) -> None:
        """
        Two different non-empty cluster ids are refused, naming both.
        """
        v = _judge("C", "D")
        self.assertFalse(v.accept)
        self.assertIn("'C'", v.reason)
        self.assertIn("'D'", v.reason)

    def test_adopt(self) -> None:
        """
        A node without a cluster adopts the peer's, on either side, and
        becomes a member at once.
        """
        for initiator in (False, True):
            self.assertEqual(
                _judge("", "C", initiator=initiator, expected="b" if initiator else None),
                Verdict(accept=True, member=True, adopt="C"),
            )

    def test_discovery(self) -> None:
        """
        A peer without a cluster id gets a hello but no messages, whatever
        our cluster.
        """
        self.assertEqual(_judge("C", ""), Verdict(accept=True))
        self.assertEqual(_judge("", ""), Verdict(accept=True))

    def test_unexpected_node(self) -> None:
        """
        The node answering at a peer's address must be that peer.
        """
        v = _judge("C", "C", expected="c", initiator=True)
        self.assertFalse(v.accept)
        self.assertIn("expected node 'c'", v.reason)

    def test_own_node_id(self) -> None:
        """
        A hello carrying our own node id is our own probe if it has no
        cluster id (answered, no messages); otherwise another node uses our
        id, which is refused.
        """
        self.assertEqual(_judge("C", "", remote_node="a"), Verdict(accept=True))
        self.assertFalse(_judge("C", "C", remote_node="a").accept)

    def test_probe(self) -> None:
        """
        A probe accepts any node and any cluster, adopting nothing.
        """
        self.assertEqual(_judge("", "D", initiator=True, probing=True), Verdict(accept=True))
        self.assertEqual(_judge("C", "D", initiator=True, probing=True), Verdict(accept=True))


NONCE_I = bytes(range(16))
NONCE_A = bytes(range(16, 32))
SECRET = b"s3cret-s3cret-s3cret"
INITIATOR = Hello(cluster_id="C", node_id="i", addr="h:1", http_addr="h:8001", nonce=NONCE_I)
ACCEPTOR = Hello(cluster_id="C", node_id="a", addr="h:2", http_addr="h:8002", nonce=NONCE_A)


def _initiator_transcript(**changes: object) -> bytes:
    kwargs: dict[str, object] = {
        "initiator": INITIATOR,
        "initiator_nonce": NONCE_I,
        "acceptor_nonce": NONCE_A,
    }
    kwargs.update(changes)
    return auth_transcript("initiator", **kwargs)  # type: ignore[arg-type]


def _acceptor_transcript(**changes: object) -> bytes:
    kwargs: dict[str, object] = {
        "initiator": INITIATOR,
        "initiator_nonce": NONCE_I,
        "acceptor_nonce": NONCE_A,
        "acceptor": ACCEPTOR,
    }
    kwargs.update(changes)
    return auth_transcript("acceptor", **kwargs)  # type: ignore[arg-type]


class NonceTests(SynchronousTestCase):
    def test_hello_nonce(self) -> None:
        """
        The nonce travels as the optional C{"nonce"} key: omitted when
        empty (a node without a secret, or an older one), read as C{b""}
        when absent, and exactly L{NONCE_SIZE} bytes when present.
        """
        plain = Hello(cluster_id="C", node_id="n1", addr="h:1")
        self.assertNotIn("nonce", plain.to_wire())
        self.assertEqual(Hello.from_wire(plain.to_wire()).nonce, b"")
        self.assertEqual(INITIATOR.to_wire()["nonce"], NONCE_I)
        self.assertEqual(Hello.from_wire(INITIATOR.to_wire()), INITIATOR)
        for bad in (b"", b"x" * 15, b"x" * 17, "x" * 16, 16, None):
            e = self.assertRaises(ProtocolError, Hello.from_wire, {**plain.to_wire(), "nonce": bad})
            self.assertIn("'nonce' must be 16 bytes", str(e))

    def test_challenge_and_auth_maps(self) -> None:
        """
        A challenge carries a nonce and nothing else, which
        L{nonce_field} reads back; an auth frame carries the MAC.
        """
        self.assertEqual(challenge_map(NONCE_A), {"type": "challenge", "nonce": NONCE_A})
        self.assertEqual(nonce_field(challenge_map(NONCE_A), "challenge"), NONCE_A)
        self.assertRaises(ProtocolError, nonce_field, {"type": "challenge"}, "challenge")
        self.assertEqual(auth_map(b"m" * 32), {"type": "auth", "mac": b"m" * 32})


class TranscriptTests(SynchronousTestCase):
    def test_layout(self) -> None:
        """
        A transcript is canonical CBOR of: the context string, the protocol
        version, the role, the initiator's identity fields, both nonces, and
        the acceptor's identity fields (C{None} for the initiator, which
        authenticates before the acceptor says who it is).
        """
        fields_i = ["i", "C", "h:1", "h:8001"]
        self.assertEqual(
            cbor2.loads(_initiator_transcript()),
            [AUTH_CONTEXT, PROTOCOL_VERSION, "initiator", fields_i, NONCE_I, NONCE_A, None],
        )
        self.assertEqual(
            cbor2.loads(_acceptor_transcript()),
            [
                AUTH_CONTEXT,
                PROTOCOL_VERSION,
                "acceptor",
                fields_i,
                NONCE_I,
                NONCE_A,
                ["a", "C", "h:2", "h:8002"],
            ],
        )

    def test_every_item_counts(self) -> None:
        """
        Changing any one item (role, any identity field of either hello,
        either nonce, or swapping the nonces) gives another transcript, so a
        MAC made for one connection or one direction fits no other.
        """
        base = {_initiator_transcript(), _acceptor_transcript()}
        self.assertEqual(len(base), 2)
        variants: list[bytes] = [
            _initiator_transcript(initiator_nonce=NONCE_A, acceptor_nonce=NONCE_I),
            _initiator_transcript(acceptor_nonce=bytes(16)),
            _initiator_transcript(initiator_nonce=bytes(16)),
            _acceptor_transcript(acceptor=None),
            _acceptor_transcript(acceptor_nonce=bytes(16)),
        ]
        for field, value in (
            ("node_id", "j"),
            ("cluster_id", "D"),
            ("cluster_id", ""),
            ("addr", "h:9"),
            ("http_addr", ""),
        ):
            changed = Hello(**{**_fields(INITIATOR), field: value})
            variants.append(_initiator_transcript(initiator=changed))
            variants.append(_acceptor_transcript(initiator=changed))
            variants.append(
                _acceptor_transcript(acceptor=Hello(**{**_fields(ACCEPTOR), field: value}))
            )
        self.assertEqual(len(set(variants) | base), len(variants) + 2)

    def test_mac(self) -> None:
        """
        L{auth_mac} is HMAC-SHA256: 32 bytes, depending on the key and the
        transcript.
        """
        mac = auth_mac(SECRET, b"t")
        self.assertEqual(len(mac), MAC_SIZE)
        self.assertEqual(mac, hmac.new(SECRET, b"t", hashlib.sha256).digest())
        self.assertNotEqual(auth_mac(SECRET + b"x", b"t"), mac)
        self.assertNotEqual(auth_mac(SECRET, b"u"), mac)


def _fields(hello: Hello) -> dict[str, object]:
    return {
        "cluster_id": hello.cluster_id,
        "node_id": hello.node_id,
        "addr": hello.addr,
        "http_addr": hello.http_addr,
        "nonce": hello.nonce,
    }


class JudgeNonceTests(SynchronousTestCase):
    def test_table(self) -> None:
        """
        A hello fits our handshake when it carries a nonce exactly when we
        have a secret; either mismatch is refused, saying which side lacks
        the secret.
        """
        self.assertIsNone(judge_nonce(secret=False, nonce=b""))
        self.assertIsNone(judge_nonce(secret=True, nonce=NONCE_I))
        no_nonce = judge_nonce(secret=True, nonce=b"")
        assert no_nonce is not None
        self.assertIn("the peer sent no nonce", no_nonce)
        self.assertIn("--peer-secret-file", no_nonce)
        unexpected = judge_nonce(secret=False, nonce=NONCE_I)
        assert unexpected is not None
        self.assertIn("this node has none", unexpected)


class JudgeAuthTests(SynchronousTestCase):
    def test_table(self) -> None:
        """
        Only the right MAC of the expected transcript under our secret
        passes.  Without a secret every auth frame is refused; a missing or
        ill-typed or wrong-length MAC is malformed; a MAC under another
        secret, for another transcript (the other role, another
        connection's nonces) or with one bit flipped fails.
        """
        transcript = _initiator_transcript()
        good = auth_mac(SECRET, transcript)
        self.assertIsNone(judge_auth(secret=SECRET, transcript=transcript, raw=auth_map(good)))
        flipped = bytes([good[0] ^ 1]) + good[1:]
        cases: list[tuple[bytes | None, dict[str, object], str]] = [
            (None, auth_map(good), "this node has no peer secret"),
            (None, {"type": "auth"}, "this node has no peer secret"),
            (SECRET, {"type": "auth"}, "'mac' must be 32 bytes"),
            (SECRET, auth_map(good[:31]), "'mac' must be 32 bytes"),
            (SECRET, auth_map(good + b"\0"), "'mac' must be 32 bytes"),
            (SECRET, {"type": "auth", "mac": good.hex()}, "'mac' must be 32 bytes"),
            (SECRET, {"type": "auth", "mac": [good]}, "'mac' must be 32 bytes"),
            (SECRET, auth_map(flipped), "does not know this cluster's peer secret"),
            (SECRET, auth_map(b"\0" * 32), "does not know this cluster's peer secret"),
            (
                SECRET,
                auth_map(auth_mac(b"another secret, same length", transcript)),
                "does not know",
            ),
            (SECRET, auth_map(auth_mac(SECRET, _acceptor_transcript())), "does not know"),
            (
                SECRET,
                auth_map(auth_mac(SECRET, _initiator_transcript(acceptor_nonce=bytes(16)))),
                "does not know",
            ),
        ]
        for secret, raw, fragment in cases:
            reason = judge_auth(secret=secret, transcript=transcript, raw=raw)
            assert reason is not None, (secret, raw)
            self.assertIn(fragment, reason)
            self.assertTrue(reason.startswith("peer authentication"), reason)


class SpecTests(SynchronousTestCase):
    def test_docs_list_every_message(self) -> None:
        """
        C{docs/transport.md} documents every message type with all its keys,
        so the spec cannot silently drift from C{_messages.py}.
        """
        spec = Path(__file__).resolve().parents[2] / "docs" / "transport.md"
        rows = {
            line.split("|")[1].strip(): line
            for line in spec.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `")
        }
        for type_name, cls in MESSAGE_TYPES.items():
            row = rows.get(f"`{type_name}`")
            self.assertIsNotNone(row, type_name)
            assert row is not None
            for key, attr, kind in cls._wire:
                self.assertIn(f"`{key}` ({kind}: {attr})", row)
