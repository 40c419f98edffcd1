"""
Tests for L{raft3d.api._json}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.api import APIError
from raft3d.api._json import parse_json_object, to_json_bytes


class EncodeTests(SynchronousTestCase):
    """
    Output is compact UTF-8.
    """

    def test_compact_utf8(self) -> None:
        """
        No spaces after separators; non-ASCII is written as UTF-8.
        """
        self.assertEqual(to_json_bytes({"a": [1, "é"]}), '{"a":[1,"é"]}'.encode())


class ParseTests(SynchronousTestCase):
    """
    Bodies must be one JSON object.
    """

    def test_object(self) -> None:
        """
        An object is returned as a dict.
        """
        self.assertEqual(parse_json_object(b'{"a": 1}'), {"a": 1})

    def test_refused(self) -> None:
        """
        Non-JSON, NaN/Infinity, bad UTF-8 and deep nesting are
        C{malformed_json}; valid JSON that is not an object is
        C{invalid_request}.
        """
        for data in (b"", b"{", b'{"a": NaN}', b'{"a": -Infinity}', b"\xc3", b"[" * 50_000):
            with self.assertRaises(APIError) as caught:
                parse_json_object(data)
            self.assertEqual(
                (caught.exception.status, caught.exception.code), (400, "malformed_json")
            )
        for data in (b"[]", b"1", b'"s"', b"null"):
            with self.assertRaises(APIError) as caught:
                parse_json_object(data)
            self.assertEqual(caught.exception.code, "invalid_request")
