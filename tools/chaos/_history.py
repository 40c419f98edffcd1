# -*- test-case-name: tests.chaos.test_history -*-
"""
The history of a chaos run: every client operation with its invocation and
completion times and what the client saw, plus the final state of every node.

A history is written by the runner as it drives a real cluster and read back
by the checker, possibly much later and on another machine, so it is a plain
JSON-lines file (one record a line) rather than a pickle: a failing run can
be attached to an issue and re-checked offline with
C{python -m tools.chaos.check history.jsonl}.

The records say what the I{client} observed, nothing more: the runner must
not interpret outcomes (a 503 is not "failed", it is "unknown").  The rules
the runner follows are in C{docs/reliability.md}; L{outcome_for_status}
encodes the one that matters most.

Objects are identified by a I{tag}: a unique string that the runner writes
in one free-text field of every create (L{TAG_FIELDS}).  Ids are chosen by
the server, so a create whose answer was lost has no known id; its tag is
how the checker recognises its object in later reads and in the final state,
and how it counts the objects that one idempotent create produced.
"""

from __future__ import annotations

import enum
import json
import math
from typing import IO, Any, Iterable, Mapping, Protocol

import attrs


class OpKind(enum.Enum):
    """
    What a client operation did; the values are what the history file holds.
    """

    CREATE_PRINTER = "create_printer"
    CREATE_FILAMENT = "create_filament"
    CREATE_JOB = "create_job"
    SET_JOB_STATUS = "set_job_status"
    READ_PRINTER = "read_printer"
    READ_FILAMENT = "read_filament"
    READ_JOB = "read_job"
    LIST_PRINTERS = "list_printers"
    LIST_FILAMENTS = "list_filaments"
    LIST_JOBS = "list_jobs"


class Outcome(enum.Enum):
    """
    What the client learnt about an operation, in Jepsen's terms.

    @cvar OK: it succeeded (2xx); the response body is recorded.
    @cvar FAIL: it was definitely rejected (4xx); the error code is recorded.
    @cvar INFO: nobody knows: a timeout, a dropped connection or a 5xx.
        The operation may take effect at any time after its invocation.
    """

    OK = "ok"
    FAIL = "fail"
    INFO = "info"


class Consistency(enum.Enum):
    """
    The consistency a read asked for (C{?consistency=...}).
    """

    LINEARIZABLE = "linearizable"
    STALE = "stale"


#: The object kind each create makes, as named in the final state.
CREATED_KIND: Mapping[OpKind, str] = {
    OpKind.CREATE_PRINTER: "printer",
    OpKind.CREATE_FILAMENT: "filament",
    OpKind.CREATE_JOB: "print_job",
}

#: The object kind each read or list returns.
READ_KIND: Mapping[OpKind, str] = {
    OpKind.READ_PRINTER: "printer",
    OpKind.READ_FILAMENT: "filament",
    OpKind.READ_JOB: "print_job",
    OpKind.LIST_PRINTERS: "printer",
    OpKind.LIST_FILAMENTS: "filament",
    OpKind.LIST_JOBS: "print_job",
}

#: The free-text field of each kind that carries the runner's unique tag.
TAG_FIELDS: Mapping[str, str] = {
    "printer": "model",
    "filament": "color",
    "print_job": "filepath",
}

#: The key of each kind's list in a node's final state.
FINAL_KEYS: Mapping[str, str] = {
    "printer": "printers",
    "filament": "filaments",
    "print_job": "print_jobs",
}

READS = frozenset({OpKind.READ_PRINTER, OpKind.READ_FILAMENT, OpKind.READ_JOB})
LISTS = frozenset({OpKind.LIST_PRINTERS, OpKind.LIST_FILAMENTS, OpKind.LIST_JOBS})
WRITES = frozenset(
    {OpKind.CREATE_PRINTER, OpKind.CREATE_FILAMENT, OpKind.CREATE_JOB, OpKind.SET_JOB_STATUS}
)

HISTORY_FORMAT = "raft3d.chaos.history"
HISTORY_VERSION = 1


def outcome_for_status(status: int | None) -> Outcome:
    """
    Classify an HTTP answer: 2xx is L{Outcome.OK}, 4xx L{Outcome.FAIL},
    anything else (5xx, or C{None} for no answer at all) L{Outcome.INFO}.

    A 503 may well be a write that a deposed leader had already replicated,
    so it is not a failure; the checker treats a 5xx recorded as C{FAIL} as
    C{INFO} anyway.
    """
    if status is None:
        return Outcome.INFO
    if 200 <= status < 300:
        return Outcome.OK
    if 400 <= status < 500:
        return Outcome.FAIL
    return Outcome.INFO


