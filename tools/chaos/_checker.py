# -*- test-case-name: tests.chaos.test_checker -*-
"""
Judge a chaos-run L{History}: is everything the clients saw explainable by a
correct, linearizable print farm, and is the final state right?

L{check_history} runs these checks and returns a L{Report}:

  - C{well_formed}: the history itself follows the recording rules (unique
    tags, retries that repeat their request...).  A failure here is a runner
    bug, and the subjects it touches are not judged further.
  - C{linearizable}: Lowe's just-in-time search (L{tools.chaos._model})
    over each sub-history: one per printer, one per job (its status as a
    register with the transition rules), one per filament with all the
    jobs that use it.  Linearizability is compositional (Herlihy and Wing),
    so checking objects apart is exact for operations that touch one
    object; operations that touch several (a job creation reads its printer
    and reserves filament; a list reads everything) are projected onto each
    object they touch, which can only miss violations, never invent them.
    Rejections (4xx) are reads: C{invalid_transition} says the job's status
    did not allow the change at some instant of the request.  Stale reads
    are left out.  Responses that do not echo what was written (a printer
    read with another model) are reported here too.
  - C{stale_reads}: every stale read returned values that some operation
    invoked before the read completed could have written.
  - C{no_lost_writes}: every acknowledged create is in every node's final
    state, and every acknowledged status change is reflected there.
  - C{no_double_apply}: one object per tag (so per idempotent request).
  - C{filament_accounting}: remaining weight within 0..total wherever it is
    seen, and in the final states remaining == initial - sum(Done weights)
    and reserved (Queued + Running) <= remaining.
  - C{convergence}: every node ends with the same state.

Every violation names the operations that prove it; linearizability
violations are shrunk first (observations dropped, acknowledged writes
weakened to unknown outcome, as long as the search still fails), so what is
reported is a small sub-history that cannot be linearized.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import attrs

from ._history import (
    CREATED_KIND,
    FINAL_KEYS,
    LISTS,
    READ_KIND,
    READS,
    TAG_FIELDS,
    Consistency,
    History,
    Operation,
    OpKind,
    Outcome,
)
from ._model import (
    ABSENT,
    CANCELED,
    DONE,
    F_CREATE,
    F_OBS,
    J_CREATE,
    J_INSUFFICIENT,
    J_INVALID,
    J_NOT,
    J_OBS,
    J_SET,
    MULTI,
    QUEUED,
    RESERVING,
    RUNNING,
    STATUS_NAMES,
    Action,
    Call,
    SearchResult,
    State,
    Verdict,
    filament_state,
    is_observation,
    job_state,
    parse_status,
    printer_state,
    search,
)

WELL_FORMED = "well_formed"
LINEARIZABLE = "linearizable"
STALE_READS = "stale_reads"
NO_LOST_WRITES = "no_lost_writes"
NO_DOUBLE_APPLY = "no_double_apply"
FILAMENT_ACCOUNTING = "filament_accounting"
CONVERGENCE = "convergence"

CHECKS = (
    WELL_FORMED,
    LINEARIZABLE,
    STALE_READS,
    NO_LOST_WRITES,
    NO_DOUBLE_APPLY,
    FILAMENT_ACCOUNTING,
    CONVERGENCE,
)

#: Default search bound: configurations explored per sub-history.
DEFAULT_BOUND = 200_000
#: Default model steps spent shrinking one failing sub-history (about a
#: second); the whole run spends at most four times that.
DEFAULT_SHRINK_STEPS = 1_000_000


@attrs.frozen
class Violation:
    """
    One thing that went wrong.

    @ivar check: the check's name.
    @ivar subject: what it is about (C{"job 'j-17'"}, C{"node n2"}...).
    @ivar message: what is wrong, for a human.
    @ivar ops: the history indexes of the operations that prove it (for
        linearizability, a shrunk sub-history: every one of them is needed).
    @ivar context: operations that may matter but prove nothing by
        themselves (writes of unknown outcome the explanation may rely on).
    @ivar details: machine-readable facts (ids, nodes, values).
    """

    check: str
    subject: str
    message: str
    ops: tuple[int, ...] = ()
    context: tuple[int, ...] = ()
    details: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "subject": self.subject,
            "message": self.message,
            "ops": list(self.ops),
            "context": list(self.context),
            "details": dict(self.details),
        }


@attrs.frozen
class CheckResult:
    """
    The verdict of one check.

    @ivar notes: why parts were not decided (bound exceeded, no final
        state...) or were skipped.
    @ivar stats: numbers about the work done.
    """

    name: str
    verdict: Verdict
    violations: tuple[Violation, ...] = ()
    notes: tuple[str, ...] = ()
    stats: Mapping[str, Any] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "verdict": self.verdict.value,
            "violations": [v.to_json() for v in self.violations],
            "notes": list(self.notes),
            "stats": dict(self.stats),
        }


@attrs.frozen
class Summary:
    """
    What the history contained and how the checks went.

    @ivar by_kind: per operation kind, per outcome (after the checker's own
        classification: a 5xx recorded as C{fail} counts as C{info}).
    @ivar unknown: operations of unknown outcome.
    @ivar retried_keys: idempotency keys sent more than once.
    @ivar objects: objects seen (in answers or final states) per kind.
    @ivar nodes: the nodes with a final state.
    """

    operations: int
    by_kind: Mapping[str, Mapping[str, int]]
    unknown: int
    retried_keys: int
    objects: Mapping[str, int]
    nodes: tuple[str, ...]
    passed: tuple[str, ...]
    failed: tuple[str, ...]
    undecided: tuple[str, ...]
    elapsed: float

    def to_json(self) -> dict[str, Any]:
        return {
            "operations": self.operations,
            "by_kind": {k: dict(v) for k, v in self.by_kind.items()},
            "unknown": self.unknown,
            "retried_keys": self.retried_keys,
            "objects": dict(self.objects),
            "nodes": list(self.nodes),
            "passed": list(self.passed),
            "failed": list(self.failed),
            "undecided": list(self.undecided),
            "elapsed": self.elapsed,
        }


@attrs.frozen
class Report:
    """
    Everything L{check_history} found.

    @ivar verdict: C{FAIL} if any check failed, else C{UNKNOWN} if any could
        not decide, else C{PASS}.
    """

    verdict: Verdict
    checks: tuple[CheckResult, ...]
    summary: Summary

    def check(self, name: str) -> CheckResult:
        """
        The result of the check called C{name}.
        """
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def violations(self) -> tuple[Violation, ...]:
        return tuple(v for c in self.checks for v in c.violations)

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "checks": [c.to_json() for c in self.checks],
            "summary": self.summary.to_json(),
        }


# -- normalisation ---------------------------------------------------------------


@attrs.frozen
class _Logical:
    """
    One logical operation: a single request, or all the attempts that
    shared an idempotency key (they take effect at most once, between the
    first invocation and the first definite answer).
    """

    ref: int
    attempts: tuple[int, ...]
    kind: OpKind
    args: Mapping[str, Any]
    invoke: float
    complete: float
    outcome: Outcome
    body: Any
    error: str | None
    consistency: Consistency | None
    key: str | None

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.OK


@attrs.define
class _Entity:
    """
    Everything known about one object, identified by its tag.
    """

    kind: str
    tag: str
    creates: list[_Logical] = attrs.field(factory=list)
    ids: set[str] = attrs.field(factory=set)
    body: Mapping[str, Any] | None = None
    first_invoke: float = math.inf
    filament: str | None = None
    printer: str | None = None
    weight: int = 0
    slot: int | None = None
    skip: str | None = None
    final: dict[str, list[Mapping[str, Any]]] = attrs.field(factory=dict)

    @property
    def label(self) -> str:
        name = {"print_job": "job"}.get(self.kind, self.kind)
        ids = ", ".join(sorted(self.ids))
        return f"{name} {self.tag!r}" + (f" (id {ids})" if ids else "")

    def create_refs(self) -> tuple[int, ...]:
        return tuple(a for c in self.creates for a in c.attempts)


class _Context:
    """
    The history, normalised: logical operations, entities, id maps and
    every observation of an object; plus the violations found on the way.
    """

    def __init__(self, history: History) -> None:
        self.history = history
        self.wf: list[Violation] = []
        self.static: list[Violation] = []
        self.logical: list[_Logical] = []
        self.entities: dict[tuple[str, str], _Entity] = {}
        self.id_to_tag: dict[str, dict[str, str]] = {k: {} for k in TAG_FIELDS}
        # (kind, object, the logical op that saw it or None, the node for a final state)
        self.observations: list[tuple[str, Mapping[str, Any], _Logical | None, str | None]] = []
        self.final: dict[str, dict[str, list[Mapping[str, Any]]]] = {}
        self.by_kind: dict[str, Counter[str]] = {k.value: Counter() for k in OpKind}
        self.unknown = 0
        self.retried_keys = 0
        times = [op.invoke for op in history.operations] + [
            op.complete for op in history.operations if op.complete is not None
        ]
        self.end = (max(times) if times else 0.0) + 1.0
        self._normalise()
        self._final_states()
        self._identify()

    # -- operations ----------------------------------------------------------

    def _normalise(self) -> None:
        keyed: dict[str, list[Operation]] = defaultdict(list)
        for op in self.history.operations:
            outcome = op.outcome
            if outcome is Outcome.FAIL and op.status is not None and op.status >= 500:
                outcome = Outcome.INFO
            self.by_kind[op.kind.value][outcome.value] += 1
            if outcome is Outcome.INFO:
                self.unknown += 1
            if op.complete is None and outcome is not Outcome.INFO:
                self.wf.append(
                    Violation(
                        WELL_FORMED,
                        f"operation #{op.index}",
                        f"a {outcome.value} operation needs a completion time",
                        (op.index,),
                    )
                )
                outcome = Outcome.INFO
            if op.kind in READS or op.kind in LISTS:
                if outcome is Outcome.INFO:
                    continue  # a read nobody saw the answer of tells nothing
                if op.consistency is None:
                    self.wf.append(
                        Violation(
                            WELL_FORMED,
                            f"operation #{op.index}",
                            "a read must record its consistency",
                            (op.index,),
                        )
                    )
                    continue
            key = op.idempotency_key if op.kind not in READS and op.kind not in LISTS else None
            if key is not None:
                keyed[key].append(op)
                continue
            self.logical.append(_single(op, outcome))
        for key, attempts in keyed.items():
            if len(attempts) > 1:
                self.retried_keys += 1
            merged = self._merge(key, attempts)
            if merged is not None:
                self.logical.append(merged)
        self.logical.sort(key=lambda lo: lo.ref)

    def _merge(self, key: str, attempts: list[Operation]) -> _Logical | None:
        first = attempts[0]
        for op in attempts[1:]:
            if op.kind is not first.kind or dict(op.args) != dict(first.args):
                self.wf.append(
                    Violation(
                        WELL_FORMED,
                        f"idempotency key {key!r}",
                        "attempts sharing an idempotency key must repeat the same request",
                        tuple(a.index for a in attempts),
                    )
                )
                self.logical.extend(_single(a, _effective(a)) for a in attempts)
                return None
        outcomes = [(op, _effective(op)) for op in attempts]
        oks = [op for op, o in outcomes if o is Outcome.OK]
        fails = [op for op, o in outcomes if o is Outcome.FAIL]
        definite = oks + fails
        complete = min(
            (op.complete for op in definite if op.complete is not None), default=math.inf
        )
        invoke = min(op.invoke for op in attempts)
        refs = tuple(op.index for op in attempts)
        if oks and fails:
            self.static.append(
                Violation(
                    LINEARIZABLE,
                    f"idempotency key {key!r}",
                    "attempts of one idempotent request got different answers: "
                    f"{_answer(oks[0])} and {_answer(fails[0])}",
                    (oks[0].index, fails[0].index),
                )
            )
        elif len({_error_of(op) for op in fails}) > 1:
            self.static.append(
                Violation(
                    LINEARIZABLE,
                    f"idempotency key {key!r}",
                    "attempts of one idempotent request were rejected differently: "
                    + ", ".join(sorted({str(_error_of(op)) for op in fails})),
                    tuple(op.index for op in fails),
                )
            )
        if first.kind is OpKind.SET_JOB_STATUS and len(oks) > 1:
            statuses = {_field(op.body, "status") for op in oks}
            if len(statuses) > 1:
                self.static.append(
                    Violation(
                        LINEARIZABLE,
                        f"idempotency key {key!r}",
                        "retries of one status change answered with different statuses: "
                        + ", ".join(sorted(map(str, statuses))),
                        tuple(op.index for op in oks),
                    )
                )
        if oks:
            outcome, body, error = Outcome.OK, oks[0].body, None
        elif fails:
            outcome, body, error = Outcome.FAIL, fails[0].body, _error_of(fails[0])
        else:
            outcome, body, error = Outcome.INFO, None, None
        return _Logical(
            refs[0], refs, first.kind, first.args, invoke,
            complete if outcome is not Outcome.INFO else math.inf,
            outcome, body, error, None, key,
        )  # fmt: skip

    # -- final states ----------------------------------------------------------

    def _final_states(self) -> None:
        for node in sorted(self.history.final):
            state = self.history.final[node]
            lists: dict[str, list[Mapping[str, Any]]] = {}
            good = True
            for kind, key in FINAL_KEYS.items():
                items = state.get(key)
                if not isinstance(items, list) or not all(
                    isinstance(i, dict) and isinstance(i.get("id"), str) for i in items
                ):
                    good = False
                    break
                lists[kind] = items
            if not good:
                self.wf.append(
                    Violation(
                        WELL_FORMED,
                        f"node {node}",
                        "a final state needs printers, filaments and print_jobs lists "
                        "of objects with ids; this node's is ignored",
                    )
                )
                continue
            self.final[node] = lists

    # -- identities --------------------------------------------------------------

    def entity(self, kind: str, tag: str) -> _Entity:
        key = (kind, tag)
        ent = self.entities.get(key)
        if ent is None:
            ent = self.entities[key] = _Entity(kind, tag)
        return ent

    def by_id(self, kind: str, object_id: object) -> _Entity | None:
        if not isinstance(object_id, str):
            return None
        tag = self.id_to_tag[kind].get(object_id)
        return None if tag is None else self.entities[(kind, tag)]

    def _identify(self) -> None:
        for lo in self.logical:
            kind = CREATED_KIND.get(lo.kind)
            if kind is None:
                continue
            body = lo.args.get("body")
            tag = body.get(TAG_FIELDS[kind]) if isinstance(body, dict) else None
            if not isinstance(tag, str):
                self.wf.append(
                    Violation(
                        WELL_FORMED,
                        f"operation #{lo.ref}",
                        f"a create needs a body with a string {TAG_FIELDS[kind]!r} tag",
                        lo.attempts,
                    )
                )
                continue
            assert isinstance(body, dict)
            ent = self.entity(kind, tag)
            ent.creates.append(lo)
            ent.first_invoke = min(ent.first_invoke, lo.invoke)
            if ent.body is None:
                ent.body = body
        for ent in self.entities.values():
            if len(ent.creates) > 1:
                ent.skip = "its tag was used by several creates"
                self.wf.append(
                    Violation(
                        WELL_FORMED,
                        ent.label,
                        "each create needs its own tag (retries share one only through "
                        "an idempotency key)",
                        ent.create_refs(),
                    )
                )
        for lo in self.logical:
            if lo.ok:
                for kind, obj in _objects_of(lo):
                    self._observe(kind, obj, lo, None)
        for node, lists in self.final.items():
            for kind, items in lists.items():
                for obj in items:
                    self._observe(kind, obj, None, node)
        for ent in self.entities.values():
            if ent.kind == "print_job":
                body = ent.body or {}
                fid, pid, weight = (
                    body.get("filament_id"),
                    body.get("printer_id"),
                    body.get("print_weight_in_grams"),
                )
                if not ent.creates:
                    # A phantom: take what it says about itself.
                    seen = self._first_seen(ent)
                    fid, pid, weight = (
                        seen.get("filament_id"),
                        seen.get("printer_id"),
                        seen.get("print_weight_in_grams"),
                    )
                f = self.by_id("filament", fid)
                p = self.by_id("printer", pid)
                ent.filament = None if f is None else f.tag
                ent.printer = None if p is None else p.tag
                ent.weight = weight if type(weight) is int else 0

    def _observe(
        self, kind: str, obj: Mapping[str, Any], lo: _Logical | None, node: str | None
    ) -> None:
        where = f"final state of {node}" if node is not None else f"#{lo.ref if lo else '?'}"
        tag, oid = obj.get(TAG_FIELDS[kind]), obj.get("id")
        if not isinstance(tag, str) or not isinstance(oid, str):
            self.static.append(
                Violation(
                    LINEARIZABLE,
                    f"{kind} {oid!r}",
                    f"an object without a string id and {TAG_FIELDS[kind]!r}",
                    () if lo is None else (lo.ref,),
                    details={"object": dict(obj), "where": where},
                )
            )
            return
        known = self.id_to_tag[kind].setdefault(oid, tag)
        if known != tag:
            self.static.append(
                Violation(
                    LINEARIZABLE,
                    f"{kind} id {oid}",
                    f"one id seen with two different {TAG_FIELDS[kind]}s: {known!r} and {tag!r}",
                    () if lo is None else (lo.ref,),
                    details={"where": where},
                )
            )
            return
        ent = self.entity(kind, tag)
        ent.ids.add(oid)
        if node is not None:
            ent.final.setdefault(node, []).append(obj)
        self.observations.append((kind, obj, lo, node))

    def _first_seen(self, ent: _Entity) -> Mapping[str, Any]:
        for kind, obj, _, _ in self.observations:
            if kind == ent.kind and obj.get(TAG_FIELDS[kind]) == ent.tag:
                return obj
        return {}


def _where(lo: _Logical | None, node: str | None) -> str:
    return f"final state of {node}" if node is not None else f"#{lo.ref if lo else '?'}"


def _single(op: Operation, outcome: Outcome) -> _Logical:
    complete = op.complete if outcome is not Outcome.INFO and op.complete is not None else math.inf
    return _Logical(
        op.index, (op.index,), op.kind, op.args, op.invoke, complete, outcome,
        op.body if outcome is Outcome.OK else None,
        _error_of(op) if outcome is Outcome.FAIL else None,
        op.consistency, op.idempotency_key,
    )  # fmt: skip


def _effective(op: Operation) -> Outcome:
    if op.outcome is Outcome.FAIL and op.status is not None and op.status >= 500:
        return Outcome.INFO
    if op.complete is None:
        return Outcome.INFO
    return op.outcome


def _error_of(op: Operation) -> str | None:
    if op.error is not None:
        return op.error
    if isinstance(op.body, dict):
        err = op.body.get("error")
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            return str(err["code"])
    return None


def _answer(op: Operation) -> str:
    if _effective(op) is Outcome.OK:
        return f"#{op.index} ok"
    return f"#{op.index} {_error_of(op)}"


def _field(body: Any, name: str) -> Any:
    return body.get(name) if isinstance(body, dict) else None


def _objects_of(lo: _Logical) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """
    The objects an acknowledged operation's answer shows.
    """
    if lo.kind in CREATED_KIND:
        kind = CREATED_KIND[lo.kind]
    elif lo.kind is OpKind.SET_JOB_STATUS:
        kind = "print_job"
    else:
        kind = READ_KIND[lo.kind]
    if lo.kind in LISTS:
        if isinstance(lo.body, list):
            for obj in lo.body:
                if isinstance(obj, dict):
                    yield kind, obj
    elif isinstance(lo.body, dict):
        yield kind, lo.body


def _paged(lo: _Logical) -> bool:
    query = lo.args.get("query") or {}
    return isinstance(query, dict) and ("limit" in query or "cursor" in query)


# -- integrity: answers that echo what was written ---------------------------------


_IMMUTABLE = {
    "printer": ("company", "model"),
    "filament": ("color", "total_weight_in_grams"),
    "print_job": ("printer_id", "filament_id", "filepath", "print_weight_in_grams"),
}


def _integrity(ctx: _Context) -> list[Violation]:
    out: list[Violation] = []
    reported: set[tuple[str, str]] = set()
    for kind, obj, lo, where in ctx.observations:
        ent = ctx.entities[(kind, obj[TAG_FIELDS[kind]])]
        if ent.body is None or (kind, ent.tag) in reported:
            continue
        wrong = [f for f in _IMMUTABLE[kind] if f in ent.body and obj.get(f) != ent.body[f]]
        if kind == "filament" and isinstance(ent.body.get("type"), str):
            if obj.get("type") != ent.body["type"].upper():
                wrong.append("type")
        if kind == "print_job" and parse_status(obj.get("status")) is None:
            wrong.append("status")
        if wrong:
            reported.add((kind, ent.tag))
            out.append(
                Violation(
                    LINEARIZABLE,
                    ent.label,
                    "an answer shows values that were never written: "
                    + ", ".join(f"{f}={obj.get(f)!r}" for f in wrong),
                    ent.create_refs() + (() if lo is None else (lo.ref,)),
                    details={"where": _where(lo, where), "object": dict(obj)},
                )
            )
    for lo in ctx.logical:
        if not lo.ok:
            continue
        expected = None
        if lo.kind is OpKind.CREATE_JOB:
            expected = QUEUED
        elif lo.kind is OpKind.SET_JOB_STATUS:
            expected = parse_status(lo.args.get("status"))
        if expected is not None and parse_status(_field(lo.body, "status")) != expected:
            out.append(
                Violation(
                    LINEARIZABLE,
                    f"operation #{lo.ref}",
                    f"acknowledged with status {_field(lo.body, 'status')!r}, "
                    f"not {STATUS_NAMES[expected]}",
                    lo.attempts,
                )
            )
        if lo.kind is OpKind.LIST_JOBS:
            wanted = parse_status((lo.args.get("query") or {}).get("status"))
            if wanted is not None and isinstance(lo.body, list):
                for obj in lo.body:
                    if isinstance(obj, dict) and parse_status(obj.get("status")) != wanted:
                        out.append(
                            Violation(
                                LINEARIZABLE,
                                f"operation #{lo.ref}",
                                f"a list filtered on {STATUS_NAMES[wanted]} returned a "
                                f"{obj.get('status')} job {obj.get('id')}",
                                (lo.ref,),
                            )
                        )
                        break
    return out


# -- linearizability ------------------------------------------------------------------


@attrs.define
class _Group:
    """
    One sub-history and what it is about.
    """

    subject: str
    entity: _Entity
    initial: State
    calls: list[Call] = attrs.field(factory=list)
    jobs: list[_Entity] = attrs.field(factory=list)


_FINAL_STATUS_ALLOWS: Mapping[int, frozenset[int]] = {
    ABSENT: frozenset(),
    QUEUED: frozenset(),
    RUNNING: frozenset({RUNNING}),
    DONE: frozenset({RUNNING, DONE}),
    CANCELED: frozenset({RUNNING, CANCELED}),
}


class _Projector:
    """
    Build the sub-histories: project each logical operation onto the
    printer, filament and job groups it touches.
    """

    def __init__(self, ctx: _Context) -> None:
        self.ctx = ctx
        self.printers: dict[str, _Group] = {}
        self.filaments: dict[str, _Group] = {}
        self.jobs: dict[str, _Group] = {}
        self.notes: list[str] = []
        self._groups()
        for lo in ctx.logical:
            self._project(lo)
        self._finals()

    def _groups(self) -> None:
        ctx = self.ctx
        for ent in ctx.entities.values():
            if ent.skip is not None:
                self.notes.append(f"{ent.label}: not checked: {ent.skip}")
                continue
            if ent.kind == "printer":
                self.printers[ent.tag] = _Group(ent.label, ent, printer_state())
            elif ent.kind == "print_job":
                if any(c.outcome is not Outcome.FAIL for c in ent.creates) or ent.ids:
                    self.jobs[ent.tag] = _Group(ent.label, ent, job_state())
        for ent in ctx.entities.values():
            if ent.kind != "filament" or ent.skip is not None:
                continue
            initial = _initial_remaining(ent)
            if initial is None:
                self.notes.append(f"{ent.label}: not checked: its initial weight is unknown")
                continue
            jobs = sorted(
                (
                    ctx.entities[("print_job", t)]
                    for t in self.jobs
                    if ctx.entities[("print_job", t)].filament == ent.tag
                ),
                key=lambda j: (j.first_invoke, j.tag),
            )
            for slot, job in enumerate(jobs):
                job.slot = slot
            group = _Group(ent.label, ent, filament_state(initial, len(jobs)))
            group.jobs = jobs
            self.filaments[ent.tag] = group

    def _add(self, group: _Group | None, lo: _Logical, action: Action) -> None:
        if group is not None:
            group.calls.append(Call(lo.ref, lo.invoke, lo.complete, action))

    def _job_groups(self, job: _Entity | None) -> tuple[_Group | None, _Group | None]:
        if job is None or job.tag not in self.jobs:
            return None, None
        fgroup = self.filaments.get(job.filament) if job.filament is not None else None
        if fgroup is not None and job.slot is None:
            fgroup = None
        return self.jobs[job.tag], fgroup

    def _in_final(self, ent: _Entity) -> bool | None:
        if not self.ctx.final:
            return None
        return bool(ent.final)

    def _project(self, lo: _Logical) -> None:
        ctx = self.ctx
        kind = lo.kind
        unknown = lo.outcome is Outcome.INFO
        if kind in CREATED_KIND:
            obj_kind = CREATED_KIND[kind]
            body = lo.args.get("body")
            tag = body.get(TAG_FIELDS[obj_kind]) if isinstance(body, dict) else None
            ent = ctx.entities.get((obj_kind, tag)) if isinstance(tag, str) else None
            if ent is None or not isinstance(body, dict):
                return
            if unknown and self._in_final(ent) is False:
                return  # it never took effect: no node has it
            if kind is OpKind.CREATE_PRINTER:
                if lo.outcome is not Outcome.FAIL:
                    self._add(self.printers.get(ent.tag), lo, (F_CREATE,))
                return
            if kind is OpKind.CREATE_FILAMENT:
                if lo.outcome is not Outcome.FAIL:
                    self._add(self.filaments.get(ent.tag), lo, (F_CREATE,))
                return
            printer = ctx.by_id("printer", body.get("printer_id"))
            filament = ctx.by_id("filament", body.get("filament_id"))
            pgroup = self.printers.get(printer.tag) if printer is not None else None
            fgroup_direct = self.filaments.get(filament.tag) if filament is not None else None
            jgroup, fgroup = self._job_groups(ent)
            weight = ent.weight
            if lo.outcome is not Outcome.FAIL:
                self._add(jgroup, lo, (J_CREATE, 0, weight))
                if fgroup is not None:
                    self._add(fgroup, lo, (J_CREATE, ent.slot, weight))
                if lo.ok:
                    self._add(pgroup, lo, (F_OBS, True, None))
                return
            if lo.error == "printer_not_found":
                self._add(pgroup, lo, (F_OBS, False, None))
            elif lo.error == "filament_not_found":
                self._add(pgroup, lo, (F_OBS, True, None))
                self._add(fgroup_direct, lo, (F_OBS, False, None))
            elif lo.error == "insufficient_filament":
                self._add(pgroup, lo, (F_OBS, True, None))
                w = body.get("print_weight_in_grams")
                if type(w) is int:
                    self._add(fgroup_direct, lo, (J_INSUFFICIENT, w))
            return
        if kind is OpKind.SET_JOB_STATUS:
            job = ctx.by_id("print_job", lo.args.get("job_id"))
            target = parse_status(lo.args.get("status"))
            jgroup, fgroup = self._job_groups(job)
            if job is None or target is None or jgroup is None:
                return
            if unknown and ctx.final:
                finals = {_final_status(job, node) for node in ctx.final}
                if not any(target in _FINAL_STATUS_ALLOWS[f] for f in finals):
                    return  # it never took effect: no node's final status follows from it
            if lo.outcome is not Outcome.FAIL:
                self._add(jgroup, lo, (J_SET, 0, target, job.weight))
                self._add(fgroup, lo, (J_SET, job.slot, target, job.weight))
            elif lo.error == "invalid_transition":
                self._add(jgroup, lo, (J_INVALID, 0, target))
                self._add(fgroup, lo, (J_INVALID, job.slot, target))
            elif lo.error == "job_not_found":
                self._add(jgroup, lo, (J_OBS, 0, ABSENT))
                self._add(fgroup, lo, (J_OBS, job.slot, ABSENT))
            return
        if lo.consistency is not Consistency.LINEARIZABLE:
            return
        if kind in READS:
            self._project_read(lo)
        elif lo.ok:
            self._project_list(lo)

    def _project_read(self, lo: _Logical) -> None:
        obj_kind = READ_KIND[lo.kind]
        if lo.ok:
            if not isinstance(lo.body, dict):
                return
            ent = self.ctx.entities.get((obj_kind, str(lo.body.get(TAG_FIELDS[obj_kind]))))
        elif lo.error == f"{'job' if obj_kind == 'print_job' else obj_kind}_not_found":
            ent = self.ctx.by_id(obj_kind, lo.args.get("id"))
        else:
            return
        if ent is None:
            return
        if obj_kind == "printer":
            self._add(self.printers.get(ent.tag), lo, (F_OBS, lo.ok, None))
        elif obj_kind == "filament":
            remaining = _field(lo.body, "remaining_weight_in_grams") if lo.ok else None
            self._add(self.filaments.get(ent.tag), lo, (F_OBS, lo.ok, remaining))
        else:
            status = _status_code(lo.body) if lo.ok else ABSENT
            if status is None:
                return
            jgroup, fgroup = self._job_groups(ent)
            self._add(jgroup, lo, (J_OBS, 0, status))
            self._add(fgroup, lo, (J_OBS, ent.slot, status))

    def _project_list(self, lo: _Logical) -> None:
        ctx = self.ctx
        obj_kind = READ_KIND[lo.kind]
        seen: dict[str, Mapping[str, Any]] = {}
        if isinstance(lo.body, list):
            for obj in lo.body:
                if isinstance(obj, dict) and isinstance(obj.get(TAG_FIELDS[obj_kind]), str):
                    seen[obj[TAG_FIELDS[obj_kind]]] = obj
        paged = _paged(lo)
        if obj_kind == "printer":
            for tag, group in self.printers.items():
                present = tag in seen
                if present and _acked_before(group.entity, lo.invoke):
                    continue  # trivially true: it exists since then
                if not present and (paged or lo.complete < group.entity.first_invoke):
                    continue
                self._add(group, lo, (F_OBS, present, None))
            return
        if obj_kind == "filament":
            for tag, group in self.filaments.items():
                obj = seen.get(tag)
                if obj is None and (paged or lo.complete < group.entity.first_invoke):
                    continue
                remaining = None if obj is None else obj.get("remaining_weight_in_grams")
                self._add(group, lo, (F_OBS, obj is not None, remaining))
            return
        query = lo.args.get("query") or {}
        wanted = parse_status(query.get("status")) if isinstance(query, dict) else None
        per_filament: dict[str, list[Action]] = defaultdict(list)
        for tag, jgroup in self.jobs.items():
            job = jgroup.entity
            obj = seen.get(tag)
            if obj is None:
                if paged or lo.complete < job.first_invoke:
                    continue
                if isinstance(query, dict) and not _matches_static(job, query, ctx):
                    continue
                sub: Action = (J_OBS, 0, ABSENT) if wanted is None else (J_NOT, 0, wanted)
            else:
                status = _status_code(obj)
                if status is None:
                    continue
                sub = (J_OBS, 0, status)
            self._add(jgroup, lo, sub)
            if job.filament in self.filaments and job.slot is not None:
                per_filament[job.filament].append((sub[0], job.slot, sub[2]))
        for ftag, subs in per_filament.items():
            self._add(self.filaments[ftag], lo, (MULTI, tuple(subs)))

    def _finals(self) -> None:
        ctx = self.ctx
        for n, node in enumerate(sorted(ctx.final)):
            ref = -(n + 1)
            at = Call(ref, ctx.end, ctx.end + 1.0, ())
            for group in self.printers.values():
                group.calls.append(
                    attrs.evolve(at, action=(F_OBS, node in group.entity.final, None))
                )
            for group in self.jobs.values():
                group.calls.append(
                    attrs.evolve(at, action=(J_OBS, 0, _final_status(group.entity, node)))
                )
            for group in self.filaments.values():
                objs = group.entity.final.get(node)
                subs: list[Action] = [
                    (F_OBS, bool(objs), objs[0].get("remaining_weight_in_grams") if objs else None)
                ]
                for job in group.jobs:
                    subs.append((J_OBS, job.slot, _final_status(job, node)))
                group.calls.append(attrs.evolve(at, action=(MULTI, tuple(subs))))


def _acked_before(ent: _Entity, t: float) -> bool:
    return any(c.ok and c.complete < t for c in ent.creates)


def _matches_static(job: _Entity, query: Mapping[str, Any], ctx: _Context) -> bool:
    """
    Whether C{job} could be in a list with these filters, status aside.
    """
    for field, kind, tag in (
        ("printer_id", "printer", job.printer),
        ("filament_id", "filament", job.filament),
    ):
        if field in query:
            other = ctx.by_id(kind, query[field])
            if other is None or other.tag != tag:
                return False
    return True


def _status_code(obj: Any) -> int | None:
    return parse_status(_field(obj, "status"))


def _final_status(job: _Entity, node: str) -> int:
    objs = job.final.get(node)
    if not objs:
        return ABSENT
    code = _status_code(objs[0])
    return ABSENT if code is None else code


def _initial_remaining(ent: _Entity) -> int | None:
    body = ent.body or {}
    value = body.get("remaining_weight_in_grams", body.get("total_weight_in_grams"))
    if type(value) is int:
        return value
    for c in ent.creates:
        if c.ok and type(_field(c.body, "remaining_weight_in_grams")) is int:
            return int(c.body["remaining_weight_in_grams"])
    return None


def _check_linearizable(ctx: _Context, bound: int, shrink_steps: int) -> CheckResult:
    started = time.perf_counter()
    violations = list(ctx.static)
    violations.extend(_integrity(ctx))
    proj = _Projector(ctx)
    notes = list(proj.notes)
    undecided = 0
    explored = 0
    largest = 0
    searched = 0
    shrink_left = 4 * shrink_steps
    failed_jobs: set[str] = set()
    for ent in ctx.entities.values():
        if not ent.creates and ent.skip is None:
            violations.append(
                Violation(
                    LINEARIZABLE,
                    ent.label,
                    "an object that no operation of the history created",
                    details={"ids": sorted(ent.ids)},
                )
            )
            if ent.kind == "print_job":
                failed_jobs.add(ent.tag)
    ordered: list[tuple[str, _Group]] = [("printer", g) for g in proj.printers.values()]
    ordered += [("print_job", g) for g in proj.jobs.values()]
    ordered += [("filament", g) for g in proj.filaments.values()]
    for kind, group in ordered:
        if not group.entity.creates:
            continue
        if kind == "filament":
            bad = [j for j in group.jobs if j.tag in failed_jobs]
            if bad:
                notes.append(
                    f"{group.subject}: not checked: its job {bad[0].tag!r} is not linearizable"
                )
                continue
        calls = sorted(group.calls, key=lambda c: (c.invoke, c.ref))
        result = search(calls, group.initial, bound)
        searched += 1
        explored += result.explored
        largest = max(largest, len(calls))
        if result.verdict is Verdict.UNKNOWN:
            undecided += 1
            notes.append(
                f"{group.subject}: undecided: bound of {bound} configurations exceeded "
                f"({len(calls)} operations)"
            )
            continue
        if result.verdict is Verdict.PASS:
            continue
        if kind == "print_job":
            failed_jobs.add(group.entity.tag)
        if shrink_left > 0:
            budget = min(shrink_steps, shrink_left)
            calls, result, spent = _shrink(calls, group.initial, bound, budget, result)
            shrink_left -= spent
        violations.append(_explain(group, calls, result, sorted(ctx.final)))
    verdict = Verdict.FAIL if violations else (Verdict.UNKNOWN if undecided else Verdict.PASS)
    return CheckResult(
        LINEARIZABLE,
        verdict,
        tuple(violations),
        tuple(notes),
        {
            "sub_histories": searched,
            "undecided": undecided,
            "configurations": explored,
            "largest_sub_history": largest,
            "seconds": round(time.perf_counter() - started, 3),
        },
    )


def _shrink(
    calls: list[Call], initial: State, bound: int, budget: int, result: SearchResult
) -> tuple[list[Call], SearchResult, int]:
    """
    Weaken C{calls} while they stay non-linearizable: drop observations
    (reads, rejections, final states), make acknowledged writes of unknown
    outcome.  Both only add linearizations, so what is left still proves the
    violation, and (budget permitting) every definite operation left is
    needed for it.  (Dropping a final state is sound although unknown writes
    were resolved against it: a linearization of the whole history would
    not have used those writes anyway.)

    Trials are searches too; they stop when C{budget} model steps are spent,
    leaving a valid but maybe larger witness.  Returns the witness, its
    search result and the steps spent.
    """
    state = [0] * len(calls)  # 0 kept, 1 weakened, 2 dropped
    spent = [0]
    trial_bound = min(bound, max(20_000, 10 * result.explored))

    def build() -> list[Call]:
        out = []
        for c, s in zip(calls, state, strict=True):
            if s == 0:
                out.append(c)
            elif s == 1:
                out.append(attrs.evolve(c, complete=math.inf))
        # Nothing invoked after the last return can be linearized before one.
        last = max((c.complete for c in out if c.definite), default=-math.inf)
        return [c for c in out if c.invoke <= last]

    def still_fails(trial: Sequence[int]) -> bool:
        if spent[0] >= budget or not trial:
            return False
        saved = [state[i] for i in trial]
        for i in trial:
            state[i] = 2 if is_observation(calls[i].action) else 1
        found = search(build(), initial, trial_bound, budget - spent[0])
        spent[0] += found.steps
        if found.verdict is Verdict.FAIL:
            return True
        for i, s in zip(trial, saved, strict=True):
            state[i] = s
        return False

    def reduce(wanted: Callable[[Call], bool]) -> None:
        cands = [i for i, c in enumerate(calls) if state[i] == 0 and c.definite and wanted(c)]
        chunk = max(1, len(cands) // 2)
        while cands and spent[0] < budget:
            i = 0
            while i < len(cands) and spent[0] < budget:
                if still_fails(cands[i : i + chunk]):
                    del cands[i : i + chunk]
                else:
                    i += chunk
            if chunk == 1:
                break
            chunk = max(1, chunk // 2)

    # Everything invoked after the operation the search got stuck on first,
    # then observations (cheap: the search gets smaller), then writes
    # (dear: every weakened write stays a candidate until the end).
    if result.stuck is not None:
        horizon = calls[result.stuck].complete
        still_fails([i for i, c in enumerate(calls) if c.definite and c.invoke > horizon])
    reduce(lambda c: is_observation(c.action))
    reduce(lambda c: c.ref >= 0)
    shrunk = build()
    final = search(shrunk, initial, bound)
    if final.verdict is not Verdict.FAIL:  # cannot happen: the search is deterministic
        return calls, result, spent[0]
    return shrunk, final, spent[0]


def _explain(
    group: _Group, calls: list[Call], result: SearchResult, nodes: Sequence[str]
) -> Violation:
    essential = tuple(sorted({c.ref for c in calls if c.definite and c.ref >= 0}))
    horizon = max((c.complete for c in calls if c.definite and c.ref >= 0), default=math.inf)
    context = tuple(
        sorted({c.ref for c in calls if not c.definite and c.ref >= 0 and c.invoke <= horizon})
    )
    finals = sorted({nodes[-c.ref - 1] for c in calls if c.ref < 0})
    stuck_call = calls[result.stuck] if result.stuck is not None else None
    if stuck_call is None:
        where = "nothing"
    elif stuck_call.ref < 0:
        where = f"the final state of {nodes[-stuck_call.ref - 1]}"
    else:
        where = f"#{stuck_call.ref}"
    if stuck_call is not None:
        where += f" ({_describe_action(group, stuck_call.action)})"
    states = [_describe_state(group, s) for s in result.states]
    shown = " | ".join(states[:2]) + (" | ..." if len(states) > 2 else "")
    return Violation(
        LINEARIZABLE,
        group.subject,
        f"no order of these operations is allowed by the model: {where} cannot take "
        f"effect when the {_noun(group)} is: {shown or 'in no state at all'}",
        essential,
        context,
        {
            "stuck": None if stuck_call is None else stuck_call.ref,
            "final_states_of": finals,
            "states": states,
        },
    )


def _describe_action(group: _Group, action: Action) -> str:
    """
    What an operation did or saw, in the terms of C{group}.
    """
    code = action[0]
    if code == MULTI:
        return "; ".join(_describe_action(group, a) for a in action[1])
    if code == F_CREATE:
        return "creates it"
    if code == F_OBS:
        if not action[1]:
            return "finds it does not exist"
        return "finds it exists" + (f", {action[2]} g remaining" if action[2] is not None else "")
    if code == J_INSUFFICIENT:
        return f"finds less than {action[1]} g available"
    job = group.jobs[action[1]].tag if group.jobs else group.entity.tag
    if code == J_CREATE:
        return f"creates job {job!r} ({action[2]} g)"
    if code == J_SET:
        return f"moves job {job!r} to {STATUS_NAMES[action[2]]}"
    if code == J_INVALID:
        return f"finds job {job!r} cannot move to {STATUS_NAMES[action[2]]}"
    if code == J_OBS:
        if action[2] == ABSENT:
            return f"finds job {job!r} does not exist"
        return f"finds job {job!r} {STATUS_NAMES[action[2]]}"
    return f"finds job {job!r} is not {STATUS_NAMES[action[2]]}"


def _noun(group: _Group) -> str:
    return {"printer": "printer", "filament": "filament", "print_job": "job"}[group.entity.kind]


def _describe_state(group: _Group, state: State) -> str:
    exists, remaining, available, statuses = state
    kind = group.entity.kind
    if kind == "printer":
        return "created" if exists else "not created"
    if kind == "print_job":
        return STATUS_NAMES[statuses[0]]
    if not exists:
        return "not created"
    jobs = ", ".join(
        f"{job.tag}={STATUS_NAMES[s]}"
        for job, s in zip(group.jobs, statuses, strict=True)
        if s != ABSENT
    )
    return f"remaining {remaining} g, available {available} g" + (f", jobs {jobs}" if jobs else "")


# -- stale reads -------------------------------------------------------------------------


def _check_stale(ctx: _Context) -> CheckResult:
    violations: list[Violation] = []
    notes: list[str] = []
    checked = 0
    done_ops: dict[str, list[_Logical]] = defaultdict(list)
    set_ops: dict[str, list[tuple[int, _Logical]]] = defaultdict(list)
    for lo in ctx.logical:
        if lo.kind is OpKind.SET_JOB_STATUS and lo.outcome is not Outcome.FAIL:
            job = ctx.by_id("print_job", lo.args.get("job_id"))
            target = parse_status(lo.args.get("status"))
            if job is not None and target is not None:
                set_ops[job.tag].append((target, lo))
                if target == DONE:
                    done_ops[job.tag].append(lo)
    jobs_of: dict[str, list[_Entity]] = defaultdict(list)
    for ent in ctx.entities.values():
        if ent.kind == "print_job" and ent.filament is not None:
            jobs_of[ent.filament].append(ent)
    for lo in ctx.logical:
        if not lo.ok or lo.consistency is not Consistency.STALE:
            continue
        for kind, obj in _objects_of(lo):
            tag = obj.get(TAG_FIELDS[kind])
            if not isinstance(tag, str):
                continue
            found = ctx.entities.get((kind, tag))
            if found is None:
                continue
            ent = found
            checked += 1
            creates = [c for c in ent.creates if c.outcome is not Outcome.FAIL]
            if not any(c.invoke <= lo.complete for c in creates):
                violations.append(
                    Violation(
                        STALE_READS,
                        ent.label,
                        "a stale read saw an object before anyone asked to create it",
                        (lo.ref,) + ent.create_refs(),
                    )
                )
                continue
            if kind == "filament":
                initial = _initial_remaining(ent)
                remaining = obj.get("remaining_weight_in_grams")
                if initial is None or type(remaining) is not int:
                    continue
                weights = [
                    j.weight
                    for j in jobs_of[ent.tag]
                    if any(d.invoke <= lo.complete for d in done_ops[j.tag])
                ]
                sums = _subset_sums(weights, limit=100_000)
                if sums is None:
                    notes.append(f"{ent.label}: too many Done jobs to check stale weights")
                    continue
                if initial - remaining not in sums:
                    violations.append(
                        Violation(
                            STALE_READS,
                            ent.label,
                            f"a stale read saw {remaining} g remaining, which no set of Done "
                            f"jobs invoked before it explains (initial {initial} g)",
                            (lo.ref,),
                            details={"remaining": remaining, "initial": initial},
                        )
                    )
            elif kind == "print_job":
                status = _status_code(obj)
                if status == QUEUED:
                    continue
                if not any(t == status and s.invoke <= lo.complete for t, s in set_ops[tag]):
                    violations.append(
                        Violation(
                            STALE_READS,
                            ent.label,
                            f"a stale read saw status {obj.get('status')!r}, which no status "
                            "change invoked before it wrote",
                            (lo.ref,),
                        )
                    )
    return CheckResult(
        STALE_READS,
        Verdict.FAIL if violations else Verdict.PASS,
        tuple(violations),
        tuple(notes),
        {"objects_checked": checked},
    )


def _subset_sums(weights: Sequence[int], limit: int) -> set[int] | None:
    sums = {0}
    for w in weights:
        sums |= {s + w for s in sums}
        if len(sums) > limit:
            return None
    return sums


# -- final state ------------------------------------------------------------------------


def _no_final(name: str) -> CheckResult:
    return CheckResult(name, Verdict.UNKNOWN, notes=("no final state in the history",))


def _check_lost(ctx: _Context) -> CheckResult:
    if not ctx.final:
        return _no_final(NO_LOST_WRITES)
    violations: list[Violation] = []
    for ent in ctx.entities.values():
        acked = [c for c in ent.creates if c.ok]
        if not acked:
            continue
        missing = [n for n in ctx.final if n not in ent.final]
        if missing:
            violations.append(
                Violation(
                    NO_LOST_WRITES,
                    ent.label,
                    f"an acknowledged create is missing from the final state of "
                    f"{', '.join(missing)}",
                    acked[0].attempts,
                    details={"nodes": missing},
                )
            )
    for lo in ctx.logical:
        if lo.kind is not OpKind.SET_JOB_STATUS or not lo.ok:
            continue
        job = ctx.by_id("print_job", lo.args.get("job_id"))
        target = parse_status(lo.args.get("status"))
        if job is None or target is None:
            continue
        accept = {RUNNING: {RUNNING, DONE, CANCELED}}.get(target, {target})
        for node in sorted(ctx.final):
            status = _final_status(job, node)
            if status != ABSENT and status not in accept:
                violations.append(
                    Violation(
                        NO_LOST_WRITES,
                        job.label,
                        f"an acknowledged change to {STATUS_NAMES[target]} is lost on "
                        f"{node}: its final status is {STATUS_NAMES[status]}",
                        lo.attempts,
                        details={"node": node},
                    )
                )
    return CheckResult(
        NO_LOST_WRITES, Verdict.FAIL if violations else Verdict.PASS, tuple(violations)
    )


def _check_double(ctx: _Context) -> CheckResult:
    violations: list[Violation] = []
    for ent in ctx.entities.values():
        per_node = {n: len(objs) for n, objs in ent.final.items() if len(objs) > 1}
        if len(ent.ids) > 1 or per_node:
            keys = sorted({c.key for c in ent.creates if c.key is not None})
            violations.append(
                Violation(
                    NO_DOUBLE_APPLY,
                    ent.label,
                    f"one create made {max(len(ent.ids), *per_node.values(), 0)} objects"
                    + (f" (idempotency key {', '.join(map(repr, keys))})" if keys else ""),
                    ent.create_refs(),
                    details={"ids": sorted(ent.ids), "per_node": per_node, "keys": keys},
                )
            )
            ent.skip = ent.skip or "it was created more than once"
    notes = () if ctx.final else ("no final state: only the answers seen during the run",)
    return CheckResult(
        NO_DOUBLE_APPLY, Verdict.FAIL if violations else Verdict.PASS, tuple(violations), notes
    )


def _check_accounting(ctx: _Context) -> CheckResult:
    violations: list[Violation] = []
    reported: set[str] = set()
    for kind, obj, lo, where in ctx.observations:
        if kind != "filament":
            continue
        total, remaining = obj.get("total_weight_in_grams"), obj.get("remaining_weight_in_grams")
        ent = ctx.entities[(kind, obj[TAG_FIELDS[kind]])]
        if ent.tag in reported:
            continue
        if type(total) is not int or type(remaining) is not int or not 0 <= remaining <= total:
            reported.add(ent.tag)
            violations.append(
                Violation(
                    FILAMENT_ACCOUNTING,
                    ent.label,
                    f"remaining weight {remaining!r} is not within 0..{total!r}",
                    () if lo is None else (lo.ref,),
                    details={"where": _where(lo, where)},
                )
            )
    for node in sorted(ctx.final):
        lists = ctx.final[node]
        printers = {p["id"] for p in lists["printer"]}
        filaments = {f["id"]: f for f in lists["filament"]}
        done: Counter[str] = Counter()
        reserved: Counter[str] = Counter()
        for job in lists["print_job"]:
            fid, weight = str(job.get("filament_id")), job.get("print_weight_in_grams")
            status = _status_code(job)
            if fid not in filaments or job.get("printer_id") not in printers:
                violations.append(
                    Violation(
                        FILAMENT_ACCOUNTING,
                        f"job {job.get('id')} on {node}",
                        "the job names a printer or filament that this node does not have",
                        details={"node": node, "job": dict(job)},
                    )
                )
                continue
            if type(weight) is not int:
                continue
            if status == DONE:
                done[fid] += weight
            elif status in RESERVING:
                reserved[fid] += weight
        for fid, fil in filaments.items():
            fent = ctx.entities.get(("filament", str(fil.get(TAG_FIELDS["filament"]))))
            initial = _initial_remaining(fent) if fent is not None else None
            if initial is None:
                initial = fil.get("total_weight_in_grams")
            remaining = fil.get("remaining_weight_in_grams")
            if type(remaining) is not int or type(initial) is not int:
                continue
            label = fent.label if fent is not None else f"filament {fid}"
            if remaining != initial - done[fid]:
                violations.append(
                    Violation(
                        FILAMENT_ACCOUNTING,
                        label,
                        f"on {node}: remaining {remaining} g, but initial {initial} g minus "
                        f"{done[fid]} g of Done jobs is {initial - done[fid]} g",
                        details={"node": node},
                    )
                )
            if reserved[fid] > remaining:
                violations.append(
                    Violation(
                        FILAMENT_ACCOUNTING,
                        label,
                        f"on {node}: Queued and Running jobs reserve {reserved[fid]} g, "
                        f"more than the {remaining} g remaining",
                        details={"node": node},
                    )
                )
    if violations:
        verdict = Verdict.FAIL
    else:
        verdict = Verdict.PASS if ctx.final else Verdict.UNKNOWN
    notes = () if ctx.final else ("no final state: only weights seen during the run",)
    return CheckResult(FILAMENT_ACCOUNTING, verdict, tuple(violations), notes)


def _check_convergence(ctx: _Context, max_examples: int) -> CheckResult:
    if not ctx.final:
        return _no_final(CONVERGENCE)
    nodes = sorted(ctx.final)
    if len(nodes) == 1:
        return CheckResult(CONVERGENCE, Verdict.PASS, notes=("only one node's final state",))
    base = nodes[0]
    violations: list[Violation] = []
    for node in nodes[1:]:
        for kind in TAG_FIELDS:
            left = {o["id"]: o for o in ctx.final[base][kind]}
            right = {o["id"]: o for o in ctx.final[node][kind]}
            only_left = sorted(set(left) - set(right))
            only_right = sorted(set(right) - set(left))
            differ = sorted(i for i in set(left) & set(right) if left[i] != right[i])
            if only_left or only_right or differ:
                parts = []
                if only_left:
                    parts.append(f"{len(only_left)} only on {base}")
                if only_right:
                    parts.append(f"{len(only_right)} only on {node}")
                if differ:
                    parts.append(f"{len(differ)} different")
                violations.append(
                    Violation(
                        CONVERGENCE,
                        f"{FINAL_KEYS[kind]} on {base} and {node}",
                        "the nodes disagree: " + ", ".join(parts),
                        details={
                            f"only_on_{base}": only_left[:max_examples],
                            f"only_on_{node}": only_right[:max_examples],
                            "different": [
                                {base: left[i], node: right[i]} for i in differ[:max_examples]
                            ],
                        },
                    )
                )
    return CheckResult(CONVERGENCE, Verdict.FAIL if violations else Verdict.PASS, tuple(violations))


# -- entry point ---------------------------------------------------------------------------


def check_history(
    history: History,
    *,
    bound: int = DEFAULT_BOUND,
    shrink_steps: int = DEFAULT_SHRINK_STEPS,
    max_examples: int = 5,
) -> Report:
    """
    Run every check on C{history}.

    @param bound: configurations the linearizability search may explore per
        sub-history before answering "unknown (bound exceeded)".
    @param shrink_steps: model steps spent shrinking one failing
        sub-history (the run spends at most four times that; a sub-history
        left unshrunk is reported whole, which is still a valid proof).
    @param max_examples: ids listed per convergence difference.
    """
    started = time.perf_counter()
    ctx = _Context(history)
    double = _check_double(ctx)  # first: it marks objects the search skips
    checks = {
        WELL_FORMED: CheckResult(
            WELL_FORMED, Verdict.FAIL if ctx.wf else Verdict.PASS, tuple(ctx.wf)
        ),
        LINEARIZABLE: _check_linearizable(ctx, bound, shrink_steps),
        STALE_READS: _check_stale(ctx),
        NO_LOST_WRITES: _check_lost(ctx),
        NO_DOUBLE_APPLY: double,
        FILAMENT_ACCOUNTING: _check_accounting(ctx),
        CONVERGENCE: _check_convergence(ctx, max_examples),
    }
    results = tuple(checks[name] for name in CHECKS)
    if any(c.verdict is Verdict.FAIL for c in results):
        verdict = Verdict.FAIL
    elif any(c.verdict is Verdict.UNKNOWN for c in results):
        verdict = Verdict.UNKNOWN
    else:
        verdict = Verdict.PASS
    objects = Counter(ent.kind for ent in ctx.entities.values() if ent.ids)
    summary = Summary(
        operations=len(history.operations),
        by_kind={k: dict(v) for k, v in ctx.by_kind.items() if v},
        unknown=ctx.unknown,
        retried_keys=ctx.retried_keys,
        objects=dict(objects),
        nodes=tuple(sorted(ctx.final)),
        passed=tuple(c.name for c in results if c.verdict is Verdict.PASS),
        failed=tuple(c.name for c in results if c.verdict is Verdict.FAIL),
        undecided=tuple(c.name for c in results if c.verdict is Verdict.UNKNOWN),
        elapsed=round(time.perf_counter() - started, 3),
    )
    return Report(verdict, results, summary)


# -- rendering ----------------------------------------------------------------------------------


def describe_operation(op: Operation) -> str:
    """
    One line about C{op}, for reports.
    """
    args = dict(op.args)
    body = args.pop("body", None)
    key = args.pop("idempotency_key", None)
    if isinstance(body, dict):
        args.update(body)
    args["idempotency_key"] = key
    shown = ", ".join(f"{k}={v!r}" for k, v in args.items() if v is not None)
    if op.outcome is Outcome.OK:
        result = "ok"
        if isinstance(op.body, dict):
            keys = ("id", "status", "remaining_weight_in_grams")
            result = " ".join([result] + [f"{k}={op.body[k]!r}" for k in keys if k in op.body])
        elif isinstance(op.body, list):
            result += f" {len(op.body)} items"
    else:
        result = " ".join(str(x) for x in (op.outcome.value, op.status, op.error) if x)
    done = "?" if op.complete is None else f"{op.complete:.3f}"
    consistency = f" {op.consistency.value}" if op.consistency is not None else ""
    return (
        f"#{op.index} p{op.process} {op.kind.value}({shown}){consistency} -> {result}"
        f" [{op.invoke:.3f}, {done}] on {op.node}"
    )


def render_report(report: Report, history: History, max_violations: int = 20) -> str:
    """
    The report as text for a terminal.
    """
    ops = {op.index: op for op in history.operations}
    s = report.summary
    lines = [
        f"{s.operations} operations, {s.unknown} of unknown outcome, "
        f"{s.retried_keys} retried idempotency keys; objects: "
        + ", ".join(f"{n} {k}s" for k, n in sorted(s.objects.items()))
        + f"; final state from {len(s.nodes)} node(s); checked in {s.elapsed:.2f} s",
    ]
    for kind, outcomes in sorted(s.by_kind.items()):
        counts = "  ".join(f"{o} {outcomes.get(o, 0)}" for o in ("ok", "fail", "info"))
        lines.append(f"  {kind:<16} {counts}")
    lines.append("")
    for c in report.checks:
        stats = ", ".join(f"{k} {v}" for k, v in c.stats.items())
        lines.append(f"{c.name:<20} {c.verdict.value.upper()}" + (f"  ({stats})" if stats else ""))
        for note in c.notes[:max_violations]:
            lines.append(f"    note: {note}")
    shown = 0
    for v in report.violations:
        if shown == max_violations:
            lines.append(f"... and {len(report.violations) - shown} more violations")
            break
        shown += 1
        lines.append("")
        lines.append(f"[{v.check}] {v.subject}: {v.message}")
        for i in v.ops:
            if i in ops:
                lines.append(f"    {describe_operation(ops[i])}")
        if v.context:
            lines.append(f"    unknown writes that may have taken effect: {_refs(v.context)}")
        for key, value in v.details.items():
            if key not in ("states",) and value not in (None, [], {}, 0):
                lines.append(f"    {key}: {value}")
    lines.append("")
    lines.append(f"VERDICT: {report.verdict.value.upper()}")
    return "\n".join(lines)


def _refs(refs: Iterable[int]) -> str:
    refs = list(refs)
    text = ", ".join(f"#{r}" for r in refs[:20])
    return text + (f" (+{len(refs) - 20})" if len(refs) > 20 else "")
