"""
Tests for L{raft3d.storage._segments}: the record format and its scanner.
"""

from __future__ import annotations

import struct
import zlib

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import Entry, EntryType
from raft3d.storage._segments import (
    HEADER_SIZE,
    RECORD_OVERHEAD,
    BadRecord,
    check_segment_header,
    encode_records,
    find_intact_record,
    parse_segment_name,
    scan_records,
    segment_header,
    segment_name,
)

from ._support import entries

entry_lists = st.integers(min_value=1, max_value=2**40).flatmap(
    lambda first: st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=2**64 - 1),
            st.sampled_from(list(EntryType)),
            st.binary(max_size=64),
        ),
        max_size=20,
    ).map(lambda items: [Entry(first + i, t, k, d) for i, (t, k, d) in enumerate(items)])
)


def segment(*batch: Entry) -> tuple[bytes, list[int]]:
    data, offsets = encode_records(batch, HEADER_SIZE)
    return segment_header() + data, offsets


def record(index: int, term: int, kind: int, payload: bytes) -> bytes:
    body = struct.pack(">QQB", index, term, kind) + payload
    return struct.pack(">II", len(body) + 4, zlib.crc32(body)) + body


class RecordFormatTests(SynchronousTestCase):
    """
    The byte layout of one record.
    """

    def test_layout(self) -> None:
        """
        A record is length, CRC32 of the rest, index, term, type, payload,
        all big-endian, exactly as documented.
        """
        data, offsets = encode_records([Entry(7, 3, EntryType.CONFIG, b"abc")], 100)
        self.assertEqual(offsets, [100])
        self.assertEqual(data, record(7, 3, 2, b"abc"))
        self.assertEqual(len(data), RECORD_OVERHEAD + 3)
        self.assertEqual(data[:4], struct.pack(">I", 21 + 3))

    def test_offsets(self) -> None:
        """
        The offsets returned are where each record starts in the file.
        """
        batch = entries(1, 3, size=10)
        data, offsets = encode_records(batch, HEADER_SIZE)
        self.assertEqual(offsets, [HEADER_SIZE + i * (RECORD_OVERHEAD + 10) for i in range(3)])
        self.assertEqual(len(data), 3 * (RECORD_OVERHEAD + 10))

    def test_out_of_range(self) -> None:
        """
        A term that does not fit 64 bits is a ValueError, not a struct
        error.
        """
        self.assertRaises(ValueError, encode_records, [Entry(1, 2**64, EntryType.NORMAL, b"")], 0)

    @given(entry_lists)
    def test_round_trip(self, batch: list[Entry]) -> None:
        """
        Whatever is encoded scans back identically, with the same offsets
        and no damage.
        """
        buf, offsets = segment(*batch)
        first = batch[0].index if batch else 1
        result = scan_records(buf, first)
        self.assertEqual(result.entries, batch)
        self.assertEqual(result.offsets, offsets)
        self.assertEqual(result.end, len(buf))
        self.assertIsNone(result.damage)


class SegmentNameTests(SynchronousTestCase):
    """
    Segment file names.
    """

    def test_round_trip(self) -> None:
        """
        The name holds the first index, zero padded to 20 digits so that
        names sort like indexes.
        """
        self.assertEqual(segment_name(42), "log-00000000000000000042.seg")
        self.assertEqual(parse_segment_name(segment_name(42)), 42)
        self.assertLess(segment_name(9), segment_name(10))

    def test_other_files(self) -> None:
        """
        Names that are not segment files parse as L{None}.
        """
        for name in ["log-1.seg", "log-00000000000000000042.seg.tmp", "metadata.cbor"]:
            self.assertIsNone(parse_segment_name(name))


class HeaderTests(SynchronousTestCase):
    """
    The segment file header.
    """

    def test_good(self) -> None:
        """
        The header written is accepted.
        """
        self.assertIsNone(check_segment_header(segment_header()))

    def test_truncated(self) -> None:
        """
        A short header is damage at offset 0 (a torn creation).
        """
        damage = check_segment_header(segment_header()[:5])
        assert damage is not None
        self.assertEqual(damage.offset, 0)
        self.assertNotIsInstance(damage, BadRecord)

    def test_magic(self) -> None:
        """
        A wrong magic is damage at offset 0.
        """
        damage = check_segment_header(b"NOTLOG\x00\x01")
        assert damage is not None
        self.assertIn("magic", damage.reason)

    def test_version(self) -> None:
        """
        An unknown version is never a torn write: it is a L{BadRecord}.
        """
        damage = check_segment_header(b"R3DLOG\x00\x09")
        self.assertIsInstance(damage, BadRecord)


