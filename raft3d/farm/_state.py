# -*- test-case-name: tests.farm.test_state,tests.farm.test_freeze -*-
"""
L{FarmState}: the replicated state machine of the print farm.

It is pure and deterministic: no I/O, no clock, no randomness.  Everything a
command needs that is chosen rather than computed (ids, timestamps) is in the
command, so every replica that applies the same log reaches the same state
and returns the same results.

Results are plain data: C{{"ok": {...}}} naming every object the command
changed, or C{{"error": {"code", "message"}}} for a rejection.  A rejection
leaves the state untouched: each operation validates the command and checks
every rule (the job status table included) before its first change.
C{apply} never raises for a bad command, since a raising state machine would
stop every replica at the same log entry.

Writes cost O(log n): per-filament reservations are kept incrementally and
the indexes behind filtered listings (by status, printer and filament) are
updated in place, so no command scans the jobs.

Memory: every replica holds the whole farm (the target is a million objects
in well under 1 GiB), so objects live in the column tables of
L{raft3d.farm._tables}, about 200-250 bytes each, and records are built when
read.  Snapshots are written and read a batch of rows at a time
(L{raft3d.farm._snapshot}), so that neither holds every row as Python
objects at once.

Encoding a snapshot of a million objects takes seconds, so the state also
provides L{IBackgroundSnapshot}: L{FarmState.freeze} copies, in a few
milliseconds, only the columns that commands change in place, and the
encoding runs in a worker thread while commands keep being applied.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from functools import partial
from itertools import compress, count
from operator import gt
from typing import Any, Callable, Final, Iterator, NoReturn, TypeVar, cast

import cbor2
from zope.interface import implementer

from ..raft import IBackgroundSnapshot, IStateMachine, IStreamingSnapshot
from ._columns import IdIndex
from ._commands import (
    OP_CREATE_FILAMENT,
    OP_CREATE_PRINT_JOB,
    OP_CREATE_PRINTER,
    OP_SET_PRINT_JOB_STATUS,
)
from ._errors import (
    Conflict,
    FarmError,
    FilamentNotFound,
    InsufficientFilament,
    JobNotFound,
    MalformedCommand,
    PrinterNotFound,
)
from ._fields import (
    FILAMENT_TYPES,
    MAX_FILEPATH_LENGTH,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TIMESTAMP_LENGTH,
    MAX_WEIGHT_IN_GRAMS,
    check_filament_type,
    check_id,
    check_text,
    check_weight,
)
from ._records import Filament, Page, Printer, PrintJob
from ._snapshot import MalformedSnapshot, NotStreamable, decode_map, encode_map, iter_map
from ._stamps import ChangeStamps, kind_stamp, object_stamp
from ._status import JobStatus, check_transition, parse_status
from ._tables import STATUS_CODES, Filaments, Jobs, Printers

SNAPSHOT_FORMAT: Final = "raft3d.farm"
SNAPSHOT_VERSION: Final = 1

_R = TypeVar("_R")

_CODE_BY_VALUE: Final = {s.value: code for s, code in STATUS_CODES.items()}

_PRINTER_KEYS: Final = frozenset({"op", "id", "company", "model", "at"})
_FILAMENT_KEYS: Final = frozenset(
    {"op", "id", "type", "color", "total_weight_in_grams", "remaining_weight_in_grams", "at"}
)
_JOB_KEYS: Final = frozenset(
    {"op", "id", "printer_id", "filament_id", "filepath", "print_weight_in_grams", "at"}
)
_STATUS_KEYS: Final = frozenset({"op", "id", "status", "at"})

_NO_SEQS: Final = array("i")

KINDS: Final = ("printer", "filament", "print_job")
"""
The kinds of object, as L{FarmState.stamp_reader} names them.
"""


def _check_keys(command: dict[Any, Any], expected: frozenset[str]) -> None:
    """
    Refuse a command with missing or unknown fields.
    """
    keys = command.keys()
    if keys == expected:
        return
    missing = sorted(expected - keys)
    unknown = sorted(repr(k) for k in keys - expected)
    parts = []
    if missing:
        parts.append(f"missing field(s): {', '.join(missing)}")
    if unknown:
        parts.append(f"unknown field(s): {', '.join(unknown)}"[:200])
    raise MalformedCommand("; ".join(parts))


def _check_at(value: object) -> str:
    return check_text(value, "at", MAX_TIMESTAMP_LENGTH)


@implementer(IStateMachine, IBackgroundSnapshot, IStreamingSnapshot)
class FarmState:
    """
    Printers, filaments and print jobs, changed only by L{apply}.
    """

    def __init__(self) -> None:
        self._printers = Printers()
        self._filaments = Filaments()
        self._jobs = Jobs(self._printers, self._filaments)
        self._stamps = {kind: ChangeStamps() for kind in KINDS}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FarmState):
            return NotImplemented
        return (
            self._printers == other._printers
            and self._filaments == other._filaments
            and self._jobs == other._jobs
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"<FarmState printers={len(self._printers)} filaments={len(self._filaments)}"
            f" jobs={len(self._jobs)}>"
        )

    # -- IStateMachine ----------------------------------------------------

    def apply(self, index: int, command: Any) -> dict[str, Any]:
        """
        Apply one committed command and return its result (see the module
        docstring and C{docs/farm.md}).  Never raises for a bad command.
        """
        try:
            if not isinstance(command, dict):
                raise MalformedCommand("a command must be a map")
            op = command.get("op")
            handler = _HANDLERS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise MalformedCommand(f"unknown operation {op!r:.80}")
            return {"ok": handler(self, index, command)}
        except FarmError as e:
            return e.to_result()

    # -- change stamps ------------------------------------------------------

    def stamp_reader(self, kind: str, object_id: str | None = None) -> Callable[[], int]:
        """
        A function returning the index of the last entry that added or
        changed the C{kind} object C{object_id} (any object of that kind if
        L{None}, or if there is no such object yet): while it returns the
        same number, what reads of that object (or listings of that kind)
        answer has not changed.  See L{raft3d.farm._stamps}.

        @param kind: C{"printer"}, C{"filament"} or C{"print_job"}.
        """
        stamps = self._stamps[kind]

        def current() -> ChangeStamps:
            return self._stamps[kind]

        if object_id is not None:
            seq = self._table(kind).index.get(object_id)
            if seq is not None:
                return object_stamp(current, stamps, seq)
        return kind_stamp(current, stamps)

    def _table(self, kind: str) -> Printers | Filaments | Jobs:
        if kind == "printer":
            return self._printers
        if kind == "filament":
            return self._filaments
        if kind == "print_job":
            return self._jobs
        raise KeyError(kind)

    def snapshot(self) -> bytes:
        """
        The whole state as canonical CBOR: rows in creation order, so equal
        states give equal bytes.  Reservations and indexes are derived and
        rebuilt by L{restore}.

        This is L{freeze} encoded at once: one code path, so a snapshot
        encoded in the background is the same bytes by construction.
        """
        return self.freeze()()

    # -- IBackgroundSnapshot ----------------------------------------------

    def freeze(self) -> Callable[[], bytes]:
        """
        Capture the state as it is now and return the function that encodes
        it: the bytes L{snapshot} would return now, even if L{apply} or
        L{restore} change this state (in another thread) while it runs.

        Only the columns that commands change in place are copied, each by
        one C-level copy (see L{raft3d.farm._tables}); the others are shared
        and read below the row counts taken now.  L{restore} does not
        disturb the encoding either: it replaces the tables rather than
        changing them.  The encoder's longest C call encodes one batch of
        rows (about a millisecond), so the thread applying commands gets
        the GIL back within the interpreter's switch interval.
        """
        return partial(encode_map, self._frozen_document())

    # -- IStreamingSnapshot -----------------------------------------------

    def freeze_chunks(self) -> Callable[[], Iterator[bytes | memoryview]]:
        """
        L{freeze}, whose function gives the same bytes in chunks as it
        encodes them (a batch of rows at most), to be written out as they
        come: a forked encoder then never holds the whole snapshot.
        """
        return partial(iter_map, self._frozen_document())

    def _frozen_document(self) -> dict[str, Any]:
        return {
            "format": SNAPSHOT_FORMAT,
            "version": SNAPSHOT_VERSION,
            "printers": self._printers.frozen_rows(),
            "filaments": self._filaments.frozen_rows(),
            "jobs": self._jobs.frozen_rows(),
        }

    def restore(self, data: bytes) -> None:
        """
        Replace the whole state with the one in C{data}.  The new state is
        built and checked aside first, so a bad snapshot leaves this one as
        it was.

        @raise ValueError: if C{data} is not a valid farm snapshot.
        """
        try:
            try:
                fresh = _Loader().load(data, stream=True)
            except NotStreamable:
                fresh = _Loader().load(data, stream=False)
        except (FarmError, MalformedSnapshot, cbor2.CBORDecodeError) as e:
            raise ValueError(f"malformed farm snapshot: {e}") from e
        vars(self).update(vars(fresh))

    # -- reads --------------------------------------------------------------

    def get(self, kind: str, object_id: str) -> Printer | Filament | PrintJob | None:
        """
        The C{kind} object C{object_id} (L{stamp_reader}'s kinds), if any.
        """
        table = self._table(kind)
        seq = table.index.get(object_id)
        return None if seq is None else table.record(seq)

    def get_printer(self, printer_id: str) -> Printer | None:
        seq = self._printers.index.get(printer_id)
        return None if seq is None else self._printers.record(seq)

    def get_filament(self, filament_id: str) -> Filament | None:
        seq = self._filaments.index.get(filament_id)
        return None if seq is None else self._filaments.record(seq)

    def get_job(self, job_id: str) -> PrintJob | None:
        seq = self._jobs.index.get(job_id)
        return None if seq is None else self._jobs.record(seq)

    def reserved_weight_in_grams(self, filament_id: str) -> int:
        """
        The weight held by the filament's Queued and Running jobs.
        """
        seq = self._filaments.index.get(filament_id)
        return 0 if seq is None else self._filaments.reserved[seq]

    def available_weight_in_grams(self, filament_id: str) -> int:
        """
        What a new job may still reserve: remaining minus reserved.
        """
        filaments = self._filaments
        seq = filaments.index.get(filament_id)
        if seq is None:
            return 0
        return filaments.remaining[seq] - filaments.reserved[seq]

    def counts(self) -> dict[str, int]:
        """
        How many objects of each kind, and jobs per status.
        """
        out = {
            "printers": len(self._printers),
            "filaments": len(self._filaments),
            "print_jobs": len(self._jobs),
        }
        for status, seqs in self._jobs.by_status.items():
            out[f"print_jobs_{status.value.lower()}"] = len(seqs)
        return out

    def printers(self, after: int = -1, limit: int | None = None) -> Page[Printer]:
        """
        Printers in creation order, after position C{after}, at most
        C{limit} of them (all when L{None}).
        """
        return _slice_page(len(self._printers), self._printers.records, after, limit)

    def filaments(self, after: int = -1, limit: int | None = None) -> Page[Filament]:
        """
        Filaments in creation order; see L{printers}.
        """
        return _slice_page(len(self._filaments), self._filaments.records, after, limit)

    def jobs(
        self,
        *,
        status: JobStatus | None = None,
        printer_id: str | None = None,
        filament_id: str | None = None,
        after: int = -1,
        limit: int | None = None,
    ) -> Page[PrintJob]:
        """
        Print jobs in creation order, optionally filtered.  The smallest
        applicable index drives the walk and the other filters are checked
        per job, so a page costs about its own size (times the selectivity
        of the other filters when several are combined).
        """
        _check_limit(limit)
        jobs = self._jobs
        if status is None and printer_id is None and filament_id is None:
            return _slice_page(len(jobs), jobs.records, after, limit)
        # -1 stands for "any" (no filter), -2 for an unknown id, which no
        # job names.
        printer = filament = -1
        lists: list[array[int]] = []
        if printer_id is not None:
            found = self._printers.index.get(printer_id)
            printer = -2 if found is None else found
            lists.append(self._owned_jobs(self._printers.jobs, printer))
        if filament_id is not None:
            found = self._filaments.index.get(filament_id)
            filament = -2 if found is None else found
            lists.append(self._owned_jobs(self._filaments.jobs, filament))
        candidates: Iterator[int]
        if lists:
            shortest = min(lists, key=len)
            if status is not None and len(jobs.by_status[status]) < len(shortest):
                candidates = jobs.by_status[status].iter_after(after)
            else:
                candidates = _iter_list_after(shortest, after)
        else:
            assert status is not None
            candidates = jobs.by_status[status].iter_after(after)
        code = -1 if status is None else STATUS_CODES[status]
        codes, printers, filaments = jobs.status, jobs.printer, jobs.filament
        matches: list[int] = []
        for seq in candidates:
            if (
                (code >= 0 and codes[seq] != code)
                or (printer != -1 and printers[seq] != printer)
                or (filament != -1 and filaments[seq] != filament)
            ):
                continue
            if limit is not None and len(matches) == limit:
                return Page(tuple(jobs.records(matches)), matches[-1])
            matches.append(seq)
        return Page(tuple(jobs.records(matches)), None)

    @staticmethod
    def _owned_jobs(lists: list[array[int] | None], owner: int) -> array[int]:
        if owner < 0:
            return _NO_SEQS
        return lists[owner] or _NO_SEQS

    # -- operations ---------------------------------------------------------

    def _create_printer(self, index: int, command: dict[Any, Any]) -> dict[str, Any]:
        _check_keys(command, _PRINTER_KEYS)
        printer_id = check_id(command["id"])
        company = check_text(command["company"], "company", MAX_NAME_LENGTH)
        model = check_text(command["model"], "model", MAX_NAME_LENGTH)
        at = _check_at(command["at"])
        printers = self._printers
        if printer_id in printers.index:
            raise Conflict(f"printer {printer_id} already exists")
        seq = printers.add(printer_id, company, model, at, at)
        self._stamps["printer"].stamp(seq, index)
        # The record from the command's own values, equal to the stored
        # ones: no need to read them back from the columns.
        return {"printer": Printer(printer_id, company, model, at, at, seq).to_json()}

    def _create_filament(self, index: int, command: dict[Any, Any]) -> dict[str, Any]:
        _check_keys(command, _FILAMENT_KEYS)
        filament_id = check_id(command["id"])
        filament_type = check_filament_type(command["type"])
        color = check_text(command["color"], "color", MAX_NAME_LENGTH)
        total = check_weight(command["total_weight_in_grams"], "total_weight_in_grams")
        remaining = check_weight(
            command["remaining_weight_in_grams"], "remaining_weight_in_grams", minimum=0
        )
        if remaining > total:
            raise MalformedCommand(
                "remaining_weight_in_grams must not exceed total_weight_in_grams"
            )
        at = _check_at(command["at"])
        filaments = self._filaments
        if filament_id in filaments.index:
            raise Conflict(f"filament {filament_id} already exists")
        seq = filaments.add(filament_id, filament_type, color, total, remaining, at, at)
        self._stamps["filament"].stamp(seq, index)
        filament = Filament(filament_id, filament_type, color, total, remaining, at, at, seq)
        return {"filament": filament.to_json()}

    def _create_print_job(self, index: int, command: dict[Any, Any]) -> dict[str, Any]:
        _check_keys(command, _JOB_KEYS)
        job_id = check_id(command["id"])
        printer_id = check_id(command["printer_id"], "printer_id")
        filament_id = check_id(command["filament_id"], "filament_id")
        filepath = check_text(command["filepath"], "filepath", MAX_FILEPATH_LENGTH)
        weight = check_weight(command["print_weight_in_grams"], "print_weight_in_grams")
        at = _check_at(command["at"])
        jobs, filaments = self._jobs, self._filaments
        if job_id in jobs.index:
            raise Conflict(f"print job {job_id} already exists")
        printer = self._printers.index.get(printer_id)
        if printer is None:
            raise PrinterNotFound(f"printer {printer_id} does not exist")
        filament = filaments.index.get(filament_id)
        if filament is None:
            raise FilamentNotFound(f"filament {filament_id} does not exist")
        remaining = filaments.remaining[filament]
        reserved = filaments.reserved[filament]
        available = remaining - reserved
        if weight > available:
            raise InsufficientFilament(
                f"print job needs {weight} g of filament {filament_id};"
                f" only {available} g are available"
                f" ({remaining} g remaining,"
                f" {reserved} g reserved by queued and running jobs)"
            )
        seq = jobs.add(job_id, printer, filament, filepath, weight, JobStatus.QUEUED, at, at)
        self._stamps["print_job"].stamp(seq, index)
        # Its reservation changed.
        self._stamps["filament"].stamp(filament, index)
        job = PrintJob(
            job_id, printer_id, filament_id, filepath, weight, JobStatus.QUEUED, at, at, seq
        )
        return {"print_job": job.to_json()}

    def _set_print_job_status(self, index: int, command: dict[Any, Any]) -> dict[str, Any]:
        _check_keys(command, _STATUS_KEYS)
        job_id = check_id(command["id"])
        target = parse_status(command["status"])
        at = _check_at(command["at"])
        jobs = self._jobs
        seq = jobs.index.get(job_id)
        if seq is None:
            raise JobNotFound(f"print job {job_id} does not exist")
        previous = jobs.status_of(seq)
        transition = check_transition(previous, target)
        # No rejection is possible past this point.
        jobs.set_status(seq, transition.target, at)
        self._stamps["print_job"].stamp(seq, index)
        result: dict[str, Any] = {
            "print_job": jobs.record(seq).to_json(),
            "previous_status": previous.value,
        }
        filaments = self._filaments
        filament, weight = jobs.filament[seq], jobs.weight[seq]
        if transition.releases_reservation:
            filaments.reserved[filament] -= weight
            self._stamps["filament"].stamp(filament, index)
        if transition.consumes_filament:
            filaments.remaining[filament] -= weight
            filaments.updated_at[filament] = at
            self._stamps["filament"].stamp(filament, index)
            result["filament"] = filaments.record(filament).to_json()
        return result


_HANDLERS: dict[str, Callable[[FarmState, int, dict[Any, Any]], dict[str, Any]]] = {
    OP_CREATE_PRINTER: FarmState._create_printer,
    OP_CREATE_FILAMENT: FarmState._create_filament,
    OP_CREATE_PRINT_JOB: FarmState._create_print_job,
    OP_SET_PRINT_JOB_STATUS: FarmState._set_print_job_status,
}


class _Loader:
    """
    Build a L{FarmState} from a snapshot, a batch of rows at a time,
    checking every row as strictly as a command.

    A batch is checked and stored with a few calls on whole columns; only
    a batch that fails is walked row by row, to name the bad row.  A
    canonical snapshot lists the jobs before the printers and filaments
    they name (CBOR's canonical key order), so a job's printer and filament
    are first given provisional numbers and resolved to sequence numbers
    once every row is in; reservations and indexes are then derived in one
    pass.
    """

    def __init__(self) -> None:
        self.state = FarmState()
        self._printer_refs: dict[str, int] = {}
        self._filament_refs: dict[str, int] = {}

    def load(self, data: bytes, *, stream: bool) -> FarmState:
        others, present = decode_map(
            data,
            {"printers": self._printers, "filaments": self._filaments, "jobs": self._jobs},
            stream=stream,
        )
        if others.get("format") != SNAPSHOT_FORMAT or others.get("version") != SNAPSHOT_VERSION:
            raise MalformedCommand("not a version 1 farm snapshot")
        for key, width in (("printers", 5), ("filaments", 7), ("jobs", 8)):
            if key not in present:
                raise MalformedCommand(f"{key} must be a list of {width}-field rows")
        self._finish()
        return self.state

    def _printers(self, rows: list[Any]) -> None:
        ids, company, model, created, updated = _columns(rows, "printers", 5)
        if not (
            _texts(ids, MAX_ID_LENGTH)
            and _texts(company, MAX_NAME_LENGTH)
            and _texts(model, MAX_NAME_LENGTH)
            and _texts(created, MAX_TIMESTAMP_LENGTH)
            and _texts(updated, MAX_TIMESTAMP_LENGTH)
        ):
            _first_error(rows, _check_printer_row)
        self.state._printers.extend(ids, company, model, created, updated)

    def _filaments(self, rows: list[Any]) -> None:
        ids, kinds, colors, totals, remainings, created, updated = _columns(rows, "filaments", 7)
        if not (
            _texts(ids, MAX_ID_LENGTH)
            and _all_of(kinds, str)
            and _texts(colors, MAX_NAME_LENGTH)
            and _weights(totals, 1)
            and _weights(remainings, 0)
            and not any(map(gt, remainings, totals))
            and _texts(created, MAX_TIMESTAMP_LENGTH)
            and _texts(updated, MAX_TIMESTAMP_LENGTH)
        ):
            _first_error(rows, _check_filament_row)
        if not FILAMENT_TYPES.issuperset(kinds):
            # Any letter case is accepted, as in a command.
            kinds = tuple(map(check_filament_type, kinds))
        self.state._filaments.extend(ids, kinds, colors, totals, remainings, created, updated)

    def _jobs(self, rows: list[Any]) -> None:
        # The checks of the old per-row restore, kept as they were: ids and
        # paths may not be empty but are not checked for blanks.
        columns = _columns(rows, "jobs", 8)
        ids, printer_ids, filament_ids, paths, weights, statuses, created, updated = columns
        codes: list[int | None] = []
        if (
            _texts(ids, MAX_ID_LENGTH, blank=True)
            and _all_of(printer_ids, str)
            and _all_of(filament_ids, str)
            and _texts(paths, MAX_FILEPATH_LENGTH, blank=True)
            and _weights(weights, 1)
            and _all_of(statuses, str)
            and _texts(created, MAX_TIMESTAMP_LENGTH, blank=True)
            and _texts(updated, MAX_TIMESTAMP_LENGTH, blank=True)
        ):
            codes = list(map(_CODE_BY_VALUE.get, statuses))
        if not codes or None in codes:
            _first_error(rows, _check_job_row)
        self.state._jobs.extend(
            ids,
            _provisional(self._printer_refs, printer_ids),
            _provisional(self._filament_refs, filament_ids),
            paths,
            weights,
            cast("list[int]", codes),
            created,
            updated,
        )

    def _finish(self) -> None:
        """
        Resolve the jobs' printers and filaments, derive the indexes and
        reservations, and check that no filament is over-reserved.
        """
        state = self.state
        jobs, printers, filaments = state._jobs, state._printers, state._filaments
        for kind, index in (
            ("printer", printers.index),
            ("filament", filaments.index),
            ("print job", jobs.index),
        ):
            repeated = index.reindex()
            if repeated is not None:
                raise Conflict(f"duplicate {kind} {repeated}")
        jobs.printer = _resolve(self._printer_refs, printers.index, jobs.printer, PrinterNotFound)
        jobs.filament = _resolve(
            self._filament_refs, filaments.index, jobs.filament, FilamentNotFound
        )
        self._printer_refs = self._filament_refs = {}
        jobs.rebuild_indexes()
        if any(map(gt, filaments.reserved, filaments.remaining)):
            seq = next(compress(count(), map(gt, filaments.reserved, filaments.remaining)))
            raise InsufficientFilament(f"filament {filaments.index.ids[seq]} is over-reserved")


def _columns(rows: list[Any], key: str, width: int) -> list[tuple[Any, ...]]:
    """
    The columns of a batch of snapshot rows, each row a list of C{width}
    values.
    """
    if set(map(type, rows)) != {list} or set(map(len, rows)) != {width}:
        raise MalformedCommand(f"{key} must be a list of {width}-field rows")
    return list(zip(*rows, strict=True))


def _all_of(values: tuple[Any, ...], kind: type) -> bool:
    return set(map(type, values)) == {kind}


def _texts(values: tuple[Any, ...], max_length: int, blank: bool = False) -> bool:
    """
    Whether every value passes L{check_text} (decoded CBOR text is always
    valid UTF-8); C{blank} lets whitespace-only values through.
    """
    if not _all_of(values, str):
        return False
    lengths = set(map(len, values))
    if min(lengths) < 1 or max(lengths) > max_length:
        return False
    return blank or not any(map(str.isspace, values))


def _weights(values: tuple[Any, ...], minimum: int) -> bool:
    """
    Whether every value passes L{check_weight}.
    """
    return _all_of(values, int) and min(values) >= minimum and max(values) <= MAX_WEIGHT_IN_GRAMS


def _first_error(rows: list[Any], check: Callable[[list[Any]], object]) -> NoReturn:
    """
    Raise the error of the first bad row of a batch that failed its
    column checks.
    """
    for row in rows:
        check(row)
    raise MalformedCommand("malformed rows")  # The row checks are never weaker.


def _check_printer_row(row: list[Any]) -> None:
    printer_id, company, model, created, updated = row
    check_id(printer_id)
    check_text(company, "company", MAX_NAME_LENGTH)
    check_text(model, "model", MAX_NAME_LENGTH)
    _check_at(created)
    _check_at(updated)


def _check_filament_row(row: list[Any]) -> None:
    filament_id, kind, color, total, remaining, created, updated = row
    check_id(filament_id)
    check_filament_type(kind)
    check_text(color, "color", MAX_NAME_LENGTH)
    check_weight(total, "total_weight_in_grams")
    check_weight(remaining, "remaining_weight_in_grams", minimum=0)
    if remaining > total:
        raise MalformedCommand(f"filament {filament_id} has more remaining than total")
    _check_at(created)
    _check_at(updated)


def _check_job_row(row: list[Any]) -> None:
    job_id, printer_id, filament_id, filepath, weight, status, created, updated = row
    if not (
        type(job_id) is str
        and 0 < len(job_id) <= MAX_ID_LENGTH
        and type(printer_id) is str
        and type(filament_id) is str
        and type(filepath) is str
        and 0 < len(filepath) <= MAX_FILEPATH_LENGTH
        and type(weight) is int
        and 0 < weight <= MAX_WEIGHT_IN_GRAMS
        and type(status) is str
        and status in _CODE_BY_VALUE
        and type(created) is str
        and 0 < len(created) <= MAX_TIMESTAMP_LENGTH
        and type(updated) is str
        and 0 < len(updated) <= MAX_TIMESTAMP_LENGTH
    ):
        raise MalformedCommand(f"malformed print job row {list(row)!r:.200}")


def _provisional(refs: dict[str, int], ids: tuple[str, ...]) -> Iterator[int]:
    """
    The provisional numbers of C{ids}, numbering the ones C{refs} does not
    have yet.  (Which number an id gets does not matter: L{_resolve} maps
    them all.)
    """
    new = set(ids).difference(refs)
    refs.update(zip(new, count(len(refs))))
    return map(refs.__getitem__, ids)


def _resolve(
    refs: dict[str, int],
    index: IdIndex,
    column: array[int],
    missing: type[PrinterNotFound | FilamentNotFound],
) -> array[int]:
    """
    Map the provisional numbers in C{column} (C{refs} gives the id of each)
    to the sequence numbers of the ids in C{index}.

    @raise PrinterNotFound: (or L{FilamentNotFound}: C{missing}) if an id
        of C{refs} is not in C{index}.
    """
    real = array("i", bytes(4 * len(refs)))
    for object_id, provisional in refs.items():
        seq = index.get(object_id)
        if seq is None:
            kind = "printer" if missing is PrinterNotFound else "filament"
            raise missing(f"a print job names unknown {kind} {object_id}")
        real[provisional] = seq
    return array("i", map(real.__getitem__, column))


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"a page limit must be positive, not {limit}")


def _iter_list_after(seqs: array[int], after: int) -> Iterator[int]:
    """
    Yield the values of the ascending array C{seqs} greater than C{after}.
    """
    for k in range(bisect_right(seqs, after), len(seqs)):
        yield seqs[k]


def _slice_page(
    count: int, records: Callable[[range], list[_R]], after: int, limit: int | None
) -> Page[_R]:
    """
    A page of an unfiltered listing of C{count} objects: sequence numbers
    are positions, so this is a range.
    """
    _check_limit(limit)
    start = max(after + 1, 0)
    if limit is None:
        return Page(tuple(records(range(start, count))), None)
    end = start + limit
    items = tuple(records(range(start, min(end, count))))
    return Page(items, end - 1 if end < count else None)
