# -*- test-case-name: tests.farm.test_commands -*-
"""
The commands of the print-farm state machine, as plain maps.

Commands travel through the Raft log as CBOR and are applied on every
replica, so they are plain data (maps of strings and integers), and they
carry everything that is chosen rather than computed: object ids and
timestamps are picked once by the node that accepted the HTTP request, never
at apply time, so that every replica (and a replay after a crash) makes the
same objects.  These builders are the only place that spells the maps out.

Changing the shape of a command is a protocol change: a node applying a
command it does not know rejects it, which would make replicas of different
versions disagree.  New operations must be gated on a cluster-wide version
(a future seam), never simply added.
"""

from __future__ import annotations

from typing import Any, Final

OP_CREATE_PRINTER: Final = "create_printer"
OP_CREATE_FILAMENT: Final = "create_filament"
OP_CREATE_PRINT_JOB: Final = "create_print_job"
OP_SET_PRINT_JOB_STATUS: Final = "set_print_job_status"


def create_printer(*, id: str, company: str, model: str, at: str) -> dict[str, Any]:
    """
    Add printer C{id}; C{at} becomes its C{created_at} and C{updated_at}.
    """
    return {"op": OP_CREATE_PRINTER, "id": id, "company": company, "model": model, "at": at}


def create_filament(
    *,
    id: str,
    type: str,
    color: str,
    total_weight_in_grams: int,
    remaining_weight_in_grams: int,
    at: str,
) -> dict[str, Any]:
    """
    Add filament C{id}.
    """
    return {
        "op": OP_CREATE_FILAMENT,
        "id": id,
        "type": type,
        "color": color,
        "total_weight_in_grams": total_weight_in_grams,
        "remaining_weight_in_grams": remaining_weight_in_grams,
        "at": at,
    }


def create_print_job(
    *,
    id: str,
    printer_id: str,
    filament_id: str,
    filepath: str,
    print_weight_in_grams: int,
    at: str,
) -> dict[str, Any]:
    """
    Add print job C{id} in status C{Queued}, reserving its weight of filament.
    """
    return {
        "op": OP_CREATE_PRINT_JOB,
        "id": id,
        "printer_id": printer_id,
        "filament_id": filament_id,
        "filepath": filepath,
        "print_weight_in_grams": print_weight_in_grams,
        "at": at,
    }


def set_print_job_status(*, id: str, status: str, at: str) -> dict[str, Any]:
    """
    Move print job C{id} to C{status} (any letter case) if its status
    machine allows it; C{at} becomes its C{updated_at}.
    """
    return {"op": OP_SET_PRINT_JOB_STATUS, "id": id, "status": status, "at": at}