class ScanDamageTests(SynchronousTestCase):
    """
    L{scan_records} stops at the first damage and says where it is.
    """

    def setUp(self) -> None:
        self.buf, self.offsets = segment(*entries(1, 3))

    def assertDamage(self, buf: bytes, offset: int, kind: type[Exception], good: int) -> None:
        result = scan_records(buf, 1)
        self.assertEqual(len(result.entries), good)
        self.assertEqual(result.end, offset)
        assert result.damage is not None
        self.assertIsInstance(result.damage, kind)
        self.assertEqual(result.damage.offset, offset)

    def test_truncated_header(self) -> None:
        """
        Fewer bytes than a record header left is damage there.
        """
        self.assertDamage(self.buf[: self.offsets[2] + 10], self.offsets[2], ValueError, 2)

    def test_runs_past_end(self) -> None:
        """
        A record cut short is damage at its start.
        """
        self.assertDamage(self.buf[:-1], self.offsets[2], ValueError, 2)

    def test_impossible_length(self) -> None:
        """
        A length smaller than the fixed fields is damage.
        """
        buf = bytearray(self.buf)
        buf[self.offsets[1] : self.offsets[1] + 4] = b"\x00\x00\x00\x03"
        self.assertDamage(bytes(buf), self.offsets[1], ValueError, 1)

    def test_checksum(self) -> None:
        """
        A flipped payload byte fails the checksum.
        """
        buf = bytearray(self.buf)
        buf[self.offsets[1] + RECORD_OVERHEAD] ^= 0x40
        self.assertDamage(bytes(buf), self.offsets[1], ValueError, 1)

    def test_zero_fill(self) -> None:
        """
        Zeros after the last record, however many (fewer than a record
        header too), are where the records end, not damage.
        """
        for zeros in (1, RECORD_OVERHEAD - 1, RECORD_OVERHEAD, 4096):
            result = scan_records(self.buf + bytes(zeros), 1)
            self.assertEqual((len(result.entries), result.end), (3, len(self.buf)), zeros)
            self.assertIsNone(result.damage)

    def test_zeros_then_data(self) -> None:
        """
        Zeros followed by anything else are damage where the zeros start:
        a record whose first sectors never reached the disk.
        """
        for zeros in (4, RECORD_OVERHEAD - 1, 300):
            buf = self.buf[: self.offsets[2]] + bytes(zeros) + b"\x01"
            self.assertDamage(buf, self.offsets[2], ValueError, 2)

    def test_wrong_index(self) -> None:
        """
        An intact record with the wrong index is a L{BadRecord}.
        """
        buf = segment_header() + record(1, 1, 0, b"") + record(3, 1, 0, b"")
        self.assertDamage(buf, HEADER_SIZE + RECORD_OVERHEAD, BadRecord, 1)

    def test_first_index_must_match(self) -> None:
        """
        The first record must carry the index the caller expects (the one in
        the file name).
        """
        buf = segment_header() + record(5, 1, 0, b"")
        self.assertDamage(buf, HEADER_SIZE, BadRecord, 0)

    def test_unknown_type(self) -> None:
        """
        An intact record with an unknown entry type is a L{BadRecord}.
        """
        buf = segment_header() + record(1, 1, 9, b"")
        self.assertDamage(buf, HEADER_SIZE, BadRecord, 0)


class FindIntactRecordTests(SynchronousTestCase):
    """
    L{find_intact_record} tells a torn tail from damage in the middle.
    """

    def setUp(self) -> None:
        self.buf, self.offsets = segment(*entries(1, 5))

    def test_after_flipped_payload(self) -> None:
        """
        After a damaged record 2 it finds record 3.
        """
        buf = bytearray(self.buf)
        buf[self.offsets[1] + RECORD_OVERHEAD + 1] ^= 1
        self.assertEqual(find_intact_record(bytes(buf), self.offsets[1], 3), self.offsets[2])

    def test_after_flipped_length(self) -> None:
        """
        Even when the damaged record's length is wrong, so that the record
        boundaries are lost, the next record is found.
        """
        buf = bytearray(self.buf)
        buf[self.offsets[1]] = 0x7F
        self.assertEqual(find_intact_record(bytes(buf), self.offsets[1], 3), self.offsets[2])

    def test_zeros_and_garbage(self) -> None:
        """
        Zeros or garbage after the damage hold no intact record.
        """
        start = self.offsets[3]
        zeros = self.buf[:start] + bytes(500)
        garbage = self.buf[:start] + bytes(range(256)) * 3
        self.assertIsNone(find_intact_record(zeros, start, 5))
        self.assertIsNone(find_intact_record(garbage, start, 5))

    def test_implausible_index(self) -> None:
        """
        An intact record whose index cannot follow the damage (too low, or
        too high for the room in between) does not count.
        """
        self.assertIsNone(find_intact_record(self.buf, self.offsets[3], 100))
        tail = record(1000, 1, 0, b"")
        self.assertIsNone(find_intact_record(self.buf + tail, self.offsets[4], 7))

    def test_nothing_after(self) -> None:
        """
        With less than a record left there is nothing to find.
        """
        self.assertIsNone(find_intact_record(self.buf, len(self.buf) - 3, 1))
