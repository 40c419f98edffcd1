"""
Tests for L{raft3d.farm._state.FarmState}: every rule, rejections without
side effects, listings, snapshots, and invariants over random histories.
"""

from __future__ import annotations

from typing import Any

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from raft3d.farm import (
    FarmState,
    JobStatus,
    _snapshot,
    create_filament,
    create_print_job,
    create_printer,
    set_print_job_status,
)
from raft3d.raft import IStateMachine

T0 = "2024-05-01T10:00:00.000Z"
T1 = "2024-05-01T11:00:00.000Z"


class Farm:
    """
    A L{FarmState} with a log index counter and short-hand commands.
    """

    def __init__(self) -> None:
        self.state = FarmState()
        self.index = 0

    def apply(self, command: Any) -> Any:
        self.index += 1
        return self.state.apply(self.index, command)

    def printer(self, pid: str = "p1") -> Any:
        return self.apply(create_printer(id=pid, company="Prusa", model="MK4", at=T0))

    def filament(
        self, fid: str = "f1", total: int = 1000, remaining: int | None = None, kind: str = "PLA"
    ) -> Any:
        return self.apply(
            create_filament(
                id=fid,
                type=kind,
                color="red",
                total_weight_in_grams=total,
                remaining_weight_in_grams=total if remaining is None else remaining,
                at=T0,
            )
        )

    def job(self, jid: str = "j1", weight: int = 100, pid: str = "p1", fid: str = "f1") -> Any:
        return self.apply(
            create_print_job(
                id=jid,
                printer_id=pid,
                filament_id=fid,
                filepath=f"{jid}.gcode",
                print_weight_in_grams=weight,
                at=T0,
            )
        )

    def move(self, jid: str, status: str) -> Any:
        return self.apply(set_print_job_status(id=jid, status=status, at=T1))


def code(result: Any) -> str:
    return str(result["error"]["code"])


class StateTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.farm = Farm()

    def assertRejectedUnchanged(self, command: Any, expected_code: str) -> None:
        """
        Applying C{command} is rejected with C{expected_code} and leaves the
        state exactly as it was.
        """
        before = self.farm.state.snapshot()
        result = self.farm.apply(command)
        self.assertEqual(set(result), {"error"}, result)
        self.assertEqual(code(result), expected_code, result)
        self.assertIsInstance(result["error"]["message"], str)
        self.assertEqual(self.farm.state.snapshot(), before)


class InterfaceTests(StateTestCase):
    def test_provides_state_machine(self) -> None:
        """
        L{FarmState} provides the engine's L{IStateMachine}.
        """
        self.assertTrue(verifyObject(IStateMachine, self.farm.state))


class CreationTests(StateTestCase):
    """
    Creating printers, filaments and jobs.
    """

    def test_printer(self) -> None:
        """
        A new printer is returned in full, with the command's id and time.
        """
        self.assertEqual(
            self.farm.printer(),
            {
                "ok": {
                    "printer": {
                        "id": "p1",
                        "company": "Prusa",
                        "model": "MK4",
                        "created_at": T0,
                        "updated_at": T0,
                    }
                }
            },
        )
        printer = self.farm.state.get_printer("p1")
        assert printer is not None
        self.assertEqual(printer.model, "MK4")

    def test_filament_type_any_case(self) -> None:
        """
        A filament's type is accepted in any case and stored upper case.
        """
        result = self.farm.filament(kind="pEtG", total=750, remaining=500)
        self.assertEqual(result["ok"]["filament"]["type"], "PETG")
        self.assertEqual(result["ok"]["filament"]["remaining_weight_in_grams"], 500)
        filament = self.farm.state.get_filament("f1")
        assert filament is not None
        self.assertEqual((filament.type, filament.total_weight_in_grams), ("PETG", 750))

    def test_filament_remaining_bounds(self) -> None:
        """
        Remaining weight may be zero but not above the total; the total must
        be positive.
        """
        self.assertIn("ok", self.farm.filament("f0", total=10, remaining=0))
        self.assertRejectedUnchanged(
            create_filament(
                id="f1",
                type="PLA",
                color="red",
                total_weight_in_grams=10,
                remaining_weight_in_grams=11,
                at=T0,
            ),
            "malformed_command",
        )
        self.assertRejectedUnchanged(
            create_filament(
                id="f1",
                type="PLA",
                color="red",
                total_weight_in_grams=0,
                remaining_weight_in_grams=0,
                at=T0,
            ),
            "malformed_command",
        )

    def test_job_is_queued(self) -> None:
        """
        A new job is Queued and reserves its weight.
        """
        self.farm.printer()
        self.farm.filament()
        result = self.farm.job(weight=300)
        self.assertEqual(result["ok"]["print_job"]["status"], "Queued")
        self.assertEqual(self.farm.state.reserved_weight_in_grams("f1"), 300)
        self.assertEqual(self.farm.state.available_weight_in_grams("f1"), 700)

    def test_conflicts_never_overwrite(self) -> None:
        """
        Creating any object with an existing id is a conflict and the
        original object stays.
        """
        self.farm.printer()
        self.farm.filament()
        self.farm.job()
        self.assertRejectedUnchanged(
            create_printer(id="p1", company="Other", model="X", at=T1), "conflict"
        )
        self.assertRejectedUnchanged(
            create_filament(
                id="f1",
                type="ABS",
                color="blue",
                total_weight_in_grams=5,
                remaining_weight_in_grams=5,
                at=T1,
            ),
            "conflict",
        )
        self.assertRejectedUnchanged(
            create_print_job(
                id="j1",
                printer_id="p1",
                filament_id="f1",
                filepath="other",
                print_weight_in_grams=1,
                at=T1,
            ),
            "conflict",
        )
        printer = self.farm.state.get_printer("p1")
        assert printer is not None
        self.assertEqual(printer.company, "Prusa")

    def test_job_needs_printer_and_filament(self) -> None:
        """
        A job naming an unknown printer or filament is rejected.
        """
        self.farm.filament()
        self.assertRejectedUnchanged(
            create_print_job(
                id="j1",
                printer_id="nope",
                filament_id="f1",
                filepath="a",
                print_weight_in_grams=1,
                at=T0,
            ),
            "printer_not_found",
        )
        self.farm.printer()
        self.assertRejectedUnchanged(
            create_print_job(
                id="j1",
                printer_id="p1",
                filament_id="nope",
                filepath="a",
                print_weight_in_grams=1,
                at=T0,
            ),
            "filament_not_found",
        )


