# -*- test-case-name: tests.farm.test_tables,tests.farm.test_freeze -*-
"""
Column storage of printers, filaments and print jobs.

Each kind is a table of columns indexed by creation sequence number: an
L{IdIndex} (ids both ways), compact columns for the other fields
(L{raft3d.farm._columns}), and the derived indexes (jobs per printer, per
filament and per status; reservations).  A job refers to its printer and
filament by sequence number: 4 bytes each instead of a reference to a
C{str}.  The frozen records of L{raft3d.farm._records} are built on demand
(C{record}, C{records}), so what a reader holds never changes under it;
equal tables hold equal columns.

The tables only store: every rule (validation, conflicts, reservations,
status transitions) is checked by L{raft3d.farm._state.FarmState} before it
calls them.  An object costs about 200 bytes this way, against about 650 as
a record object with its fields as separate Python objects in C{dict}s.

Snapshots are encoded in a worker thread while the reactor thread keeps
applying commands, from rows frozen by C{frozen_rows} between two commands.
Freezing must take milliseconds at a million objects, so it does no work
per row: most columns only ever grow (ids, names, weights, creation
stamps, references), and rows below the frozen count never change in them,
so they are shared; the few that change in place (a job's status and
update stamp, a filament's remaining weight and update stamp) are copied
whole, one C-level copy each.  Sharing is safe under the GIL: the encoder
reads a shared column one slice at a time, each slice copied by one C call,
and never holds a buffer export that an append in the other thread would
trip over.
"""

from __future__ import annotations

from array import array
from itertools import compress
from typing import Any, Iterable, Sequence

import attrs

from ._columns import STAMP_WIDTH, FixedTextColumn, IdIndex, Interner, TextColumn
from ._index import SortedSeqs
from ._records import Filament, Printer, PrintJob
from ._snapshot import Rows
from ._status import RESERVING_STATES, JobStatus

STATUSES: tuple[JobStatus, ...] = tuple(JobStatus)
"""
Job statuses by the code a job table stores (one byte each).
"""

STATUS_CODES: dict[JobStatus, int] = {status: code for code, status in enumerate(STATUSES)}

_STATUS_VALUES: tuple[str, ...] = tuple(status.value for status in STATUSES)

_RESERVING_CODES: frozenset[int] = frozenset(STATUS_CODES[s] for s in RESERVING_STATES)


def _stamps() -> FixedTextColumn:
    return FixedTextColumn(STAMP_WIDTH)


def _add_to(lists: list[array[int] | None], owner: int, seq: int) -> None:
    """
    Append C{seq} to the job list of C{owner}, making the list on first use
    (most printers and spools have few jobs; none get an empty array).
    """
    jobs = lists[owner]
    if jobs is None:
        lists[owner] = array("i", [seq])
    else:
        jobs.append(seq)


