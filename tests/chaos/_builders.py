"""
Hand-building histories for the checker's tests: a L{Builder} records
operations with explicit times and makes the answers a real node would give,
so that each test reads like the scenario it describes.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from tools.chaos import Consistency, History, Operation, OpKind, Outcome

AT = "2024-05-01T10:00:00.000Z"

Span = tuple[float, float | None]

_FAIL_STATUS = {
    "printer_not_found": 404,
    "filament_not_found": 404,
    "job_not_found": 404,
    "invalid_transition": 409,
    "insufficient_filament": 422,
    "invalid_request": 400,
}


def printer_obj(id: str, tag: str) -> dict[str, Any]:
    return {"id": id, "company": "Acme", "model": tag, "created_at": AT, "updated_at": AT}


def filament_obj(id: str, tag: str, total: int, remaining: int) -> dict[str, Any]:
    return {
        "id": id,
        "type": "PLA",
        "color": tag,
        "total_weight_in_grams": total,
        "remaining_weight_in_grams": remaining,
        "created_at": AT,
        "updated_at": AT,
    }


def job_obj(
    id: str, tag: str, printer_id: str, filament_id: str, weight: int, status: str
) -> dict[str, Any]:
    return {
        "id": id,
        "printer_id": printer_id,
        "filament_id": filament_id,
        "filepath": tag,
        "print_weight_in_grams": weight,
        "status": status,
        "created_at": AT,
        "updated_at": AT,
    }


class Builder:
    """
    Record operations by hand.  Objects are remembered by id so that reads
    and final states can be written as "printer p1 exists" or "job j1 is
    Done" and get full JSON answers.

    Outcomes are given as C{"ok"}, C{"info"} (unknown) or an error code
    (a definite rejection, with its usual HTTP status).
    """

    def __init__(self) -> None:
        self.ops: list[Operation] = []
        self.final: dict[str, dict[str, Any]] = {}
        self.objects: dict[str, dict[str, Any]] = {}
        self.kinds: dict[str, str] = {}

    def history(self) -> History:
        return History(tuple(self.ops), dict(self.final), {"test": True})

    def op(
        self,
        kind: OpKind,
        args: Mapping[str, Any],
        span: Span,
        outcome: str,
        body: Any = None,
        *,
        process: int = 0,
        node: str = "n1",
        consistency: Consistency | None = None,
        status: int | None = None,
        fail_status: int | None = None,
    ) -> int:
        invoke, complete = span
        index = len(self.ops)
        if outcome == "ok":
            result = Outcome.OK
            error = None
            status = status or 200
        elif outcome == "info":
            result, body, error, status = Outcome.INFO, None, "timeout", None
        else:
            result, error = Outcome.FAIL, outcome
            status = fail_status or _FAIL_STATUS.get(outcome, 400)
            body = {"error": {"code": outcome, "message": outcome}}
        self.ops.append(
            Operation(
                index=index,
                process=process,
                kind=kind,
                args=dict(args),
                node=node,
                invoke=invoke,
                complete=complete,
                outcome=result,
                status=status,
                body=body,
                error=error,
                consistency=consistency,
            )
        )
        return index

    # -- writes ----------------------------------------------------------------

    def create_printer(
        self, span: Span, tag: str, id: str, outcome: str = "ok", key: str | None = None, **kw: Any
    ) -> int:
        obj = printer_obj(id, tag)
        self._remember("printer", obj)
        args = {"body": {"company": "Acme", "model": tag}, "idempotency_key": key}
        body = obj if outcome == "ok" else None
        return self.op(OpKind.CREATE_PRINTER, args, span, outcome, body, status=201, **kw)

    def create_filament(
        self,
        span: Span,
        tag: str,
        id: str,
        total: int = 1000,
        outcome: str = "ok",
        key: str | None = None,
        **kw: Any,
    ) -> int:
        obj = filament_obj(id, tag, total, total)
        self._remember("filament", obj)
        args = {
            "body": {"type": "pla", "color": tag, "total_weight_in_grams": total},
            "idempotency_key": key,
        }
        body = obj if outcome == "ok" else None
        return self.op(OpKind.CREATE_FILAMENT, args, span, outcome, body, status=201, **kw)

    def create_job(
        self,
        span: Span,
        tag: str,
        id: str,
        printer_id: str,
        filament_id: str,
        weight: int,
        outcome: str = "ok",
        key: str | None = None,
        **kw: Any,
    ) -> int:
        obj = job_obj(id, tag, printer_id, filament_id, weight, "Queued")
        self._remember("print_job", obj)
        args = {
            "body": {
                "printer_id": printer_id,
                "filament_id": filament_id,
                "filepath": tag,
                "print_weight_in_grams": weight,
            },
            "idempotency_key": key,
        }
        body = obj if outcome == "ok" else None
        return self.op(OpKind.CREATE_JOB, args, span, outcome, body, status=201, **kw)

    def set_status(
        self,
        span: Span,
        job_id: str,
        status: str,
        outcome: str = "ok",
        key: str | None = None,
        **kw: Any,
    ) -> int:
        args = {"job_id": job_id, "status": status, "idempotency_key": key}
        body = dict(self.objects[job_id], status=status) if outcome == "ok" else None
        return self.op(OpKind.SET_JOB_STATUS, args, span, outcome, body, **kw)

    # -- reads -------------------------------------------------------------------

    def read_printer(self, span: Span, id: str, found: bool = True, stale: bool = False) -> int:
        return self._read(OpKind.READ_PRINTER, span, id, self.objects[id] if found else None, stale)

    def read_filament(self, span: Span, id: str, remaining: int | None, stale: bool = False) -> int:
        """
        Read filament C{id}: C{remaining} grams, or not found for L{None}.
        """
        obj = None
        if remaining is not None:
            obj = dict(self.objects[id], remaining_weight_in_grams=remaining)
        return self._read(OpKind.READ_FILAMENT, span, id, obj, stale)

    def read_job(self, span: Span, id: str, status: str | None, stale: bool = False) -> int:
        obj = None if status is None else dict(self.objects[id], status=status)
        return self._read(OpKind.READ_JOB, span, id, obj, stale)

    def list_printers(self, span: Span, ids: Iterable[str], stale: bool = False) -> int:
        body = [self.objects[i] for i in ids]
        return self._list(OpKind.LIST_PRINTERS, span, body, {}, stale)

    def list_jobs(
        self,
        span: Span,
        statuses: Mapping[str, str],
        query: Mapping[str, str] | None = None,
        stale: bool = False,
    ) -> int:
        body = [dict(self.objects[i], status=s) for i, s in statuses.items()]
        return self._list(OpKind.LIST_JOBS, span, body, dict(query or {}), stale)

    def set_final(
        self,
        node: str,
        printers: Iterable[str] = (),
        filaments: Mapping[str, int] | None = None,
        jobs: Mapping[str, str] | None = None,
        extra: Mapping[str, list[dict[str, Any]]] | None = None,
    ) -> None:
        """
        Node C{node}'s final state: these printers, these filaments with
        their remaining weights, these jobs with their statuses.
        """
        state: dict[str, list[dict[str, Any]]] = {
            "printers": [self.objects[i] for i in printers],
            "filaments": [
                dict(self.objects[i], remaining_weight_in_grams=r)
                for i, r in (filaments or {}).items()
            ],
            "print_jobs": [dict(self.objects[i], status=s) for i, s in (jobs or {}).items()],
        }
        for key, objs in (extra or {}).items():
            state[key] = state[key] + objs
        self.final[node] = state

    def _read(
        self, kind: OpKind, span: Span, id: str, obj: dict[str, Any] | None, stale: bool
    ) -> int:
        consistency = Consistency.STALE if stale else Consistency.LINEARIZABLE
        if obj is None:
            code = {
                OpKind.READ_PRINTER: "printer_not_found",
                OpKind.READ_FILAMENT: "filament_not_found",
                OpKind.READ_JOB: "job_not_found",
            }[kind]
            return self.op(kind, {"id": id}, span, code, consistency=consistency)
        return self.op(kind, {"id": id}, span, "ok", obj, consistency=consistency)

    def _list(
        self, kind: OpKind, span: Span, body: list[Any], query: dict[str, str], stale: bool
    ) -> int:
        consistency = Consistency.STALE if stale else Consistency.LINEARIZABLE
        return self.op(kind, {"query": query}, span, "ok", body, consistency=consistency)

    def _remember(self, kind: str, obj: dict[str, Any]) -> None:
        self.objects.setdefault(obj["id"], obj)
        self.kinds[obj["id"]] = kind
