"""
Tests for L{tools.chaos._model}: the farm's sequential specification and
the linearizability search.
"""

from __future__ import annotations

import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm import TRANSITIONS, JobInput, JobStatus
from tools.chaos._model import (
    ABSENT,
    ALLOWED,
    CANCELED,
    DONE,
    F_CREATE,
    F_OBS,
    J_CREATE,
    J_INSUFFICIENT,
    J_INVALID,
    J_NOT,
    J_OBS,
    J_SET,
    MULTI,
    QUEUED,
    RUNNING,
    Action,
    Call,
    State,
    Verdict,
    filament_state,
    is_observation,
    job_state,
    parse_status,
    printer_state,
    search,
    step,
)

INF = math.inf
CODES = {
    JobStatus.QUEUED: QUEUED,
    JobStatus.RUNNING: RUNNING,
    JobStatus.DONE: DONE,
    JobStatus.CANCELED: CANCELED,
}
TARGETS = {JobInput.START: RUNNING, JobInput.FINISH: DONE, JobInput.CANCEL: CANCELED}


def call(ref: int, invoke: float, complete: float, action: Action) -> Call:
    return Call(ref, invoke, complete, action)


class SpecificationTests(SynchronousTestCase):
    """
    The checker's own copy of the rules agrees with docs/farm.md and with
    the state machine it is meant to judge.
    """

    def test_transitions_match_the_farm(self) -> None:
        """
        C{ALLOWED} holds exactly the (state, target) pairs that
        L{raft3d.farm.TRANSITIONS} allows.
        """
        farm = {
            (CODES[state], TARGETS[event])
            for (state, event), transition in TRANSITIONS.items()
            if transition is not None
        }
        self.assertEqual(ALLOWED, farm)

    def test_parse_status(self) -> None:
        """
        Status names are read in any case; anything else is L{None}.
        """
        self.assertEqual(parse_status("running"), RUNNING)
        self.assertEqual(parse_status("DONE"), DONE)
        self.assertIsNone(parse_status("Paused"))
        self.assertIsNone(parse_status(3))

    def test_create_and_observe(self) -> None:
        """
        A printer exists once created, and only once: a second creation is
        impossible.
        """
        s = printer_state()
        self.assertIsNone(step(s, (F_OBS, True, None)))
        self.assertEqual(step(s, (F_OBS, False, None)), s)
        created = step(s, (F_CREATE,))
        assert created is not None
        self.assertEqual(step(created, (F_OBS, True, None)), created)
        self.assertIsNone(step(created, (F_CREATE,)))

    def test_job_creation_reserves(self) -> None:
        """
        Creating a job needs the filament and enough available weight, and
        reserves the job's weight; a refusal for lack of filament is only
        possible when the weight is really missing.
        """
        s: State | None = filament_state(300, 2)
        assert s is not None
        self.assertIsNone(step(s, (J_CREATE, 0, 100)))
        s = step(s, (F_CREATE,))
        assert s is not None
        s = step(s, (J_CREATE, 0, 200))
        assert s is not None
        self.assertEqual(s, (1, 300, 100, (QUEUED, ABSENT)))
        self.assertIsNone(step(s, (J_CREATE, 1, 150)))
        self.assertEqual(step(s, (J_INSUFFICIENT, 150)), s)
        self.assertIsNone(step(s, (J_INSUFFICIENT, 100)))

    def test_done_consumes_cancel_releases(self) -> None:
        """
        Done deducts the weight from the remaining weight (the reservation
        goes with it); Canceled gives the reservation back.
        """
        s: State | None = (1, 300, 0, (QUEUED, QUEUED))
        for action in ((J_SET, 0, RUNNING, 100), (J_SET, 0, DONE, 100)):
            assert s is not None
            s = step(s, action)
        self.assertEqual(s, (1, 200, 0, (DONE, QUEUED)))
        assert s is not None
        self.assertEqual(step(s, (J_SET, 1, CANCELED, 200)), (1, 200, 200, (DONE, CANCELED)))
        self.assertEqual(step(s, (F_OBS, True, 200)), s)
        self.assertIsNone(step(s, (F_OBS, True, 300)))

    def test_invalid_transition_is_a_read(self) -> None:
        """
        An C{invalid_transition} rejection is possible only when the job
        exists and its status forbids the change.
        """
        s = job_state()
        self.assertIsNone(step(s, (J_INVALID, 0, DONE)))
        queued = step(s, (J_CREATE, 0, 10))
        assert queued is not None
        self.assertEqual(step(queued, (J_INVALID, 0, DONE)), queued)
        self.assertIsNone(step(queued, (J_INVALID, 0, RUNNING)))

    def test_job_observations(self) -> None:
        """
        C{J_OBS} checks the exact status, C{J_NOT} its absence (what a
        filtered list that leaves the job out says), C{MULTI} all at once.
        """
        s: State = (1, 0, 0, (QUEUED, ABSENT))
        self.assertEqual(step(s, (J_OBS, 1, ABSENT)), s)
        self.assertIsNone(step(s, (J_OBS, 0, RUNNING)))
        self.assertEqual(step(s, (J_NOT, 0, RUNNING)), s)
        self.assertIsNone(step(s, (J_NOT, 0, QUEUED)))
        self.assertEqual(step(s, (MULTI, ((J_OBS, 0, QUEUED), (J_OBS, 1, ABSENT)))), s)
        self.assertIsNone(step(s, (MULTI, ((J_OBS, 0, QUEUED), (J_OBS, 1, QUEUED)))))

    def test_observations(self) -> None:
        """
        Reads and rejections are observations; creations and status
        changes are not.
        """
        self.assertTrue(is_observation((J_INVALID, 0, DONE)))
        self.assertTrue(is_observation((MULTI, ())))
        self.assertFalse(is_observation((J_SET, 0, DONE, 1)))
        self.assertFalse(is_observation((F_CREATE,)))

    def test_unknown_action(self) -> None:
        """
        An action the model does not know is a programming error.
        """
        self.assertRaises(ValueError, step, printer_state(), (99,))


