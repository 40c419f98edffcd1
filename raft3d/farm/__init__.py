"""
The print-farm state machine: printers, filaments and print jobs, replicated
through the Raft log.

L{FarmState} is pure and deterministic; commands are plain maps built by the
C{create_*}/C{set_print_job_status} functions; results are C{{"ok": ...}} or
C{{"error": {"code", "message"}}}, and L{unwrap} turns the latter back into
the typed L{FarmError}s.  See C{docs/farm.md}.
"""

from ._commands import (
    OP_CREATE_FILAMENT,
    OP_CREATE_PRINT_JOB,
    OP_CREATE_PRINTER,
    OP_SET_PRINT_JOB_STATUS,
    create_filament,
    create_print_job,
    create_printer,
    set_print_job_status,
)
from ._errors import (
    ERRORS_BY_CODE,
    Conflict,
    FarmError,
    FilamentNotFound,
    InsufficientFilament,
    InvalidTransition,
    JobNotFound,
    MalformedCommand,
    PrinterNotFound,
    UnexpectedResult,
    unwrap,
)
from ._fields import (
    FILAMENT_TYPES,
    MAX_FILEPATH_LENGTH,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    MAX_TIMESTAMP_LENGTH,
    MAX_WEIGHT_IN_GRAMS,
    check_filament_type,
    check_id,
    check_text,
    check_weight,
)
from ._records import Filament, Page, Printer, PrintJob
from ._state import SNAPSHOT_FORMAT, SNAPSHOT_VERSION, FarmState
from ._status import (
    RESERVING_STATES,
    TRANSITIONS,
    JobInput,
    JobStatus,
    Transition,
    check_transition,
    input_for_target,
    parse_status,
)

__all__ = [
    "ERRORS_BY_CODE",
    "FILAMENT_TYPES",
    "MAX_FILEPATH_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_NAME_LENGTH",
    "MAX_TIMESTAMP_LENGTH",
    "MAX_WEIGHT_IN_GRAMS",
    "OP_CREATE_FILAMENT",
    "OP_CREATE_PRINTER",
    "OP_CREATE_PRINT_JOB",
    "OP_SET_PRINT_JOB_STATUS",
    "RESERVING_STATES",
    "SNAPSHOT_FORMAT",
    "SNAPSHOT_VERSION",
    "TRANSITIONS",
    "Conflict",
    "FarmError",
    "FarmState",
    "Filament",
    "FilamentNotFound",
    "InsufficientFilament",
    "InvalidTransition",
    "JobInput",
    "JobNotFound",
    "JobStatus",
    "MalformedCommand",
    "Page",
    "PrintJob",
    "Printer",
    "PrinterNotFound",
    "Transition",
    "UnexpectedResult",
    "check_filament_type",
    "check_id",
    "check_text",
    "check_transition",
    "check_weight",
    "create_filament",
    "create_print_job",
    "create_printer",
    "input_for_target",
    "parse_status",
    "set_print_job_status",
    "unwrap",
]
