"""
Tests for L{raft3d.storage._snapshots}: the snapshot file format.
"""

from __future__ import annotations

import struct
import zlib

import cbor2
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from raft3d.storage._errors import FormatError
from raft3d.storage._snapshots import (
    decode_snapshot,
    encode_snapshot,
    encode_snapshot_header,
    parse_snapshot_name,
    snapshot_name,
)

from ._support import CONFIG, meta


class SnapshotFormatTests(SynchronousTestCase):
    """
    Encoding and decoding whole snapshot files.
    """

    def test_layout(self) -> None:
        """
        The file is magic, version, metadata length, CBOR metadata, payload
        length, payload CRC, header CRC, payload.
        """
        m = meta(10, 2)
        blob = encode_snapshot(m, b"state")
        meta_bytes = cbor2.dumps(m.to_wire())
        head = b"R3DSNP" + struct.pack(">HI", 1, len(meta_bytes)) + meta_bytes
        head += struct.pack(">QI", 5, zlib.crc32(b"state"))
        self.assertEqual(blob, head + struct.pack(">I", zlib.crc32(head)) + b"state")
        self.assertEqual(encode_snapshot_header(m, b"state") + b"state", blob)

    @given(
        st.integers(min_value=0, max_value=2**63),
        st.integers(min_value=0, max_value=2**63),
        st.binary(max_size=200),
    )
    def test_round_trip(self, index: int, term: int, data: bytes) -> None:
        """
        Whatever is encoded decodes back to the same metadata and payload.
        """
        m = meta(index, term)
        self.assertEqual(decode_snapshot(encode_snapshot(m, data)), (m, data))
        self.assertEqual(m.configuration, CONFIG)

    def assertDamage(self, blob: bytes, offset: int, word: str) -> None:
        e = self.assertRaises(FormatError, decode_snapshot, blob)
        self.assertEqual(e.offset, offset)
        self.assertIn(word, e.reason)

    def test_truncated(self) -> None:
        """
        A file cut anywhere is rejected: in the header it is a header
        problem, in the payload a length mismatch at the payload start.
        """
        blob = encode_snapshot(meta(3), b"0123456789")
        payload_at = len(blob) - 10
        for cut in range(len(blob)):
            self.assertRaises(FormatError, decode_snapshot, blob[:cut])
        self.assertDamage(blob[:-1], payload_at, "payload")

    def test_flipped_payload(self) -> None:
        """
        A flipped payload byte is reported at the payload start.
        """
        blob = bytearray(encode_snapshot(meta(3), b"0123456789"))
        blob[-4] ^= 1
        self.assertDamage(bytes(blob), len(blob) - 10, "checksum")

    def test_flipped_header(self) -> None:
        """
        A flipped byte anywhere in the header is caught (by the header
        checksum when nothing earlier notices).
        """
        blob = encode_snapshot(meta(3), b"0123456789")
        for i in range(len(blob) - 10):
            damaged = bytearray(blob)
            damaged[i] ^= 0x10
            self.assertRaises(FormatError, decode_snapshot, bytes(damaged))

    def test_magic_and_version(self) -> None:
        """
        Magic and version are checked first.
        """
        blob = encode_snapshot(meta(3), b"")
        self.assertDamage(b"XXXXXX" + blob[6:], 0, "magic")
        self.assertDamage(blob[:6] + b"\x00\x02" + blob[8:], 6, "version")

    def test_bad_metadata(self) -> None:
        """
        Metadata that passes the checksum but is not L{SnapshotMeta} is
        reported at the metadata offset.
        """
        meta_bytes = cbor2.dumps({"i": "x"})
        head = b"R3DSNP" + struct.pack(">HI", 1, len(meta_bytes)) + meta_bytes
        head += struct.pack(">QI", 0, zlib.crc32(b""))
        blob = head + struct.pack(">I", zlib.crc32(head))
        self.assertDamage(blob, 12, "metadata")


class SnapshotNameTests(SynchronousTestCase):
    """
    Snapshot file names.
    """

    def test_round_trip(self) -> None:
        """
        The name holds term and index zero padded; parsing gives
        C{(index, term)}, the order that sorts newest last.
        """
        name = snapshot_name(meta(120, 4))
        self.assertEqual(name, "snapshot-00000000000000000004-00000000000000000120.snap")
        self.assertEqual(parse_snapshot_name(name), (120, 4))

    def test_other_files(self) -> None:
        """
        Temporary files and other names are not snapshots.
        """
        for name in ["snapshot-1-2.snap", snapshot_name(meta(1)) + ".tmp", "x.snap"]:
            self.assertIsNone(parse_snapshot_name(name))
