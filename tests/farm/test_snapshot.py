"""
Tests for L{raft3d.farm._snapshot}: streaming CBOR gives the same bytes and
the same reading as C{cbor2} on whole documents.
"""

from __future__ import annotations

from typing import Any

import cbor2
from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm._snapshot import (
    _CHUNK,
    MalformedSnapshot,
    NotStreamable,
    Rows,
    decode_map,
    encode_map,
    head,
)


def _rows(count: int) -> list[list[Any]]:
    return [[f"id{n}", n, "é" * (n % 3)] for n in range(count)]


class HeadTests(SynchronousTestCase):
    """
    L{head} writes the shortest CBOR head, as C{cbor2} does.
    """

    def test_matches_cbor2(self) -> None:
        """
        Array and map heads match C{cbor2}'s around each size boundary.
        """
        for length in (0, 1, 23, 24, 255, 256, 65535, 65536):
            array = cbor2.dumps([None] * length)
            self.assertEqual(head(4, length), array[: len(array) - length], length)
            mapping = cbor2.dumps({n: None for n in range(min(length, 300))})
            if length < 300:
                self.assertEqual(head(5, length), mapping[: len(head(5, length))], length)
        self.assertEqual(head(4, 2**32 - 1), b"\x9a\xff\xff\xff\xff")
        self.assertEqual(head(4, 2**32), b"\x9b" + (2**32).to_bytes(8, "big"))

    def test_out_of_range(self) -> None:
        """
        Negative and over-long lengths are refused.
        """
        self.assertRaises(ValueError, head, 4, -1)
        self.assertRaises(ValueError, head, 4, 2**64)


class EncodeMapTests(SynchronousTestCase):
    """
    L{encode_map} gives C{cbor2.dumps(..., canonical=True)} of the same
    document.
    """

    def test_same_bytes(self) -> None:
        """
        Row arrays of every size around the batch size encode exactly as
        the whole document would, keys in canonical order.
        """
        for count in (0, 1, _CHUNK - 1, _CHUNK, _CHUNK + 1, 2 * _CHUNK + 5):
            rows = _rows(count)
            doc = {
                "version": 1,
                "jobs": Rows(count, lambda a, b, rows=rows: rows[a:b]),
                "format": "x",
            }
            plain = {"version": 1, "jobs": rows, "format": "x"}
            self.assertEqual(encode_map(doc), cbor2.dumps(plain, canonical=True), count)

    def test_tuples_are_arrays(self) -> None:
        """
        Rows may be tuples: they encode as the same arrays.
        """
        rows = [("a", 1), ("b", 2)]
        self.assertEqual(
            encode_map({"r": Rows(2, lambda a, b: rows[a:b])}),
            cbor2.dumps({"r": [["a", 1], ["b", 2]]}, canonical=True),
        )

    def test_wrong_count(self) -> None:
        """
        A batch with the wrong number of rows is an error, not a corrupt
        snapshot.
        """
        rows = _rows(3)
        self.assertRaises(ValueError, encode_map, {"r": Rows(4, lambda a, b: rows[a:b])})


class DecodeMapTests(SynchronousTestCase):
    """
    L{decode_map} streams the chosen arrays in batches and returns the
    rest.
    """

    def decode(self, data: bytes, stream: bool = True) -> tuple[Any, ...]:
        got: dict[str, list[Any]] = {"a": [], "b": []}
        batches: list[int] = []

        def take(key: str) -> Any:
            def callback(rows: list[Any]) -> None:
                batches.append(len(rows))
                got[key].extend(rows)

            return callback

        others, present = decode_map(data, {"a": take("a"), "b": take("b")}, stream=stream)
        return others, present, got, batches

    def test_streams(self) -> None:
        """
        Rows arrive in order in batches of at most the batch size; other
        entries and the streamed keys present are returned.
        """
        rows = _rows(2 * _CHUNK + 1)
        data = cbor2.dumps({"a": rows, "v": 1, (1, 2): [3]}, canonical=True)
        for stream in (True, False):
            others, present, got, batches = self.decode(data, stream)
            self.assertEqual(others, {"v": 1, (1, 2): [3]})
            self.assertEqual(present, {"a"})
            self.assertEqual(got, {"a": rows, "b": []})
            self.assertEqual(batches, [_CHUNK, _CHUNK, 1])

    def test_empty_array(self) -> None:
        """
        An empty array is present and makes no call.
        """
        others, present, got, batches = self.decode(cbor2.dumps({"b": []}))
        self.assertEqual((others, present, batches), ({}, {"b"}, []))

    def test_not_streamable(self) -> None:
        """
        Indefinite lengths, repeated keys and non-map or non-array values
        are left to the whole-document path.
        """
        dumped_twice = b"\xa2" + cbor2.dumps("v") + b"\x01" + cbor2.dumps("v") + b"\x02"
        for data in (
            cbor2.dumps({"a": [[1]]}, indefinite_containers=True),
            b"\xa1" + cbor2.dumps("a") + b"\x9f\x81\x01\xff",
            dumped_twice,
            cbor2.dumps({"a": "nope"}),
            cbor2.dumps([1]),
            cbor2.dumps(cbor2.CBORTag(55799, {"a": [[1]]})),
        ):
            self.assertRaises(NotStreamable, self.decode, data)
        self.assertEqual(self.decode(dumped_twice, stream=False)[0], {"v": 2})
        others, present, got, _ = self.decode(
            cbor2.dumps({"a": [[1]]}, indefinite_containers=True), False
        )
        self.assertEqual((others, present, got["a"]), ({}, {"a"}, [[1]]))

    def test_malformed(self) -> None:
        """
        Decoded whole, a document that is not a map, or whose streamed key
        is not an array, is refused.
        """
        for data in (
            cbor2.dumps([1]),
            cbor2.dumps({"a": "nope"}),
            cbor2.dumps(cbor2.CBORTag(55799, {"a": [[1]]})),
        ):
            self.assertRaises(MalformedSnapshot, self.decode, data, False)

    def test_bad_cbor(self) -> None:
        """
        Truncated or invalid CBOR raises C{cbor2}'s decode error on both
        paths.
        """
        whole = cbor2.dumps({"a": _rows(10), "v": 1})
        for data in (b"", whole[:-1], whole[:40], b"\xbc"):
            for stream in (True, False):
                self.assertRaises(cbor2.CBORDecodeError, self.decode, data, stream)

    def test_trailing_bytes(self) -> None:
        """
        Bytes after the map are ignored, as C{cbor2.loads} ignores them.
        """
        data = cbor2.dumps({"v": 1}) + b"\xff\xff"
        self.assertEqual(self.decode(data)[0], {"v": 1})
        self.assertEqual(self.decode(data, stream=False)[0], {"v": 1})
