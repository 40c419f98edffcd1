"""
Tests for L{raft3d.farm._commands}: the command maps.
"""

from __future__ import annotations

import cbor2
from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm import (
    OP_CREATE_FILAMENT,
    OP_CREATE_PRINT_JOB,
    OP_CREATE_PRINTER,
    OP_SET_PRINT_JOB_STATUS,
    create_filament,
    create_print_job,
    create_printer,
    set_print_job_status,
)


class CommandTests(SynchronousTestCase):
    """
    Builders spell out plain, CBOR-safe maps carrying ids and timestamps.
    """

    def test_shapes(self) -> None:
        """
        Each builder names its operation and carries every field given.
        """
        self.assertEqual(
            create_printer(id="p", company="c", model="m", at="t"),
            {"op": OP_CREATE_PRINTER, "id": "p", "company": "c", "model": "m", "at": "t"},
        )
        self.assertEqual(
            create_filament(
                id="f",
                type="PLA",
                color="red",
                total_weight_in_grams=10,
                remaining_weight_in_grams=5,
                at="t",
            ),
            {
                "op": OP_CREATE_FILAMENT,
                "id": "f",
                "type": "PLA",
                "color": "red",
                "total_weight_in_grams": 10,
                "remaining_weight_in_grams": 5,
                "at": "t",
            },
        )
        self.assertEqual(
            create_print_job(
                id="j",
                printer_id="p",
                filament_id="f",
                filepath="a.gcode",
                print_weight_in_grams=3,
                at="t",
            ),
            {
                "op": OP_CREATE_PRINT_JOB,
                "id": "j",
                "printer_id": "p",
                "filament_id": "f",
                "filepath": "a.gcode",
                "print_weight_in_grams": 3,
                "at": "t",
            },
        )
        self.assertEqual(
            set_print_job_status(id="j", status="Done", at="t"),
            {"op": OP_SET_PRINT_JOB_STATUS, "id": "j", "status": "Done", "at": "t"},
        )

    def test_cbor_round_trip(self) -> None:
        """
        Commands survive the CBOR encoding of the log unchanged.
        """
        command = set_print_job_status(id="j", status="Running", at="2024-01-01T00:00:00Z")
        self.assertEqual(cbor2.loads(cbor2.dumps(command)), command)
