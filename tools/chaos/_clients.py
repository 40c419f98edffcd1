# -*- test-case-name: tests.chaos.test_runner -*-
"""
The chaos runner's clients: concurrent loops in the runner's reactor that
send creates, status changes, reads and unpaged lists to every node and
record each request in a L{HistoryRecorder}.

They follow the recording rules of C{docs/reliability.md}: every create
carries a run-unique tag, a write whose answer was lost or was a 5xx is
retried with the very same body and C{Idempotency-Key} (a new operation in
the history each time), lists are never paged, and what the client saw is
recorded without interpretation.  Each client sends one request at a time.
"""

from __future__ import annotations

import json
import random
from typing import Any, Callable, Mapping, Sequence

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectError, ConnectionRefusedError, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.web._newclient import ResponseFailed, ResponseNeverReceived

from ._history import Consistency, HistoryRecorder, OpKind, Outcome

REQUEST_TIMEOUT = 10.0
"""
Seconds a client waits for an answer before recording C{info}/C{timeout}.
Longer than a node's own 5 s limit on forwarding a write to the leader, so
that the node's 503 normally arrives before the client hangs up, and longer
than a leader pause, so that a paused old leader's answers after SIGCONT
are observed (and checked) rather than abandoned.
"""

RETRIES = 3
"""
Extra attempts of a keyed write whose outcome is unknown.
"""

FILAMENT_TYPES = ("PLA", "PETG", "ABS", "TPU")
STATUSES = ("Running", "Done", "Canceled")


@attrs.define
class Known:
    """
    Ids the clients have seen in answers, shared by all clients so that
    they work on the same objects (contention is the point).
    """

    printers: list[str] = attrs.field(factory=list)
    filaments: list[str] = attrs.field(factory=list)
    jobs: list[str] = attrs.field(factory=list)

    def learn(self, kind: str, body: Any) -> None:
        """
        Remember the ids of the objects in a create or list answer.
        """
        target = {"printer": self.printers, "filament": self.filaments, "print_job": self.jobs}[
            kind
        ]
        items = body if isinstance(body, list) else [body]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                if item["id"] not in target:
                    target.append(item["id"])


@attrs.define
class Stats:
    """
    What the clients did, for the report.
    """

    requests: int = 0
    ok: int = 0
    fail: int = 0
    info: int = 0
    retries: int = 0

    def count(self, outcome: Outcome) -> None:
        self.requests += 1
        if outcome is Outcome.OK:
            self.ok += 1
        elif outcome is Outcome.FAIL:
            self.fail += 1
        else:
            self.info += 1


def error_name(failure_value: BaseException) -> str:
    """
    The C{error} recorded for a request that got no answer.
    """
    if isinstance(failure_value, (CancelledError, TimeoutError)):
        return "timeout"
    if isinstance(failure_value, ConnectionRefusedError):
        return "connection_refused"
    if isinstance(failure_value, ConnectError):
        return "connect_error"
    if isinstance(failure_value, (ResponseFailed, ResponseNeverReceived)):
        return "connection_lost"
    return type(failure_value).__name__


