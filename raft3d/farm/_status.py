# -*- test-case-name: tests.farm.test_status -*-
"""
The print-job status machine, as an explicit and complete transition table.

Each job is a tiny state machine: C{Queued -> Running -> Done}, with
C{Canceled} reachable from both live states.  A farm may hold a million jobs,
so one automat instance per job would cost far too much memory; instead the
machine is this module-level table over (state, input) pairs, complete by
construction (every pair is listed, forbidden ones map to L{None}).
L{check_transition} consults it and raises L{InvalidTransition} I{before} the
caller changes anything, which is what keeps a rejected command free of side
effects.  C{docs/state-machines/job-status.dot} draws the same table.
"""

from __future__ import annotations

import enum
from typing import Mapping

import attrs

from ._errors import InvalidTransition, MalformedCommand


class JobStatus(enum.Enum):
    """
    The states of a print job; the values are what clients see.
    """

    QUEUED = "Queued"
    RUNNING = "Running"
    DONE = "Done"
    CANCELED = "Canceled"


class JobInput(enum.Enum):
    """
    The inputs of the job machine.  Clients ask for a target status; the
    target names the input (see L{input_for_target}).
    """

    START = "start"
    FINISH = "finish"
    CANCEL = "cancel"


@attrs.frozen
class Transition:
    """
    One allowed edge of the job machine and its effect on the filament.

    @ivar target: the state entered.
    @ivar releases_reservation: the job's weight stops counting against the
        filament's available weight.
    @ivar consumes_filament: the job's weight is deducted from the filament's
        remaining weight (only entering C{Done} does this, and C{Done} is
        terminal, so it happens exactly once).
    """

    target: JobStatus
    releases_reservation: bool = False
    consumes_filament: bool = False


_Q, _R, _D, _C = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE, JobStatus.CANCELED

TRANSITIONS: Mapping[tuple[JobStatus, JobInput], Transition | None] = {
    (_Q, JobInput.START): Transition(_R),
    (_Q, JobInput.FINISH): None,
    (_Q, JobInput.CANCEL): Transition(_C, releases_reservation=True),
    (_R, JobInput.START): None,
    (_R, JobInput.FINISH): Transition(_D, releases_reservation=True, consumes_filament=True),
    (_R, JobInput.CANCEL): Transition(_C, releases_reservation=True),
    (_D, JobInput.START): None,
    (_D, JobInput.FINISH): None,
    (_D, JobInput.CANCEL): None,
    (_C, JobInput.START): None,
    (_C, JobInput.FINISH): None,
    (_C, JobInput.CANCEL): None,
}
"""
The complete table: every (state, input) pair, L{None} where forbidden.
"""

_INPUT_FOR_TARGET: Mapping[JobStatus, JobInput] = {
    JobStatus.RUNNING: JobInput.START,
    JobStatus.DONE: JobInput.FINISH,
    JobStatus.CANCELED: JobInput.CANCEL,
}

_STATUS_BY_FOLDED: Mapping[str, JobStatus] = {s.value.casefold(): s for s in JobStatus}

RESERVING_STATES: frozenset[JobStatus] = frozenset({_Q, _R})
"""
States whose jobs hold a reservation on their filament.
"""


def parse_status(value: object) -> JobStatus:
    """
    Read a status name in any letter case.

    @raise MalformedCommand: if C{value} is not a status name.
    """
    if isinstance(value, str):
        status = _STATUS_BY_FOLDED.get(value.casefold())
        if status is not None:
            return status
    raise MalformedCommand(
        f"status must be one of {', '.join(s.value for s in JobStatus)}; got {value!r:.80}"
    )


def input_for_target(target: JobStatus) -> JobInput | None:
    """
    The input that moves a job into C{target}, or L{None} when no edge leads
    there (C{Queued} is only ever the initial state).
    """
    return _INPUT_FOR_TARGET.get(target)


def check_transition(current: JobStatus, target: JobStatus) -> Transition:
    """
    Look up the edge from C{current} to C{target}.  Pure: callers change
    state only after this returns.

    @raise InvalidTransition: if the table has no such edge.
    """
    job_input = input_for_target(target)
    if job_input is not None:
        transition = TRANSITIONS[current, job_input]
        if transition is not None:
            return transition
    raise InvalidTransition(f"cannot move a print job from {current.value} to {target.value}")
