# -*- test-case-name: tests.storage.test_snapshots -*-
"""
The byte format of snapshot files, as pure functions on C{bytes}.

A snapshot file is::

    magic      6 bytes  b"R3DSNP"
    version    u16 BE   1
    meta_len   u32 BE
    meta       CBOR of SnapshotMeta.to_wire()
    data_len   u64 BE
    data_crc   u32 BE   zlib.crc32 of the payload
    head_crc   u32 BE   zlib.crc32 of every byte before this field
    payload    data_len bytes

The header has its own checksum so that a damaged metadata block is told
apart from a damaged payload, and the offset reported points at the part
that is wrong.  The file is named C{snapshot-<term>-<index>.snap} with both
numbers zero padded to 20 digits, so that the name alone says which snapshot
is newest even when its content is damaged.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Any

import cbor2

from ..raft._types import SnapshotMeta
from ._errors import FormatError

SNAPSHOT_MAGIC = b"R3DSNP"
SNAPSHOT_VERSION = 1
_START = struct.Struct(">6sHI")
_END = struct.Struct(">QII")
_NAME = re.compile(r"^snapshot-(\d{20})-(\d{20})\.snap$")


def snapshot_name(meta: SnapshotMeta) -> str:
    """
    The file name of the snapshot described by C{meta}.
    """
    return f"snapshot-{meta.term:020d}-{meta.index:020d}.snap"


def parse_snapshot_name(name: str) -> tuple[int, int] | None:
    """
    The C{(index, term)} encoded in a snapshot file name (in the order that
    sorts newest last), or L{None} if C{name} is not a snapshot file.
    """
    m = _NAME.match(name)
    return (int(m.group(2)), int(m.group(1))) if m else None


def encode_snapshot_header(meta: SnapshotMeta, data: bytes) -> bytes:
    """
    Everything that precedes the payload in a snapshot file; the writer
    writes C{data} after it without copying it into one buffer.
    """
    meta_bytes: bytes = cbor2.dumps(meta.to_wire())
    start = _START.pack(SNAPSHOT_MAGIC, SNAPSHOT_VERSION, len(meta_bytes)) + meta_bytes
    head = start + struct.pack(">QI", len(data), zlib.crc32(data))
    return head + struct.pack(">I", zlib.crc32(head))


def encode_snapshot(meta: SnapshotMeta, data: bytes) -> bytes:
    """
    A whole snapshot file.
    """
    return encode_snapshot_header(meta, data) + data


def decode_snapshot(buf: bytes) -> tuple[SnapshotMeta, bytes]:
    """
    Decode a whole snapshot file.

    @raise FormatError: with the offset of the first damaged part.
    """
    n = len(buf)
    if n < _START.size:
        raise FormatError(0, f"snapshot header truncated ({n} bytes)")
    magic, version, meta_len = _START.unpack_from(buf, 0)
    if magic != SNAPSHOT_MAGIC:
        raise FormatError(0, f"bad snapshot magic {magic!r}")
    if version != SNAPSHOT_VERSION:
        raise FormatError(6, f"unsupported snapshot format version {version}")
    end_at = _START.size + meta_len
    if end_at + _END.size > n:
        raise FormatError(8, f"snapshot metadata length {meta_len} runs past end of file")
    data_len, data_crc, head_crc = _END.unpack_from(buf, end_at)
    crc_at = end_at + 12
    if zlib.crc32(memoryview(buf)[:crc_at]) != head_crc:
        raise FormatError(0, "snapshot header checksum mismatch")
    try:
        wire: Any = cbor2.loads(buf[_START.size : end_at])
        meta = SnapshotMeta.from_wire(wire)
    except Exception as e:
        raise FormatError(_START.size, f"undecodable snapshot metadata: {e}")
    payload_at = crc_at + 4
    if payload_at + data_len != n:
        raise FormatError(
            payload_at, f"snapshot payload is {n - payload_at} bytes, header says {data_len}"
        )
    data = buf[payload_at:]
    if zlib.crc32(data) != data_crc:
        raise FormatError(payload_at, "snapshot payload checksum mismatch")
    return meta, data
