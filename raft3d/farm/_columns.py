# -*- test-case-name: tests.farm.test_columns -*-
"""
Compact columns for the farm's tables.

A farm may hold a million objects on every replica, and a Python object per
field costs far more than the field: a uuid is a 96-byte C{str}, a
timestamp an 80-byte one, a small record object 100 bytes more, and a
C{dict} entry from id to position another 70 with its C{int}.  The tables
of L{raft3d.farm._tables} therefore keep each field of each kind in one
column indexed by creation sequence number, and these columns keep their
values as UTF-8 bytes in one buffer: a uuid costs 36 bytes plus about 12 for
its slot in L{IdIndex}, a timestamp 24.  Records are built only when read.

Every column gives back exactly the string it was given (any text that
UTF-8 can encode), so the compact form is invisible outside the state.
"""

from __future__ import annotations

from array import array
from collections import Counter
from itertools import accumulate, islice
from typing import Final, Iterable, Iterator, Sequence

STAMP_WIDTH: Final = 24
"""
UTF-8 length of the timestamps the API makes (C{2026-11-29T01:02:03.456Z}).
"""

ID_WIDTH: Final = 36
"""
UTF-8 length of the ids the API makes (uuid4 strings).
"""

_decode = bytearray.decode

_hash = hash
"""
The hash of L{IdIndex} (tests replace it with a poor one to force
collisions).
"""


def _slices(start: int, stop: int, width: int) -> Iterator[slice]:
    """
    Consecutive slices of C{width} covering C{start} to C{stop}.
    """
    return map(slice, range(start, stop, width), range(start + width, stop + width, width))


def _check_seqs(seqs: Sequence[int], length: int) -> None:
    if seqs and not (0 <= min(seqs) and max(seqs) < length):
        raise IndexError(f"sequence numbers out of range 0..{length - 1}")


class FixedTextColumn:
    """
    Strings of one usual UTF-8 length, one per sequence number, each
    replaceable.

    A value whose UTF-8 form is C{width} bytes long takes exactly that many
    bytes of one buffer; any other value goes to a side map, its slot left
    blank.  Where a value goes depends on the value alone, so equal columns
    hold equal bytes.
    """

    __slots__ = ("_width", "_blank", "_buffer", "_other")

    def __init__(self, width: int) -> None:
        self._width = width
        self._blank = bytes(width)
        self._buffer = bytearray()
        self._other: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self._buffer) // self._width

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FixedTextColumn):
            return NotImplemented
        return (
            self._width == other._width
            and self._buffer == other._buffer
            and self._other == other._other
        )

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> FixedTextColumn:
        """
        An equal column that no later change to this one affects: two
        C-level copies (the buffer and the side map) and no per-value work,
        so that freezing a million timestamps for a snapshot takes
        milliseconds.
        """
        copy = FixedTextColumn(self._width)
        copy._buffer = self._buffer[:]
        copy._other = self._other.copy()
        return copy

    def append(self, value: str) -> None:
        """
        Add the value of the next sequence number.
        """
        encoded = value.encode("utf-8")
        if len(encoded) == self._width:
            self._buffer += encoded
        else:
            self._other[len(self)] = value
            self._buffer += self._blank

    def extend(self, values: Sequence[str]) -> None:
        """
        Add the values of the next sequence numbers: one copy when all are
        ASCII and of the usual width, as a snapshot's usually are.
        """
        joined = "".join(values)
        if joined.isascii() and set(map(len, values)) == {self._width}:
            self._buffer += joined.encode("ascii")
        else:
            for value in values:
                self.append(value)

    def __setitem__(self, seq: int, value: str) -> None:
        width = self._width
        start = seq * width
        if not 0 <= start < len(self._buffer):
            raise IndexError(seq)
        encoded = value.encode("utf-8")
        if len(encoded) == width:
            self._buffer[start : start + width] = encoded
            self._other.pop(seq, None)
        else:
            self._buffer[start : start + width] = self._blank
            self._other[seq] = value

    def __getitem__(self, seq: int) -> str:
        if self._other:
            value = self._other.get(seq)
            if value is not None:
                return value
        width = self._width
        start = seq * width
        if not 0 <= start < len(self._buffer):
            raise IndexError(seq)
        return self._buffer[start : start + width].decode("utf-8")

    def pick(self, seqs: Sequence[int]) -> list[str]:
        """
        The values of C{seqs}, in one call (a page of records).
        """
        _check_seqs(seqs, len(self))
        buffer, width = self._buffer, self._width
        values = [buffer[seq * width : (seq + 1) * width].decode("utf-8") for seq in seqs]
        if self._other:
            other = self._other.get
            for n, seq in enumerate(seqs):
                value = other(seq)
                if value is not None:
                    values[n] = value
        return values

    def values(self, start: int, stop: int) -> list[str]:
        """
        The values of sequence numbers C{start} to C{stop} (excluded), with
        a few calls for the whole range (snapshots read every value).
        """
        start, stop, _ = slice(start, stop).indices(len(self))
        width = self._width
        raw = self._buffer[start * width : stop * width]
        if raw.isascii():
            text = raw.decode("ascii")
            values = list(map(text.__getitem__, _slices(0, len(text), width)))
        else:
            values = list(map(_decode, map(raw.__getitem__, _slices(0, len(raw), width))))
        if self._other:
            other = self._other.get
            for seq in range(start, stop):
                value = other(seq)
                if value is not None:
                    values[seq - start] = value
        return values