class SearchTests(SynchronousTestCase):
    """
    The just-in-time linearizability search on small sub-histories.
    """

    def test_empty(self) -> None:
        """
        Nothing to linearize passes.
        """
        self.assertIs(search([], printer_state(), 10).verdict, Verdict.PASS)

    def test_sequential(self) -> None:
        """
        A sequential history that the model allows passes.
        """
        calls = [
            call(0, 0, 1, (F_OBS, False, None)),
            call(1, 2, 3, (F_CREATE,)),
            call(2, 4, 5, (F_OBS, True, None)),
        ]
        self.assertIs(search(calls, printer_state(), 100).verdict, Verdict.PASS)

    def test_read_after_ack_must_see_it(self) -> None:
        """
        A read that starts after a create was acknowledged and does not see
        it fails; the search names the read and the state it found.
        """
        calls = [call(0, 0, 1, (F_CREATE,)), call(1, 2, 3, (F_OBS, False, None))]
        result = search(calls, printer_state(), 100)
        self.assertIs(result.verdict, Verdict.FAIL)
        self.assertEqual(result.stuck, 1)
        self.assertEqual(result.states, ((1, 0, 0, ()),))

    def test_concurrent_read_may_see_either(self) -> None:
        """
        A read concurrent with the create may see it or not.
        """
        for seen in (True, False):
            calls = [call(0, 0, 3, (F_CREATE,)), call(1, 1, 2, (F_OBS, seen, None))]
            self.assertIs(search(calls, printer_state(), 100).verdict, Verdict.PASS)

    def test_touching_intervals_are_concurrent(self) -> None:
        """
        An operation invoked at the very instant another completed may be
        ordered before it: the clock cannot tell them apart.
        """
        calls = [call(0, 0, 1, (F_CREATE,)), call(1, 1, 2, (F_OBS, False, None))]
        self.assertIs(search(calls, printer_state(), 100).verdict, Verdict.PASS)

    def test_unknown_may_take_effect_late(self) -> None:
        """
        An operation of unknown outcome may take effect long after its
        invocation: here only after the first read.
        """
        calls = [
            call(0, 0, INF, (F_CREATE,)),
            call(1, 5, 6, (F_OBS, False, None)),
            call(2, 7, 8, (F_OBS, True, None)),
        ]
        self.assertIs(search(calls, printer_state(), 100).verdict, Verdict.PASS)

    def test_unknown_may_never_take_effect(self) -> None:
        """
        An operation of unknown outcome need not take effect at all.
        """
        calls = [call(0, 0, INF, (F_CREATE,)), call(1, 5, 6, (F_OBS, False, None))]
        self.assertIs(search(calls, printer_state(), 100).verdict, Verdict.PASS)

    def test_unknown_takes_effect_once(self) -> None:
        """
        Once an unknown operation took effect it cannot be undone.
        """
        calls = [
            call(0, 0, INF, (F_CREATE,)),
            call(1, 5, 6, (F_OBS, True, None)),
            call(2, 7, 8, (F_OBS, False, None)),
        ]
        self.assertIs(search(calls, printer_state(), 100).verdict, Verdict.FAIL)

    def test_bound(self) -> None:
        """
        When the bound on configurations is reached the search says it
        does not know, rather than guessing; so it does with a step limit.
        """
        calls = [call(i, 0, 10, (J_SET, 0, RUNNING, 1)) for i in range(6)]
        calls.append(call(6, 11, 12, (J_OBS, 0, RUNNING)))
        s = (1, 10, 10, (QUEUED,))
        self.assertIs(search(calls, s, 1000).verdict, Verdict.FAIL)
        self.assertIs(search(calls, s, 3).verdict, Verdict.UNKNOWN)
        self.assertIs(search(calls, s, 1000, max_steps=2).verdict, Verdict.UNKNOWN)


