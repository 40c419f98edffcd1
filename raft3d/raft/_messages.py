# -*- test-case-name: tests.raft.test_messages -*-
"""
The messages Raft peers exchange, with explicit wire encoding.

Every message is a frozen C{attrs} class.  On the wire a message is one CBOR
map: C{"type"} names the message and the other keys are listed in the class's
C{_wire} table as C{(key, attribute, kind)}.  Decoding ignores unknown keys
and raises L{ProtocolError} for a missing or ill-typed one, so a newer peer
can add fields without breaking an older one.
"""

from __future__ import annotations

from typing import Any, ClassVar, Union

import attrs

from ._types import Configuration, Entry, EntryType


class ProtocolError(ValueError):
    """
    A peer sent something that is not a well-formed message.
    """


@attrs.frozen
class RequestVote:
    """
    Candidate asks for a vote (paper 5.2); with C{pre_vote} it only asks
    whether it would win (thesis 9.6) and nobody changes term.  C{transfer}
    marks an election started by L{TimeoutNow}, which voters honour even
    inside their leader lease (thesis 3.10).
    """

    term: int
    sender: str
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False

    TYPE: ClassVar[str] = "vote"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("lli", "last_log_index", "int"),
        ("llt", "last_log_term", "int"),
        ("pre", "pre_vote", "bool"),
        ("xfer", "transfer", "bool"),
    )


@attrs.frozen
class RequestVoteResponse:
    """
    A voter's answer; for a granted pre-vote C{term} is the term asked for.
    """

    term: int
    sender: str
    granted: bool
    pre_vote: bool = False

    TYPE: ClassVar[str] = "vote_resp"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("ok", "granted", "bool"),
        ("pre", "pre_vote", "bool"),
    )


@attrs.frozen
class AppendEntries:
    """
    Leader replicates entries after C{(prev_log_index, prev_log_term)}
    (paper 5.3).
    """

    term: int
    sender: str
    prev_log_index: int
    prev_log_term: int
    entries: tuple[Entry, ...]
    leader_commit: int

    TYPE: ClassVar[str] = "append"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("pli", "prev_log_index", "int"),
        ("plt", "prev_log_term", "int"),
        ("ents", "entries", "entries"),
        ("commit", "leader_commit", "int"),
    )


@attrs.frozen
class AppendEntriesResponse:
    """
    A follower's answer to L{AppendEntries}.

    C{index} echoes the request's C{prev_log_index} so the leader can tell a
    stale rejection from a fresh one.  On success C{match_index} is the last
    index known to match the leader.  On rejection C{conflict_term} and
    C{conflict_index} (the first index the follower holds of that term, or
    its last index + 1 when its log is too short) let the leader skip a whole
    term per round trip.
    """

    term: int
    sender: str
    success: bool
    index: int
    match_index: int = 0
    conflict_term: int = 0
    conflict_index: int = 0
    last_log_index: int = 0

    TYPE: ClassVar[str] = "append_resp"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("ok", "success", "bool"),
        ("idx", "index", "int"),
        ("match", "match_index", "int"),
        ("ct", "conflict_term", "int"),
        ("ci", "conflict_index", "int"),
        ("lli", "last_log_index", "int"),
    )


@attrs.frozen
class Heartbeat:
    """
    Leader's keep-alive.  It carries no log position, only a commit index the
    follower is known to hold (C{min(match, commit)}), and a read context
    that confirms leadership for ReadIndex (thesis 6.4).
    """

    term: int
    sender: str
    commit: int
    read_ctx: int = 0

    TYPE: ClassVar[str] = "hb"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("commit", "commit", "int"),
        ("ctx", "read_ctx", "int"),
    )


@attrs.frozen
class HeartbeatResponse:
    """
    Follower's answer to L{Heartbeat}, echoing its read context.
    """

    term: int
    sender: str
    read_ctx: int = 0

    TYPE: ClassVar[str] = "hb_resp"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("ctx", "read_ctx", "int"),
    )


