"""
Tests for L{raft3d.farm._status}: the job status table.
"""

from __future__ import annotations

import itertools
import re

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm import (
    RESERVING_STATES,
    TRANSITIONS,
    InvalidTransition,
    JobInput,
    JobStatus,
    MalformedCommand,
    Transition,
    check_transition,
    input_for_target,
    parse_status,
)

Q, R, D, C = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.DONE, JobStatus.CANCELED

ALLOWED = {
    (Q, R): Transition(R),
    (Q, C): Transition(C, releases_reservation=True),
    (R, D): Transition(D, releases_reservation=True, consumes_filament=True),
    (R, C): Transition(C, releases_reservation=True),
}

DOT = (
    FilePath(__file__)
    .parent()
    .parent()
    .parent()
    .descendant(["docs", "state-machines", "job-status.dot"])
)


class TransitionTableTests(SynchronousTestCase):
    """
    The table is complete and allows exactly the four documented edges.
    """

    def test_complete(self) -> None:
        """
        Every (state, input) pair has an entry, and nothing else does.
        """
        self.assertEqual(set(TRANSITIONS), set(itertools.product(JobStatus, JobInput)))

    def test_allowed(self) -> None:
        """
        Queued->Running, Running->Done, Queued->Canceled and Running->Canceled
        are allowed, with their effects on the filament.
        """
        for (current, target), expected in ALLOWED.items():
            self.assertEqual(check_transition(current, target), expected)

    def test_forbidden(self) -> None:
        """
        Every other (state, target) pair, self-loops and moves back to
        Queued included, raises L{InvalidTransition}.
        """
        forbidden = set(itertools.product(JobStatus, JobStatus)) - set(ALLOWED)
        self.assertEqual(len(forbidden), 12)
        for current, target in forbidden:
            with self.assertRaises(InvalidTransition) as caught:
                check_transition(current, target)
            self.assertEqual(caught.exception.code, "invalid_transition")
            self.assertIn(current.value, caught.exception.message)

    def test_only_done_consumes(self) -> None:
        """
        Only the edge into the terminal Done state deducts filament, so the
        deduction happens at most once per job.
        """
        consuming = [t for t in TRANSITIONS.values() if t is not None and t.consumes_filament]
        self.assertEqual(consuming, [Transition(D, True, True)])
        self.assertTrue(all(TRANSITIONS[D, i] is None for i in JobInput))

    def test_reserving_states(self) -> None:
        """
        Queued and Running jobs hold reservations; terminal jobs do not.
        """
        self.assertEqual(RESERVING_STATES, {Q, R})

    def test_input_for_target(self) -> None:
        """
        Each target but Queued names one input; no input leads back to Queued.
        """
        self.assertEqual(input_for_target(R), JobInput.START)
        self.assertEqual(input_for_target(D), JobInput.FINISH)
        self.assertEqual(input_for_target(C), JobInput.CANCEL)
        self.assertIsNone(input_for_target(Q))

    def test_dot_matches_table(self) -> None:
        """
        The diagram in C{docs/state-machines/job-status.dot} draws exactly
        the allowed edges.
        """
        text = DOT.getContent().decode("utf-8")
        edges = set(re.findall(r"^\s*(\w+) -> (\w+)", text, re.MULTILINE))
        drawn = {(a, b) for a, b in edges if a != "start"}
        self.assertEqual(drawn, {(a.value, b.value) for a, b in ALLOWED})
        self.assertIn(("start", "Queued"), edges)


class ParseStatusTests(SynchronousTestCase):
    """
    L{parse_status} reads status names in any case.
    """

    def test_any_case(self) -> None:
        """
        Upper, lower and mixed case all name the same status.
        """
        for text in ("running", "RUNNING", "Running", "rUnNiNg"):
            self.assertIs(parse_status(text), R)
        self.assertIs(parse_status("canceled"), C)

    def test_unknown(self) -> None:
        """
        Unknown names and non-strings are refused as malformed.
        """
        for value in ("cancelled", "", "Queued ", None, 1, ["Done"]):
            self.assertRaises(MalformedCommand, parse_status, value)
