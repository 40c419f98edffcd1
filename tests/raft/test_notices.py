"""
Tests for L{raft3d.raft._notices}: commit notices held back for a moment.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft._messages import AppendEntries, Heartbeat, Message
from raft3d.raft._notices import HOLD_ENTRIES, CommitNotices
from raft3d.raft._types import Entry, EntryType


def notice(commit: int, prev: int = 5) -> AppendEntries:
    """
    An empty C{AppendEntries} telling a follower the commit index.
    """
    return AppendEntries(
        term=2, sender="a", prev_log_index=prev, prev_log_term=2, entries=(), leader_commit=commit
    )


def batch(index: int, commit: int) -> AppendEntries:
    """
    An C{AppendEntries} carrying one entry.
    """
    entry = Entry(index, 2, EntryType.NORMAL, b"x")
    return AppendEntries(
        term=2,
        sender="a",
        prev_log_index=index - 1,
        prev_log_term=2,
        entries=(entry,),
        leader_commit=commit,
    )


class CommitNoticesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.sent: list[tuple[str, Message]] = []
        self.notices = CommitNotices(
            self.clock, 0.002, lambda to, message: self.sent.append((to, message))
        )
        # Both followers know that entry 4 is committed.
        self.notices.send("b", batch(5, 4))
        self.notices.send("c", batch(5, 4))
        del self.sent[:]

    def test_no_delay(self) -> None:
        """
        With no delay every notice goes at once.
        """
        notices = CommitNotices(self.clock, 0, lambda to, m: self.sent.append((to, m)))
        notices.notice("b", notice(5))
        self.assertEqual(self.sent, [("b", notice(5))])

    def test_held_then_sent(self) -> None:
        """
        A notice waits for the delay, then goes, to every peer it was for.
        """
        self.notices.notice("b", notice(5))
        self.notices.notice("c", notice(5))
        self.clock.advance(0.0019)
        self.assertEqual(self.sent, [])
        self.clock.advance(0.0001)
        self.assertEqual(self.sent, [("b", notice(5)), ("c", notice(5))])
        self.clock.advance(1)
        self.assertEqual(len(self.sent), 2)

    def test_superseded(self) -> None:
        """
        A later C{AppendEntries} to the same peer replaces its held notice;
        the other peers' notices still go.
        """
        self.notices.notice("b", notice(5))
        self.notices.notice("c", notice(5))
        self.notices.send("b", batch(6, 5))
        self.clock.advance(0.002)
        self.assertEqual(self.sent, [("b", batch(6, 5)), ("c", notice(5))])

    def test_newer_notice_replaces(self) -> None:
        """
        Of two notices held for one peer only the newer goes.
        """
        self.notices.notice("b", notice(5))
        self.notices.notice("b", notice(6))
        self.clock.advance(0.002)
        self.assertEqual(self.sent, [("b", notice(6))])

    def test_order_kept(self) -> None:
        """
        Another kind of message to a peer with a held notice goes after
        it, not before.
        """
        heartbeat = Heartbeat(term=2, sender="a", commit=5, read_ctx=1)
        self.notices.notice("b", notice(5))
        self.notices.send("b", heartbeat)
        self.assertEqual(self.sent, [("b", notice(5)), ("b", heartbeat)])
        self.clock.advance(0.002)
        self.assertEqual(len(self.sent), 2)

    def test_many_entries_not_held(self) -> None:
        """
        A notice that commits more than L{HOLD_ENTRIES} entries since what
        the follower was last told goes at once.
        """
        self.notices.notice("b", notice(4 + HOLD_ENTRIES))
        self.assertEqual(self.sent, [])
        self.notices.notice("b", notice(5 + HOLD_ENTRIES))
        self.assertEqual(self.sent, [("b", notice(5 + HOLD_ENTRIES))])

    def test_entries_not_held(self) -> None:
        """
        An C{AppendEntries} that carries entries is never held back.
        """
        self.notices.notice("b", batch(6, 5))
        self.assertEqual(self.sent, [("b", batch(6, 5))])

    def test_relaying_follower(self) -> None:
        """
        The notice that commits what a follower relayed goes at once; one
        that does not yet waits, and so do those after it.
        """
        self.notices.relayed("b", 7)
        self.notices.notice("b", notice(6))
        self.assertEqual(self.sent, [])
        self.notices.notice("b", notice(7))
        self.assertEqual(self.sent, [("b", notice(7))])
        self.notices.notice("b", notice(8))
        self.assertEqual(self.sent, [("b", notice(7))])
        self.clock.advance(0.002)
        self.assertEqual(self.sent, [("b", notice(7)), ("b", notice(8))])

    def test_relayed_covered_by_batch(self) -> None:
        """
        A batch that carries the commit of what a follower relayed settles
        it: the next notice may wait again.
        """
        self.notices.relayed("b", 7)
        self.notices.send("b", batch(9, 7))
        self.notices.notice("b", notice(8))
        self.assertEqual(self.sent, [("b", batch(9, 7))])

    def test_stop(self) -> None:
        """
        A stopped sender forgets what it held.
        """
        self.notices.notice("b", notice(5))
        self.notices.stop()
        self.clock.advance(1)
        self.assertEqual(self.sent, [])