@attrs.frozen
class InstallSnapshot:
    """
    One chunk of a snapshot streamed to a follower behind the compacted log
    (paper 7).  C{configuration} is the membership at C{last_index}; C{size}
    and C{checksum} (CRC32 of the whole payload) describe the whole snapshot.
    """

    term: int
    sender: str
    last_index: int
    last_term: int
    configuration: Configuration
    offset: int
    data: bytes
    done: bool
    size: int
    checksum: int

    TYPE: ClassVar[str] = "snap"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("li", "last_index", "int"),
        ("lt", "last_term", "int"),
        ("conf", "configuration", "config"),
        ("off", "offset", "int"),
        ("data", "data", "bytes"),
        ("done", "done", "bool"),
        ("size", "size", "int"),
        ("crc", "checksum", "int"),
    )


@attrs.frozen
class InstallSnapshotResponse:
    """
    Follower acknowledges a chunk: C{offset} is the next byte it expects.
    With C{done}, the snapshot up to C{last_index} is installed and durable.
    C{success} false asks the leader to restart the transfer from offset 0.
    """

    term: int
    sender: str
    last_index: int
    offset: int
    done: bool = False
    success: bool = True

    TYPE: ClassVar[str] = "snap_resp"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("li", "last_index", "int"),
        ("off", "offset", "int"),
        ("done", "done", "bool"),
        ("ok", "success", "bool"),
    )


@attrs.frozen
class TimeoutNow:
    """
    Leader tells an up-to-date follower to start an election at once
    (leadership transfer, thesis 3.10).
    """

    term: int
    sender: str

    TYPE: ClassVar[str] = "timeout_now"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
    )


@attrs.frozen
class ReadIndexRequest:
    """
    A follower asks the leader for a read index on behalf of its clients
    (thesis 6.4); C{request_id} is the follower's own counter.
    """

    term: int
    sender: str
    request_id: int

    TYPE: ClassVar[str] = "read"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("rid", "request_id", "int"),
    )


@attrs.frozen
class ReadIndexResponse:
    """
    The leader's answer: once the follower has applied up to C{index} it may
    serve the read.  C{success} false means the leader could not confirm its
    leadership (it stepped down) and the read must be retried.
    """

    term: int
    sender: str
    request_id: int
    index: int
    success: bool

    TYPE: ClassVar[str] = "read_resp"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("rid", "request_id", "int"),
        ("idx", "index", "int"),
        ("ok", "success", "bool"),
    )


@attrs.frozen
class Propose:
    """
    A follower hands commands its clients gave it to the leader, which
    appends them as if proposed locally (thesis 6.2: any server accepts a
    request and relays it).  Each payload is a CBOR array C{[command,
    client, seq]}; the leader adds its own timestamp.  C{batch_id} is the
    follower's own counter, echoed in the L{ProposeResponse}.
    """

    term: int
    sender: str
    batch_id: int
    payloads: tuple[bytes, ...]

    TYPE: ClassVar[str] = "prop"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("bid", "batch_id", "int"),
        ("cmds", "payloads", "blobs"),
    )


@attrs.frozen
class ProposeResponse:
    """
    The leader's answer to L{Propose}: the C{(index, term)} it appended each
    payload at, in order, or an C{error} (C{"not_leader"}, C{"transfer"},
    C{"disk_full"}, C{"refused"}) when it appended none of them.  It is sent
    before the entries themselves, on the same ordered connection, so the
    follower knows what to wait for before it can apply them.
    """

    term: int
    sender: str
    batch_id: int
    positions: tuple[tuple[int, int], ...]
    error: str = ""

    TYPE: ClassVar[str] = "prop_resp"
    _wire: ClassVar[tuple[tuple[str, str, str], ...]] = (
        ("term", "term", "int"),
        ("from", "sender", "str"),
        ("bid", "batch_id", "int"),
        ("pos", "positions", "positions"),
        ("err", "error", "str"),
    )


