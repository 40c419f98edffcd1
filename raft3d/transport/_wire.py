# -*- test-case-name: tests.transport.test_wire -*-
"""
The peer protocol's wire format and handshake rules, free of I/O.

A frame is a 4-byte big-endian length followed by that many bytes holding
exactly one CBOR map.  The first frame each way is a L{Hello}; a C{reject}
frame may come at any time and explains why the sender is about to close.
Everything else is a Raft message (L{raft3d.raft.encode_message}).

Decoding is deliberately strict because every byte comes from the network:
nesting is capped, map keys must be strings, duplicate keys, trailing bytes
and I{every} CBOR tag are refused (our messages use none, and tags are where
decoders do surprising work: big numbers, shared references that build
cycles, regular expressions).  Every failure is a L{ProtocolError}, so a
caller has one exception to catch.

The handshake decisions, L{judge_hello}, L{judge_nonce} and L{judge_auth},
are pure functions so that their whole tables can be tested without a
connection.

With a shared peer secret the handshake also proves that each side knows
it: the acceptor answers a hello with a C{challenge} (a fresh nonce and
nothing else), the initiator answers that with an C{auth} frame, an
HMAC-SHA256 over L{auth_transcript}, and only then does the acceptor judge
the hello and answer with its own hello and C{auth}.  A stranger therefore
learns nothing about the node (not even its node or cluster id) and cannot
make it adopt a cluster id; the nonces make every transcript unique, so an
C{auth} frame recorded on one connection is worthless on the next.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import struct
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Literal, NoReturn

import attrs
import cbor2

from raft3d.raft import ProtocolError

PROTOCOL_VERSION = 1
"""
The handshake version; peers speaking another one are refused.
"""

HEADER = struct.Struct(">I")
"""
The length prefix of every frame.
"""

DEFAULT_MAX_FRAME = 16 * 2**20
"""
The default largest frame payload accepted or sent, in bytes.
"""

MAX_DEPTH = 16
"""
The deepest container nesting accepted; our messages need 3.
"""

MAX_ID_LENGTH = 256
"""
The longest node or cluster id accepted in a hello.
"""

MAX_ADDR_LENGTH = 300
"""
The longest advertised address accepted in a hello.
"""

NONCE_SIZE = 16
"""
The length of a handshake nonce, in bytes (C{os.urandom(16)}).
"""

MAC_SIZE = hashlib.sha256().digest_size
"""
The length of an C{auth} frame's HMAC-SHA256, in bytes.
"""

AUTH_CONTEXT = "raft3d peer auth"
"""
The first item of every authenticated transcript: an HMAC made with the
peer secret for this purpose can never be mistaken for one made for another.
"""

Role = Literal["initiator", "acceptor"]
"""
Which side of a connection computed an HMAC: the one that dialled, or the
one that accepted.  It is part of the transcript, so that one side's
C{auth} frame cannot be reflected back as the other's.
"""

Frame = tuple[bytes, bytes]
"""
A frame ready to write: the length prefix and the CBOR payload, kept apart
so a large payload is never copied just to prepend four bytes.
"""


class UnsupportedVersion(ProtocolError):
    """
    The peer's hello names a protocol version we do not speak.
    """


def _refuse_tag(*args: object) -> NoReturn:
    raise ProtocolError("CBOR tags are not allowed")


class _NoTags(Mapping[int, Callable[..., Any]]):
    """
    A C{semantic_decoders} table that maps I{every} tag to a refusal, which
    turns cbor2's built-in tag support (dates, bignums, fractions, shared
    references...) off.
    """

    def __getitem__(self, tag: int) -> Callable[..., Any]:
        return _refuse_tag

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_TAGS = _NoTags()


def decode_payload(payload: bytes) -> object:
    """
    Decode one frame's payload: exactly one CBOR value, strictly.

    @raise ProtocolError: if C{payload} is not exactly one acceptable CBOR
        value.
    """
    fp = io.BytesIO(payload)
    try:
        value = cbor2.CBORDecoder(
            fp,
            max_depth=MAX_DEPTH,
            semantic_decoders=_NO_TAGS,
            strict_hashable_types=True,
            allow_duplicate_keys=False,
        ).decode()
    except ProtocolError:
        raise
    except Exception as e:
        # cbor2 reports most problems as CBORDecodeError, but wraps or lets
        # through others (ValueError, RecursionError, MemoryError...).
        raise ProtocolError(f"undecodable CBOR: {e}") from None
    if fp.tell() != len(payload):
        raise ProtocolError(f"{len(payload) - fp.tell()} trailing bytes after the CBOR value")
    return value


def encode_frame(value: Mapping[str, Any]) -> Frame:
    """
    Encode C{value} as one frame.
    """
    payload = cbor2.dumps(value)
    return HEADER.pack(len(payload)), payload


def shorten(text: str, limit: int = 200) -> str:
    """
    Cut C{text} for a log line: reasons may quote attacker-chosen values.
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _string_field(raw: Mapping[Any, Any], key: str, limit: int) -> str:
    value = raw.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"hello field {key!r} must be a string")
    if len(value) > limit:
        raise ProtocolError(f"hello field {key!r} is longer than {limit} characters")
    return value


