# -*- test-case-name: tests.storage.test_segments -*-
"""
The byte format of log segment files, as pure functions on C{bytes}.

A segment is an 8-byte header (C{b"R3DLOG"} and a big-endian 16-bit format
version) followed by records.  A record is::

    length  u32 BE   number of bytes after this field (21 + payload)
    crc     u32 BE   zlib.crc32 of every byte after this field
    index   u64 BE
    term    u64 BE
    type    u8       L{EntryType}
    payload          the entry's data

The checksum covers the index, term and type as well as the payload, so a
record that passes it is exactly what was written.  Segments are extended
with zero bytes ahead of their records (preallocation: an C{fdatasync} that
need not change the file's size is cheaper, see C{docs/storage.md}); a record
never starts with a zero length, so zeros up to the end of the buffer are
where the records end, not damage.  Both the disk storage and
the tests build on these functions; the file handling lives in L{_disk}.

Scanning stops at the first damaged record and reports where it is.  Whether
that damage is a harmless torn tail or real corruption is decided by the
caller, with the help of L{find_intact_record}: damage is a torn tail only if
no intact record follows it (see C{docs/storage.md}).
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Sequence

import attrs

from ..raft._types import Entry, EntryType
from ._errors import FormatError

SEGMENT_MAGIC = b"R3DLOG"
SEGMENT_VERSION = 1
_FILE_HEADER = struct.Struct(">6sH")
HEADER_SIZE = _FILE_HEADER.size

_RECORD_HEAD = struct.Struct(">IIQQB")
_LEN_CRC = struct.Struct(">II")
_BODY_HEAD = struct.Struct(">QQB")
_U64 = struct.Struct(">Q")

RECORD_OVERHEAD = _RECORD_HEAD.size
"""Bytes a record takes besides its payload (25)."""

_MIN_LENGTH = RECORD_OVERHEAD - 4
_TYPES = {int(t): t for t in EntryType}
_NAME = re.compile(r"^log-(\d{20})\.seg$")


class BadRecord(FormatError):
    """
    A record whose checksum is right but which cannot be where it is (wrong
    index, unknown type).  A torn write cannot produce one, so it is never
    treated as a torn tail.
    """


@attrs.frozen
class ScanResult:
    """
    What L{scan_records} found.

    @ivar entries: the intact records, in order.
    @ivar offsets: the byte offset of each record in C{entries}.
    @ivar end: the offset just past the last intact record; everything
        before it is good.
    @ivar damage: the damage found at C{end}, or L{None} if the buffer ends
        cleanly there (or only zeros follow).
    """

    entries: list[Entry]
    offsets: list[int]
    end: int
    damage: FormatError | None


def segment_name(first_index: int) -> str:
    """
    The file name of the segment whose first record has index
    C{first_index}; zero padded so that names sort like indexes.
    """
    return f"log-{first_index:020d}.seg"


def parse_segment_name(name: str) -> int | None:
    """
    The first index encoded in a segment file name, or L{None} if C{name} is
    not a segment file.
    """
    m = _NAME.match(name)
    return int(m.group(1)) if m else None


def segment_header() -> bytes:
    """
    The bytes every segment file starts with.
    """
    return _FILE_HEADER.pack(SEGMENT_MAGIC, SEGMENT_VERSION)


def check_segment_header(buf: bytes) -> FormatError | None:
    """
    Check the header of a segment held in C{buf}.

    @return: L{None} if the header is good, else the problem (at offset 0).
    """
    if len(buf) < HEADER_SIZE:
        return FormatError(0, f"segment header truncated ({len(buf)} bytes)")
    magic, version = _FILE_HEADER.unpack_from(buf, 0)
    if magic != SEGMENT_MAGIC:
        return FormatError(0, f"bad segment magic {magic!r}")
    if version != SEGMENT_VERSION:
        return BadRecord(0, f"unsupported segment format version {version}")
    return None


def encode_records(entries: Sequence[Entry], base_offset: int) -> tuple[bytes, list[int]]:
    """
    Encode C{entries} as consecutive records.

    This is the hot path of every L{save<raft3d.raft.IRaftStorage.save>}: one
    C{struct} call per header, the checksum chained over header and payload
    without concatenating them, and a single C{b"".join} at the end.

    @param base_offset: the file offset the first record will be written at.
    @return: the bytes, and the offset of each record.
    @raise ValueError: if an index, term or type does not fit its field.
    """
    parts: list[bytes] = []
    offsets: list[int] = []
    append = parts.append
    pack_body = _BODY_HEAD.pack
    pack_head = _LEN_CRC.pack
    crc32 = zlib.crc32
    pos = base_offset
    try:
        for e in entries:
            data = e.data
            body = pack_body(e.index, e.term, e.type)
            n = len(data)
            append(pack_head(_MIN_LENGTH + n, crc32(data, crc32(body))))
            append(body)
            append(data)
            offsets.append(pos)
            pos += RECORD_OVERHEAD + n
    except struct.error as e:
        raise ValueError(f"entry does not fit the record format: {e}") from e
    return b"".join(parts), offsets


def scan_records(buf: bytes, first_index: int, start: int = HEADER_SIZE) -> ScanResult:
    """
    Decode records from C{buf[start:]} until the end, the zero fill or the
    first damage.

    @param first_index: the index the first record must have; each later
        record must have the next one.
    """
    entries: list[Entry] = []
    offsets: list[int] = []
    n = len(buf)
    mv = memoryview(buf)
    unpack = _RECORD_HEAD.unpack_from
    crc32 = zlib.crc32
    types = _TYPES
    pos = start
    expected = first_index
    damage: FormatError | None = None
    while pos < n:
        if n - pos < RECORD_OVERHEAD:
            if not is_zero_fill(buf, pos):
                damage = FormatError(pos, f"record header truncated ({n - pos} bytes left)")
            break
        length, crc, index, term, etype = unpack(buf, pos)
        if length < _MIN_LENGTH:
            if length or not is_zero_fill(buf, pos):
                damage = FormatError(pos, f"impossible record length {length}")
            break
        end = pos + 4 + length
        if end > n:
            damage = FormatError(pos, f"record of length {length} runs past end of file")
            break
        if crc32(mv[pos + 8 : end]) != crc:
            damage = FormatError(pos, "record checksum mismatch")
            break
        if index != expected:
            damage = BadRecord(pos, f"record has index {index}, expected {expected}")
            break
        kind = types.get(etype)
        if kind is None:
            damage = BadRecord(pos, f"record has unknown entry type {etype}")
            break
        entries.append(Entry(index, term, kind, buf[pos + RECORD_OVERHEAD : end]))
        offsets.append(pos)
        pos = end
        expected += 1
    return ScanResult(entries, offsets, pos, damage)


def is_zero_fill(buf: bytes, offset: int) -> bool:
    """
    Whether every byte of C{buf} from C{offset} on is zero.
    """
    return buf.count(0, offset) == len(buf) - offset


def _common_prefix(a: bytes, b: bytes) -> bytes:
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[:i]


def find_intact_record(buf: bytes, after: int, lo_index: int) -> int | None:
    """
    Look for an intact record starting anywhere after offset C{after}.

    This is what tells a torn tail from corruption: after a torn write
    nothing intact follows the damage, while a flipped bit in the middle of
    the log leaves good records behind it (even when the flip hit a length
    field, so that the record boundaries are lost).

    A candidate must have a plausible length, an index between C{lo_index}
    and C{lo_index} plus the number of minimal records that fit between
    C{after} and it, and a matching checksum.  A regular expression on the
    high bytes of the index field skips most offsets in C, so this stays
    fast even on a large damaged segment.

    @return: the offset of the first such record, or L{None}.
    """
    n = len(buf)
    if n - after - 1 < RECORD_OVERHEAD:
        return None
    hi_max = lo_index + (n - after) // RECORD_OVERHEAD
    prefix = _common_prefix(_U64.pack(lo_index), _U64.pack(min(hi_max, 2**64 - 1)))
    pattern = re.compile(b"(?=(?!\\x00\\x00\\x00\\x00).{8}" + re.escape(prefix) + b")", re.DOTALL)
    mv = memoryview(buf)
    unpack_lc = _LEN_CRC.unpack_from
    unpack_q = _U64.unpack_from
    last_start = n - RECORD_OVERHEAD
    for m in pattern.finditer(buf, after + 1):
        p = m.start()
        if p > last_start:
            break
        length, crc = unpack_lc(buf, p)
        if length < _MIN_LENGTH or p + 4 + length > n:
            continue
        (index,) = unpack_q(buf, p + 8)
        if not lo_index <= index <= lo_index + (p - after) // RECORD_OVERHEAD:
            continue
        if zlib.crc32(mv[p + 8 : p + 4 + length]) == crc:
            return p
    return None