Message = Union[
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
    Propose,
    ProposeResponse,
]

MESSAGE_TYPES: dict[str, type[Any]] = {
    cls.TYPE: cls
    for cls in (
        RequestVote,
        RequestVoteResponse,
        AppendEntries,
        AppendEntriesResponse,
        Heartbeat,
        HeartbeatResponse,
        InstallSnapshot,
        InstallSnapshotResponse,
        TimeoutNow,
        ReadIndexRequest,
        ReadIndexResponse,
        Propose,
        ProposeResponse,
    )
}


def _encode_value(kind: str, value: Any) -> Any:
    if kind == "entries":
        return [[e.index, e.term, int(e.type), e.data] for e in value]
    if kind == "config":
        return value.to_wire()
    if kind == "positions":
        return [list(p) for p in value]
    if kind == "blobs":
        return list(value)
    return value


def _decode_entry(raw: object) -> Entry:
    if (
        not isinstance(raw, list)
        or len(raw) != 4
        or type(raw[0]) is not int
        or type(raw[1]) is not int
        or type(raw[2]) is not int
        or not isinstance(raw[3], bytes)
        or raw[0] < 1
        or raw[1] < 0
    ):
        raise ProtocolError("malformed entry")
    try:
        etype = EntryType(raw[2])
    except ValueError:
        raise ProtocolError(f"unknown entry type {raw[2]!r}") from None
    return Entry(raw[0], raw[1], etype, raw[3])


def _decode_position(raw: object) -> tuple[int, int]:
    if (
        not isinstance(raw, list)
        or len(raw) != 2
        or type(raw[0]) is not int
        or type(raw[1]) is not int
        or raw[0] < 1
        or raw[1] < 1
    ):
        raise ProtocolError("malformed log position")
    return (raw[0], raw[1])


def _decode_value(kind: str, key: str, value: object) -> Any:
    if kind == "int":
        if type(value) is not int or value < 0:
            raise ProtocolError(f"field {key!r} must be a non-negative integer")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ProtocolError(f"field {key!r} must be a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ProtocolError(f"field {key!r} must be a boolean")
        return value
    if kind == "bytes":
        if not isinstance(value, bytes):
            raise ProtocolError(f"field {key!r} must be bytes")
        return value
    if kind == "entries":
        if not isinstance(value, list):
            raise ProtocolError(f"field {key!r} must be a list")
        return tuple(_decode_entry(e) for e in value)
    if kind == "blobs":
        if not isinstance(value, list) or not all(isinstance(b, bytes) for b in value):
            raise ProtocolError(f"field {key!r} must be a list of byte strings")
        return tuple(value)
    if kind == "positions":
        if not isinstance(value, list):
            raise ProtocolError(f"field {key!r} must be a list")
        return tuple(_decode_position(p) for p in value)
    if kind == "config":
        try:
            return Configuration.from_wire(value)
        except ValueError:
            raise ProtocolError(f"field {key!r} is not a configuration") from None
    raise AssertionError(kind)


def encode_message(message: Message) -> dict[str, Any]:
    """
    Turn C{message} into a CBOR-ready map.
    """
    out: dict[str, Any] = {"type": message.TYPE}
    for key, attr, kind in message._wire:
        out[key] = _encode_value(kind, getattr(message, attr))
    return out


def decode_message(raw: object) -> Message:
    """
    Turn a decoded CBOR value back into a message.

    @raise ProtocolError: if C{raw} is not a map naming a known message type
        with every field present and well typed.
    """
    if not isinstance(raw, dict):
        raise ProtocolError("a message must be a map")
    kind = raw.get("type")
    cls = MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}")
    kwargs: dict[str, Any] = {}
    for key, attr, kind in cls._wire:
        if key not in raw:
            raise ProtocolError(f"{cls.__name__} lacks field {key!r}")
        kwargs[attr] = _decode_value(kind, key, raw[key])
    return cls(**kwargs)  # type: ignore[no-any-return]
