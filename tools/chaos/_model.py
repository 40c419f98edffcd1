# -*- test-case-name: tests.chaos.test_model -*-
"""
The sequential specification of the print farm, and the search that decides
whether a concurrent sub-history can be explained by it.

The specification is written here again from C{docs/farm.md} rather than
imported from L{raft3d.farm}: a checker that borrowed the implementation's
transition table would agree with its bugs.  (A test compares the two.)

One model state covers one I{group}: a filament and the jobs that use it
(a job's creation reserves filament weight and its completion consumes it,
so they cannot be checked apart), or a printer alone, or one job alone.  The
state is a hashable tuple C{(exists, remaining, available, statuses)}:

  - C{exists}: the filament (or printer) has been created;
  - C{remaining}: its remaining weight, C{available}: remaining minus the
    weight reserved by its Queued and Running jobs (both are functions of
    the statuses, kept to make each step O(1) in weights);
  - C{statuses}: one small integer per job of the group (L{ABSENT} before
    its creation).

A printer group uses only C{exists}; a job group is a filament group with a
single job whose filament exists and has unbounded weight.

Actions are plain tuples C{(code, ...)}: the search calls L{step} millions of
times, and tuple indexing is the cheapest thing Python has.

The search is Lowe's just-in-time tree search ("Testing for
linearizability", Concurrency and Computation 2017), itself a refinement of
Wing and Gong's: walk the return events in time order; when an operation
returns it must have been linearized, so linearize it now, possibly after
linearizing some of the operations that are still open.  Configurations
C{(return event, model state, linearized-but-open set)} are memoized, which
is what keeps the search polynomial on realistic histories.  Operations
whose outcome is unknown have no return event: they are linearized only if
some later return needs their effect, and otherwise never took effect.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Sequence

import attrs

# Job statuses, as small integers (0 is "does not exist yet").
ABSENT, QUEUED, RUNNING, DONE, CANCELED = 0, 1, 2, 3, 4

STATUS_NAMES: dict[int, str] = {
    ABSENT: "absent",
    QUEUED: "Queued",
    RUNNING: "Running",
    DONE: "Done",
    CANCELED: "Canceled",
}
STATUS_CODES: dict[str, int] = {
    "queued": QUEUED,
    "running": RUNNING,
    "done": DONE,
    "canceled": CANCELED,
}

#: The allowed (current, target) status changes (docs/farm.md, "Job status
#: machine").  Anything else is C{invalid_transition}.
ALLOWED: frozenset[tuple[int, int]] = frozenset(
    {(QUEUED, RUNNING), (QUEUED, CANCELED), (RUNNING, DONE), (RUNNING, CANCELED)}
)

#: Statuses that reserve filament weight.
RESERVING: frozenset[int] = frozenset({QUEUED, RUNNING})

# Action codes.
F_CREATE = 0  # (F_CREATE,): create the filament/printer
F_OBS = 1  # (F_OBS, exists, remaining | None): it exists (with that weight) / not
J_CREATE = 2  # (J_CREATE, j, weight): create job j, Queued, reserving weight
J_INSUFFICIENT = 3  # (J_INSUFFICIENT, weight): a job of that weight was refused
J_SET = 4  # (J_SET, j, target, weight): move job j to target
J_INVALID = 5  # (J_INVALID, j, target): job j exists and cannot move to target
J_OBS = 6  # (J_OBS, j, status): job j has that status (ABSENT: does not exist)
J_NOT = 7  # (J_NOT, j, status): job j does not exist or has another status
MULTI = 8  # (MULTI, (action, ...)): several observations at one instant

#: What a state looks like: (exists, remaining, available, statuses).
State = tuple[int, int, int, tuple[int, ...]]
Action = tuple[Any, ...]

#: Weight of the pretend filament of a job group: nothing is ever refused.
UNBOUNDED = 1 << 62


def parse_status(value: object) -> int | None:
    """
    A status name in any case to its code, or L{None}.
    """
    if not isinstance(value, str):
        return None
    return STATUS_CODES.get(value.lower())


def filament_state(initial_remaining: int, jobs: int) -> State:
    """
    The state before anything happened to a filament group of C{jobs} jobs.
    """
    return (0, initial_remaining, initial_remaining, (ABSENT,) * jobs)


def printer_state() -> State:
    """
    The state before a printer is created.
    """
    return (0, 0, 0, ())


def job_state() -> State:
    """
    The state before a lone job is created: its pretend filament exists.
    """
    return (1, UNBOUNDED, UNBOUNDED, (ABSENT,))


def step(state: State, action: Action) -> State | None:
    """
    Apply C{action} to C{state}: the new state, or L{None} if the action
    (with the outcome it claims) is impossible in that state.
    """
    code = action[0]
    exists, remaining, available, statuses = state
    if code == J_OBS:
        return state if statuses[action[1]] == action[2] else None
    if code == J_SET:
        j, target = action[1], action[2]
        if (statuses[j], target) not in ALLOWED:
            return None
        if target == DONE:
            remaining -= action[3]
        elif target == CANCELED:
            available += action[3]
        return (exists, remaining, available, statuses[:j] + (target,) + statuses[j + 1 :])
    if code == J_CREATE:
        j, weight = action[1], action[2]
        if not exists or statuses[j] != ABSENT or available < weight:
            return None
        return (exists, remaining, available - weight, statuses[:j] + (QUEUED,) + statuses[j + 1 :])
    if code == F_OBS:
        if action[1]:
            ok = bool(exists) and (action[2] is None or action[2] == remaining)
        else:
            ok = not exists
        return state if ok else None
    if code == F_CREATE:
        return None if exists else (1, remaining, available, statuses)
    if code == J_INVALID:
        current = statuses[action[1]]
        return state if current != ABSENT and (current, action[2]) not in ALLOWED else None
    if code == J_NOT:
        return state if statuses[action[1]] != action[2] else None
    if code == J_INSUFFICIENT:
        return state if exists and available < action[1] else None
    if code == MULTI:
        for sub in action[1]:
            if step(state, sub) is None:
                return None
        return state
    raise ValueError(f"unknown action {action!r}")


def is_observation(action: Action) -> bool:
    """
    Whether C{action} never changes the state (a read, or a rejection,
    which is a read of the state that caused it).
    """
    return action[0] not in (F_CREATE, J_CREATE, J_SET)


class Verdict(enum.Enum):
    """
    The answer of a check: C{UNKNOWN} when it could not decide (a search
    bound was exceeded, or its input was missing).
    """

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


@attrs.frozen
class Call:
    """
    One operation of a sub-history, as the search sees it.

    @ivar ref: the history index it stands for (for explanations), or a
        negative number for the final-state reads the checker adds.
    @ivar invoke: when it was invoked.
    @ivar complete: when it returned; C{math.inf} when its outcome is unknown
        (it may take effect at any later time, or never).
    @ivar action: what it did, as L{step} understands it.
    """

    ref: int
    invoke: float
    complete: float
    action: Action

    @property
    def definite(self) -> bool:
        return self.complete != math.inf


@attrs.frozen
class SearchResult:
    """
    What L{search} found.

    @ivar verdict: C{PASS} (a linearization exists), C{FAIL} (none does) or
        C{UNKNOWN} (the bound was reached first).
    @ivar explored: configurations visited.
    @ivar steps: model steps taken (the search's cost is about proportional).
    @ivar stuck: the position in C{calls} of the operation that could not be
        linearized at the deepest point the search reached (C{FAIL} only).
    @ivar states: a few model states the search could be in there.
    @ivar linearized: how many return events were passed at that point.
    """

    verdict: Verdict
    explored: int
    steps: int = 0
    stuck: int | None = None
    states: tuple[State, ...] = ()
    linearized: int = 0


def search(
    calls: Sequence[Call], initial: State, bound: int, max_steps: int | None = None
) -> SearchResult:
    """
    Decide whether C{calls} can be linearized from C{initial}, exploring at
    most C{bound} configurations (and taking at most C{max_steps} model
    steps, if given).

    Ties: an operation that returns at the very instant another is invoked
    is taken as concurrent with it (the clock cannot order them).
    """
    events: list[tuple[float, int, int]] = []
    for i, c in enumerate(calls):
        events.append((c.invoke, 0, i))
        if c.complete != math.inf:
            events.append((c.complete, 1, i))
    events.sort()
    # For each return event: the returning call and the calls open then
    # (invoked before it, not yet returned, the returning one included).
    returns: list[tuple[int, int]] = []
    open_mask = 0
    for _, kind, i in events:
        if kind == 0:
            open_mask |= 1 << i
        else:
            returns.append((i, open_mask))
            open_mask &= ~(1 << i)
    actions = [c.action for c in calls]
    total = len(returns)

    seen: set[tuple[int, State, int]] = set()
    deepest = -1
    deepest_states: list[State] = []
    # Stack entries: (return event, state, linearized-open mask, expand).
    # expand=False visits the configuration and first tries to linearize
    # the returning call directly; expand=True, pushed underneath, tries the
    # other open calls first, and is only reached if the direct way failed.
    stack: list[tuple[int, State, int, bool]] = [(0, initial, 0, False)]
    steps = 0
    step_limit = math.inf if max_steps is None else max_steps
    while stack:
        r, state, lin, expand = stack.pop()
        if expand:
            o, om = returns[r]
            candidates = om & ~lin & ~(1 << o)
            while candidates:
                low = candidates & -candidates
                candidates ^= low
                p = low.bit_length() - 1
                steps += 1
                after = step(state, actions[p])
                if after is not None:
                    stack.append((r, after, lin | low, False))
            continue
        if r == total:
            return SearchResult(Verdict.PASS, len(seen), steps)
        key = (r, state, lin)
        if key in seen:
            continue
        seen.add(key)
        if len(seen) > bound or steps > step_limit:
            return SearchResult(Verdict.UNKNOWN, len(seen), steps)
        if r > deepest:
            deepest, deepest_states = r, [state]
        elif r == deepest and len(deepest_states) < 4 and state not in deepest_states:
            deepest_states.append(state)
        o, _ = returns[r]
        bit = 1 << o
        if lin & bit:
            stack.append((r + 1, state, lin ^ bit, False))
            continue
        stack.append((r, state, lin, True))
        steps += 1
        after = step(state, actions[o])
        if after is not None:
            stack.append((r + 1, after, lin, False))
    stuck = returns[deepest][0] if deepest >= 0 else None
    return SearchResult(
        Verdict.FAIL, len(seen), steps, stuck, tuple(deepest_states), max(deepest, 0)
    )