class TextColumn:
    """
    Strings of any length, appended once and never changed, kept as UTF-8
    in one buffer with an array of end offsets: a 40-character path costs
    48 bytes instead of a 96-byte C{str} and its 8-byte reference.
    """

    __slots__ = ("_buffer", "_ends")

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._buffer = bytearray()
        self._ends = array("q", [0])
        self.extend(values)

    def __len__(self) -> int:
        return len(self._ends) - 1

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TextColumn):
            return NotImplemented
        return self._ends == other._ends and self._buffer == other._buffer

    __hash__ = None  # type: ignore[assignment]

    def append(self, value: str) -> None:
        """
        Add the value of the next sequence number.
        """
        self._buffer += value.encode("utf-8")
        self._ends.append(len(self._buffer))

    def extend(self, values: Iterable[str]) -> None:
        """
        Add the values of the next sequence numbers.
        """
        encoded = [value.encode("utf-8") for value in values]
        self._ends.extend(islice(accumulate(map(len, encoded), initial=self._ends[-1]), 1, None))
        self._buffer += b"".join(encoded)

    def __getitem__(self, seq: int) -> str:
        if not 0 <= seq < len(self._ends) - 1:
            raise IndexError(seq)
        ends = self._ends
        return self._buffer[ends[seq] : ends[seq + 1]].decode("utf-8")

    def pick(self, seqs: Sequence[int]) -> list[str]:
        """
        The values of C{seqs}, in one call (a page of records).
        """
        _check_seqs(seqs, len(self))
        buffer, ends = self._buffer, self._ends
        return [buffer[ends[seq] : ends[seq + 1]].decode("utf-8") for seq in seqs]

    def values(self, start: int, stop: int) -> list[str]:
        """
        The values of sequence numbers C{start} to C{stop} (excluded), with
        a few calls for the whole range (snapshots read every value).
        """
        start, stop, _ = slice(start, stop).indices(len(self))
        ends = self._ends
        base = ends[start]
        raw = self._buffer[base : ends[stop]]
        bounds = ends[start : stop + 1]
        if base:
            bounds = array("q", map(base.__rsub__, bounds))
        return list(map(_decode, map(raw.__getitem__, map(slice, bounds, islice(bounds, 1, None)))))


