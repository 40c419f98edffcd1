"""
Tests for L{raft3d.farm._tables}: records and rows read back the columns,
and indexes derived in bulk equal those kept one command at a time.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm import Filament, JobStatus, Printer, PrintJob
from raft3d.farm._tables import STATUS_CODES, Filaments, Jobs, Printers

T0 = "2026-11-29T01:02:03.456Z"
T1 = "2026-11-29T01:02:04.000Z"


def _tables() -> tuple[Printers, Filaments, Jobs]:
    printers, filaments = Printers(), Filaments()
    return printers, filaments, Jobs(printers, filaments)


class TableTests(SynchronousTestCase):
    """
    The tables store fields and give back records and snapshot rows.
    """

    def test_records_and_rows(self) -> None:
        """
        C{record} rebuilds the frozen record and C{rows} its C{to_row},
        references to printers and filaments included.
        """
        printers, filaments, jobs = _tables()
        printers.add("p", "Prusa", "MK4", T0, T0)
        filaments.add("f", "PLA", "red", 1000, 900, T0, T1)
        jobs.add("j", 0, 0, "a.gcode", 50, JobStatus.RUNNING, T0, "t1")
        self.assertEqual(printers.record(0), Printer("p", "Prusa", "MK4", T0, T0, 0))
        self.assertEqual(filaments.record(0), Filament("f", "PLA", "red", 1000, 900, T0, T1, 0))
        job = PrintJob("j", "p", "f", "a.gcode", 50, JobStatus.RUNNING, T0, "t1", 0)
        self.assertEqual(jobs.record(0), job)
        self.assertEqual(jobs.rows(0, 1), [tuple(job.to_row())])
        self.assertEqual(printers.rows(0, 5), [tuple(printers.record(0).to_row())])
        self.assertEqual(filaments.rows(1, 2), [])
        self.assertEqual(filaments.reserved[0], 50)

    def test_names_shared(self) -> None:
        """
        Equal names of different objects are stored once.
        """
        printers, _, _ = _tables()
        printers.add("a", "".join(["Pru", "sa"]), "m", T0, T0)
        printers.add("b", "".join(["Pr", "usa"]), "m", T0, T0)
        self.assertIs(printers.company[0], printers.company[1])

    def test_rebuilt_indexes(self) -> None:
        """
        Jobs stored in bulk with C{extend} and indexed by
        C{rebuild_indexes} have the same status index, jobs per printer and
        filament, and reservations as jobs added one by one.
        """
        one = _tables()
        bulk = _tables()
        for printers, filaments, _ in (one, bulk):
            for n in range(3):
                printers.add(f"p{n}", "c", "m", T0, T0)
                filaments.add(f"f{n}", "PLA", "c", 1000, 1000, T0, T0)
        statuses = list(JobStatus)
        specs = [(f"j{n}", n % 3, (n * 2) % 3, n + 1, statuses[n % 4]) for n in range(20)]
        for job_id, printer, filament, weight, status in specs:
            one[2].add(job_id, printer, filament, "x", weight, status, T0, T1)
        jobs = bulk[2]
        jobs.extend(
            [s[0] for s in specs],
            [s[1] for s in specs],
            [s[2] for s in specs],
            ["x"] * 20,
            [s[3] for s in specs],
            [STATUS_CODES[s[4]] for s in specs],
            [T0] * 20,
            [T1] * 20,
        )
        self.assertIsNone(jobs.index.reindex())
        jobs.rebuild_indexes()
        self.assertEqual(jobs, one[2])
        for status in JobStatus:
            self.assertEqual(list(jobs.by_status[status]), list(one[2].by_status[status]))
        self.assertEqual(bulk[0].jobs, one[0].jobs)
        self.assertEqual(bulk[1].jobs, one[1].jobs)
        self.assertEqual(bulk[1].reserved, one[1].reserved)
        self.assertEqual(bulk[1], one[1])

    def test_filaments_extended(self) -> None:
        """
        Filaments stored in bulk have one zero reservation each, before any
        index is rebuilt.
        """
        _, filaments, _ = _tables()
        filaments.extend(["a", "b"], ["PLA"] * 2, ["c"] * 2, [9, 9], [9, 9], [T0] * 2, [T0] * 2)
        self.assertEqual(list(filaments.reserved), [0, 0])

    def test_frozen_rows(self) -> None:
        """
        C{frozen_rows} counts the rows there are now and gives them as they
        are now, after later rows and in-place changes of status, stamps
        and remaining weight.
        """
        printers, filaments, jobs = _tables()
        printers.add("p", "c", "m", T0, T0)
        filaments.add("f", "PLA", "c", 1000, 1000, T0, T0)
        jobs.add("j", 0, 0, "x", 10, JobStatus.RUNNING, T0, T0)
        before = [table.rows(0, 1) for table in (printers, filaments, jobs)]
        frozen = [table.frozen_rows() for table in (printers, filaments, jobs)]
        jobs.set_status(0, JobStatus.DONE, "t1")
        filaments.remaining[0] -= 10
        filaments.updated_at[0] = "t1"
        printers.add("p2", "c", "m", T0, T0)
        filaments.add("f2", "PLA", "c", 1000, 1000, T0, T0)
        jobs.add("j2", 1, 1, "x", 10, JobStatus.QUEUED, T0, T0)
        self.assertEqual([rows.count for rows in frozen], [1, 1, 1])
        self.assertEqual([rows.batch(0, 1) for rows in frozen], before)
        self.assertNotEqual(jobs.rows(0, 1), before[2])
        self.assertNotEqual(filaments.rows(0, 1), before[1])