@attrs.frozen
class Hello:
    """
    The first frame each side sends: who it is, which cluster it belongs to
    (C{""} when it does not know yet) and where it listens for peers.

    @ivar http_addr: where the sender serves its HTTP API, or C{""}.  Only
        the bootstrap node needs it, to write every member's address into
        the first configuration; it travels as the optional C{"http"} key,
        which older peers omit and ignore.
    @ivar nonce: L{NONCE_SIZE} fresh random bytes from a node that has a
        peer secret, C{b""} from one that has none; it travels as the
        optional C{"nonce"} key.
    """

    cluster_id: str
    node_id: str
    addr: str
    http_addr: str = ""
    nonce: bytes = b""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "type": "hello",
            "v": PROTOCOL_VERSION,
            "cluster": self.cluster_id,
            "node": self.node_id,
            "addr": self.addr,
        }
        if self.http_addr:
            wire["http"] = self.http_addr
        if self.nonce:
            wire["nonce"] = self.nonce
        return wire

    @classmethod
    def from_wire(cls, raw: Mapping[Any, Any]) -> Hello:
        """
        Parse a decoded C{hello} map.

        The version is checked before anything else so that a peer speaking
        another version is told so, whatever its other fields look like.

        @raise UnsupportedVersion: if C{"v"} is not L{PROTOCOL_VERSION}.
        @raise ProtocolError: if a field is missing or ill-typed.
        """
        version = raw.get("v")
        if type(version) is not int:
            raise ProtocolError("hello field 'v' must be an integer")
        if version != PROTOCOL_VERSION:
            raise UnsupportedVersion(
                f"unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})"
            )
        node_id = _string_field(raw, "node", MAX_ID_LENGTH)
        if not node_id:
            raise ProtocolError("hello field 'node' must not be empty")
        return cls(
            cluster_id=_string_field(raw, "cluster", MAX_ID_LENGTH),
            node_id=node_id,
            addr=_string_field(raw, "addr", MAX_ADDR_LENGTH),
            http_addr=_string_field(raw, "http", MAX_ADDR_LENGTH) if "http" in raw else "",
            nonce=nonce_field(raw, "hello") if "nonce" in raw else b"",
        )


def nonce_field(raw: Mapping[Any, Any], frame: str) -> bytes:
    """
    The C{"nonce"} of a decoded C{hello} or C{challenge} map.

    @raise ProtocolError: unless it is exactly L{NONCE_SIZE} bytes.
    """
    value = raw.get("nonce")
    if not isinstance(value, bytes) or len(value) != NONCE_SIZE:
        raise ProtocolError(f"{frame} field 'nonce' must be {NONCE_SIZE} bytes")
    return value


def challenge_map(nonce: bytes) -> dict[str, Any]:
    """
    The map of a C{challenge} frame: an acceptor with a peer secret sends it
    instead of its hello, and answers the initiator's C{auth} frame with
    its hello.
    """
    return {"type": "challenge", "nonce": nonce}


def auth_map(mac: bytes) -> dict[str, Any]:
    """
    The map of an C{auth} frame, carrying L{auth_mac} of the transcript.
    """
    return {"type": "auth", "mac": mac}


def _hello_fields(hello: Hello) -> list[str]:
    return [hello.node_id, hello.cluster_id, hello.addr, hello.http_addr]


def auth_transcript(
    role: Role,
    *,
    initiator: Hello,
    initiator_nonce: bytes,
    acceptor_nonce: bytes,
    acceptor: Hello | None = None,
) -> bytes:
    """
    What an C{auth} frame's HMAC covers: L{AUTH_CONTEXT}, the protocol
    version, C{role} (who computed it), every identity field of the
    initiator's hello (node id, cluster id, raft and HTTP address), both
    nonces and, from the acceptor, the same fields of its own hello.

    The initiator authenticates before the acceptor has said who it is, so
    its transcript has no acceptor hello (C{None} in that place); the
    acceptor's nonce still ties it to this one connection.  The encoding is
    canonical CBOR of an array, so no two different transcripts can encode
    to the same bytes.
    """
    return bytes(
        cbor2.dumps(
            [
                AUTH_CONTEXT,
                PROTOCOL_VERSION,
                role,
                _hello_fields(initiator),
                initiator_nonce,
                acceptor_nonce,
                _hello_fields(acceptor) if acceptor is not None else None,
            ],
            canonical=True,
        )
    )


