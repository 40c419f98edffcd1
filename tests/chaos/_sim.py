"""
A sequential, correct print farm that produces concurrent-looking
histories: the ground truth for the checker's property tests.

Operations take effect one at a time, at linearization points 1, 2, 3...,
on a real L{FarmState} (with an idempotency-key cache in front, as the
engine's sessions do).  Each operation's invocation and completion are then
spread at random around its point, so the history looks concurrent but is
linearizable by construction.  Some writes lose their answer (outcome
unknown), of which some took effect and some never did; some of those are
retried with their idempotency key.  Stale reads answer from the state at an
earlier point.  A correct checker must accept every such history.
"""

from __future__ import annotations

import random
from typing import Any

from raft3d.farm import (
    FarmState,
    create_filament,
    create_print_job,
    create_printer,
    set_print_job_status,
)
from tools.chaos import Consistency, History, Operation, OpKind, Outcome

AT = "2024-05-01T10:00:00.000Z"

_STATUS = {
    "printer_not_found": 422,
    "filament_not_found": 422,
    "insufficient_filament": 422,
    "invalid_transition": 409,
    "job_not_found": 404,
}
_KINDS = {"printer": "printers", "filament": "filaments", "print_job": "print_jobs"}


class SimulatedFarm:
    """
    Generate one history.

    @param p_lie: the probability that a linearizable read answers from an
        older state (a buggy node): histories that should be rejected.
    @param window: how far (in units of the spacing between linearization
        points) invocation and completion may lie from an operation's point:
        about 2 * window operations are in flight at any time.
    """

    def __init__(
        self,
        rnd: random.Random,
        *,
        window: float = 3.0,
        p_unknown: float = 0.1,
        p_stale: float = 0.15,
        p_key: float = 0.5,
        p_lie: float = 0.0,
        lag: float = 10.0,
        max_printers: int = 4,
        max_filaments: int = 4,
        max_jobs: int = 12,
        nodes: tuple[str, ...] = ("n1", "n2", "n3"),
    ) -> None:
        self.rnd = rnd
        self.window = window
        self.p_unknown = p_unknown
        self.p_stale = p_stale
        self.p_key = p_key
        self.p_lie = p_lie
        self.lag = lag
        self.limits = {"printer": max_printers, "filament": max_filaments, "print_job": max_jobs}
        self.nodes = nodes
        self.farm = FarmState()
        self.applied = 0
        self.sessions: dict[str, dict[str, Any]] = {}
        self.ops: list[Operation] = []
        # id -> [(point, json or None)], for stale reads
        self.versions: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.ids: dict[str, list[str]] = {k: [] for k in _KINDS}
        self.made = 0
        self.retries: list[tuple[float, Operation]] = []
        self.point = 0.0

    def run(self, count: int) -> History:
        for _ in range(count):
            self.point += 1.0
            due = [r for r in self.retries if r[0] <= self.point]
            if due:
                self.retries.remove(due[0])
                self._retry(due[0][1])
            else:
                self._one()
        final = {node: self._final() for node in self.nodes}
        self.ops.sort(key=lambda op: op.invoke)
        ops = tuple(
            Operation(
                index=i,
                process=op.process,
                kind=op.kind,
                args=op.args,
                node=op.node,
                invoke=op.invoke,
                complete=op.complete,
                outcome=op.outcome,
                status=op.status,
                body=op.body,
                error=op.error,
                consistency=op.consistency,
            )
            for i, op in enumerate(self.ops)
        )
        return History(ops, final, {"simulated": True})

    # -- choosing operations --------------------------------------------------------

    def _one(self) -> None:
        rnd = self.rnd
        roll = rnd.random()
        if roll < 0.08 or not self.ids["printer"]:
            if len(self.ids["printer"]) < self.limits["printer"]:
                return self._create("printer")
        if roll < 0.16 or not self.ids["filament"]:
            if len(self.ids["filament"]) < self.limits["filament"]:
                return self._create("filament")
        if roll < 0.35 and len(self.ids["print_job"]) < self.limits["print_job"]:
            return self._create("print_job")
        if roll < 0.6 and self.ids["print_job"]:
            return self._write_status()
        return self._read()

    def _create(self, kind: str) -> None:
        self.made += 1
        letter = {"print_job": "j"}.get(kind, kind[0])
        tag = f"{letter}-{self.made}"
        oid = f"{letter}{self.made}"
        if kind == "printer":
            body: dict[str, Any] = {"company": "Acme", "model": tag}
            command = create_printer(id=oid, company="Acme", model=tag, at=AT)
            op_kind = OpKind.CREATE_PRINTER
        elif kind == "filament":
            total = self.rnd.choice([300, 500, 800])
            body = {"type": "pla", "color": tag, "total_weight_in_grams": total}
            command = create_filament(
                id=oid,
                type="PLA",
                color=tag,
                total_weight_in_grams=total,
                remaining_weight_in_grams=total,
                at=AT,
            )
            op_kind = OpKind.CREATE_FILAMENT
        else:
            printer = self.rnd.choice(self.ids["printer"] or ["nope"])
            filament = self.rnd.choice(self.ids["filament"] or ["nope"])
            weight = self.rnd.choice([50, 100, 150, 200])
            body = {
                "printer_id": printer,
                "filament_id": filament,
                "filepath": tag,
                "print_weight_in_grams": weight,
            }
            command = create_print_job(
                id=oid,
                printer_id=printer,
                filament_id=filament,
                filepath=tag,
                print_weight_in_grams=weight,
                at=AT,
            )
            op_kind = OpKind.CREATE_JOB
        self._write(op_kind, {"body": body}, command)

    def _write_status(self) -> None:
        job = self.rnd.choice(self.ids["print_job"])
        target = self.rnd.choice(["Running", "Running", "Done", "Canceled"])
        self._write(
            OpKind.SET_JOB_STATUS,
            {"job_id": job, "status": target},
            set_print_job_status(id=job, status=target, at=AT),
        )

    def _write(self, kind: OpKind, args: dict[str, Any], command: dict[str, Any]) -> None:
        rnd = self.rnd
        key = f"k-{len(self.ops)}" if rnd.random() < self.p_key else None
        if key is not None:
            args = dict(args, idempotency_key=key)
        unknown = rnd.random() < self.p_unknown
        if unknown and rnd.random() < 0.5:
            # Lost before reaching the log: never takes effect.
            op = self._record(kind, args, "info", None, None)
        else:
            result = self._apply(command, key)
            op = self._record(kind, args, "info" if unknown else "ok", result, None)
            if not unknown:
                op = self._answer(op, result)
        if unknown and key is not None and rnd.random() < 0.7:
            self.retries.append((self.point + rnd.randint(1, 4), op))

    def _retry(self, first: Operation) -> None:
        key = first.idempotency_key
        assert key is not None
        command = self._command_for(first)
        result = self._apply(command, key)
        op = self._record(first.kind, dict(first.args), "ok", result, None)
        self._replace(op, self._answer(op, result))

    def _command_for(self, op: Operation) -> dict[str, Any]:
        # Retries carry fresh ids; they are only applied if the first
        # attempt never was.
        self.made += 1
        args = op.args
        if op.kind is OpKind.SET_JOB_STATUS:
            return set_print_job_status(id=args["job_id"], status=args["status"], at=AT)
        body = args["body"]
        oid = f"r{self.made}"
        if op.kind is OpKind.CREATE_PRINTER:
            return create_printer(id=oid, company=body["company"], model=body["model"], at=AT)
        if op.kind is OpKind.CREATE_FILAMENT:
            total = body["total_weight_in_grams"]
            return create_filament(
                id=oid,
                type="PLA",
                color=body["color"],
                total_weight_in_grams=total,
                remaining_weight_in_grams=total,
                at=AT,
            )
        return create_print_job(
            id=oid,
            printer_id=body["printer_id"],
            filament_id=body["filament_id"],
            filepath=body["filepath"],
            print_weight_in_grams=body["print_weight_in_grams"],
            at=AT,
        )

    def _apply(self, command: dict[str, Any], key: str | None) -> dict[str, Any]:
        if key is not None and key in self.sessions:
            return self.sessions[key]
        self.applied += 1
        result = self.farm.apply(self.applied, command)
        if key is not None:
            self.sessions[key] = result
        for kind, obj in result.get("ok", {}).items():
            if kind in _KINDS:
                if obj["id"] not in self.versions:
                    self.ids[kind].append(obj["id"])
                self.versions.setdefault(obj["id"], []).append((self.point, obj))
        return result

    # -- reads -------------------------------------------------------------------------

    def _read(self) -> None:
        rnd = self.rnd
        kind = rnd.choice(list(_KINDS))
        stale = rnd.random() < self.p_stale
        lie = not stale and rnd.random() < self.p_lie
        at = self.point - rnd.uniform(0, self.lag) if stale or lie else self.point
        consistency = Consistency.STALE if stale else Consistency.LINEARIZABLE
        if rnd.random() < 0.3:
            op_kind = {
                "printer": OpKind.LIST_PRINTERS,
                "filament": OpKind.LIST_FILAMENTS,
                "print_job": OpKind.LIST_JOBS,
            }[kind]
            query: dict[str, Any] = {}
            if kind == "print_job" and rnd.random() < 0.5:
                query["status"] = rnd.choice(["Queued", "running", "Done"])
            items = []
            for oid in self.ids[kind]:
                obj = self._version(oid, at)
                if obj is None:
                    continue
                if "status" in query and obj["status"].lower() != query["status"].lower():
                    continue
                items.append(obj)
            op = self._record(op_kind, {"query": query}, "ok", None, consistency)
            self._replace(op, _with(op, outcome=Outcome.OK, status=200, body=items))
            return
        op_kind = {
            "printer": OpKind.READ_PRINTER,
            "filament": OpKind.READ_FILAMENT,
            "print_job": OpKind.READ_JOB,
        }[kind]
        if not self.ids[kind]:
            return
        oid = rnd.choice(self.ids[kind])
        obj = self._version(oid, at)
        op = self._record(op_kind, {"id": oid}, "ok", None, consistency)
        if obj is None:
            code = {"print_job": "job_not_found"}.get(kind, f"{kind}_not_found")
            error = {"error": {"code": code, "message": "no"}}
            self._replace(op, _with(op, outcome=Outcome.FAIL, status=404, body=error, error=code))
        else:
            self._replace(op, _with(op, outcome=Outcome.OK, status=200, body=obj))

    def _version(self, oid: str, at: float) -> dict[str, Any] | None:
        found = None
        for point, obj in self.versions.get(oid, []):
            if point <= at:
                found = obj
        return found

    def _final(self) -> dict[str, Any]:
        farm = self.farm
        return {
            "printers": [p.to_json() for p in farm.printers().items],
            "filaments": [f.to_json() for f in farm.filaments().items],
            "print_jobs": [j.to_json() for j in farm.jobs().items],
        }

    # -- recording -----------------------------------------------------------------------

    def _record(
        self,
        kind: OpKind,
        args: dict[str, Any],
        outcome: str,
        result: dict[str, Any] | None,
        consistency: Consistency | None,
    ) -> Operation:
        rnd = self.rnd
        invoke = self.point - rnd.uniform(0, self.window)
        complete: float | None = self.point + rnd.uniform(0, self.window)
        if outcome == "info":
            complete = None if rnd.random() < 0.5 else complete
            status = None if complete is None else 503
            error = "timeout" if complete is None else "no_leader"
            body = None if complete is None else {"error": {"code": error, "message": "x"}}
        else:
            status, error, body = None, None, None
        op = Operation(
            index=len(self.ops),
            process=len(self.ops) % 10,
            kind=kind,
            args=args,
            node=self.rnd.choice(self.nodes),
            invoke=invoke,
            complete=complete,
            outcome=Outcome.INFO if outcome == "info" else Outcome.OK,
            status=status,
            body=body,
            error=error,
            consistency=consistency,
        )
        self.ops.append(op)
        return op

    def _answer(self, op: Operation, result: dict[str, Any]) -> Operation:
        if "ok" in result:
            kind = {OpKind.CREATE_PRINTER: "printer", OpKind.CREATE_FILAMENT: "filament"}
            obj = result["ok"][kind.get(op.kind, "print_job")]
            status = 201 if op.kind is not OpKind.SET_JOB_STATUS else 200
            new = _with(op, outcome=Outcome.OK, status=status, body=obj)
        else:
            code = result["error"]["code"]
            new = _with(
                op,
                outcome=Outcome.FAIL,
                status=_STATUS.get(code, 400),
                body={"error": result["error"]},
                error=code,
            )
        self._replace(op, new)
        return new

    def _replace(self, old: Operation, new: Operation) -> None:
        self.ops[old.index] = new


def _with(op: Operation, **changes: Any) -> Operation:
    fields = {
        "index": op.index,
        "process": op.process,
        "kind": op.kind,
        "args": op.args,
        "node": op.node,
        "invoke": op.invoke,
        "complete": op.complete,
        "outcome": op.outcome,
        "status": op.status,
        "body": op.body,
        "error": op.error,
        "consistency": op.consistency,
    }
    fields.update(changes)
    return Operation(**fields)