class Client:
    """
    One client process of the history: a loop of random operations against
    random nodes until L{stop}.

    @param process: this client's number in the history.
    @param nodes: node name -> base URL (C{http://host:port}).
    @param tags: returns a new run-unique tag each call.
    """

    def __init__(
        self,
        process: int,
        http: HTTPClient,
        nodes: Mapping[str, str],
        recorder: HistoryRecorder,
        known: Known,
        rng: random.Random,
        tags: Callable[[], str],
        stats: Stats,
        pause: Callable[[float], Any],
        clock: IReactorTime,
    ) -> None:
        self.process = process
        self._clock = clock
        self._http = http
        self._nodes = dict(nodes)
        self._recorder = recorder
        self._known = known
        self._rng = rng
        self._tags = tags
        self._stats = stats
        self._pause = pause
        self._stopped = False

    def stop(self) -> None:
        """
        Finish after the current operation.
        """
        self._stopped = True

    async def run(self) -> None:
        """
        Operate until L{stop}.
        """
        while not self._stopped:
            await self.step()
            await self._pause(self._rng.uniform(0.0, 0.05))

    async def step(self) -> None:
        """
        One random logical operation (a write with its retries, or a read).
        """
        rng, known = self._rng, self._known
        roll = rng.random()
        if roll < 0.08 or not known.printers:
            tag = self._tags()
            await self._write(
                OpKind.CREATE_PRINTER,
                "printer",
                "/api/v1/printers",
                {"company": "Chaos", "model": tag},
            )
        elif roll < 0.16 or not known.filaments:
            tag = self._tags()
            await self._write(
                OpKind.CREATE_FILAMENT,
                "filament",
                "/api/v1/filaments",
                {
                    "type": rng.choice(FILAMENT_TYPES),
                    "color": tag,
                    "total_weight_in_grams": 1000,
                    "remaining_weight_in_grams": 1000,
                },
            )
        elif roll < 0.36:
            tag = self._tags()
            await self._write(
                OpKind.CREATE_JOB,
                "print_job",
                "/api/v1/print_jobs",
                {
                    "printer_id": rng.choice(known.printers),
                    "filament_id": rng.choice(known.filaments),
                    "filepath": tag,
                    "print_weight_in_grams": rng.randint(10, 120),
                },
            )
        elif roll < 0.56 and known.jobs:
            job = rng.choice(known.jobs)
            status = rng.choice(STATUSES)
            await self._write(
                OpKind.SET_JOB_STATUS,
                None,
                f"/api/v1/print_jobs/{job}/status?status={status}",
                None,
                args={"job_id": job, "status": status},
            )
        else:
            await self._read()

    async def _write(
        self,
        kind: OpKind,
        created: str | None,
        path: str,
        body: Mapping[str, Any] | None,
        args: Mapping[str, Any] | None = None,
    ) -> None:
        key = f"k-{self._tags()}"
        op_args: dict[str, Any] = dict(args or {})
        if body is not None:
            op_args["body"] = dict(body)
        op_args["idempotency_key"] = key
        for attempt in range(1 + RETRIES):
            if attempt:
                self._stats.retries += 1
            outcome, answer = await self._request(
                kind, op_args, "POST", path, body, {b"Idempotency-Key": [key.encode()]}
            )
            if outcome is Outcome.OK and created is not None:
                self._known.learn(created, answer)
            if outcome is not Outcome.INFO or self._stopped:
                return
            await self._pause(self._rng.uniform(0.1, 0.5))

    async def _read(self) -> None:
        rng, known = self._rng, self._known
        consistency = rng.choice((Consistency.LINEARIZABLE, Consistency.STALE))
        query = "?consistency=stale" if consistency is Consistency.STALE else ""
        choices: list[tuple[OpKind, str, Sequence[str], str]] = [
            (OpKind.READ_PRINTER, "printers", known.printers, "printer"),
            (OpKind.READ_FILAMENT, "filaments", known.filaments, "filament"),
            (OpKind.READ_JOB, "print_jobs", known.jobs, "print_job"),
        ]
        kind, plural, ids, name = rng.choice(choices)
        if ids and rng.random() < 0.6:
            oid = rng.choice(ids)
            await self._request(
                kind,
                {"id": oid},
                "GET",
                f"/api/v1/{plural}/{oid}{query}",
                None,
                None,
                consistency,
            )
            return
        list_kind = {
            "printer": OpKind.LIST_PRINTERS,
            "filament": OpKind.LIST_FILAMENTS,
            "print_job": OpKind.LIST_JOBS,
        }[name]
        outcome, answer = await self._request(
            list_kind, {"query": {}}, "GET", f"/api/v1/{plural}{query}", None, None, consistency
        )
        if outcome is Outcome.OK:
            self._known.learn(name, answer)

    async def _request(
        self,
        kind: OpKind,
        args: Mapping[str, Any],
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        headers: dict[bytes, list[bytes]] | None,
        consistency: Consistency | None = None,
    ) -> tuple[Outcome, Any]:
        node = self._rng.choice(sorted(self._nodes))
        sent: dict[bytes | str, list[bytes | str]] = {
            k: list(v) for k, v in (headers or {}).items()
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent[b"Content-Type"] = [b"application/json"]
        index = self._recorder.invoke(self.process, kind, args, node, consistency)
        url = self._nodes[node] + path

        async def exchange() -> tuple[int, bytes]:
            response = await self._http.request(
                method, url, data=data, headers=sent or None, timeout=REQUEST_TIMEOUT
            )
            return response.code, await response.content()

        try:
            whole = Deferred.fromCoroutine(exchange())
            # treq's timeout covers the headers only; a paused node can
            # also stall in the middle of a body.
            whole.addTimeout(REQUEST_TIMEOUT + 1, self._clock)
            code, content = await whole
        except Exception as e:  # noqa: BLE001 (every failure is "no answer")
            op = self._recorder.no_answer(index, error_name(e))
            self._stats.count(op.outcome)
            return op.outcome, None
        try:
            decoded = json.loads(content) if content else None
        except ValueError:
            decoded = None
        op = self._recorder.complete(index, code, decoded)
        self._stats.count(op.outcome)
        return op.outcome, decoded
