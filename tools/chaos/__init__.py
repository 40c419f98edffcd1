"""
Jepsen-style reliability testing of a real Raft3D cluster.

A runner drives clients against the nodes while a nemesis kills, pauses and
partitions them, and records every operation in a L{History}
(L{HistoryRecorder}, written as JSON lines by L{write_history}).
L{check_history} then judges it: linearizability per object, stale reads,
lost and doubly applied writes, filament accounting and convergence.  The
history format and the checker's rules are in C{docs/reliability.md};
C{python -m tools.chaos.check history.jsonl} re-checks a saved run.
"""

from ._checker import (
    CHECKS,
    CONVERGENCE,
    DEFAULT_BOUND,
    FILAMENT_ACCOUNTING,
    LINEARIZABLE,
    NO_DOUBLE_APPLY,
    NO_LOST_WRITES,
    STALE_READS,
    WELL_FORMED,
    CheckResult,
    Report,
    Summary,
    Violation,
    check_history,
    describe_operation,
    render_report,
)
from ._history import (
    FINAL_KEYS,
    TAG_FIELDS,
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
from ._model import Verdict

__all__ = [
    "CHECKS",
    "CONVERGENCE",
    "DEFAULT_BOUND",
    "FILAMENT_ACCOUNTING",
    "FINAL_KEYS",
    "LINEARIZABLE",
    "NO_DOUBLE_APPLY",
    "NO_LOST_WRITES",
    "STALE_READS",
    "TAG_FIELDS",
    "WELL_FORMED",
    "CheckResult",
    "Consistency",
    "History",
    "HistoryRecorder",
    "OpKind",
    "Operation",
    "Outcome",
    "Report",
    "Summary",
    "Verdict",
    "Violation",
    "check_history",
    "describe_operation",
    "dump_history",
    "load_history",
    "outcome_for_status",
    "read_history",
    "render_report",
    "write_history",
]
