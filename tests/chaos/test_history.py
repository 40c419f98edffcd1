"""
Tests for L{tools.chaos._history}: the operation records, their JSON-lines
file and the recorder a runner fills in.
"""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from tools.chaos import (
    Consistency,
    History,
    HistoryRecorder,
    Operation,
    OpKind,
    Outcome,
    dump_history,
    load_history,
    outcome_for_status,
    read_history,
    write_history,
)


def sample() -> History:
    ops = (
        Operation(
            0,
            1,
            OpKind.CREATE_PRINTER,
            {"body": {"company": "Acme", "model": "t-0"}, "idempotency_key": "k-0"},
            "n1",
            0.5,
            0.75,
            Outcome.OK,
            status=201,
            body={"id": "p1", "company": "Acme", "model": "t-0"},
        ),
        Operation(
            1,
            2,
            OpKind.SET_JOB_STATUS,
            {"job_id": "j1", "status": "Done"},
            "n2",
            1.0,
            None,
            Outcome.INFO,
            error="timeout",
        ),
        Operation(
            2,
            3,
            OpKind.LIST_JOBS,
            {"query": {"status": "Queued"}},
            "n3",
            1.25,
            1.5,
            Outcome.OK,
            status=200,
            body=[],
            consistency=Consistency.STALE,
        ),
        Operation(
            3,
            3,
            OpKind.READ_JOB,
            {"id": "j9"},
            "n3",
            2.0,
            2.125,
            Outcome.FAIL,
            status=404,
            body={"error": {"code": "job_not_found", "message": "no"}},
            error="job_not_found",
            consistency=Consistency.LINEARIZABLE,
        ),
    )
    final = {"n1": {"printers": [{"id": "p1"}], "filaments": [], "print_jobs": []}}
    return History(ops, final, {"seed": 7, "nemesis": ["partition"]})


def dumped(history: History) -> str:
    out = io.StringIO()
    dump_history(history, out)
    return out.getvalue()


class RoundTripTests(SynchronousTestCase):
    """
    A history survives being written and read back, so a failing run can be
    re-checked offline.
    """

    def test_round_trip(self) -> None:
        """
        Every field of every record, the final states and the metadata come
        back equal.
        """
        history = sample()
        self.assertEqual(load_history(io.StringIO(dumped(history))), history)

    def test_file_round_trip(self) -> None:
        """
        L{write_history} and L{read_history} do the same through a file.
        """
        path = self.mktemp()
        write_history(sample(), path)
        self.assertEqual(read_history(path), sample())

    def test_one_record_a_line(self) -> None:
        """
        The file is a header, one line per operation, one per node.
        """
        lines = dumped(sample()).splitlines()
        self.assertEqual(len(lines), 1 + 4 + 1)
        types = [json.loads(line)["type"] for line in lines]
        self.assertEqual(types, ["history", "op", "op", "op", "op", "final"])
        self.assertEqual(json.loads(lines[0])["format"], "raft3d.chaos.history")

    def test_operations_in_any_order(self) -> None:
        """
        Operations may be appended as they complete; reading sorts them by
        index.  Blank lines are ignored.
        """
        lines = dumped(sample()).splitlines()
        shuffled = [lines[0], lines[3], "", lines[1], lines[4], lines[2], lines[5]]
        history = load_history(io.StringIO("\n".join(shuffled)))
        self.assertEqual([op.index for op in history.operations], [0, 1, 2, 3])


class MalformedFileTests(SynchronousTestCase):
    """
    A damaged file is refused with the line that is wrong, never half read.
    """

    def assertRefused(self, lines: list[Any], fragment: str) -> None:
        text = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines)
        with self.assertRaises(ValueError) as raised:
            load_history(io.StringIO(text))
        self.assertIn(fragment, str(raised.exception))

    def header(self) -> dict[str, Any]:
        return {"type": "history", "format": "raft3d.chaos.history", "version": 1, "meta": {}}

    def op(self, **changes: Any) -> dict[str, Any]:
        doc = {"type": "op", **sample().operations[0].to_json()}
        doc.update(changes)
        return doc

    def test_empty(self) -> None:
        """
        An empty file has no header.
        """
        self.assertRefused([], "no header")

    def test_header_first(self) -> None:
        """
        The header must come first, once, and name this format and version.
        """
        self.assertRefused([self.op()], "line 1: the first record must be the header")
        self.assertRefused([self.header(), self.header()], "line 2: a second header")
        self.assertRefused([dict(self.header(), version=2)], "not a raft3d.chaos.history")

    def test_bad_records(self) -> None:
        """
        Unknown record types, non-objects and broken JSON are refused.
        """
        self.assertRefused([self.header(), {"type": "nope"}], "line 2: unknown record type")
        self.assertRefused([self.header(), [1]], "must be a JSON object")
        self.assertRefused([self.header(), "{"], "line 2")
        self.assertRefused([self.header(), {"type": "final", "node": 3}], "needs a node")

    def test_bad_operations(self) -> None:
        """
        Operations with a duplicate index, an unknown kind or outcome, a
        missing field or a completion before their invocation are refused.
        """
        self.assertRefused([self.header(), self.op(), self.op()], "line 3: operation index 0")
        self.assertRefused([self.header(), self.op(kind="delete")], "line 2")
        self.assertRefused([self.header(), self.op(outcome="maybe")], "line 2")
        self.assertRefused([self.header(), self.op(complete=0.1)], "complete is before invoke")
        self.assertRefused([self.header(), self.op(index="1")], "index must be an integer")
        self.assertRefused([self.header(), self.op(args=[])], "args must be an object")
        self.assertRefused([self.header(), self.op(node=1)], "node must be a string")
        self.assertRefused([self.header(), self.op(error=1)], "error must be a string")
        doc = self.op()
        del doc["invoke"]
        self.assertRefused([self.header(), doc], "missing field 'invoke'")