@attrs.define(repr=False)
class Printers:
    """
    The printers' columns.
    """

    index: IdIndex = attrs.field(factory=IdIndex)
    company: list[str] = attrs.field(factory=list)
    model: list[str] = attrs.field(factory=list)
    created_at: FixedTextColumn = attrs.field(factory=_stamps)
    updated_at: FixedTextColumn = attrs.field(factory=_stamps)
    jobs: list[array[int] | None] = attrs.field(factory=list, eq=False)
    _names: Interner = attrs.field(factory=Interner, eq=False)

    def __len__(self) -> int:
        return len(self.index)

    def add(self, printer_id: str, company: str, model: str, created: str, updated: str) -> int:
        """
        Store a new printer; return its sequence number.
        """
        seq = self.index.add(printer_id)
        self.company.append(self._names(company))
        self.model.append(self._names(model))
        self.created_at.append(created)
        self.updated_at.append(updated)
        self.jobs.append(None)
        return seq

    def extend(
        self,
        ids: Sequence[str],
        company: Sequence[str],
        model: Sequence[str],
        created: Sequence[str],
        updated: Sequence[str],
    ) -> None:
        """
        Store new printers in bulk, their ids not yet indexed (for
        restore): C{index.reindex()} must follow.
        """
        self.index.extend(ids)
        self.company.extend(self._names.many(company))
        self.model.extend(self._names.many(model))
        self.created_at.extend(created)
        self.updated_at.extend(updated)
        self.jobs.extend([None] * len(ids))

    def record(self, seq: int) -> Printer:
        return Printer(
            self.index.ids[seq],
            self.company[seq],
            self.model[seq],
            self.created_at[seq],
            self.updated_at[seq],
            seq,
        )

    def records(self, seqs: Sequence[int]) -> list[Printer]:
        """
        The records of C{seqs}, a column at a time (a page).
        """
        return list(
            map(
                Printer,
                self.index.ids.pick(seqs),
                map(self.company.__getitem__, seqs),
                map(self.model.__getitem__, seqs),
                self.created_at.pick(seqs),
                self.updated_at.pick(seqs),
                seqs,
            )
        )

    def frozen_rows(self) -> Rows:
        """
        The snapshot rows of the printers there are now, to read later
        (from another thread too) while this table keeps changing.  No
        column of a printer changes once it is added, so this only
        remembers the count.
        """
        return Rows(len(self), self.rows)

    def rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        """
        The snapshot rows (L{Printer.to_row}) of sequence numbers C{start}
        to C{stop} (excluded).
        """
        return list(
            zip(
                self.index.ids.values(start, stop),
                self.company[start:stop],
                self.model[start:stop],
                self.created_at.values(start, stop),
                self.updated_at.values(start, stop),
                strict=True,
            )
        )


@attrs.define(repr=False)
class Filaments:
    """
    The filaments' columns, with the weight each has reserved by its
    Queued and Running jobs.
    """

    index: IdIndex = attrs.field(factory=IdIndex)
    type: list[str] = attrs.field(factory=list)
    color: list[str] = attrs.field(factory=list)
    total: array[int] = attrs.field(factory=lambda: array("q"))
    remaining: array[int] = attrs.field(factory=lambda: array("q"))
    created_at: FixedTextColumn = attrs.field(factory=_stamps)
    updated_at: FixedTextColumn = attrs.field(factory=_stamps)
    reserved: array[int] = attrs.field(factory=lambda: array("q"))
    jobs: list[array[int] | None] = attrs.field(factory=list, eq=False)
    _names: Interner = attrs.field(factory=Interner, eq=False)

    def __len__(self) -> int:
        return len(self.index)

    def add(
        self,
        filament_id: str,
        kind: str,
        color: str,
        total: int,
        remaining: int,
        created: str,
        updated: str,
    ) -> int:
        """
        Store a new filament, nothing reserved; return its sequence number.
        """
        seq = self.index.add(filament_id)
        self.type.append(self._names(kind))
        self.color.append(self._names(color))
        self.total.append(total)
        self.remaining.append(remaining)
        self.created_at.append(created)
        self.updated_at.append(updated)
        self.reserved.append(0)
        self.jobs.append(None)
        return seq

    def extend(
        self,
        ids: Sequence[str],
        kinds: Sequence[str],
        colors: Sequence[str],
        totals: Sequence[int],
        remainings: Sequence[int],
        created: Sequence[str],
        updated: Sequence[str],
    ) -> None:
        """
        Store new filaments in bulk, nothing reserved and their ids not yet
        indexed (for restore): C{index.reindex()} must follow.
        """
        self.index.extend(ids)
        self.type.extend(self._names.many(kinds))
        self.color.extend(self._names.many(colors))
        self.total.extend(totals)
        self.remaining.extend(remainings)
        self.created_at.extend(created)
        self.updated_at.extend(updated)
        self.reserved.frombytes(bytes(8 * len(ids)))
        self.jobs.extend([None] * len(ids))

    def record(self, seq: int) -> Filament:
        return Filament(
            self.index.ids[seq],
            self.type[seq],
            self.color[seq],
            self.total[seq],
            self.remaining[seq],
            self.created_at[seq],
            self.updated_at[seq],
            seq,
        )

    def records(self, seqs: Sequence[int]) -> list[Filament]:
        """
        The records of C{seqs}, a column at a time (a page).
        """
        return list(
            map(
                Filament,
                self.index.ids.pick(seqs),
                map(self.type.__getitem__, seqs),
                map(self.color.__getitem__, seqs),
                map(self.total.__getitem__, seqs),
                map(self.remaining.__getitem__, seqs),
                self.created_at.pick(seqs),
                self.updated_at.pick(seqs),
                seqs,
            )
        )

    def frozen_rows(self) -> Rows:
        """
        The snapshot rows of the filaments there are now, to read later
        (from another thread too) while this table keeps changing: a Done
        job changes its filament's C{remaining} and C{updated_at} in place,
        so those two columns are copied; the others only grow and are
        shared.
        """
        view = attrs.evolve(self, remaining=self.remaining[:], updated_at=self.updated_at.copy())
        return Rows(len(self), view.rows)

    def rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        """
        The snapshot rows (L{Filament.to_row}) of sequence numbers C{start}
        to C{stop} (excluded).
        """
        return list(
            zip(
                self.index.ids.values(start, stop),
                self.type[start:stop],
                self.color[start:stop],
                self.total[start:stop],
                self.remaining[start:stop],
                self.created_at.values(start, stop),
                self.updated_at.values(start, stop),
                strict=True,
            )
        )


