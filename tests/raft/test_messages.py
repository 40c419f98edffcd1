# -*- test-case-name: tests.raft.test_messages -*-
"""
Tests for L{raft3d.raft._messages}: the wire form of the messages peers
exchange.

A peer is another program, possibly of another version or simply broken, so
decoding must either return exactly the message that was encoded or raise
L{ProtocolError}; nothing else may escape into the transport.
"""

from __future__ import annotations

import typing
from typing import Any

import attrs
import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

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
    Propose,
    ProposeResponse,
    ProtocolError,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
    decode_message,
    encode_message,
)
from raft3d.raft._messages import MESSAGE_TYPES

CONFIG = Configuration(
    (
        Member("a", "10.0.0.1:7000", "10.0.0.1:8000", True),
        Member("b", "10.0.0.2:7000", "", False),
    )
)

EXAMPLES: tuple[Message, ...] = (
    RequestVote(7, "a", 12, 6, pre_vote=True, transfer=False),
    RequestVote(8, "a", 12, 6, pre_vote=False, transfer=True),
    RequestVoteResponse(7, "b", True, True),
    AppendEntries(
        7,
        "a",
        10,
        6,
        (
            Entry(11, 7, EntryType.NOOP, b""),
            Entry(12, 7, EntryType.NORMAL, b"\x00\xffcmd"),
            Entry(13, 7, EntryType.CONFIG, cbor2.dumps(CONFIG.to_wire())),
        ),
        9,
    ),
    AppendEntries(7, "a", 0, 0, (), 0),
    AppendEntriesResponse(7, "b", False, 10, 0, 5, 8, 9),
    AppendEntriesResponse(7, "b", True, 10, 13, 0, 0, 13),
    Heartbeat(7, "a", 9, 4),
    HeartbeatResponse(7, "b", 4),
    InstallSnapshot(7, "a", 100, 6, CONFIG, 4096, b"chunk", False, 10000, 0xDEADBEEF),
    InstallSnapshotResponse(7, "b", 100, 4101, False, True),
    InstallSnapshotResponse(7, "b", 100, 0, True, False),
    TimeoutNow(7, "a"),
    ReadIndexRequest(7, "b", 3),
    ReadIndexResponse(7, "a", 3, 42, True),
    Propose(7, "b", 5, (cbor2.dumps([{"op": "x"}, None, 0]), b"")),
    ProposeResponse(7, "a", 5, ((14, 7), (15, 7)), ""),
    ProposeResponse(7, "a", 6, (), "not_leader"),
)


def wire(message: Message) -> Any:
    """
    What the peer at the other end decodes from the CBOR bytes.
    """
    return cbor2.loads(cbor2.dumps(encode_message(message)))


def example(cls: type[Any]) -> Any:
    for message in EXAMPLES:
        if type(message) is cls:
            return message
    raise AssertionError(f"no example of {cls.__name__}")


class RoundTripTests(SynchronousTestCase):
    """
    Encoding then decoding gives back the same message.
    """

    def test_examples_cover_every_type(self) -> None:
        """
        The examples hold one message of every type the codec knows, and
        the codec knows every member of the L{Message} union, so the other
        tests in this module cover the whole protocol.
        """
        union = set(typing.get_args(Message))
        self.assertEqual(set(MESSAGE_TYPES.values()), union)
        self.assertEqual({type(m) for m in EXAMPLES}, union)
        self.assertEqual(len(MESSAGE_TYPES), len(union))

    def test_round_trip(self) -> None:
        """
        Every example survives encode_message, CBOR and decode_message
        unchanged, including entries of every type and a configuration.
        """
        for message in EXAMPLES:
            decoded = decode_message(wire(message))
            self.assertEqual(decoded, message)
            self.assertIs(type(decoded), type(message))

    def test_encoded_form(self) -> None:
        """
        The wire map is keyed by the short names of the C{_wire} table and
        names the type; entries travel as C{[index, term, type, data]}.
        """
        raw = encode_message(example(AppendEntries))
        self.assertEqual(set(raw), {"type", "term", "from", "pli", "plt", "ents", "commit"})
        self.assertEqual(raw["type"], "append")
        self.assertEqual(raw["ents"][1], [12, 7, 0, b"\x00\xffcmd"])

    def test_unknown_fields_ignored(self) -> None:
        """
        A newer peer may add fields: decoding ignores keys it does not know,
        of any type.
        """
        for message in EXAMPLES:
            raw = wire(message)
            raw["future"] = {"nested": [1, 2, 3]}
            raw[17] = b"x"
            self.assertEqual(decode_message(raw), message)