class OutcomeTests(SynchronousTestCase):
    """
    L{outcome_for_status} encodes the rule the runner must follow.
    """

    def test_classification(self) -> None:
        """
        2xx is ok, 4xx a definite failure, 5xx and no answer unknown.
        """
        self.assertIs(outcome_for_status(201), Outcome.OK)
        self.assertIs(outcome_for_status(409), Outcome.FAIL)
        self.assertIs(outcome_for_status(503), Outcome.INFO)
        self.assertIs(outcome_for_status(None), Outcome.INFO)
        self.assertIs(outcome_for_status(302), Outcome.INFO)

    def test_idempotency_key(self) -> None:
        """
        An operation's idempotency key is read from its arguments.
        """
        self.assertEqual(sample().operations[0].idempotency_key, "k-0")
        self.assertIsNone(sample().operations[1].idempotency_key)


class RecorderTests(SynchronousTestCase):
    """
    L{HistoryRecorder} timestamps operations with the injected clock.
    """

    def test_record(self) -> None:
        """
        Invocation and completion times come from the clock, outcomes from
        the HTTP status, error codes from the error body.
        """
        clock = Clock()
        rec = HistoryRecorder(clock)
        clock.advance(1)
        a = rec.invoke(4, OpKind.READ_PRINTER, {"id": "p1"}, "n2", Consistency.LINEARIZABLE)
        b = rec.invoke(5, OpKind.CREATE_PRINTER, {"body": {"model": "x"}}, "n1")
        clock.advance(2)
        ok = rec.complete(a, 200, {"id": "p1", "model": "x"})
        failed = rec.complete(b, 503, {"error": {"code": "no_leader", "message": "m"}})
        self.assertEqual((ok.invoke, ok.complete, ok.outcome), (1.0, 3.0, Outcome.OK))
        self.assertEqual(ok.consistency, Consistency.LINEARIZABLE)
        self.assertEqual((failed.outcome, failed.error), (Outcome.INFO, "no_leader"))
        history = rec.history({"seed": 1})
        self.assertEqual(history.operations, (ok, failed))
        self.assertEqual(history.meta, {"seed": 1})

    def test_no_answer_and_pending(self) -> None:
        """
        An operation without an answer is unknown with no completion time;
        one still pending when the history is taken is the same.
        """
        clock = Clock()
        rec = HistoryRecorder(clock)
        a = rec.invoke(1, OpKind.SET_JOB_STATUS, {"job_id": "j", "status": "Done"}, "n1")
        rec.invoke(2, OpKind.CREATE_FILAMENT, {"body": {}}, "n3")
        lost = rec.no_answer(a, "connection_refused")
        self.assertEqual(
            (lost.outcome, lost.complete, lost.error), (Outcome.INFO, None, "connection_refused")
        )
        pending = rec.history().operations[1]
        self.assertEqual(
            (pending.index, pending.outcome, pending.complete), (1, Outcome.INFO, None)
        )

    def test_errors_without_a_body(self) -> None:
        """
        A 4xx whose body is not an error object is still a failure, named
        after its status.
        """
        rec = HistoryRecorder(Clock())
        op = rec.complete(rec.invoke(1, OpKind.READ_JOB, {"id": "j"}, "n1"), 404, None)
        self.assertEqual((op.outcome, op.error), (Outcome.FAIL, "http_404"))

    def test_final(self) -> None:
        """
        Final states are kept per node.
        """
        rec = HistoryRecorder(Clock())
        rec.set_final("n1", {"printers": [], "filaments": [], "print_jobs": []})
        self.assertEqual(list(rec.history().final), ["n1"])