class IdIndex:
    """
    The ids of one kind of object, by sequence number and back: what a
    C{list} of ids and a C{dict} from id to sequence number would do, in
    about 50 bytes per id instead of about 180.

    The ids are a L{FixedTextColumn}; the way back is an open-addressing
    hash table of sequence numbers (C{array}s of 32-bit slots, at most half
    full, probed linearly) keyed by Python's own C{str} hash.  That hash is
    salted per process, which is harmless: the table is never saved and
    nothing iterates it.  The table is cut into L{_SHARDS} shards by the
    low bits of the hash, each growing on its own, so that growing never
    stalls the state machine for more than a few milliseconds, where one
    table of a million slots would take a second to rebuild in Python.
    """

    __slots__ = ("ids", "_shards", "_counts")

    def __init__(self) -> None:
        self.ids = FixedTextColumn(ID_WIDTH)
        self._shards = [_NO_SLOTS] * _SHARDS
        self._counts = array("i", bytes(4 * _SHARDS))

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdIndex):
            return NotImplemented
        return self.ids == other.ids

    __hash__ = None  # type: ignore[assignment]

    def __contains__(self, object_id: str) -> bool:
        return self.get(object_id) is not None

    def get(self, object_id: str) -> int | None:
        """
        The sequence number of C{object_id}, or L{None} (also for anything
        that cannot be an id: not a C{str}, or with lone surrogates).
        """
        if type(object_id) is not str:
            return None
        digest = _hash(object_id)
        slots = self._shards[digest & _SHARD_MASK]
        mask = len(slots) - 1
        i = (digest >> _SHARD_BITS) & mask
        seq = slots[i]
        if seq < 0:
            return None
        ids = self.ids
        # No stored id has a surrogate (they are UTF-8), so one that comes
        # through "surrogatepass" matches nothing, as it should.
        key = object_id.encode("utf-8", "surrogatepass")
        width = len(key)
        if width != ids._width:
            # Stored aside, if at all.
            other = ids._other
            while seq >= 0:
                if other.get(seq) == object_id:
                    return seq
                i = (i + 1) & mask
                seq = slots[i]
            return None
        # Compare bytes in place rather than decode each candidate; a
        # match on a blank slot of a value stored aside does not count.
        buffer, other = ids._buffer, ids._other
        while seq >= 0:
            start = seq * width
            if buffer[start : start + width] == key and not (other and seq in other):
                return seq
            i = (i + 1) & mask
            seq = slots[i]
        return None

    def add(self, object_id: str) -> int:
        """
        Add C{object_id}, which the caller knows to be new; return its
        sequence number.
        """
        seq = len(self.ids)
        self.ids.append(object_id)
        digest = _hash(object_id)
        shard = digest & _SHARD_MASK
        size = self._counts[shard] + 1
        self._counts[shard] = size
        slots = self._shards[shard]
        if 2 * size > len(slots) or slots is _NO_SLOTS:
            slots = self._shards[shard] = self._regrow(slots)
        _place(slots, digest, seq)
        return seq

    def extend(self, object_ids: Sequence[str]) -> None:
        """
        Add C{object_ids} without indexing them (for restore, which adds
        every id before it looks any up): L{reindex} must follow.
        """
        self.ids.extend(object_ids)

    def reindex(self) -> str | None:
        """
        Rebuild the hash table from the ids, each shard at most half full.

        @return: the first id met twice, or L{None}.  If there is one, the
            index is unusable.
        """
        ids = self.ids
        step = 4096
        digests = array("q")
        for start in range(0, len(ids), step):
            digests.extend(map(_hash, ids.values(start, start + step)))
        sizes = Counter(map(_SHARD_MASK.__and__, digests))
        self._counts = array("i", [sizes[shard] for shard in range(_SHARDS)])
        shards = self._shards = [_empty_slots(size) for size in self._counts]
        for start in range(0, len(ids), step):
            values = ids.values(start, start + step)
            for seq, object_id, digest in zip(
                range(start, start + len(values)),
                values,
                digests[start : start + step],
                strict=True,
            ):
                slots = shards[digest & _SHARD_MASK]
                mask = len(slots) - 1
                i = (digest >> _SHARD_BITS) & mask
                while (other := slots[i]) >= 0:
                    if digests[other] == digest and ids[other] == object_id:
                        return object_id
                    i = (i + 1) & mask
                slots[i] = seq
        return None

    def _regrow(self, slots: array[int]) -> array[int]:
        """
        A shard twice the size of C{slots} holding the same ids.
        """
        bigger = array("i", [_EMPTY]) * (2 * len(slots))
        ids = self.ids
        for seq in slots:
            if seq >= 0:
                _place(bigger, _hash(ids[seq]), seq)
        return bigger


_EMPTY: Final = -1
_SHARD_BITS: Final = 8
_SHARDS: Final = 1 << _SHARD_BITS
_SHARD_MASK: Final = _SHARDS - 1


_NO_SLOTS: Final = array("i", [_EMPTY]) * 8
"""
The slots of every empty shard: shared, so that an empty index is cheap to
make, and never written (L{IdIndex.add} replaces it first).
"""


def _empty_slots(size: int) -> array[int]:
    """
    Free slots for C{size} ids: a power of two, at least twice C{size}
    (L{_NO_SLOTS} for none).
    """
    if not size:
        return _NO_SLOTS
    slots = 8
    while slots < 2 * size:
        slots *= 2
    return array("i", [_EMPTY]) * slots


def _place(slots: array[int], digest: int, seq: int) -> None:
    """
    Put C{seq} in the first free slot of a shard for an id hashing to
    C{digest}.
    """
    mask = len(slots) - 1
    i = (digest >> _SHARD_BITS) & mask
    while slots[i] >= 0:
        i = (i + 1) & mask
    slots[i] = seq


class Interner:
    """
    One shared C{str} per distinct value.

    Company, model, colour and material names repeat across thousands of
    objects, but each command decoded from the log carries its own copy;
    keeping only the first copy of each saves about 60 bytes per field per
    object.  Names are never forgotten: objects are never deleted either.
    """

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    def __call__(self, value: str) -> str:
        return self._values.setdefault(value, value)

    def many(self, values: Iterable[str]) -> list[str]:
        """
        L{__call__} of each value.
        """
        setdefault = self._values.setdefault
        return [setdefault(value, value) for value in values]