@attrs.frozen
class Operation:
    """
    One client operation, as the client saw it.

    @ivar index: unique, assigned at invocation (so the file is in
        invocation order); the checker names operations by it.
    @ivar process: the client that ran it; one process runs one operation
        at a time.
    @ivar kind: what it did.
    @ivar args: its arguments: C{{"body": {...}, "idempotency_key": k}} for
        creates, C{{"job_id", "status", "idempotency_key"}} for a status
        change, C{{"id"}} for reads, C{{"query": {...}}} for lists (the
        query parameters sent, C{consistency} excepted).  C{idempotency_key}
        is omitted or L{None} when no C{Idempotency-Key} was sent.
    @ivar node: the node the request was sent to (it may have forwarded it).
    @ivar invoke: when the request was sent, in seconds on the runner's
        monotonic clock.
    @ivar complete: when the answer arrived; L{None} when none did.
    @ivar outcome: see L{Outcome}.
    @ivar status: the HTTP status, L{None} without an answer.
    @ivar body: the decoded JSON answer when there was one (for errors,
        C{{"error": {"code": ..., "message": ...}}}).
    @ivar error: the error code for C{FAIL} and C{INFO} (C{"timeout"},
        C{"connection_refused"}... when there was no answer).
    @ivar consistency: for reads and lists, what was asked for.
    """

    index: int
    process: int
    kind: OpKind
    args: Mapping[str, Any]
    node: str
    invoke: float
    complete: float | None
    outcome: Outcome
    status: int | None = None
    body: Any = None
    error: str | None = None
    consistency: Consistency | None = None

    @property
    def idempotency_key(self) -> str | None:
        key = self.args.get("idempotency_key")
        return key if isinstance(key, str) else None

    def to_json(self) -> dict[str, Any]:
        """
        The record as a JSON object (without the C{"type"} field).
        """
        return {
            "index": self.index,
            "process": self.process,
            "kind": self.kind.value,
            "args": dict(self.args),
            "node": self.node,
            "invoke": self.invoke,
            "complete": self.complete,
            "outcome": self.outcome.value,
            "status": self.status,
            "body": self.body,
            "error": self.error,
            "consistency": None if self.consistency is None else self.consistency.value,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Operation:
        """
        Parse L{to_json}'s form.

        @raise ValueError: for anything malformed.
        """
        try:
            index = _int(doc["index"], "index")
            process = _int(doc["process"], "process")
            kind = OpKind(doc["kind"])
            args = doc["args"]
            if not isinstance(args, dict):
                raise ValueError("args must be an object")
            node = doc["node"]
            if not isinstance(node, str):
                raise ValueError("node must be a string")
            invoke = _time(doc["invoke"], "invoke")
            complete = doc.get("complete")
            if complete is not None:
                complete = _time(complete, "complete")
                if complete < invoke:
                    raise ValueError("complete is before invoke")
            outcome = Outcome(doc["outcome"])
            status = doc.get("status")
            if status is not None:
                status = _int(status, "status")
            error = doc.get("error")
            if error is not None and not isinstance(error, str):
                raise ValueError("error must be a string")
            consistency = doc.get("consistency")
            if consistency is not None:
                consistency = Consistency(consistency)
        except KeyError as e:
            raise ValueError(f"missing field {e.args[0]!r}") from None
        except (TypeError, AttributeError) as e:
            raise ValueError(f"malformed operation: {e}") from None
        return cls(
            index=index,
            process=process,
            kind=kind,
            args=args,
            node=node,
            invoke=invoke,
            complete=complete,
            outcome=outcome,
            status=status,
            body=doc.get("body"),
            error=error,
            consistency=consistency,
        )


def _int(value: object, name: str) -> int:
    if type(value) is not int:
        raise ValueError(f"{name} must be an integer")
    return value


def _time(value: object, name: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{name} must be a finite number")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number")
    return float(value)


@attrs.frozen
class History:
    """
    A whole run.

    @ivar operations: in index order.
    @ivar final: the state of each node after the cluster healed and
        settled, keyed by node id: C{{"printers": [...], "filaments": [...],
        "print_jobs": [...]}}, each the unpaged list endpoint's answer.
        Empty when the run did not get that far.
    @ivar meta: free-form facts about the run (seed, nemesis schedule,
        versions...), kept for humans.
    """

    operations: tuple[Operation, ...]
    final: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    meta: Mapping[str, Any] = attrs.field(factory=dict)


def dump_history(history: History, stream: IO[str]) -> None:
    """
    Write C{history} as JSON lines: a header, the operations, then one
    C{final} record per node.
    """
    header = {
        "type": "history",
        "format": HISTORY_FORMAT,
        "version": HISTORY_VERSION,
        "meta": dict(history.meta),
    }
    stream.write(_line(header))
    for op in history.operations:
        stream.write(_line({"type": "op", **op.to_json()}))
    for node, state in history.final.items():
        stream.write(_line({"type": "final", "node": node, "state": dict(state)}))


def _line(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True, allow_nan=False) + "\n"


def load_history(stream: Iterable[str]) -> History:
    """
    Read what L{dump_history} wrote.  Operations may come in any order
    (a runner may append them as they complete); they are sorted by index.

    @raise ValueError: naming the line, for anything malformed.
    """
    ops: list[Operation] = []
    final: dict[str, Mapping[str, Any]] = {}
    meta: Mapping[str, Any] = {}
    seen_header = False
    indexes: set[int] = set()
    for number, text in enumerate(stream, 1):
        if not text.strip():
            continue
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict):
                raise ValueError("a record must be a JSON object")
            kind = doc.get("type")
            if kind == "history":
                if seen_header:
                    raise ValueError("a second header")
                if doc.get("format") != HISTORY_FORMAT or doc.get("version") != HISTORY_VERSION:
                    raise ValueError(f"not a {HISTORY_FORMAT} version {HISTORY_VERSION} file")
                meta = doc.get("meta") or {}
                if not isinstance(meta, dict):
                    raise ValueError("meta must be an object")
                seen_header = True
            elif not seen_header:
                raise ValueError("the first record must be the header")
            elif kind == "op":
                op = Operation.from_json(doc)
                if op.index in indexes:
                    raise ValueError(f"operation index {op.index} used twice")
                indexes.add(op.index)
                ops.append(op)
            elif kind == "final":
                node, state = doc.get("node"), doc.get("state")
                if not isinstance(node, str) or not isinstance(state, dict):
                    raise ValueError("a final record needs a node and a state object")
                final[node] = state
            else:
                raise ValueError(f"unknown record type {kind!r}")
        except ValueError as e:
            raise ValueError(f"line {number}: {e}") from None
    if not seen_header:
        raise ValueError("empty history: no header")
    ops.sort(key=lambda op: op.index)
    return History(tuple(ops), final, meta)