class MalformedTests(SynchronousTestCase):
    """
    Anything but a well-formed message raises L{ProtocolError}.
    """

    def test_not_a_map(self) -> None:
        """
        A message is a CBOR map; lists, strings, numbers and null are not.
        """
        for raw in ([], ["vote"], "vote", b"vote", 3, None, True):
            self.assertRaises(ProtocolError, decode_message, raw)

    def test_unknown_type(self) -> None:
        """
        A missing, unknown or non-string C{type} is refused (an unhashable
        one too, which must not turn into a L{TypeError}).
        """
        good = wire(example(TimeoutNow))
        for kind in ("nope", "", None, 1, b"timeout_now", ["timeout_now"], {"a": 1}):
            raw = dict(good, type=kind)
            self.assertRaises(ProtocolError, decode_message, raw)
        del good["type"]
        self.assertRaises(ProtocolError, decode_message, good)

    def test_missing_field(self) -> None:
        """
        Every field in a type's C{_wire} table is required.
        """
        for message in EXAMPLES:
            for key, _, _ in message._wire:
                raw = wire(message)
                del raw[key]
                with self.assertRaises(ProtocolError, msg=f"{message.TYPE} without {key}"):
                    decode_message(raw)

    def test_wrong_types(self) -> None:
        """
        Each kind of field refuses values of other types; in particular a
        boolean is not an integer (Python's C{bool} subclasses C{int}), an
        integer is not a boolean and a string is not bytes.
        """
        bad: dict[str, list[Any]] = {
            "int": [True, False, "1", 1.0, None, b"1", [1]],
            "str": [1, b"a", None, ["a"]],
            "bool": [1, 0, "true", None],
            "bytes": ["data", 1, None, [1]],
            "entries": [None, "x", {"a": 1}, [[1, 1, 0]], [None]],
            "config": [None, "x", [["a", "b", "c"]], [["a", "b", "c", 1]], [[1, "b", "c", True]]],
            "blobs": [None, b"x", "x", ["x"], [b"a", 1], {"a": b""}],
            "positions": [None, "x", [[1]], [[0, 1]], [[1, 0]], [[1, 2, 3]], [[True, 1]], [5]],
        }
        checked = set()
        for message in EXAMPLES:
            for key, _, kind in message._wire:
                for value in bad[kind]:
                    raw = wire(message)
                    raw[key] = value
                    with self.assertRaises(ProtocolError, msg=f"{message.TYPE}.{key} = {value!r}"):
                        decode_message(raw)
                checked.add(kind)
        self.assertEqual(checked, set(bad))

    def test_negative_integers(self) -> None:
        """
        Terms, indexes, offsets and counters are never negative.
        """
        for message in EXAMPLES:
            for key, _, kind in message._wire:
                if kind != "int":
                    continue
                raw = wire(message)
                raw[key] = -1
                self.assertRaises(ProtocolError, decode_message, raw)

    def test_malformed_entries(self) -> None:
        """
        An entry is exactly C{[index >= 1, term >= 0, known type, bytes]}.
        """
        base = wire(example(AppendEntries))
        for entry in (
            [0, 1, 0, b""],
            [1, -1, 0, b""],
            [1, 1, 9, b""],
            [1, 1, 0, "text"],
            [1, 1, 0],
            [1, 1, 0, b"", b""],
            [True, 1, 0, b""],
            [1, 1, False, b""],
            [1, 1.0, 0, b""],
            {"i": 1},
        ):
            raw = dict(base, ents=[entry])
            with self.assertRaises(ProtocolError, msg=repr(entry)):
                decode_message(raw)

    def test_entry_type_zero_term_allowed(self) -> None:
        """
        Term 0 entries decode: the lower bound is inclusive.
        """
        raw = dict(wire(example(AppendEntries)), ents=[[1, 0, 1, b""]])
        decoded = decode_message(raw)
        assert isinstance(decoded, AppendEntries)
        self.assertEqual(decoded.entries, (Entry(1, 0, EntryType.NOOP, b""),))


# -- hypothesis ---------------------------------------------------------------

_ints = st.integers(min_value=0, max_value=2**64 - 1)
_members = st.builds(
    Member, st.text(max_size=8), st.text(max_size=8), st.text(max_size=8), st.booleans()
)
_configs = st.builds(Configuration, st.lists(_members, max_size=4).map(tuple))
_entries = st.builds(
    Entry,
    st.integers(min_value=1, max_value=2**64 - 1),
    _ints,
    st.sampled_from(EntryType),
    st.binary(max_size=32),
)

_KIND_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "int": _ints,
    "str": st.text(max_size=16),
    "bool": st.booleans(),
    "bytes": st.binary(max_size=64),
    "entries": st.lists(_entries, max_size=5).map(tuple),
    "config": _configs,
    "blobs": st.lists(st.binary(max_size=16), max_size=4).map(tuple),
    "positions": st.lists(
        st.tuples(
            st.integers(min_value=1, max_value=2**64 - 1),
            st.integers(min_value=1, max_value=2**64 - 1),
        ),
        max_size=4,
    ).map(tuple),
}


def _message_strategy(cls: type[Any]) -> st.SearchStrategy[Any]:
    fields = {attr: _KIND_STRATEGIES[kind] for _, attr, kind in cls._wire}
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


_messages = st.one_of([_message_strategy(cls) for cls in MESSAGE_TYPES.values()])


class PropertyTests(SynchronousTestCase):
    """
    The codec is lossless and total over arbitrary field values.
    """

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(_messages)
    def test_round_trip_arbitrary(self, message: Message) -> None:
        """
        Any message with arbitrary field values (huge integers, any text,
        any bytes, any entries and configuration) decodes to itself.
        """
        self.assertEqual(decode_message(wire(message)), message)

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(
        _messages,
        st.data(),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(min_value=-(2**70), max_value=2**70),
            st.floats(allow_nan=False),
            st.text(max_size=4),
            st.binary(max_size=4),
            st.lists(st.integers(), max_size=3),
        ),
    )
    def test_corrupt_field_never_escapes(
        self, message: Message, data: st.DataObject, value: Any
    ) -> None:
        """
        Replacing any field with any value either still decodes to a
        message of the same type or raises L{ProtocolError}: no other
        exception reaches the transport.
        """
        raw = wire(message)
        key = data.draw(st.sampled_from([k for k, _, _ in message._wire]))
        raw[key] = value
        try:
            decoded = decode_message(raw)
        except ProtocolError:
            return
        self.assertIs(type(decoded), type(message))
        attr = {k: a for k, a, _ in message._wire}[key]
        self.assertEqual(attrs.evolve(decoded, **{attr: getattr(message, attr)}), message)