class ReservationTests(StateTestCase):
    """
    A job may only reserve what remains unreserved.
    """

    def setUp(self) -> None:
        super().setUp()
        self.farm.printer()
        self.farm.filament(total=1000, remaining=600)

    def job_command(self, jid: str, weight: int) -> Any:
        return create_print_job(
            id=jid,
            printer_id="p1",
            filament_id="f1",
            filepath="a",
            print_weight_in_grams=weight,
            at=T0,
        )

    def test_more_than_remaining(self) -> None:
        """
        A job heavier than the remaining weight is rejected even with no
        other jobs.
        """
        self.assertRejectedUnchanged(self.job_command("j1", 601), "insufficient_filament")

    def test_exactly_available(self) -> None:
        """
        A job may take exactly what is available, and then nothing more fits.
        """
        self.assertIn("ok", self.farm.job("j1", weight=400))
        self.assertIn("ok", self.farm.job("j2", weight=200))
        self.assertEqual(self.farm.state.available_weight_in_grams("f1"), 0)
        self.assertRejectedUnchanged(self.job_command("j3", 1), "insufficient_filament")

    def test_running_jobs_still_reserve(self) -> None:
        """
        A Running job keeps its reservation.
        """
        self.farm.job("j1", weight=500)
        self.farm.move("j1", "Running")
        self.assertEqual(self.farm.state.reserved_weight_in_grams("f1"), 500)
        self.assertRejectedUnchanged(self.job_command("j2", 101), "insufficient_filament")

    def test_cancel_queued_releases(self) -> None:
        """
        Canceling a Queued job releases its reservation and leaves the
        remaining weight alone.
        """
        self.farm.job("j1", weight=500)
        self.farm.move("j1", "Canceled")
        self.assertEqual(self.farm.state.reserved_weight_in_grams("f1"), 0)
        self.assertIn("ok", self.farm.job("j2", weight=600))
        filament = self.farm.state.get_filament("f1")
        assert filament is not None
        self.assertEqual(filament.remaining_weight_in_grams, 600)

    def test_cancel_running_releases(self) -> None:
        """
        Canceling a Running job also releases its reservation without
        consuming filament.
        """
        self.farm.job("j1", weight=500)
        self.farm.move("j1", "Running")
        result = self.farm.move("j1", "canceled")
        self.assertNotIn("filament", result["ok"])
        self.assertEqual(self.farm.state.reserved_weight_in_grams("f1"), 0)
        self.assertEqual(self.farm.state.available_weight_in_grams("f1"), 600)

    def test_done_deducts_once(self) -> None:
        """
        Done deducts the job's weight from the filament in the same command,
        reports the changed filament, and never again.
        """
        self.farm.job("j1", weight=250)
        self.farm.move("j1", "Running")
        result = self.farm.move("j1", "DONE")
        self.assertEqual(result["ok"]["filament"]["remaining_weight_in_grams"], 350)
        self.assertEqual(result["ok"]["filament"]["updated_at"], T1)
        self.assertEqual(result["ok"]["previous_status"], "Running")
        self.assertEqual(self.farm.state.reserved_weight_in_grams("f1"), 0)
        for again in ("Done", "Canceled", "Running", "Queued"):
            self.assertRejectedUnchanged(
                set_print_job_status(id="j1", status=again, at=T1), "invalid_transition"
            )
        filament = self.farm.state.get_filament("f1")
        assert filament is not None
        self.assertEqual(filament.remaining_weight_in_grams, 350)
        self.assertEqual(self.farm.state.available_weight_in_grams("f1"), 350)