def write_history(history: History, path: str) -> None:
    """
    L{dump_history} to the file at C{path}.
    """
    with open(path, "w", encoding="utf-8") as f:
        dump_history(history, f)


def read_history(path: str) -> History:
    """
    L{load_history} from the file at C{path}.
    """
    with open(path, encoding="utf-8") as f:
        return load_history(f)


class Clock(Protocol):
    """
    The part of C{IReactorTime} the recorder needs.
    """

    def seconds(self) -> float: ...


@attrs.frozen
class _Pending:
    process: int
    kind: OpKind
    args: Mapping[str, Any]
    node: str
    invoke: float
    consistency: Consistency | None


class HistoryRecorder:
    """
    Build a L{History} while a run goes on: L{invoke} before sending a
    request, then exactly one of L{complete} (an HTTP answer arrived) or
    L{no_answer} (timeout, connection error).  Operations still pending
    when L{history} is called become C{INFO} with no completion time, which
    is what they are.

    @param clock: anything with C{seconds()}, normally the reactor; every
        time in the history comes from it, so it must be monotonic.
    """

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._next = 0
        self._pending: dict[int, _Pending] = {}
        self._done: dict[int, Operation] = {}
        self._final: dict[str, Mapping[str, Any]] = {}

    def invoke(
        self,
        process: int,
        kind: OpKind,
        args: Mapping[str, Any],
        node: str,
        consistency: Consistency | None = None,
    ) -> int:
        """
        Record that C{process} is sending a request now; returns the index
        to complete it with.
        """
        index = self._next
        self._next += 1
        self._pending[index] = _Pending(
            process, kind, dict(args), node, self._clock.seconds(), consistency
        )
        return index

    def complete(self, index: int, status: int, body: Any) -> Operation:
        """
        Record the HTTP answer of operation C{index}: C{body} is the decoded
        JSON (L{None} if it was not JSON).  The outcome follows
        L{outcome_for_status}; for errors the code is taken from the body.
        """
        outcome = outcome_for_status(status)
        error = None
        if outcome is not Outcome.OK:
            error = _error_code(body) or f"http_{status}"
        return self._finish(index, outcome, self._clock.seconds(), status, body, error)

    def no_answer(self, index: int, error: str = "timeout") -> Operation:
        """
        Record that operation C{index} got no answer (C{error} says why:
        C{"timeout"}, C{"connection_refused"}, C{"connection_lost"}...).
        """
        return self._finish(index, Outcome.INFO, None, None, None, error)

    def set_final(self, node: str, state: Mapping[str, Any]) -> None:
        """
        Record C{node}'s final state (see L{History.final}).
        """
        self._final[node] = dict(state)

    def history(self, meta: Mapping[str, Any] | None = None) -> History:
        """
        Everything recorded so far.
        """
        ops = dict(self._done)
        for index, p in self._pending.items():
            ops[index] = Operation(
                index,
                p.process,
                p.kind,
                p.args,
                p.node,
                p.invoke,
                None,
                Outcome.INFO,
                error="pending",
                consistency=p.consistency,
            )
        return History(tuple(ops[i] for i in sorted(ops)), dict(self._final), dict(meta or {}))

    def _finish(
        self,
        index: int,
        outcome: Outcome,
        complete: float | None,
        status: int | None,
        body: Any,
        error: str | None,
    ) -> Operation:
        p = self._pending.pop(index)
        op = Operation(
            index,
            p.process,
            p.kind,
            p.args,
            p.node,
            p.invoke,
            complete,
            outcome,
            status=status,
            body=body,
            error=error,
            consistency=p.consistency,
        )
        self._done[index] = op
        return op


def _error_code(body: Any) -> str | None:
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("code"), str):
            return str(err["code"])
    return None