def _status_index() -> dict[JobStatus, SortedSeqs]:
    return {status: SortedSeqs() for status in STATUSES}


@attrs.define(repr=False)
class Jobs:
    """
    The print jobs' columns and the status index.  C{printer} and
    C{filament} hold sequence numbers in the C{printers} and C{filaments}
    tables given at creation.
    """

    printers: Printers = attrs.field(eq=False, repr=False)
    filaments: Filaments = attrs.field(eq=False, repr=False)
    index: IdIndex = attrs.field(factory=IdIndex)
    printer: array[int] = attrs.field(factory=lambda: array("i"))
    filament: array[int] = attrs.field(factory=lambda: array("i"))
    filepath: TextColumn = attrs.field(factory=TextColumn)
    weight: array[int] = attrs.field(factory=lambda: array("i"))
    status: bytearray = attrs.field(factory=bytearray)
    created_at: FixedTextColumn = attrs.field(factory=_stamps)
    updated_at: FixedTextColumn = attrs.field(factory=_stamps)
    by_status: dict[JobStatus, SortedSeqs] = attrs.field(factory=_status_index, eq=False)

    def __len__(self) -> int:
        return len(self.index)

    def add(
        self,
        job_id: str,
        printer: int,
        filament: int,
        filepath: str,
        weight: int,
        status: JobStatus,
        created: str,
        updated: str,
    ) -> int:
        """
        Store a new job and index it; a Queued or Running job reserves its
        weight of its filament.  Return its sequence number.
        """
        seq = self.append(
            job_id, printer, filament, filepath, weight, STATUS_CODES[status], created, updated
        )
        self.by_status[status].add(seq)
        _add_to(self.printers.jobs, printer, seq)
        _add_to(self.filaments.jobs, filament, seq)
        if status in RESERVING_STATES:
            self.filaments.reserved[filament] += weight
        return seq

    def append(
        self,
        job_id: str,
        printer: int,
        filament: int,
        filepath: str,
        weight: int,
        code: int,
        created: str,
        updated: str,
    ) -> int:
        """
        Store the columns of a new job, with its status as a code; nothing
        derived.
        """
        seq = self.index.add(job_id)
        self.printer.append(printer)
        self.filament.append(filament)
        self.filepath.append(filepath)
        self.weight.append(weight)
        self.status.append(code)
        self.created_at.append(created)
        self.updated_at.append(updated)
        return seq

    def extend(
        self,
        ids: Sequence[str],
        printers: Iterable[int],
        filaments: Iterable[int],
        filepaths: Sequence[str],
        weights: Sequence[int],
        codes: Iterable[int],
        created: Sequence[str],
        updated: Sequence[str],
    ) -> None:
        """
        Store new jobs in bulk and nothing derived (for restore, which
        resolves C{printer} and C{filament} afterwards): C{index.reindex()}
        and L{rebuild_indexes} must follow.
        """
        self.index.extend(ids)
        self.printer.extend(printers)
        self.filament.extend(filaments)
        self.filepath.extend(filepaths)
        self.weight.extend(weights)
        self.status.extend(codes)
        self.created_at.extend(created)
        self.updated_at.extend(updated)

    def rebuild_indexes(self) -> None:
        """
        Rebuild everything derived from the columns: the status index, the
        jobs of each printer and filament, and the filaments' reservations.
        Runs once per restore, over up to a million jobs, so it makes no
        per-job Python objects that outlive one step: a million transient
        C{int}s would leave the heap that much larger for good.
        """
        everyone = range(len(self.index))
        by_code = [
            array("i", compress(everyone, map(code.__eq__, self.status)))
            for code in range(len(STATUSES))
        ]
        self.by_status = {
            status: SortedSeqs.from_ascending(by_code[code]) for code, status in enumerate(STATUSES)
        }
        for owners, column in (
            (self.printers.jobs, self.printer),
            (self.filaments.jobs, self.filament),
        ):
            owners[:] = [None] * len(owners)
            for seq, owner in enumerate(column):
                _add_to(owners, owner, seq)
        reserved = array("q", bytes(8 * len(self.filaments)))
        filament, weight = self.filament, self.weight
        for code in sorted(_RESERVING_CODES):
            for seq in by_code[code]:
                reserved[filament[seq]] += weight[seq]
        self.filaments.reserved = reserved

    def set_status(self, seq: int, status: JobStatus, at: str) -> None:
        """
        Move job C{seq} to C{status}, keeping the status index.  The
        caller adjusts reservations and filament weights.
        """
        previous = STATUSES[self.status[seq]]
        self.status[seq] = STATUS_CODES[status]
        self.updated_at[seq] = at
        self.by_status[previous].discard(seq)
        self.by_status[status].add(seq)

    def status_of(self, seq: int) -> JobStatus:
        return STATUSES[self.status[seq]]

    def record(self, seq: int) -> PrintJob:
        return PrintJob(
            self.index.ids[seq],
            self.printers.index.ids[self.printer[seq]],
            self.filaments.index.ids[self.filament[seq]],
            self.filepath[seq],
            self.weight[seq],
            STATUSES[self.status[seq]],
            self.created_at[seq],
            self.updated_at[seq],
            seq,
        )

    def records(self, seqs: Sequence[int]) -> list[PrintJob]:
        """
        The records of C{seqs}, a column at a time (a page).
        """
        return list(
            map(
                PrintJob,
                self.index.ids.pick(seqs),
                self.printers.index.ids.pick([self.printer[seq] for seq in seqs]),
                self.filaments.index.ids.pick([self.filament[seq] for seq in seqs]),
                self.filepath.pick(seqs),
                map(self.weight.__getitem__, seqs),
                [STATUSES[self.status[seq]] for seq in seqs],
                self.created_at.pick(seqs),
                self.updated_at.pick(seqs),
                seqs,
            )
        )

    def frozen_rows(self) -> Rows:
        """
        The snapshot rows of the jobs there are now, to read later (from
        another thread too) while this table keeps changing: a status
        change rewrites C{status} and C{updated_at} in place, so those two
        columns are copied; the others only grow and are shared, the
        printers' and filaments' ids included.
        """
        view = attrs.evolve(self, status=self.status[:], updated_at=self.updated_at.copy())
        return Rows(len(self), view.rows)

    def rows(self, start: int, stop: int) -> list[tuple[Any, ...]]:
        """
        The snapshot rows (L{PrintJob.to_row}) of sequence numbers C{start}
        to C{stop} (excluded).
        """
        return list(
            zip(
                self.index.ids.values(start, stop),
                map(self.printers.index.ids.__getitem__, self.printer[start:stop]),
                map(self.filaments.index.ids.__getitem__, self.filament[start:stop]),
                self.filepath.values(start, stop),
                self.weight[start:stop],
                map(_STATUS_VALUES.__getitem__, self.status[start:stop]),
                self.created_at.values(start, stop),
                self.updated_at.values(start, stop),
                strict=True,
            )
        )