def auth_mac(secret: bytes, transcript: bytes) -> bytes:
    """
    HMAC-SHA256 of C{transcript} under the peer secret.
    """
    return hmac.new(secret, transcript, hashlib.sha256).digest()


def reject_map(reason: str) -> dict[str, Any]:
    """
    The map of a C{reject} frame, sent just before closing a connection.
    """
    return {"type": "reject", "reason": reason}


@attrs.frozen
class Verdict:
    """
    What to do with a peer after its hello.

    @ivar accept: C{False} to refuse the connection because of C{reason}.
    @ivar member: whether Raft messages may flow: both sides belong to the
        same (non-empty) cluster.  An accepted non-member connection is a
        I{discovery} connection: it gets a hello and nothing else.
    @ivar adopt: a cluster id this node must adopt, or C{""}.
    """

    accept: bool
    member: bool = False
    adopt: str = ""
    reason: str = ""


_DISCOVERY = Verdict(accept=True)
_MEMBER = Verdict(accept=True, member=True)


def _refuse(reason: str) -> Verdict:
    return Verdict(accept=False, reason=reason)


def judge_hello(
    *,
    local_node: str,
    local_cluster: str,
    hello: Hello,
    expected_node: str | None,
    initiator: bool,
    probing: bool = False,
) -> Verdict:
    """
    Decide what a peer's hello allows.

    @param expected_node: the node id we dialled, or L{None} on the
        accepting side (anyone may call) and when probing.
    @param initiator: whether we opened the connection.
    @param probing: whether we only want to learn who listens there; a
        probe accepts any well-formed hello and never adopts a cluster.
    """
    if probing:
        return _DISCOVERY
    if expected_node is not None and hello.node_id != expected_node:
        return _refuse(f"expected node {expected_node!r} but {hello.node_id!r} answered")
    if hello.node_id == local_node:
        if hello.cluster_id == "" and not initiator:
            # Our own probe, dialled at our own address.
            return _DISCOVERY
        return _refuse(f"peer claims our own node id {local_node!r}")
    if local_cluster and hello.cluster_id and local_cluster != hello.cluster_id:
        return _refuse(
            f"cluster id mismatch: ours is {local_cluster!r}, theirs is {hello.cluster_id!r}"
        )
    if not hello.cluster_id:
        return _DISCOVERY
    if not local_cluster:
        return Verdict(accept=True, member=True, adopt=hello.cluster_id)
    return _MEMBER


def judge_nonce(*, secret: bool, nonce: bytes) -> str | None:
    """
    Decide whether a peer's hello (C{nonce} is its L{Hello.nonce}) fits our
    way of shaking hands; return why not, or L{None} if it does.

    A node with a peer secret (C{secret}) talks only to peers that
    authenticate, and one without talks only to peers that do not: the
    mismatch is a configuration error on one side, and saying so at once
    beats a connection that can never carry anything.
    """
    if secret and not nonce:
        return (
            "peer authentication failed: the peer sent no nonce (this node requires"
            " the cluster's --peer-secret-file and the peer has none)"
        )
    if nonce and not secret:
        return (
            "peer authentication refused: the peer uses a peer secret and this node"
            " has none (--peer-secret-file)"
        )
    return None


def judge_auth(*, secret: bytes | None, transcript: bytes, raw: Mapping[Any, Any]) -> str | None:
    """
    Decide whether a decoded C{auth} frame proves that its sender knows
    C{secret}, for this C{transcript}; return why not, or L{None} if it
    does.

    The comparison takes the same time whatever the bytes
    (L{hmac.compare_digest}), so a stranger cannot guess a MAC byte by byte.
    """
    if secret is None:
        return (
            "peer authentication refused: the peer sent an auth frame and this node"
            " has no peer secret (--peer-secret-file)"
        )
    mac = raw.get("mac")
    if not isinstance(mac, bytes) or len(mac) != MAC_SIZE:
        return f"peer authentication failed: auth field 'mac' must be {MAC_SIZE} bytes"
    if not hmac.compare_digest(mac, auth_mac(secret, transcript)):
        return "peer authentication failed: the peer does not know this cluster's peer secret"
    return None


def parse_address(addr: str) -> tuple[str, int]:
    """
    Split C{"host:port"} (or C{"[v6 address]:port"}).

    @raise ValueError: if C{addr} has no valid port.
    """
    host, sep, port_text = addr.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"address {addr!r} is not host:port")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"port {port} of {addr!r} is out of range")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, port


def format_address(host: str, port: int) -> str:
    """
    The inverse of L{parse_address}.
    """
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
