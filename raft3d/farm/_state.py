# -*- test-case-name: tests.farm.test_state -*-
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
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any, Callable, Final, Iterator, Sequence, TypeVar

import cbor2
from zope.interface import implementer

from ..raft import IStateMachine
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
from ._index import SortedSeqs
from ._records import Filament, Page, Printer, PrintJob
from ._status import RESERVING_STATES, JobStatus, check_transition, parse_status

SNAPSHOT_FORMAT: Final = "raft3d.farm"
SNAPSHOT_VERSION: Final = 1

_R = TypeVar("_R")

_STATUS_BY_VALUE: Final = {s.value: s for s in JobStatus}

_PRINTER_KEYS: Final = frozenset({"op", "id", "company", "model", "at"})
_FILAMENT_KEYS: Final = frozenset(
    {"op", "id", "type", "color", "total_weight_in_grams", "remaining_weight_in_grams", "at"}
)
_JOB_KEYS: Final = frozenset(
    {"op", "id", "printer_id", "filament_id", "filepath", "print_weight_in_grams", "at"}
)
_STATUS_KEYS: Final = frozenset({"op", "id", "status", "at"})


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


@implementer(IStateMachine)
class FarmState:
    """
    Printers, filaments and print jobs, changed only by L{apply}.
    """

    def __init__(self) -> None:
        self._printers: dict[str, Printer] = {}
        self._printer_order: list[str] = []
        self._filaments: dict[str, Filament] = {}
        self._filament_order: list[str] = []
        self._reserved: dict[str, int] = {}
        self._jobs: dict[str, PrintJob] = {}
        self._job_order: list[str] = []
        self._jobs_by_status: dict[JobStatus, SortedSeqs] = {s: SortedSeqs() for s in JobStatus}
        self._jobs_by_printer: dict[str, list[int]] = {}
        self._jobs_by_filament: dict[str, list[int]] = {}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FarmState):
            return NotImplemented
        return (
            self._printers == other._printers
            and self._filaments == other._filaments
            and self._jobs == other._jobs
            and self._printer_order == other._printer_order
            and self._filament_order == other._filament_order
            and self._job_order == other._job_order
            and self._reserved == other._reserved
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
            return {"ok": handler(self, command)}
        except FarmError as e:
            return e.to_result()

    def snapshot(self) -> bytes:
        """
        The whole state as canonical CBOR: rows in creation order, so equal
        states give equal bytes.  Reservations and indexes are derived and
        rebuilt by L{restore}.
        """
        return cbor2.dumps(
            {
                "format": SNAPSHOT_FORMAT,
                "version": SNAPSHOT_VERSION,
                "printers": [self._printers[i].to_row() for i in self._printer_order],
                "filaments": [self._filaments[i].to_row() for i in self._filament_order],
                "jobs": [self._jobs[i].to_row() for i in self._job_order],
            },
            canonical=True,
        )

    def restore(self, data: bytes) -> None:
        """
        Replace the whole state with the one in C{data}.  The new state is
        built and checked aside first, so a bad snapshot leaves this one as
        it was.

        @raise ValueError: if C{data} is not a valid farm snapshot.
        """
        fresh = FarmState()
        try:
            doc = cbor2.loads(data)
            if (
                not isinstance(doc, dict)
                or doc.get("format") != SNAPSHOT_FORMAT
                or doc.get("version") != SNAPSHOT_VERSION
            ):
                raise MalformedCommand("not a version 1 farm snapshot")
            for row in _rows(doc, "printers", 5):
                fresh._restore_printer(row)
            for row in _rows(doc, "filaments", 7):
                fresh._restore_filament(row)
            for row in _rows(doc, "jobs", 8):
                fresh._restore_job(row)
        except (FarmError, cbor2.CBORDecodeError) as e:
            raise ValueError(f"malformed farm snapshot: {e}") from e
        vars(self).update(vars(fresh))

    # -- reads --------------------------------------------------------------

    def get_printer(self, printer_id: str) -> Printer | None:
        return self._printers.get(printer_id)

    def get_filament(self, filament_id: str) -> Filament | None:
        return self._filaments.get(filament_id)

    def get_job(self, job_id: str) -> PrintJob | None:
        return self._jobs.get(job_id)

    def reserved_weight_in_grams(self, filament_id: str) -> int:
        """
        The weight held by the filament's Queued and Running jobs.
        """
        return self._reserved.get(filament_id, 0)

    def available_weight_in_grams(self, filament_id: str) -> int:
        """
        What a new job may still reserve: remaining minus reserved.
        """
        filament = self._filaments.get(filament_id)
        if filament is None:
            return 0
        return filament.remaining_weight_in_grams - self._reserved[filament_id]

    def counts(self) -> dict[str, int]:
        """
        How many objects of each kind, and jobs per status.
        """
        out = {
            "printers": len(self._printers),
            "filaments": len(self._filaments),
            "print_jobs": len(self._jobs),
        }
        for status, seqs in self._jobs_by_status.items():
            out[f"print_jobs_{status.value.lower()}"] = len(seqs)
        return out

    def printers(self, after: int = -1, limit: int | None = None) -> Page[Printer]:
        """
        Printers in creation order, after position C{after}, at most
        C{limit} of them (all when L{None}).
        """
        return _slice_page(self._printer_order, self._printers, after, limit)

    def filaments(self, after: int = -1, limit: int | None = None) -> Page[Filament]:
        """
        Filaments in creation order; see L{printers}.
        """
        return _slice_page(self._filament_order, self._filaments, after, limit)

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
        if status is None and printer_id is None and filament_id is None:
            return _slice_page(self._job_order, self._jobs, after, limit)
        candidates: Iterator[int]
        lists: list[list[int]] = []
        if printer_id is not None:
            lists.append(self._jobs_by_printer.get(printer_id, []))
        if filament_id is not None:
            lists.append(self._jobs_by_filament.get(filament_id, []))
        if lists:
            shortest = min(lists, key=len)
            if status is not None and len(self._jobs_by_status[status]) < len(shortest):
                candidates = self._jobs_by_status[status].iter_after(after)
            else:
                candidates = _iter_list_after(shortest, after)
        else:
            assert status is not None
            candidates = self._jobs_by_status[status].iter_after(after)
        items: list[PrintJob] = []
        order, jobs = self._job_order, self._jobs
        for seq in candidates:
            job = jobs[order[seq]]
            if (
                (status is not None and job.status is not status)
                or (printer_id is not None and job.printer_id != printer_id)
                or (filament_id is not None and job.filament_id != filament_id)
            ):
                continue
            if limit is not None and len(items) == limit:
                return Page(tuple(items), items[-1].seq)
            items.append(job)
        return Page(tuple(items), None)

    # -- operations ---------------------------------------------------------

    def _create_printer(self, command: dict[Any, Any]) -> dict[str, Any]:
        _check_keys(command, _PRINTER_KEYS)
        printer_id = check_id(command["id"])
        company = check_text(command["company"], "company", MAX_NAME_LENGTH)
        model = check_text(command["model"], "model", MAX_NAME_LENGTH)
        at = _check_at(command["at"])
        if printer_id in self._printers:
            raise Conflict(f"printer {printer_id} already exists")
        printer = Printer(printer_id, company, model, at, at, len(self._printer_order))
        self._add_printer(printer)
        return {"printer": printer.to_json()}

    def _create_filament(self, command: dict[Any, Any]) -> dict[str, Any]:
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
        if filament_id in self._filaments:
            raise Conflict(f"filament {filament_id} already exists")
        filament = Filament(
            filament_id, filament_type, color, total, remaining, at, at, len(self._filament_order)
        )
        self._add_filament(filament)
        return {"filament": filament.to_json()}

    def _create_print_job(self, command: dict[Any, Any]) -> dict[str, Any]:
        _check_keys(command, _JOB_KEYS)
        job_id = check_id(command["id"])
        printer_id = check_id(command["printer_id"], "printer_id")
        filament_id = check_id(command["filament_id"], "filament_id")
        filepath = check_text(command["filepath"], "filepath", MAX_FILEPATH_LENGTH)
        weight = check_weight(command["print_weight_in_grams"], "print_weight_in_grams")
        at = _check_at(command["at"])
        if job_id in self._jobs:
            raise Conflict(f"print job {job_id} already exists")
        printer = self._printers.get(printer_id)
        if printer is None:
            raise PrinterNotFound(f"printer {printer_id} does not exist")
        filament = self._filaments.get(filament_id)
        if filament is None:
            raise FilamentNotFound(f"filament {filament_id} does not exist")
        available = filament.remaining_weight_in_grams - self._reserved[filament_id]
        if weight > available:
            raise InsufficientFilament(
                f"print job needs {weight} g of filament {filament_id};"
                f" only {available} g are available"
                f" ({filament.remaining_weight_in_grams} g remaining,"
                f" {self._reserved[filament_id]} g reserved by queued and running jobs)"
            )
        # The records' own id strings are shared, not the command's copies:
        # a million jobs would otherwise hold two million duplicate strings.
        job = PrintJob(
            job_id,
            printer.id,
            filament.id,
            filepath,
            weight,
            JobStatus.QUEUED,
            at,
            at,
            len(self._job_order),
        )
        self._add_job(job)
        return {"print_job": job.to_json()}

    def _set_print_job_status(self, command: dict[Any, Any]) -> dict[str, Any]:
        _check_keys(command, _STATUS_KEYS)
        job_id = check_id(command["id"])
        target = parse_status(command["status"])
        at = _check_at(command["at"])
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"print job {job_id} does not exist")
        transition = check_transition(job.status, target)
        # No rejection is possible past this point.
        updated = PrintJob(
            job.id,
            job.printer_id,
            job.filament_id,
            job.filepath,
            job.print_weight_in_grams,
            transition.target,
            job.created_at,
            at,
            job.seq,
        )
        self._jobs[job_id] = updated
        self._jobs_by_status[job.status].discard(job.seq)
        self._jobs_by_status[updated.status].add(job.seq)
        result: dict[str, Any] = {
            "print_job": updated.to_json(),
            "previous_status": job.status.value,
        }
        weight = job.print_weight_in_grams
        if transition.releases_reservation:
            self._reserved[job.filament_id] -= weight
        if transition.consumes_filament:
            filament = self._filaments[job.filament_id]
            consumed = Filament(
                filament.id,
                filament.type,
                filament.color,
                filament.total_weight_in_grams,
                filament.remaining_weight_in_grams - weight,
                filament.created_at,
                at,
                filament.seq,
            )
            self._filaments[filament.id] = consumed
            result["filament"] = consumed.to_json()
        return result

    # -- insertion, shared by apply and restore --------------------------------

    def _add_printer(self, printer: Printer) -> None:
        self._printers[printer.id] = printer
        self._printer_order.append(printer.id)

    def _add_filament(self, filament: Filament) -> None:
        self._filaments[filament.id] = filament
        self._filament_order.append(filament.id)
        self._reserved[filament.id] = 0

    def _add_job(self, job: PrintJob) -> None:
        self._jobs[job.id] = job
        self._job_order.append(job.id)
        self._jobs_by_status[job.status].add(job.seq)
        self._jobs_by_printer.setdefault(job.printer_id, []).append(job.seq)
        self._jobs_by_filament.setdefault(job.filament_id, []).append(job.seq)
        if job.status in RESERVING_STATES:
            self._reserved[job.filament_id] += job.print_weight_in_grams

    def _restore_printer(self, row: Sequence[Any]) -> None:
        printer_id, company, model, created, updated = row
        printer = Printer(
            check_id(printer_id),
            check_text(company, "company", MAX_NAME_LENGTH),
            check_text(model, "model", MAX_NAME_LENGTH),
            _check_at(created),
            _check_at(updated),
            len(self._printer_order),
        )
        if printer.id in self._printers:
            raise Conflict(f"duplicate printer {printer.id}")
        self._add_printer(printer)

    def _restore_filament(self, row: Sequence[Any]) -> None:
        filament_id, kind, color, total, remaining, created, updated = row
        filament = Filament(
            check_id(filament_id),
            check_filament_type(kind),
            check_text(color, "color", MAX_NAME_LENGTH),
            check_weight(total, "total_weight_in_grams"),
            check_weight(remaining, "remaining_weight_in_grams", minimum=0),
            _check_at(created),
            _check_at(updated),
            len(self._filament_order),
        )
        if filament.remaining_weight_in_grams > filament.total_weight_in_grams:
            raise MalformedCommand(f"filament {filament.id} has more remaining than total")
        if filament.id in self._filaments:
            raise Conflict(f"duplicate filament {filament.id}")
        self._add_filament(filament)

    def _restore_job(self, row: Sequence[Any]) -> None:
        # Jobs dominate snapshots, so their rows are checked inline rather
        # than field by field with the command checks: same limits, no
        # per-field calls.  (CBOR text is always valid UTF-8.)
        job_id, printer_id, filament_id, filepath, weight, status, created, updated = row
        job_status = _STATUS_BY_VALUE.get(status) if type(status) is str else None
        if not (
            type(job_id) is str
            and 0 < len(job_id) <= MAX_ID_LENGTH
            and type(printer_id) is str
            and type(filament_id) is str
            and type(filepath) is str
            and 0 < len(filepath) <= MAX_FILEPATH_LENGTH
            and type(weight) is int
            and 0 < weight <= MAX_WEIGHT_IN_GRAMS
            and type(created) is str
            and 0 < len(created) <= MAX_TIMESTAMP_LENGTH
            and type(updated) is str
            and 0 < len(updated) <= MAX_TIMESTAMP_LENGTH
            and job_status is not None
        ):
            raise MalformedCommand(f"malformed print job row {list(row)!r:.200}")
        if job_id in self._jobs:
            raise Conflict(f"duplicate print job {job_id}")
        printer = self._printers.get(printer_id)
        if printer is None:
            raise PrinterNotFound(f"print job {job_id} names unknown printer {printer_id}")
        filament = self._filaments.get(filament_id)
        if filament is None:
            raise FilamentNotFound(f"print job {job_id} names unknown filament {filament_id}")
        self._add_job(
            PrintJob(
                job_id,
                printer.id,
                filament.id,
                filepath,
                weight,
                job_status,
                created,
                updated,
                len(self._job_order),
            )
        )
        if self._reserved[filament.id] > filament.remaining_weight_in_grams:
            raise InsufficientFilament(f"filament {filament.id} is over-reserved")


