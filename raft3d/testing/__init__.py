"""
Deterministic simulation of Raft3D clusters: a seeded network, simulated
disks that lose unsynced writes on a crash, random fault schedules and the
invariant checks run after each of them.  Used by the test suite; replay a
schedule with C{python -m raft3d.testing --seed N}.
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
from ._schedule import ScheduleReport, run_schedule

__all__ = [
    "InvariantViolation",
    "Invariants",
    "RecordingStateMachine",
    "ScheduleReport",
    "SimClient",
    "SimCluster",
    "SimNetwork",
    "SimTransport",
    "run_schedule",
    "sim_settings",
]
