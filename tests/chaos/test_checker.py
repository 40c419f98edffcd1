"""
Tests for L{tools.chaos._checker}: hand-built histories that a correct
print farm could have produced (and must pass) and ones it could not (and
must fail, naming the operations that prove it); then random histories of a
correct, sequential farm, which must always pass.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tools.chaos import (
    CONVERGENCE,
    FILAMENT_ACCOUNTING,
    LINEARIZABLE,
    NO_DOUBLE_APPLY,
    NO_LOST_WRITES,
    STALE_READS,
    WELL_FORMED,
    Consistency,
    History,
    OpKind,
    Report,
    Verdict,
    check_history,
    describe_operation,
    render_report,
)

from ._builders import Builder, printer_obj
from ._sim import SimulatedFarm


def check(b: Builder, **kw: int) -> Report:
    return check_history(b.history(), **kw)


def farm(b: Builder, weight: int = 300, total: int = 1000) -> None:
    """
    Printer p1, filament f1 of C{total} g and job j1 of C{weight} g on them,
    all acknowledged by time 3.
    """
    b.create_printer((0, 1), "P1", "p1")
    b.create_filament((0, 1), "F1", "f1", total=total)
    b.create_job((2, 3), "J1", "j1", "p1", "f1", weight)


class Assertions(SynchronousTestCase):
    """
    Assertions on reports shared by the test cases below.
    """

    def assertPasses(self, report: Report) -> None:
        self.assertIs(report.verdict, Verdict.PASS, [v.message for v in report.violations])

    def assertFails(self, report: Report, name: str, ops: tuple[int, ...] | None = None) -> None:
        result = report.check(name)
        self.assertIs(result.verdict, Verdict.FAIL, result)
        self.assertIs(report.verdict, Verdict.FAIL)
        if ops is not None:
            self.assertEqual(result.violations[0].ops, ops)


class PassingHistoryTests(Assertions):
    """
    Histories a correct farm could produce pass every check.
    """

    def test_sequential(self) -> None:
        """
        A plain sequential history, with reads and the final state of three
        identical nodes, passes; the summary counts what happened.
        """
        b = Builder()
        farm(b)
        b.set_status((4, 5), "j1", "Running")
        b.read_job((6, 7), "j1", "Running")
        b.set_status((8, 9), "j1", "Done")
        b.read_filament((10, 11), "f1", 700)
        b.list_printers((10, 11), ["p1"])
        for node in ("n1", "n2", "n3"):
            b.set_final(node, ["p1"], {"f1": 700}, {"j1": "Done"})
        report = check(b)
        self.assertPasses(report)
        self.assertEqual(report.summary.operations, 8)
        self.assertEqual(report.summary.by_kind["set_job_status"], {"ok": 2})
        self.assertEqual(report.summary.objects, {"printer": 1, "filament": 1, "print_job": 1})
        self.assertEqual(report.summary.nodes, ("n1", "n2", "n3"))
        self.assertEqual(len(report.summary.passed), 7)

    def test_concurrent_read_sees_old_or_new(self) -> None:
        """
        A read concurrent with a status change may see either status.
        """
        for seen in ("Queued", "Running"):
            b = Builder()
            farm(b)
            b.set_status((4, 8), "j1", "Running")
            b.read_job((5, 6), "j1", seen)
            self.assertIs(check(b).check(LINEARIZABLE).verdict, Verdict.PASS)

    def test_only_one_concurrent_transition_wins(self) -> None:
        """
        Done and Canceled sent together to a Running job: one wins and the
        other is refused as an invalid transition; either way round passes.
        """
        for winner, loser in (("Done", "Canceled"), ("Canceled", "Done")):
            b = Builder()
            farm(b)
            b.set_status((4, 5), "j1", "Running")
            b.set_status((6, 9), "j1", winner, process=1)
            b.set_status((6, 9), "j1", loser, "invalid_transition", process=2)
            remaining = 700 if winner == "Done" else 1000
            b.set_final("n1", ["p1"], {"f1": remaining}, {"j1": winner})
            self.assertPasses(check(b))

    def test_unknown_op_explains_later_read(self) -> None:
        """
        A create whose answer was lost, then a read that sees the printer:
        the create must have taken effect, and the checker assumes so.
        """
        b = Builder()
        b.create_printer((0, None), "P1", "p1", "info")
        b.read_printer((5, 6), "p1")
        b.set_final("n1", ["p1"])
        self.assertPasses(check(b))

    def test_unknown_done_explains_weight(self) -> None:
        """
        A Done that timed out, then a read of the filament with the weight
        deducted: the Done took effect.
        """
        b = Builder()
        farm(b)
        b.set_status((4, 5), "j1", "Running")
        b.set_status((6, None), "j1", "Done", "info")
        b.read_filament((10, 11), "f1", 700)
        self.assertIs(check(b).check(LINEARIZABLE).verdict, Verdict.PASS)

    def test_unknown_op_not_assumed(self) -> None:
        """
        A create_job that timed out would have reserved 600 g of the 1000;
        a later acknowledged job of 600 g proves it did not take effect, and
        the checker does not assume it did.
        """
        b = Builder()
        farm(b, weight=100)
        b.create_job((4, None), "J2", "j2", "p1", "f1", 600, "info")
        b.create_job((6, 7), "J3", "j3", "p1", "f1", 600)
        b.set_final("n1", ["p1"], {"f1": 1000}, {"j1": "Queued", "j3": "Queued"})
        self.assertPasses(check(b))

    def test_unknown_op_may_explain_rejection(self) -> None:
        """
        The same timed-out job of 600 g can explain a later refusal of a
        500 g job for lack of filament.
        """
        b = Builder()
        farm(b, weight=100)
        b.create_job((4, None), "J2", "j2", "p1", "f1", 600, "info")
        b.create_job((6, 7), "J3", "j3", "p1", "f1", 500, "insufficient_filament")
        b.set_final("n1", ["p1"], {"f1": 1000}, {"j1": "Queued", "j2": "Queued"})
        self.assertPasses(check(b))

    def test_idempotent_retry(self) -> None:
        """
        A create that timed out and its retry with the same key, answered
        with the first result: one logical create, one object.
        """
        b = Builder()
        b.create_printer((0, None), "P1", "p1", "info", key="k1")
        b.create_printer((5, 6), "P1", "p1", key="k1")
        b.read_printer((7, 8), "p1")
        b.set_final("n1", ["p1"])
        b.set_final("n2", ["p1"])
        report = check(b)
        self.assertPasses(report)
        self.assertEqual(report.summary.retried_keys, 1)

    def test_stale_reads_are_not_linearizable_reads(self) -> None:
        """
        A stale read may miss an acknowledged write; it only has to show
        something that was written.
        """
        b = Builder()
        farm(b)
        b.set_status((4, 5), "j1", "Running")
        b.read_job((6, 7), "j1", "Queued", stale=True)
        b.read_printer((6, 7), "p1", found=False, stale=True)
        self.assertIs(check(b).check(LINEARIZABLE).verdict, Verdict.PASS)
        self.assertIs(check(b).check(STALE_READS).verdict, Verdict.PASS)

    def test_server_errors_are_unknown(self) -> None:
        """
        A 503 recorded as a failure is taken as unknown: the write may
        still have happened, as the later read shows.
        """
        b = Builder()
        b.op(
            OpKind.CREATE_PRINTER,
            {"body": {"company": "Acme", "model": "P1"}},
            (0, 1),
            "no_leader",
            fail_status=503,
        )
        b.objects["p1"] = printer_obj("p1", "P1")
        b.read_printer((2, 3), "p1")
        report = check(b)
        self.assertIs(report.check(LINEARIZABLE).verdict, Verdict.PASS)
        self.assertEqual(report.summary.by_kind["create_printer"], {"info": 1})

    def test_filtered_list(self) -> None:
        """
        A list filtered on Queued that leaves out a Running job is fine;
        one that leaves out a job acknowledged as Queued is not.
        """
        b = Builder()
        farm(b)
        b.create_job((2, 3), "J2", "j2", "p1", "f1", 100)
        b.set_status((4, 5), "j1", "Running")
        b.list_jobs((6, 7), {"j2": "Queued"}, {"status": "queued"})
        self.assertIs(check(b).check(LINEARIZABLE).verdict, Verdict.PASS)
        b.list_jobs((8, 9), {}, {"status": "Queued"})
        self.assertFails(check(b), LINEARIZABLE, (3, 6))


class FailingHistoryTests(Assertions):
    """
    Histories a correct farm cannot produce fail, and the violation names
    a small set of operations that proves it.
    """

    def test_stale_read_after_ack(self) -> None:
        """
        A linearizable read that misses a printer acknowledged before it
        started fails, and the proof is exactly those two operations.
        """
        b = Builder()
        create = b.create_printer((0, 1), "P1", "p1")
        read = b.read_printer((2, 3), "p1", found=False)
        b.read_printer((4, 5), "p1")
        self.assertFails(check(b), LINEARIZABLE, (create, read))

    def test_stale_list_after_ack(self) -> None:
        """
        The same through a list of printers.
        """
        b = Builder()
        create = b.create_printer((0, 1), "P1", "p1")
        listing = b.list_printers((2, 3), [])
        self.assertFails(check(b), LINEARIZABLE, (create, listing))

    def test_job_done_twice(self) -> None:
        """
        Two acknowledged Done of one job: Done is terminal, so the second
        must have been refused.  The proof is the two Done; the creation
        and the start are only context (they had to happen anyway).
        """
        b = Builder()
        farm(b)
        b.set_status((4, 5), "j1", "Running")
        first = b.set_status((6, 7), "j1", "Done")
        second = b.set_status((8, 9), "j1", "Done")
        report = check(b)
        self.assertFails(report, LINEARIZABLE, (first, second))
        violation = report.check(LINEARIZABLE).violations[0]
        self.assertEqual(violation.subject, "job 'J1' (id j1)")
        self.assertIn("moves job 'J1' to Done", violation.message)
        self.assertEqual(violation.details["stuck"], second)

    def test_both_concurrent_transitions_win(self) -> None:
        """
        Done and Canceled of one Running job both acknowledged: only one
        can have won.
        """
        b = Builder()
        farm(b)
        b.set_status((4, 5), "j1", "Running")
        done = b.set_status((6, 9), "j1", "Done", process=1)
        cancel = b.set_status((6, 9), "j1", "Canceled", process=2)
        self.assertFails(check(b), LINEARIZABLE, (done, cancel))

    def test_rejection_that_nothing_explains(self) -> None:
        """
        C{invalid_transition} for starting a Queued job that nothing else
        touches is impossible: the rejection is a read of the status.  The
        rejection alone proves it: whether or not the job was created, it
        cannot be in a status that refuses Running.
        """
        b = Builder()
        farm(b)
        refused = b.set_status((4, 5), "j1", "Running", "invalid_transition")
        self.assertFails(check(b), LINEARIZABLE, (refused,))

    def test_insufficient_filament_that_nothing_explains(self) -> None:
        """
        A refusal for lack of filament when 700 g were available fails on
        the filament's sub-history.
        """
        b = Builder()
        farm(b, weight=300)
        b.create_job((4, 5), "J2", "j2", "p1", "f1", 500, "insufficient_filament")
        report = check(b)
        self.assertFails(report, LINEARIZABLE)
        self.assertIn("filament 'F1'", report.check(LINEARIZABLE).violations[0].subject)

    def test_weight_deducted_twice(self) -> None:
        """
        A filament read showing a Done job's weight deducted twice fails.
        """
        b = Builder()
        farm(b)
        b.set_status((4, 5), "j1", "Running")
        b.set_status((6, 7), "j1", "Done")
        b.read_filament((8, 9), "f1", 400)
        self.assertFails(check(b), LINEARIZABLE)

    def test_unknown_op_not_enough(self) -> None:
        """
        An unknown create can explain a read that sees the printer, but not
        a later read that misses it again.
        """
        b = Builder()
        b.create_printer((0, None), "P1", "p1", "info")
        b.read_printer((5, 6), "p1")
        b.read_printer((7, 8), "p1", found=False)
        self.assertFails(check(b), LINEARIZABLE)

    def test_final_state_contradicts(self) -> None:
        """
        The final state is a read at the end: a job acknowledged as Done
        that every node shows Running fails linearizability (and loses a
        write).
        """
        b = Builder()
        farm(b)
        b.set_status((4, 5), "j1", "Running")
        b.set_status((6, 7), "j1", "Done")
        b.set_final("n1", ["p1"], {"f1": 700}, {"j1": "Running"})
        report = check(b)
        self.assertFails(report, LINEARIZABLE)
        self.assertFails(report, NO_LOST_WRITES)

    def test_answer_differs_from_write(self) -> None:
        """
        A read showing a printer with a company nobody wrote fails.
        """
        b = Builder()
        b.create_printer((0, 1), "P1", "p1")
        b.op(
            OpKind.READ_PRINTER,
            {"id": "p1"},
            (2, 3),
            "ok",
            dict(printer_obj("p1", "P1"), company="Evil"),
            consistency=Consistency.LINEARIZABLE,
        )
        report = check(b)
        self.assertFails(report, LINEARIZABLE)
        self.assertIn("company='Evil'", report.check(LINEARIZABLE).violations[0].message)

    def test_phantom(self) -> None:
        """
        An object that no operation created fails.
        """
        b = Builder()
        b.create_printer((0, 1), "P1", "p1")
        b.set_final("n1", ["p1"], extra={"printers": [printer_obj("p9", "P9")]})
        report = check(b)
        self.assertFails(report, LINEARIZABLE)
        self.assertIn("no operation of the history created", report.violations[0].message)

    def test_idempotent_attempts_disagree(self) -> None:
        """
        Two attempts of one idempotent request, one acknowledged and one
        refused, contradict each other.
        """
        b = Builder()
        farm(b)
        b.set_status((4, 5), "j1", "Running", key="k")
        b.set_status((6, 7), "j1", "Running", "invalid_transition", key="k")
        self.assertFails(check(b), LINEARIZABLE, (3, 4))


class FinalStateTests(Assertions):
    """
    Lost writes, double applies, filament accounting and convergence, read
    from every node's final state.
    """

    def test_lost_write(self) -> None:
        """
        An acknowledged create missing on one node is a lost write.
        """
        b = Builder()
        create = b.create_printer((0, 1), "P1", "p1")
        b.set_final("n1", ["p1"])
        b.set_final("n2", [])
        report = check(b)
        self.assertFails(report, NO_LOST_WRITES, (create,))
        self.assertEqual(report.check(NO_LOST_WRITES).violations[0].details["nodes"], ["n2"])
        self.assertFails(report, CONVERGENCE)

    def test_double_apply(self) -> None:
        """
        A retried create (same key) that made two objects is applied twice;
        the objects are counted by tag.
        """
        b = Builder()
        first = b.create_printer((0, None), "P1", "p1", "info", key="k1")
        retry = b.create_printer((5, 6), "P1", "p2", key="k1")
        b.set_final("n1", ["p1", "p2"])
        report = check(b)
        self.assertFails(report, NO_DOUBLE_APPLY, (first, retry))
        details = report.check(NO_DOUBLE_APPLY).violations[0].details
        self.assertEqual(details["ids"], ["p1", "p2"])
        self.assertEqual(details["keys"], ["k1"])
        self.assertIn(
            "not checked: it was created more than once", report.check(LINEARIZABLE).notes[0]
        )

    def test_accounting(self) -> None:
        """
        A final remaining weight that is not total minus the Done jobs, or
        that is over-reserved, fails; so does a negative weight seen during
        the run.
        """
        b = Builder()
        farm(b, weight=300, total=500)
        b.create_job((2, 3), "J2", "j2", "p1", "f1", 200)
        b.read_filament((4, 5), "f1", -1)
        b.set_final("n1", ["p1"], {"f1": 100}, {"j1": "Queued", "j2": "Queued"})
        messages = [v.message for v in check(b).check(FILAMENT_ACCOUNTING).violations]
        self.assertEqual(len(messages), 3, messages)
        self.assertIn("not within 0..500", messages[0])
        self.assertIn("minus 0 g of Done jobs is 500 g", messages[1])
        self.assertIn("reserve 500 g, more than the 100 g remaining", messages[2])

    def test_dangling_reference(self) -> None:
        """
        A job whose filament a node does not have fails the accounting.
        """
        b = Builder()
        farm(b)
        b.set_final("n1", ["p1"], {}, {"j1": "Queued"})
        report = check(b)
        self.assertIn(
            "names a printer or filament",
            report.check(FILAMENT_ACCOUNTING).violations[0].message,
        )

    def test_convergence(self) -> None:
        """
        Nodes that disagree on a job's status do not converge; the
        difference is shown.
        """
        b = Builder()
        farm(b)
        b.set_status((4, 5), "j1", "Running")
        b.set_final("n1", ["p1"], {"f1": 1000}, {"j1": "Running"})
        b.set_final("n2", ["p1"], {"f1": 1000}, {"j1": "Queued"})
        result = check(b).check(CONVERGENCE)
        self.assertIs(result.verdict, Verdict.FAIL)
        self.assertIn("1 different", result.violations[0].message)

    def test_no_final_state(self) -> None:
        """
        Without a final state the checks that need it cannot decide.
        """
        b = Builder()
        farm(b)
        report = check(b)
        self.assertIs(report.verdict, Verdict.UNKNOWN)
        self.assertEqual(
            set(report.summary.undecided), {NO_LOST_WRITES, FILAMENT_ACCOUNTING, CONVERGENCE}
        )


class StaleReadTests(Assertions):
    """
    A stale read must show values that some write invoked before it ended
    could have produced.
    """

    def test_weight_nobody_wrote(self) -> None:
        """
        A stale filament read with a weight no set of Done jobs explains
        fails.
        """
        b = Builder()
        farm(b)
        read = b.read_filament((4, 5), "f1", 650, stale=True)
        self.assertFails(check(b), STALE_READS, (read,))

    def test_from_the_future(self) -> None:
        """
        A stale read of a status written only by a later request fails, as
        does one of an object created after it.
        """
        b = Builder()
        farm(b)
        b.read_job((4, 5), "j1", "Running", stale=True)
        b.set_status((6, 7), "j1", "Running")
        b.list_printers((-2, -1), ["p1"], stale=True)
        violations = check(b).check(STALE_READS).violations
        self.assertEqual(len(violations), 2)


class BoundTests(Assertions):
    """
    The search bound turns an expensive sub-history into "unknown".
    """

    def test_bound_exceeded(self) -> None:
        """
        With a tiny bound the linearizability check (and the run) is
        undecided, never passed or failed, and the note says why.
        """
        b = Builder()
        farm(b)
        for i in range(6):
            b.set_status((4, 10), "j1", "Running" if i else "Canceled", "info", process=i)
        b.read_job((11, 12), "j1", "Running")
        for node in ("n1", "n2"):
            b.set_final(node, ["p1"], {"f1": 1000}, {"j1": "Running"})
        self.assertPasses(check(b))
        report = check(b, bound=2)
        self.assertIs(report.check(LINEARIZABLE).verdict, Verdict.UNKNOWN)
        self.assertIs(report.verdict, Verdict.UNKNOWN)
        self.assertIn("bound of 2 configurations exceeded", report.check(LINEARIZABLE).notes[0])


class WellFormedTests(Assertions):
    """
    Runner mistakes are reported as such.
    """

    def test_duplicate_tag(self) -> None:
        """
        Two creates with one tag and no shared key cannot be told apart.
        """
        b = Builder()
        b.create_printer((0, 1), "P1", "p1")
        b.create_printer((2, 3), "P1", "p2")
        report = check(b)
        self.assertFails(report, WELL_FORMED, (0, 1))

    def test_retry_with_another_request(self) -> None:
        """
        Attempts sharing a key must repeat the request.
        """
        b = Builder()
        b.create_printer((0, 1), "P1", "p1", key="k")
        b.create_printer((2, 3), "P2", "p2", key="k")
        self.assertFails(check(b), WELL_FORMED, (0, 1))

    def test_read_without_consistency(self) -> None:
        """
        A read must say which consistency it asked for, and an answered
        operation needs its completion time.
        """
        b = Builder()
        b.op(OpKind.READ_PRINTER, {"id": "p"}, (0, 1), "printer_not_found")
        b.op(
            OpKind.CREATE_PRINTER, {"body": {"model": "x"}}, (0, None), "ok", printer_obj("p", "x")
        )
        self.assertEqual(len(check(b).check(WELL_FORMED).violations), 2)

    def test_bad_final_state(self) -> None:
        """
        A final state without the three lists is reported and ignored.
        """
        b = Builder()
        b.final["n1"] = {"printers": []}
        self.assertFails(check(b), WELL_FORMED)


class ReportTests(SynchronousTestCase):
    """
    Reports read well and serialise.
    """

    def test_render(self) -> None:
        """
        The text report shows each check, each violation with its
        operations, and the verdict.
        """
        b = Builder()
        b.create_printer((0, 1), "P1", "p1")
        b.read_printer((2, 3), "p1", found=False)
        history = b.history()
        report = check_history(history)
        text = render_report(report, history)
        self.assertIn("linearizable         FAIL", text)
        self.assertIn(describe_operation(history.operations[1]), text)
        self.assertIn("VERDICT: FAIL", text)
        self.assertEqual(report.to_json()["verdict"], "fail")
        self.assertEqual(report.to_json()["checks"][1]["violations"][0]["ops"], [0, 1])

    def test_describe(self) -> None:
        """
        An operation is described on one line with its arguments, outcome,
        times and node.
        """
        b = Builder()
        b.create_job((0, None), "J1", "j1", "p1", "f1", 5, "info")
        self.assertEqual(
            describe_operation(b.ops[0]),
            "#0 p0 create_job(printer_id='p1', filament_id='f1', filepath='J1', "
            "print_weight_in_grams=5) -> info timeout [0.000, ?] on n1",
        )


class SimulatedFarmTests(SynchronousTestCase):
    """
    Histories of a correct farm (a real L{FarmState} applying one operation
    at a time, with answers spread around in time, lost, retried and read
    stale) always pass.
    """

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(
        seed=st.integers(0, 2**32),
        window=st.sampled_from([0.5, 2.0, 6.0]),
        p_unknown=st.sampled_from([0.0, 0.15, 0.4]),
        final=st.booleans(),
    )
    def test_always_linearizable(
        self, seed: int, window: float, p_unknown: float, final: bool
    ) -> None:
        """
        Whatever the concurrency window and the share of unknown outcomes,
        with or without the final state, nothing fails.
        """
        history = SimulatedFarm(random.Random(seed), window=window, p_unknown=p_unknown).run(60)
        if not final:
            history = History(history.operations, {}, history.meta)
        report = check_history(history)
        self.assertEqual(report.summary.failed, (), [v.message for v in report.violations])
        expected = Verdict.PASS if final else Verdict.UNKNOWN
        self.assertIs(report.verdict, expected)

    def test_larger(self) -> None:
        """
        A longer run with many objects passes too (and quickly).
        """
        history = SimulatedFarm(
            random.Random(11), window=5, p_unknown=0.1, max_filaments=6, max_jobs=40
        ).run(800)
        report = check_history(history)
        self.assertIs(report.verdict, Verdict.PASS, [v.message for v in report.violations])
        self.assertGreater(report.summary.unknown, 20)
        self.assertGreater(report.summary.retried_keys, 5)

    def test_buggy_reads_are_caught(self) -> None:
        """
        The same farm with a node that answers some linearizable reads from
        an old state is caught.
        """
        history = SimulatedFarm(
            random.Random(5), window=2, p_unknown=0.1, p_lie=0.2, lag=40, max_jobs=30
        ).run(400)
        report = check_history(history)
        self.assertIs(report.check(LINEARIZABLE).verdict, Verdict.FAIL)