_HANDLERS: dict[str, Callable[[FarmState, dict[Any, Any]], dict[str, Any]]] = {
    OP_CREATE_PRINTER: FarmState._create_printer,
    OP_CREATE_FILAMENT: FarmState._create_filament,
    OP_CREATE_PRINT_JOB: FarmState._create_print_job,
    OP_SET_PRINT_JOB_STATUS: FarmState._set_print_job_status,
}


def _rows(doc: dict[Any, Any], key: str, width: int) -> list[list[Any]]:
    """
    The rows under C{key} of a snapshot, each a list of C{width} values.
    """
    rows = doc.get(key)
    if not isinstance(rows, list) or not all(
        isinstance(row, list) and len(row) == width for row in rows
    ):
        raise MalformedCommand(f"{key} must be a list of {width}-field rows")
    return rows


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"a page limit must be positive, not {limit}")


def _iter_list_after(seqs: list[int], after: int) -> Iterator[int]:
    """
    Yield the values of the ascending list C{seqs} greater than C{after}.
    """
    for k in range(bisect_right(seqs, after), len(seqs)):
        yield seqs[k]


def _slice_page(order: list[str], table: dict[str, _R], after: int, limit: int | None) -> Page[_R]:
    """
    A page of an unfiltered listing: positions in C{order} are sequence
    numbers, so this is a plain slice.
    """
    _check_limit(limit)
    start = max(after + 1, 0)
    if limit is None:
        return Page(tuple(table[i] for i in order[start:]), None)
    end = start + limit
    items = tuple(table[i] for i in order[start:end])
    return Page(items, end - 1 if end < len(order) else None)
