"""
Tests for L{raft3d.farm._records}: the client-facing forms.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm import Filament, JobStatus, Printer, PrintJob


class RecordTests(SynchronousTestCase):
    """
    C{to_json} exposes exactly the documented fields, never C{seq}.
    """

    def test_printer(self) -> None:
        """
        A printer shows id, company, model and its timestamps.
        """
        p = Printer("p", "Prusa", "MK4", "t0", "t1", 7)
        self.assertEqual(
            p.to_json(),
            {"id": "p", "company": "Prusa", "model": "MK4", "created_at": "t0", "updated_at": "t1"},
        )
        self.assertEqual(p.to_row(), ["p", "Prusa", "MK4", "t0", "t1"])

    def test_filament(self) -> None:
        """
        A filament shows its material, colour and both weights.
        """
        f = Filament("f", "PLA", "red", 1000, 400, "t0", "t1", 0)
        self.assertEqual(
            f.to_json(),
            {
                "id": "f",
                "type": "PLA",
                "color": "red",
                "total_weight_in_grams": 1000,
                "remaining_weight_in_grams": 400,
                "created_at": "t0",
                "updated_at": "t1",
            },
        )
        self.assertEqual(f.to_row(), ["f", "PLA", "red", 1000, 400, "t0", "t1"])

    def test_print_job(self) -> None:
        """
        A job shows its references, weight and status name.
        """
        j = PrintJob("j", "p", "f", "a.gcode", 50, JobStatus.RUNNING, "t0", "t1", 3)
        self.assertEqual(
            j.to_json(),
            {
                "id": "j",
                "printer_id": "p",
                "filament_id": "f",
                "filepath": "a.gcode",
                "print_weight_in_grams": 50,
                "status": "Running",
                "created_at": "t0",
                "updated_at": "t1",
            },
        )
        self.assertEqual(j.to_row(), ["j", "p", "f", "a.gcode", 50, "Running", "t0", "t1"])
