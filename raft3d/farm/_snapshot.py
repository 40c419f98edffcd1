# -*- test-case-name: tests.farm.test_snapshot -*-
"""
Streaming CBOR for farm snapshots.

A snapshot is one CBOR map whose big values are arrays of rows.  Encoding
or decoding it as one Python object would build every row of a million
objects at once (about 600 bytes each: more than the state itself) and leave
the heap fragmented afterwards.  These functions write and read the same
bytes a row at a time: L{encode_map} (or L{iter_map}, in chunks) gives exactly what
C{cbor2.dumps(doc, canonical=True)} gives for the equivalent document, and
L{decode_map} hands each row of the chosen arrays to a callback as it is
decoded.
"""

from __future__ import annotations

import io
from typing import Any, Callable, Final, Iterable, Iterator, Mapping, Sequence

import attrs
import cbor2

_CHUNK: Final = 1024
"""
Rows encoded per call, and at most as many decoded per batch: enough to
amortise a call, small enough to stay out of the way.
"""

_ARRAY: Final = 4
_MAP: Final = 5


class MalformedSnapshot(ValueError):
    """
    The document is valid CBOR but not of the expected shape.
    """


class NotStreamable(Exception):
    """
    The document is not what L{decode_map} streams: a definite-length map
    without repeated keys whose streamed values are definite-length arrays,
    as canonical CBOR is.  Decode it whole instead, which gives exactly
    C{cbor2.loads}'s reading of any other document.
    """


@attrs.frozen
class Rows:
    """
    An array value of L{encode_map}, produced a batch at a time.

    @ivar count: how many rows there are.
    @ivar batch: returns the rows from C{start} to C{stop} (excluded), each
        encodable by C{cbor2}.
    """

    count: int
    batch: Callable[[int, int], Sequence[Any]]


def head(major: int, length: int) -> bytes:
    """
    The CBOR head of major type C{major} with argument C{length}, in its
    shortest form (as every canonical encoder writes it).
    """
    if length < 0:
        raise ValueError(f"negative length {length}")
    top = major << 5
    if length < 24:
        return bytes([top | length])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if length < 1 << (8 * size):
            return bytes([top | info]) + length.to_bytes(size, "big")
    raise ValueError(f"length {length} does not fit in a CBOR head")


def _canonical_order(keys: Iterable[str]) -> list[str]:
    # Let cbor2 say which order its canonical encoder uses.
    order: dict[str, None] = cbor2.loads(cbor2.dumps(dict.fromkeys(keys), canonical=True))
    return list(order)


def encode_map(doc: Mapping[str, Any]) -> bytes:
    """
    Encode C{doc} as canonical CBOR, the rows of each L{Rows} value a batch
    at a time (L{iter_map}, joined).

    @raise ValueError: if a L{Rows} batch has the wrong number of rows.
    """
    out = io.BytesIO()
    for chunk in iter_map(doc):
        out.write(chunk)
    return out.getvalue()


def iter_map(doc: Mapping[str, Any]) -> Iterator[bytes | memoryview]:
    """
    The bytes of L{encode_map} in chunks, each made when asked for: a
    batch of rows at most, so that they can be written out as they come.

    @raise ValueError: if a L{Rows} batch has the wrong number of rows.
    """
    yield head(_MAP, len(doc))
    for key in _canonical_order(doc):
        yield cbor2.dumps(key, canonical=True)
        value = doc[key]
        if not isinstance(value, Rows):
            yield cbor2.dumps(value, canonical=True)
            continue
        yield head(_ARRAY, value.count)
        for start in range(0, value.count, _CHUNK):
            stop = min(start + _CHUNK, value.count)
            rows = value.batch(start, stop)
            if len(rows) != stop - start:
                raise ValueError(f"{key}: {len(rows)} rows for {start}..{stop}")
            encoded = cbor2.dumps(rows, canonical=True)
            yield memoryview(encoded)[len(head(_ARRAY, len(rows))) :]


def _read_head(decoder: cbor2.CBORDecoder) -> tuple[int, int | None]:
    """
    Read one CBOR head: its major type and argument (L{None} for an
    indefinite length).
    """
    first = decoder.read(1)[0]
    major, info = first >> 5, first & 0x1F
    if info < 24:
        return major, info
    if 24 <= info <= 27:
        return major, int.from_bytes(decoder.read(1 << (info - 24)), "big")
    if info == 31:
        return major, None
    raise cbor2.CBORDecodeError(f"invalid CBOR head 0x{first:02x}")


def decode_map(
    data: bytes,
    streamed: Mapping[str, Callable[[list[Any]], object]],
    *,
    stream: bool = True,
) -> tuple[dict[Any, Any], frozenset[str]]:
    """
    Decode the CBOR map in C{data}.  The items of the array under each key
    of C{streamed} go, in order and in non-empty batches of at most
    C{_CHUNK}, to that key's callback instead of being kept.  Bytes after
    the map are ignored, as C{cbor2.loads} does.

    @param stream: decode row by row (L{False}: decode the whole document
        first, for documents that raised L{NotStreamable}).
    @return: the other entries of the map, and the streamed keys that were
        present.
    @raise MalformedSnapshot: if not C{stream} and C{data} is not a map or a
        streamed key does not hold an array.
    @raise NotStreamable: if C{stream} and the document cannot be streamed;
        callbacks may have been called for some rows already.
    @raise cbor2.CBORDecodeError: if C{data} is not valid CBOR.
    """
    if not stream:
        doc = cbor2.loads(data)
        if not isinstance(doc, dict):
            raise MalformedSnapshot("not a CBOR map")
        seen = set()
        for key, consume in streamed.items():
            if key in doc:
                seen.add(key)
                rows = doc.pop(key)
                if not isinstance(rows, list):
                    raise MalformedSnapshot(f"{key} must be an array")
                for start in range(0, len(rows), _CHUNK):
                    consume(rows[start : start + _CHUNK])
        return doc, frozenset(seen)
    decoder = cbor2.CBORDecoder(io.BytesIO(data))
    major, length = _read_head(decoder)
    if major != _MAP or length is None:
        raise NotStreamable("not a definite-length map")
    others: dict[Any, Any] = {}
    seen = set()
    for _ in range(length):
        key = decoder.decode(immutable=True)
        if key in others or key in seen:
            raise NotStreamable(f"duplicate key {key!r:.80}")
        callback = streamed.get(key) if isinstance(key, str) else None
        if callback is None:
            others[key] = decoder.decode()
            continue
        seen.add(key)
        major, count = _read_head(decoder)
        if major != _ARRAY or count is None:
            raise NotStreamable(f"{key} is not a definite-length array")
        decode = decoder.decode
        for start in range(0, count, _CHUNK):
            callback([decode() for _ in range(min(_CHUNK, count - start))])
    return others, frozenset(seen)
