"""
Deterministic simulation of Raft3D clusters: a seeded network, simulated
disks that lose unsynced writes on a crash, random fault schedules and the
invariant checks run after each of them.  Used by the test suite; replay a
schedule with C{python -m raft3d.testing --seed N}.

Also the harness that runs real C{twistd raft3d} processes on 127.0.0.1
(L{ProcessCluster}), shared by the integration tests and the nemesis runner
(C{tools.chaos}).
"""

from ._cluster import (
    Invariants,
    InvariantViolation,
    RecordingStateMachine,
    SimClient,
    SimCluster,
    sim_settings,
)
from ._network import SimNetwork, SimTransport
from ._processes import (
    DEADLINE,
    POLL,
    TAIL_LINES,
    Host,
    ProcessCluster,
    ProcessOutput,
    free_ports,
)
from ._schedule import ScheduleReport, run_schedule

__all__ = [
    "DEADLINE",
    "POLL",
    "TAIL_LINES",
    "Host",
    "InvariantViolation",
    "Invariants",
    "ProcessCluster",
    "ProcessOutput",
    "RecordingStateMachine",
    "ScheduleReport",
    "SimClient",
    "SimCluster",
    "SimNetwork",
    "SimTransport",
    "free_ports",
    "run_schedule",
    "sim_settings",
]