class TransitionTests(StateTestCase):
    """
    Each allowed and each forbidden status change, through C{apply}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.farm.printer()
        self.farm.filament()

    def job_in(self, status: JobStatus, jid: str = "j") -> None:
        self.farm.job(jid, weight=10)
        path = {
            JobStatus.QUEUED: [],
            JobStatus.RUNNING: ["Running"],
            JobStatus.DONE: ["Running", "Done"],
            JobStatus.CANCELED: ["Canceled"],
        }[status]
        for step in path:
            self.assertIn("ok", self.farm.move(jid, step))

    def test_allowed(self) -> None:
        """
        Queued->Running, Running->Done, Queued->Canceled and Running->Canceled
        succeed, report the previous status and stamp C{updated_at}.
        """
        allowed = [
            (JobStatus.QUEUED, "Running"),
            (JobStatus.RUNNING, "Done"),
            (JobStatus.QUEUED, "Canceled"),
            (JobStatus.RUNNING, "Canceled"),
        ]
        for n, (start, target) in enumerate(allowed):
            jid = f"j{n}"
            self.job_in(start, jid)
            result = self.farm.move(jid, target)
            job = result["ok"]["print_job"]
            self.assertEqual(
                (job["status"], job["updated_at"], job["created_at"]), (target, T1, T0)
            )
            self.assertEqual(result["ok"]["previous_status"], start.value)
            stored = self.farm.state.get_job(jid)
            assert stored is not None
            self.assertEqual(stored.status.value, target)

    def test_forbidden(self) -> None:
        """
        Every other change is rejected with C{invalid_transition} and
        changes nothing.
        """
        allowed = {
            (JobStatus.QUEUED, JobStatus.RUNNING),
            (JobStatus.RUNNING, JobStatus.DONE),
            (JobStatus.QUEUED, JobStatus.CANCELED),
            (JobStatus.RUNNING, JobStatus.CANCELED),
        }
        n = 0
        for start in JobStatus:
            for target in JobStatus:
                if (start, target) in allowed:
                    continue
                n += 1
                jid = f"j{n}"
                self.job_in(start, jid)
                self.assertRejectedUnchanged(
                    set_print_job_status(id=jid, status=target.value.lower(), at=T1),
                    "invalid_transition",
                )
        self.assertEqual(n, 12)

    def test_unknown_job(self) -> None:
        """
        Changing the status of an unknown job is C{job_not_found}.
        """
        self.assertRejectedUnchanged(
            set_print_job_status(id="nope", status="Running", at=T1), "job_not_found"
        )

    def test_unknown_status(self) -> None:
        """
        An unknown target status is a malformed command.
        """
        self.job_in(JobStatus.QUEUED)
        self.assertRejectedUnchanged(
            set_print_job_status(id="j", status="Paused", at=T1), "malformed_command"
        )


class MalformedCommandTests(StateTestCase):
    """
    Bad commands are rejected as results, never raised, never applied.
    """

    def setUp(self) -> None:
        super().setUp()
        self.farm.printer()
        self.farm.filament()
        self.farm.job()

    def test_not_commands(self) -> None:
        """
        Non-maps, maps without an operation and unknown operations are
        rejected.
        """
        for command in (None, 1, "create_printer", b"x", [1, 2], {}, {"op": 3}, {"op": ["x"]}):
            self.assertRejectedUnchanged(command, "malformed_command")
        self.assertRejectedUnchanged({"op": "delete_everything"}, "malformed_command")

    def test_missing_and_unknown_fields(self) -> None:
        """
        A missing field or an unknown extra one is rejected, whatever the
        key's type.
        """
        command = create_printer(id="p2", company="c", model="m", at=T0)
        del command["model"]
        self.assertRejectedUnchanged(command, "malformed_command")
        command = create_printer(id="p2", company="c", model="m", at=T0)
        command["colour"] = "red"
        self.assertRejectedUnchanged(command, "malformed_command")
        command = create_printer(id="p2", company="c", model="m", at=T0)
        command[7] = "seven"  # type: ignore[index]
        self.assertRejectedUnchanged(command, "malformed_command")

    def test_wrong_types(self) -> None:
        """
        Ill-typed or out-of-range values are rejected: booleans and floats
        as weights, non-strings as ids, negative weights.
        """
        good = create_print_job(
            id="j2", printer_id="p1", filament_id="f1", filepath="a", print_weight_in_grams=1, at=T0
        )
        for field, value in [
            ("print_weight_in_grams", True),
            ("print_weight_in_grams", 1.0),
            ("print_weight_in_grams", -5),
            ("print_weight_in_grams", 0),
            ("print_weight_in_grams", "1"),
            ("id", 12),
            ("id", ["j2"]),
            ("id", ""),
            ("printer_id", {"p1": 1}),
            ("filepath", None),
            ("at", 0),
        ]:
            self.assertRejectedUnchanged({**good, field: value}, "malformed_command")
        self.assertRejectedUnchanged(
            {**set_print_job_status(id="j1", status="Running", at=T1), "status": ["Running"]},
            "malformed_command",
        )
        self.assertRejectedUnchanged(
            {
                **create_filament(
                    id="f2",
                    type="PLA",
                    color="c",
                    total_weight_in_grams=5,
                    remaining_weight_in_grams=5,
                    at=T0,
                ),
                "type": "wood",
            },
            "malformed_command",
        )

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(
        st.sampled_from(
            ["create_printer", "create_filament", "create_print_job", "set_print_job_status"]
        ),
        st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "company",
                    "model",
                    "type",
                    "color",
                    "total_weight_in_grams",
                    "remaining_weight_in_grams",
                    "printer_id",
                    "filament_id",
                    "filepath",
                    "print_weight_in_grams",
                    "status",
                    "at",
                    "extra",
                ]
            ),
            st.recursive(
                st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                lambda inner: (
                    st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=3), inner, max_size=3)
                ),
                max_leaves=5,
            ),
        ),
    )
    def test_fuzz_never_raises(self, op: str, fields: dict[str, Any]) -> None:
        """
        Whatever the field values, C{apply} returns a result (ok or error)
        that CBOR can carry, and never raises.
        """
        result = self.farm.apply({"op": op, **fields})
        self.assertTrue(set(result) in ({"ok"}, {"error"}), result)
        self.assertEqual(cbor2.loads(cbor2.dumps(result)), result)


class ListingTests(StateTestCase):
    """
    Listings are in creation order, filterable and pageable.
    """

    def setUp(self) -> None:
        super().setUp()
        for pid in ("pb", "pa"):
            self.farm.printer(pid)
        for fid in ("fz", "fy"):
            self.farm.filament(fid)
        # Jobs 0..9 alternate printers and filaments.
        for n in range(10):
            self.farm.job(f"j{n}", weight=1, pid=("pb", "pa")[n % 2], fid=("fz", "fy")[n // 5])
        for n in (1, 4, 7, 8):
            self.farm.move(f"j{n}", "Running")
        self.farm.move("j4", "Done")
        self.farm.move("j2", "Canceled")

    def ids(self, page: Any) -> list[str]:
        return [item.id for item in page.items]

    def test_creation_order(self) -> None:
        """
        Printers, filaments and jobs come back in creation order, not id
        order.
        """
        self.assertEqual(self.ids(self.farm.state.printers()), ["pb", "pa"])
        self.assertEqual(self.ids(self.farm.state.filaments()), ["fz", "fy"])
        self.assertEqual(self.ids(self.farm.state.jobs()), [f"j{n}" for n in range(10)])

    def test_filters(self) -> None:
        """
        Status, printer and filament filters, alone and combined, keep
        creation order even after jobs moved between statuses.
        """
        jobs = self.farm.state.jobs
        self.assertEqual(self.ids(jobs(status=JobStatus.RUNNING)), ["j1", "j7", "j8"])
        self.assertEqual(self.ids(jobs(status=JobStatus.QUEUED)), ["j0", "j3", "j5", "j6", "j9"])
        self.assertEqual(self.ids(jobs(status=JobStatus.DONE)), ["j4"])
        self.assertEqual(self.ids(jobs(printer_id="pa")), ["j1", "j3", "j5", "j7", "j9"])
        self.assertEqual(self.ids(jobs(filament_id="fy")), ["j5", "j6", "j7", "j8", "j9"])
        self.assertEqual(
            self.ids(jobs(printer_id="pa", filament_id="fy", status=JobStatus.QUEUED)),
            ["j5", "j9"],
        )
        self.assertEqual(self.ids(jobs(printer_id="pa", status=JobStatus.DONE)), [])
        self.assertEqual(self.ids(jobs(printer_id="nope")), [])

    def test_paging(self) -> None:
        """
        Pages of C{limit} items chain through C{next_after} and together list
        everything once; the last page has no C{next_after}.
        """
        for kwargs in ({}, {"printer_id": "pb"}, {"status": JobStatus.QUEUED}):
            full = self.ids(self.farm.state.jobs(**kwargs))  # type: ignore[arg-type]
            seen: list[str] = []
            after = -1
            while True:
                page = self.farm.state.jobs(after=after, limit=2, **kwargs)  # type: ignore[arg-type]
                self.assertLessEqual(len(page.items), 2)
                seen.extend(self.ids(page))
                if page.next_after is None:
                    break
                after = page.next_after
            self.assertEqual(seen, full)

    def test_page_exact_end(self) -> None:
        """
        A page ending exactly at the last item has no next page.
        """
        page = self.farm.state.printers(limit=2)
        self.assertEqual((self.ids(page), page.next_after), (["pb", "pa"], None))
        page = self.farm.state.printers(limit=1)
        self.assertEqual((self.ids(page), page.next_after), (["pb"], 0))
        self.assertEqual(self.ids(self.farm.state.printers(after=0)), ["pa"])

    def test_bad_limit(self) -> None:
        """
        A page limit below one is a programming error.
        """
        self.assertRaises(ValueError, self.farm.state.printers, limit=0)
        self.assertRaises(ValueError, self.farm.state.jobs, status=JobStatus.DONE, limit=0)

    def test_counts(self) -> None:
        """
        Counts report each kind and each job status.
        """
        self.assertEqual(
            self.farm.state.counts(),
            {
                "printers": 2,
                "filaments": 2,
                "print_jobs": 10,
                "print_jobs_queued": 5,
                "print_jobs_running": 3,
                "print_jobs_done": 1,
                "print_jobs_canceled": 1,
            },
        )


def build_sample(farm: Farm) -> None:
    """
    A printer, two filaments and six jobs in every status.
    """
    farm.printer("p1")
    farm.filament("f1", total=1000, remaining=900)
    farm.filament("f2", total=500)
    for n in range(6):
        farm.job(f"j{n}", weight=50, fid=("f1", "f2")[n % 2])
    farm.move("j0", "Running")
    farm.move("j0", "Done")
    farm.move("j1", "Canceled")
    farm.move("j2", "Running")


class SnapshotTests(StateTestCase):
    """
    C{snapshot} and C{restore}.
    """

    def build(self, farm: Farm) -> None:
        build_sample(farm)

    def test_round_trip(self) -> None:
        """
        Restoring a snapshot gives an equal state with the same derived
        reservations and indexes.
        """
        self.build(self.farm)
        copy = FarmState()
        copy.restore(self.farm.state.snapshot())
        self.assertEqual(copy, self.farm.state)
        self.assertEqual(copy.snapshot(), self.farm.state.snapshot())
        for fid in ("f1", "f2"):
            self.assertEqual(
                copy.reserved_weight_in_grams(fid), self.farm.state.reserved_weight_in_grams(fid)
            )
        self.assertEqual(
            [j.id for j in copy.jobs(status=JobStatus.QUEUED, filament_id="f1").items], ["j4"]
        )
        self.assertEqual(copy.counts(), self.farm.state.counts())

    def test_restored_state_keeps_working(self) -> None:
        """
        A restored state applies further commands exactly as the original.
        """
        self.build(self.farm)
        copy = Farm()
        copy.state.restore(self.farm.state.snapshot())
        for farm in (self.farm, copy):
            farm.move("j2", "Done")
            farm.job("j9", weight=700, fid="f1")
            farm.printer("p2")
        self.assertEqual(copy.state, self.farm.state)
        self.assertEqual(code(copy.job("j10", weight=1000, fid="f1")), "insufficient_filament")

    def test_deterministic(self) -> None:
        """
        Two states built by the same commands give identical bytes; empty
        states too.
        """
        other = Farm()
        self.build(self.farm)
        self.build(other)
        self.assertEqual(self.farm.state.snapshot(), other.state.snapshot())
        self.assertEqual(FarmState().snapshot(), FarmState().snapshot())
        self.assertNotEqual(FarmState().snapshot(), self.farm.state.snapshot())

    def test_equality(self) -> None:
        """
        States differing in one job's status are not equal.
        """
        other = Farm()
        self.build(self.farm)
        self.build(other)
        other.move("j3", "Running")
        self.assertNotEqual(self.farm.state, other.state)
        self.assertNotEqual(self.farm.state, object())

    def test_restore_replaces(self) -> None:
        """
        Restoring replaces everything that was there before.
        """
        self.build(self.farm)
        self.farm.state.restore(FarmState().snapshot())
        self.assertEqual(self.farm.state, FarmState())

    def test_restore_bad_data(self) -> None:
        """
        A malformed snapshot raises L{ValueError} and leaves the state as it
        was.
        """
        self.build(self.farm)
        before = self.farm.state.snapshot()
        good = cbor2.loads(before)
        bad_docs: list[Any] = [
            b"\xff\x00",
            cbor2.dumps([1, 2]),
            cbor2.dumps({**good, "version": 99}),
            cbor2.dumps({**good, "jobs": "nope"}),
            cbor2.dumps({**good, "jobs": [["j", "p1"]]}),
            cbor2.dumps({**good, "printers": good["printers"] * 2}),
            cbor2.dumps({**good, "jobs": [[*good["jobs"][0][:5], "Paused", T0, T0]]}),
            cbor2.dumps({**good, "jobs": [["j", "nope", "f1", "a", 1, "Queued", T0, T0]]}),
            cbor2.dumps({**good, "jobs": [["j", "p1", "nope", "a", 1, "Queued", T0, T0]]}),
            cbor2.dumps({**good, "jobs": [["j", "p1", "f2", "a", 501, "Queued", T0, T0]]}),
            cbor2.dumps({**good, "filaments": [["f", "PLA", "red", 5, 6, T0, T0]], "jobs": []}),
            cbor2.dumps({**good, "filaments": good["filaments"] * 2, "jobs": []}),
        ]
        for data in bad_docs:
            self.assertRaises(ValueError, self.farm.state.restore, data)
            self.assertEqual(self.farm.state.snapshot(), before)


# A small universe so that random commands often hit existing objects.
_IDS = st.sampled_from(["a", "b", "c"])
_WEIGHTS = st.integers(min_value=1, max_value=400)
_COMMANDS = st.one_of(
    st.builds(lambda i: create_printer(id=f"p{i}", company="c", model="m", at=T0), _IDS),
    st.builds(
        lambda i, total, frac: create_filament(
            id=f"f{i}",
            type="pla",
            color="c",
            total_weight_in_grams=total,
            remaining_weight_in_grams=total * frac // 4,
            at=T0,
        ),
        _IDS,
        st.integers(min_value=1, max_value=1000),
        st.integers(min_value=0, max_value=4),
    ),
    st.builds(
        lambda j, p, f, w: create_print_job(
            id=f"j{j}",
            printer_id=f"p{p}",
            filament_id=f"f{f}",
            filepath="x",
            print_weight_in_grams=w,
            at=T0,
        ),
        st.integers(min_value=0, max_value=3),
        _IDS,
        _IDS,
        _WEIGHTS,
    ),
    st.builds(
        lambda j, s: set_print_job_status(id=f"j{j}", status=s, at=T1),
        st.integers(min_value=0, max_value=3),
        st.sampled_from(["Queued", "running", "Done", "done", "CANCELED", "Bogus"]),
    ),
)

# Histories start with two printers and two spools, so that jobs are
# created, reserve, move and consume often enough to matter.
_SETUP = [
    *(create_printer(id=pid, company="c", model="m", at=T0) for pid in ("pa", "pb")),
    *(
        create_filament(
            id=fid,
            type="pla",
            color="c",
            total_weight_in_grams=grams,
            remaining_weight_in_grams=grams,
            at=T0,
        )
        for fid, grams in (("fa", 5000), ("fb", 600))
    ),
]
_HISTORIES = st.lists(_COMMANDS, min_size=20, max_size=60).map(lambda commands: _SETUP + commands)


class InvariantTests(SynchronousTestCase):
    """
    Properties over random command histories.
    """

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(_HISTORIES)
    def test_weights_and_snapshots(self, commands: list[dict[str, Any]]) -> None:
        """
        After every command, for each filament: remaining equals its initial
        remaining less the weights of its Done jobs; the kept reservation
        equals the weights of its Queued and Running jobs and never exceeds
        remaining.  At the end, restore(snapshot()) is an equal state with
        identical bytes, and re-applying the same log gives the same state
        and results.
        """
        state = FarmState()
        initial: dict[str, int] = {}
        results = []
        for index, command in enumerate(commands, 1):
            result = state.apply(index, command)
            results.append(result)
            if command["op"] == "create_filament" and "ok" in result:
                initial[command["id"]] = command["remaining_weight_in_grams"]
            jobs = state.jobs().items
            for fid, start in initial.items():
                filament = state.get_filament(fid)
                assert filament is not None
                done = sum(
                    j.print_weight_in_grams
                    for j in jobs
                    if j.filament_id == fid and j.status is JobStatus.DONE
                )
                held = sum(
                    j.print_weight_in_grams
                    for j in jobs
                    if j.filament_id == fid and j.status in (JobStatus.QUEUED, JobStatus.RUNNING)
                )
                self.assertEqual(filament.remaining_weight_in_grams, start - done)
                self.assertEqual(state.reserved_weight_in_grams(fid), held)
                self.assertGreaterEqual(filament.remaining_weight_in_grams - held, 0)
        copy = FarmState()
        copy.restore(state.snapshot())
        self.assertEqual(copy, state)
        self.assertEqual(copy.snapshot(), state.snapshot())
        replay = FarmState()
        self.assertEqual([replay.apply(i, c) for i, c in enumerate(commands, 1)], results)
        self.assertEqual(replay, state)

    @settings(max_examples=150, deadline=None, derandomize=True)
    @given(_HISTORIES, st.integers(min_value=0, max_value=64))
    def test_change_stamps(self, commands: list[dict[str, Any]], restore_at: int) -> None:
        """
        Whenever a command changes what a read of one object, or a listing
        of one kind, answers, that object's (or kind's) stamp reader
        returns a new number; a reader made before a restore returns -1
        after it, whatever the restored state is.
        """
        state = FarmState()
        ids = {
            "printer": [f"p{i}" for i in "abc"],
            "filament": [f"f{i}" for i in "abc"],
            "print_job": [f"j{j}" for j in range(16)],
        }
        readers = {
            (kind, object_id): state.stamp_reader(kind, object_id)
            for kind, names in ids.items()
            for object_id in [*names, None]
        }

        def answers() -> dict[tuple[str, str | None], Any]:
            return {key: _read_answer(state, *key) for key in readers}

        def refresh() -> None:
            # A reader made for an object before it existed follows the
            # kind; make the object's own once it exists.
            for key in readers:
                readers[key] = state.stamp_reader(*key)

        before, stamps = answers(), {key: read() for key, read in readers.items()}
        for index, command in enumerate(commands, 1):
            if index == restore_at:
                old = dict(readers)
                state.restore(state.snapshot())
                self.assertEqual({read() for read in old.values()}, {-1})
                refresh()
                before, stamps = answers(), {key: read() for key, read in readers.items()}
            state.apply(index, command)
            after = answers()
            for key, read in readers.items():
                if after[key] != before[key]:
                    self.assertNotEqual(read(), stamps[key], (key, command))
                    self.assertGreaterEqual(read(), 0)
            refresh()
            before, stamps = after, {key: read() for key, read in readers.items()}


def _read_answer(state: FarmState, kind: str, object_id: str | None) -> Any:
    """
    What the API answers a read of one object (C{object_id}) or a listing
    of C{kind} with: every filtered listing of jobs included.
    """
    if kind == "printer":
        if object_id is None:
            return [p.to_json() for p in state.printers().items]
        found: Any = state.get_printer(object_id)
    elif kind == "filament":
        if object_id is None:
            return [f.to_json() for f in state.filaments().items]
        found = state.get_filament(object_id)
    else:
        if object_id is None:
            listings = []
            for status in [None, *JobStatus]:
                for printer in [None, "pa", "pb", "pz"]:
                    for filament in [None, "fa", "fz"]:
                        page = state.jobs(status=status, printer_id=printer, filament_id=filament)
                        listings.append([j.to_json() for j in page.items])
            return listings
        found = state.get_job(object_id)
    return None if found is None else found.to_json()


# A snapshot written by the previous release (rows as records, not columns):
# two printers, two filaments (one non-ASCII name, one odd timestamp) and
# four jobs, one per status.  Nodes in the field have such files on disk.
_RELEASED_SNAPSHOT = bytes.fromhex(
    "a5646a6f62738488782430303030303030302d303030302d343030302d383030302d30303030303030303030"
    "3030782435663063366135322d356238652d346237652d396133372d33633164326534663661376278243062"
    "3365386331642d326634612d346336622d386439652d316132623363346435653666722f67636f64652f7061"
    "7274302e67636f64650a64446f6e657818323032362d31312d32395430313a30323a30332e3435365a781832"
    "3032362d31312d32395430313a30323a30342e3030305a88782430303030303030302d303030302d34303030"
    "2d383030302d30303030303030303030303163702d3263662d32722f67636f64652f70617274312e67636f64"
    "65146843616e63656c65647818323032362d31312d32395430313a30323a30332e3435365a7818323032362d"
    "31312d32395430313a30323a30342e3030305a88782430303030303030302d303030302d343030302d383030"
    "302d303030303030303030303032782435663063366135322d356238652d346237652d396133372d33633164"
    "3265346636613762782430623365386331642d326634612d346336622d386439652d31613262336334643565"
    "3666722f67636f64652f70617274322e67636f6465181e6752756e6e696e677818323032362d31312d323954"
    "30313a30323a30332e3435365a7818323032362d31312d32395430313a30323a30342e3030305a8878243030"
    "3030303030302d303030302d343030302d383030302d30303030303030303030303363702d3263662d32722f"
    "67636f64652f70617274332e67636f64651828665175657565647818323032362d31312d32395430313a3032"
    "3a30332e3435365a7818323032362d31312d32395430313a30323a30332e3435365a66666f726d61746b7261"
    "667433642e6661726d6776657273696f6e01687072696e746572738285782435663063366135322d35623865"
    "2d346237652d396133372d336331643265346636613762655072757361634d4b347818323032362d31312d32"
    "395430313a30323a30332e3435365a7818323032362d31312d32395430313a30323a30332e3435365a856370"
    "2d326642616d62c3bc6358314369796573746572646179697965737465726461796966696c616d656e747382"
    "87782430623365386331642d326634612d346336622d386439652d31613262336334643565366663504c4163"
    "7265641903e819037a7818323032362d31312d32395430313a30323a30332e3435365a7818323032362d3131"
    "2d32395430313a30323a30342e3030305a8763662d326354505565626c61636b1901f41901f4781832303236"
    "2d31312d32395430313a30323a30332e3435365a7818323032362d31312d32395430313a30323a30332e3435"
    "365a"
)
_P = "5f0c6a52-5b8e-4b7e-9a37-3c1d2e4f6a7b"
_F = "0b3e8c1d-2f4a-4c6b-8d9e-1a2b3c4d5e6f"


def _reference_snapshot(state: FarmState) -> bytes:
    """
    The version 1 snapshot of C{state} as the previous release wrote it:
    one canonical CBOR document of every record's row.
    """
    return cbor2.dumps(
        {
            "format": "raft3d.farm",
            "version": 1,
            "printers": [p.to_row() for p in state.printers().items],
            "filaments": [f.to_row() for f in state.filaments().items],
            "jobs": [j.to_row() for j in state.jobs().items],
        },
        canonical=True,
    )


class SnapshotFormatTests(SynchronousTestCase):
    """
    The snapshot format is unchanged: released snapshots restore, and new
    ones are byte for byte what the previous release wrote.
    """

    def test_released_snapshot(self) -> None:
        """
        A snapshot written by the previous release restores to the state
        it recorded, and snapshots again to the same bytes.
        """
        state = FarmState()
        state.restore(_RELEASED_SNAPSHOT)
        self.assertEqual(state.snapshot(), _RELEASED_SNAPSHOT)
        self.assertEqual(
            state.counts(),
            {
                "printers": 2,
                "filaments": 2,
                "print_jobs": 4,
                "print_jobs_queued": 1,
                "print_jobs_running": 1,
                "print_jobs_done": 1,
                "print_jobs_canceled": 1,
            },
        )
        printer = state.get_printer("p-2")
        assert printer is not None
        self.assertEqual(
            (printer.company, printer.created_at, printer.seq), ("Bambü", "yesterday", 1)
        )
        filament = state.get_filament(_F)
        assert filament is not None
        self.assertEqual(filament.remaining_weight_in_grams, 890)
        self.assertEqual(filament.updated_at, "2026-11-29T01:02:04.000Z")
        # Jobs 2 (Running, 30 g) and 0 (Done) were on this spool.
        self.assertEqual(state.reserved_weight_in_grams(_F), 30)
        self.assertEqual(state.available_weight_in_grams(_F), 860)
        self.assertEqual(
            [j.id[-1] for j in state.jobs(printer_id=_P).items],
            ["0", "2"],
        )

    def test_same_bytes_as_rows(self) -> None:
        """
        A snapshot is exactly the canonical CBOR of the records' rows, as
        the previous release wrote it.
        """
        farm = Farm()
        build_sample(farm)
        farm.apply(create_printer(id=_P, company="Prusa ✓", model="MK4", at="odd time"))
        self.assertEqual(farm.state.snapshot(), _reference_snapshot(farm.state))
        self.assertEqual(FarmState().snapshot(), _reference_snapshot(FarmState()))

    def test_other_encodings(self) -> None:
        """
        Any CBOR encoding of the same document restores to the same state:
        keys in another order, indefinite-length containers.
        """
        state = FarmState()
        state.restore(_RELEASED_SNAPSHOT)
        doc = cbor2.loads(_RELEASED_SNAPSHOT)
        reordered = {k: doc[k] for k in ("printers", "filaments", "format", "version", "jobs")}
        for data in (
            cbor2.dumps(reordered),
            cbor2.dumps(doc, indefinite_containers=True),
            cbor2.dumps({**doc, "extra": [1, 2]}),
        ):
            copy = FarmState()
            copy.restore(data)
            self.assertEqual(copy, state)
            self.assertEqual(copy.snapshot(), _RELEASED_SNAPSHOT)


class LargeSnapshotTests(SynchronousTestCase):
    """
    Snapshots with more rows than one batch (batches made small here).
    """

    def setUp(self) -> None:
        self.patch(_snapshot, "_CHUNK", 16)
        self.farm = Farm()
        for n in range(40):
            self.farm.printer(f"p{n}")
            self.farm.filament(f"f{n}", total=100)
        for n in range(150):
            self.farm.job(f"j{n}", weight=1 + n % 3, pid=f"p{n % 40}", fid=f"f{(7 * n) % 40}")
        for n in range(0, 150, 3):
            self.farm.move(f"j{n}", "Running")
        for n in range(0, 150, 9):
            self.farm.move(f"j{n}", "Done")
        for n in range(1, 150, 5):
            self.farm.move(f"j{n}", "Canceled")
        self.doc = cbor2.loads(self.farm.state.snapshot())

    def test_round_trip(self) -> None:
        """
        The restored state equals the original, with the same reservations,
        filtered listings and counts.
        """
        copy = FarmState()
        copy.restore(self.farm.state.snapshot())
        state = self.farm.state
        self.assertEqual(copy, state)
        self.assertEqual(copy.counts(), state.counts())
        for n in range(40):
            self.assertEqual(
                copy.reserved_weight_in_grams(f"f{n}"), state.reserved_weight_in_grams(f"f{n}")
            )
            self.assertEqual(copy.jobs(printer_id=f"p{n}"), state.jobs(printer_id=f"p{n}"))
            self.assertEqual(copy.jobs(filament_id=f"f{n}"), state.jobs(filament_id=f"f{n}"))
        for status in JobStatus:
            self.assertEqual(copy.jobs(status=status), state.jobs(status=status))
        copy.apply(
            1,
            create_print_job(
                id="new",
                printer_id="p5",
                filament_id="f5",
                filepath="x",
                print_weight_in_grams=1,
                at=T1,
            ),
        )
        self.assertEqual(copy.jobs(printer_id="p5").items[-1].id, "new")

    def assertRefused(self, **changes: Any) -> None:
        """
        The snapshot with C{changes} to its document is refused and leaves
        the state as it was.
        """
        state = FarmState()
        state.restore(self.farm.state.snapshot())
        self.assertRaises(ValueError, state.restore, cbor2.dumps({**self.doc, **changes}))
        self.assertEqual(state, self.farm.state)

    def test_late_errors(self) -> None:
        """
        A bad row far past the first batch is still found: a repeated id,
        an unknown printer or filament, a malformed row, a filament
        over-reserved only by jobs of several batches together.
        """
        jobs, printers = self.doc["jobs"], self.doc["printers"]
        self.assertRefused(jobs=[*jobs, jobs[3]])
        self.assertRefused(printers=[*printers, printers[35]])
        self.assertRefused(jobs=[*jobs[:100], ["x", "nope", "f1", "a", 1, "Queued", T0, T0]])
        self.assertRefused(jobs=[*jobs[:100], ["x", "p1", "nope", "a", 1, "Queued", T0, T0]])
        self.assertRefused(jobs=[*jobs[:100], ["x", "p1", "f1", "a", 0, "Queued", T0, T0]])
        self.assertRefused(printers=[*printers[:35], ["p", " ", "m", T0, T0]])
        big = ["big", "PLA", "c", 50, 50, T0, T0]
        heavy = [[f"h{n}", "p1", "big", "a", 1, "Queued", T0, T0] for n in range(60)]
        self.assertRefused(filaments=[*self.doc["filaments"], big], jobs=heavy)
        ok = FarmState()
        ok.restore(
            cbor2.dumps(
                {**self.doc, "filaments": [*self.doc["filaments"], big], "jobs": heavy[:50]}
            )
        )
        self.assertEqual(ok.available_weight_in_grams("big"), 0)