# -- the search against brute force -------------------------------------------------------

WEIGHTS = (100, 200)

actions = st.one_of(
    st.just((F_CREATE,)),
    st.tuples(st.just(F_OBS), st.booleans(), st.sampled_from([None, 300, 200, 100, 0])),
    st.tuples(st.just(J_CREATE), st.integers(0, 1)).map(lambda t: (J_CREATE, t[1], WEIGHTS[t[1]])),
    st.tuples(st.just(J_INSUFFICIENT), st.sampled_from([100, 200, 300])),
    st.tuples(st.just(J_SET), st.integers(0, 1), st.sampled_from([RUNNING, DONE, CANCELED])).map(
        lambda t: (J_SET, t[1], t[2], WEIGHTS[t[1]])
    ),
    st.tuples(st.just(J_INVALID), st.integers(0, 1), st.sampled_from([RUNNING, DONE, CANCELED])),
    st.tuples(st.just(J_OBS), st.integers(0, 1), st.integers(ABSENT, CANCELED)),
    st.tuples(st.just(J_NOT), st.integers(0, 1), st.integers(QUEUED, CANCELED)),
)


@st.composite
def histories(draw: st.DrawFn) -> list[Call]:
    calls = []
    for ref in range(draw(st.integers(1, 6))):
        invoke = draw(st.integers(0, 8))
        length = draw(st.integers(0, 4))
        unknown = draw(st.integers(0, 3)) == 0
        calls.append(call(ref, invoke, INF if unknown else invoke + length, draw(actions)))
    return calls


def brute_force(calls: list[Call], initial: State) -> bool:
    """
    Try every subset of the unknown calls and every order of the chosen
    calls that respects real time.
    """
    unknown = [c for c in calls if c.complete == INF]
    definite = [c for c in calls if c.complete != INF]
    for size in range(len(unknown) + 1):
        for extra in itertools.combinations(unknown, size):
            chosen = definite + list(extra)
            for order in itertools.permutations(chosen):
                if any(
                    later.complete < earlier.invoke
                    for i, earlier in enumerate(order)
                    for later in order[i + 1 :]
                ):
                    continue
                s: State | None = initial
                for c in order:
                    assert s is not None
                    s = step(s, c.action)
                    if s is None:
                        break
                if s is not None:
                    return True
    return False


class BruteForceTests(SynchronousTestCase):
    """
    The memoized search decides exactly what trying every order decides.
    """

    @settings(max_examples=200, deadline=None, derandomize=True)
    @given(histories(), st.booleans())
    def test_agrees_with_brute_force(self, calls: list[Call], created: bool) -> None:
        """
        On random small sub-histories of a filament with two jobs, the
        search passes exactly those that some real-time-respecting order of
        the definite calls and some subset of the unknown ones explains.
        """
        initial = filament_state(300, 2)
        if created:
            initial = (1, initial[1], initial[2], initial[3])
        expected = Verdict.PASS if brute_force(calls, initial) else Verdict.FAIL
        self.assertIs(search(calls, initial, 100_000).verdict, expected)
