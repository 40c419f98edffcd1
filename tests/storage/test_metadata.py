"""
Tests for L{raft3d.storage._metadata}: the metadata file format.
"""

from __future__ import annotations

import zlib

import cbor2
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import HardState, NodeIdentity
from raft3d.storage._errors import FormatError
from raft3d.storage._metadata import decode_metadata, encode_metadata


class MetadataTests(SynchronousTestCase):
    """
    Encoding and decoding C{metadata.cbor}.
    """

    def test_round_trip(self) -> None:
        """
        Identity and hard state come back as written.
        """
        identity = NodeIdentity("n1", "cluster-7")
        hard = HardState(5, "n2")
        self.assertEqual(decode_metadata(encode_metadata(identity, hard)), (identity, hard))

    def test_no_identity(self) -> None:
        """
        Before L{set_identity} the node id is null and decodes to L{None}.
        """
        blob = encode_metadata(None, HardState(2, None))
        self.assertIsNone(cbor2.loads(blob)["node_id"])
        self.assertEqual(decode_metadata(blob), (None, HardState(2, None)))

    def test_map_keys(self) -> None:
        """
        The file is one CBOR map with the documented keys.
        """
        value = cbor2.loads(encode_metadata(NodeIdentity("n1", "c"), HardState(3, None)))
        self.assertEqual(
            set(value), {"version", "node_id", "cluster_id", "term", "voted_for", "crc"}
        )
        self.assertEqual(value["term"], 3)

    def test_flipped_byte(self) -> None:
        """
        Every single flipped byte is detected (the checksum stops a flipped
        term or vote from being believed).
        """
        blob = encode_metadata(NodeIdentity("n1", "c"), HardState(5, "n2"))
        for i in range(len(blob)):
            damaged = bytearray(blob)
            damaged[i] ^= 0x01
            self.assertRaises(FormatError, decode_metadata, bytes(damaged))

    def test_garbage(self) -> None:
        """
        Non-CBOR, a map without checksum and an ill-typed map are rejected.
        """
        self.assertRaises(FormatError, decode_metadata, b"\xff\x00")
        self.assertRaises(FormatError, decode_metadata, cbor2.dumps({"term": 1}))
        body: dict[str, object] = {
            "version": 1,
            "node_id": 5,
            "cluster_id": "",
            "term": 1,
            "voted_for": None,
        }
        body["crc"] = zlib.crc32(cbor2.dumps(body, canonical=True))
        e = self.assertRaises(FormatError, decode_metadata, cbor2.dumps(body))
        self.assertIn("malformed", e.reason)
