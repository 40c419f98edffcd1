# -*- test-case-name: tests.raft.test_sessions -*-
"""
Tests for L{raft3d.raft._sessions}: at-most-once application of client
commands (thesis 6.3).

The table is part of the replicated state, so every replica must reach the
same decisions from the same log; the tests drive it with log timestamps
only, including timestamps that go backwards as leaders with skewed clocks
take over.
"""

from __future__ import annotations

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft._sessions import SessionTable

STALE = {"error": {"code": "stale_session", "message": "request superseded"}}


class LookupTests(SynchronousTestCase):
    """
    Thesis 6.3: "each server tracks the latest serial number processed for
    each client, along with the associated response.  If a server receives
    a command whose serial number has already been executed, it responds
    immediately without re-executing the request."
    """

    def test_unknown_client(self) -> None:
        """
        A client never seen has nothing recorded: apply the command.
        """
        table = SessionTable(ttl=60)
        self.assertEqual(table.lookup("c", 1), (False, None))
        self.assertEqual(len(table), 0)

    def test_duplicate_returns_first_result(self) -> None:
        """
        A retried command gets the result of its first application, even
        if the retry carries a different payload.
        """
        table = SessionTable(ttl=60)
        table.advance(10.0)
        table.record("c", 1, {"id": "job-1"})
        self.assertEqual(table.lookup("c", 1), (True, {"id": "job-1"}))
        self.assertEqual(table.lookup("c", 2), (False, None))

    def test_older_sequence_is_stale(self) -> None:
        """
        Only the last result is kept: an older sequence number than the
        last one gets a C{stale_session} error rather than being applied
        again.
        """
        table = SessionTable(ttl=60)
        table.record("c", 1, "one")
        table.record("c", 2, "two")
        self.assertEqual(table.lookup("c", 1), (True, STALE))
        self.assertEqual(table.lookup("c", 2), (True, "two"))

    def test_clients_independent(self) -> None:
        """
        Sequence numbers are per client.
        """
        table = SessionTable(ttl=60)
        table.record("a", 5, "a5")
        self.assertEqual(table.lookup("b", 5), (False, None))
        table.record("b", 1, "b1")
        self.assertEqual(table.lookup("a", 5), (True, "a5"))
        self.assertEqual(len(table), 2)


class ExpiryTests(SynchronousTestCase):
    """
    Sessions expire by log time (thesis 6.3.2: "servers must agree on when
    a client session expires").
    """

    def test_expire_after_ttl(self) -> None:
        """
        A session idle for longer than the TTL is forgotten; one idle for
        exactly the TTL is kept.
        """
        table = SessionTable(ttl=10)
        table.advance(100.0)
        table.record("c", 1, "r")
        table.advance(110.0)
        self.assertEqual(table.lookup("c", 1), (True, "r"))
        table.advance(110.5)
        self.assertEqual(table.lookup("c", 1), (False, None))
        self.assertEqual(len(table), 0)

    def test_activity_renews(self) -> None:
        """
        Recording a new command renews the session, and expiry removes only
        the idle sessions, whatever order they were created in.
        """
        table = SessionTable(ttl=10)
        table.advance(0.0)
        table.record("a", 1, "a1")
        table.record("b", 1, "b1")
        table.advance(8.0)
        table.record("a", 2, "a2")
        table.advance(15.0)
        self.assertEqual(table.lookup("a", 2), (True, "a2"))
        self.assertEqual(table.lookup("b", 1), (False, None))

    def test_time_never_goes_backwards(self) -> None:
        """
        A new leader's clock may be behind: an earlier timestamp neither
        rewinds log time (which would let sessions outlive their TTL) nor
        stamps a session in the past (which would expire it early).
        """
        table = SessionTable(ttl=10)
        table.advance(100.0)
        table.record("a", 1, "a1")
        table.advance(50.0)
        table.record("b", 1, "b1")
        table.advance(105.0)
        self.assertEqual(table.lookup("b", 1), (True, "b1"))
        table.advance(111.0)
        self.assertEqual(table.lookup("a", 1), (False, None))
        self.assertEqual(table.lookup("b", 1), (False, None))
        self.assertEqual(table.to_wire()[0], 111.0)


class WireTests(SynchronousTestCase):
    """
    The table is saved in snapshots.
    """

    def test_round_trip(self) -> None:
        """
        A table restored from its wire form (through CBOR, as snapshots
        store it) answers and expires exactly as the original.
        """
        table = SessionTable(ttl=10)
        table.advance(1.0)
        table.record("a", 3, {"ok": [1, 2]})
        table.advance(4.0)
        table.record("b", 7, None)
        copy = SessionTable(ttl=10)
        copy.restore(cbor2.loads(cbor2.dumps(table.to_wire())))
        self.assertEqual(copy.to_wire(), table.to_wire())
        for client, seq in (("a", 3), ("a", 2), ("b", 7), ("b", 8), ("c", 1)):
            self.assertEqual(copy.lookup(client, seq), table.lookup(client, seq))
        copy.advance(12.0)
        table.advance(12.0)
        self.assertEqual(copy.to_wire(), table.to_wire())
        self.assertEqual(copy.lookup("a", 3), (False, None))
        self.assertEqual(copy.lookup("b", 7), (True, None))

    @settings(max_examples=100, derandomize=True, database=None, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from("abcd"),
                st.integers(1, 5),
                st.floats(0, 100, allow_nan=False),
            ),
            max_size=30,
        ),
        st.integers(0, 30),
    )
    def test_replicas_agree(self, commands: list[tuple[str, int, float]], cut: int) -> None:
        """
        Two replicas fed the same commands agree on every lookup, even when
        one of them is restored from the other's snapshot half way, and
        every live session is within the TTL of log time.
        """
        ttl = 20.0
        one, two = SessionTable(ttl), SessionTable(ttl)
        for position, (client, seq, stamp) in enumerate(commands):
            if position == cut:
                two = SessionTable(ttl)
                two.restore(cbor2.loads(cbor2.dumps(one.to_wire())))
            for table in (one, two):
                table.advance(stamp)
                applied, _ = table.lookup(client, seq)
                if not applied:
                    table.record(client, seq, [client, seq])
            self.assertEqual(one.to_wire(), two.to_wire())
            now, sessions = one.to_wire()
            for _, _, _, last in sessions:
                self.assertGreaterEqual(last, now - ttl)
