# -*- test-case-name: tests.raft.test_core -*-
"""
Tests for L{raft3d.raft._core}: the pure Raft consensus core.

In the manner of etcd-io/raft's C{raft_paper_test.go}, each test is named
after the sentence of the Raft paper (Ongaro and Ousterhout, "In Search of
an Understandable Consensus Algorithm", 2014) or of Ongaro's thesis
("Consensus: Bridging Theory and Practice", 2014) that it proves, and quotes
it.  Section numbers without a prefix are the paper's.

The core does no I/O, so the tests drive it by hand (one core and crafted
messages) or through L{tests.raft._harness.Network}, a dictionary of cores
and a FIFO queue where persisting a ready is immediate unless a node's disk
is held.  Everything is seeded: the same run every time.
"""

from __future__ import annotations

import pathlib
import random
import re
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

import raft3d
from raft3d.raft import (
    AppendEntries,
    AppendEntriesResponse,
    ConfigurationChangeError,
    Entry,
    EntryType,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    LeadershipTransferInProgress,
    NotLeader,
    RaftError,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)
from raft3d.raft._core import (
    ROLE_TRANSITIONS,
    IllegalTransition,
    MembershipOp,
    RaftCore,
    ReadState,
    Ready,
    Role,
)

from ._harness import (
    Network,
    config_entry,
    configuration,
    drain,
    entries_of,
    log_of,
    make_leader,
    member,
    messages_of,
    normal,
    persist,
    persist_all,
    take,
    time_out,
)
from ._harness import settings as core_settings

E = 10
"""The election timeout, in ticks, of every test core."""

ABC = configuration("a", "b", "c")
ABC5 = configuration("a", "b", "c", "d", "e")


def new_core(
    node_id: str = "a",
    voters: tuple[str, ...] = ("a", "b", "c"),
    *,
    log: list[Entry] | None = None,
    term: int = 1,
    voted_for: str | None = None,
    seed: int = 0,
    **overrides: Any,
) -> RaftCore:
    """
    A follower whose disk holds C{log} (by default only the configuration
    of C{voters} at index 1) and the given hard state; its start-up ready
    is taken.
    """
    config = configuration(*voters)
    core = RaftCore(
        node_id,
        settings=core_settings(**overrides),
        rng=random.Random(seed),
        hard_state=HardState(term, voted_for),
        entries=log if log is not None else [config_entry(1, 1, config)],
    )
    drain(core)
    return core


def leader_core(
    node_id: str = "a", voters: tuple[str, ...] = ("a", "b", "c"), **kwargs: Any
) -> RaftCore:
    """
    A leader of C{voters} that has committed the NOOP of its term (every
    other voter acknowledged it) and whose readies are all taken.
    """
    core = new_core(node_id, voters, **kwargs)
    others = [v for v in voters if v != node_id]
    make_leader(core, *others)
    for voter in others:
        ack(core, voter, core.log.last_index)
    assert core.commit_index == core.log.last_index
    persist_all(core)
    return core


def ack(core: RaftCore, peer: str, match: int) -> None:
    """
    Deliver a successful AppendEntriesResponse from C{peer}.
    """
    core.step(AppendEntriesResponse(core.term, peer, True, match - 1, match_index=match))


def sent(ready: Ready, kind: type[Any], persisted: bool | None = None) -> list[tuple[str, Any]]:
    """
    The C{(to, message)} of type C{kind} in a ready: in C{messages} only,
    in C{persisted_messages} only, or in both (C{persisted=None}).
    """
    if persisted is None:
        pool = messages_of(ready)
    elif persisted:
        pool = list(ready.persisted_messages)
    else:
        pool = list(ready.messages)
    return [(to, m) for to, m in pool if isinstance(m, kind)]


def core_in(role: Role) -> RaftCore:
    """
    A core of C{a, b, c} at term 1 or 2 in the given role.
    """
    if role is Role.FOLLOWER:
        return new_core()
    if role is Role.PRE_CANDIDATE:
        core = new_core(pre_vote=True)
        time_out(core)
    elif role is Role.CANDIDATE:
        core = new_core(pre_vote=False)
        time_out(core)
    else:
        core = new_core()
        make_leader(core, "b")
    drain(core)
    assert core.role is role
    return core


# -- 5.1 -------------------------------------------------------------------------


class BasicsTests(SynchronousTestCase):
    """
    Paper 5.1, "Raft basics".
    """

    def test_servers_start_as_followers(self) -> None:
        """
        5.2: "When servers start up, they begin as followers": a brand-new core,
        one restarted with a term and a vote, and one restarted from the
        disk of a former leader all start as followers with no known leader.
        """
        fresh = RaftCore("a")
        restarted = new_core(term=7, voted_for="a")
        net = Network(["a", "b", "c"])
        net.elect("a")
        net.crash("a")
        former = net.restart("a")
        for core in (fresh, restarted, former):
            self.assertIs(core.role, Role.FOLLOWER)
            self.assertIsNone(core.leader_id)
        self.assertEqual(restarted.hard_state(), HardState(7, "a"))
        self.assertEqual(former.term, 2)

    def test_update_term_from_message(self) -> None:
        """
        "If one server's current term is smaller than the other's, then it
        updates its current term to the larger value.  If a candidate or
        leader discovers that its term is out of date, it immediately
        reverts to follower state."  Checked for every role and for
        requests and answers alike; an AppendEntries or Heartbeat also names
        the new leader.
        """
        for role in Role:
            for make, leader in (
                (lambda t: AppendEntries(t, "c", 0, 0, (), 0), "c"),
                (lambda t: Heartbeat(t, "c", 0), "c"),
                (lambda t: AppendEntriesResponse(t, "c", False, 0), None),
                (lambda t: HeartbeatResponse(t, "c"), None),
                (lambda t: RequestVoteResponse(t, "c", False), None),
            ):
                core = core_in(role)
                message = make(core.term + 3)
                expected = core.term + 3
                core.step(message)
                label = f"{role} <- {type(message).__name__}"
                self.assertIs(core.role, Role.FOLLOWER, label)
                self.assertEqual(core.term, expected, label)
                self.assertIsNone(core.voted_for, label)
                self.assertEqual(core.leader_id, leader, label)
                ready = take(core)
                self.assertEqual(ready.hard_state, HardState(expected, None), label)

    def test_reject_stale_term(self) -> None:
        """
        "If a server receives a request with a stale term number, it rejects
        the request": stale AppendEntries and Heartbeats get an answer that
        carries the newer term (so a deposed leader learns it), a stale vote
        is not granted, a stale pre-vote is refused with the newer term, and
        none of them touches the log, the leader or the election timer.
        """
        core = new_core("b", log=log_of(ABC, 1, 1), term=5)
        core.step(Heartbeat(5, "c", 0))
        drain(core)
        before = entries_of(core)
        for message in (
            AppendEntries(3, "a", 3, 1, (normal(4, 3),), 3),
            Heartbeat(3, "a", 3),
            InstallSnapshot(3, "a", 9, 3, ABC, 0, b"", True, 0, 0),
        ):
            core.step(message)
            ready = take(core)
            [(to, answer)] = messages_of(ready)
            self.assertEqual(to, "a")
            self.assertEqual(answer, AppendEntriesResponse(5, "b", False, 0))
        core.step(RequestVote(3, "a", 10, 3))
        self.assertIsNone(core.take_ready())
        core.step(RequestVote(4, "a", 10, 3, pre_vote=True))
        [(to, answer)] = messages_of(take(core))
        self.assertEqual(answer, RequestVoteResponse(5, "b", False, True))
        self.assertEqual(entries_of(core), before)
        self.assertEqual((core.term, core.leader_id, core.commit_index), (5, "c", 0))

    def test_stale_leader_learns_from_answer(self) -> None:
        """
        A leader cut off while the others elected a new one reverts to
        follower as soon as its next heartbeat is answered with the newer
        term (check-quorum is off here, so only the answer can depose it).
        """
        net = Network(["a", "b", "c"], settings=core_settings(check_quorum=False))
        net.elect("a")
        net.isolate("a")
        net.elect("b")
        self.assertEqual(net["b"].term, 3)
        self.assertIs(net["a"].role, Role.LEADER)
        net.heal()
        net.tick("a")
        self.assertIs(net["a"].role, Role.FOLLOWER)
        self.assertEqual(net["a"].term, 3)
        self.assertIn(
            AppendEntriesResponse(3, "b", False, 0), net.sent(AppendEntriesResponse, "b", "a")
        )


# -- 5.2 -------------------------------------------------------------------------


class ElectionTests(SynchronousTestCase):
    """
    Paper 5.2, "Leader election", and thesis 9.6 for the pre-vote phase.
    """

    def test_leader_broadcasts_heartbeats(self) -> None:
        """
        "Leaders send periodic heartbeats (AppendEntries RPCs that carry no
        log entries) to all followers in order to maintain their
        authority": one Heartbeat per follower every C{heartbeat_ticks},
        sent at once (not after a disk write), carrying only what each
        follower is known to hold of the commit index.
        """
        core = leader_core(heartbeat_ticks=3)
        for _ in range(2):
            core.tick()
            self.assertIsNone(core.take_ready())
        core.tick()
        ready = take(core)
        self.assertEqual(ready.persisted_messages, ())
        beats = sorted(sent(ready, Heartbeat, persisted=False))
        self.assertEqual(
            beats,
            [
                ("b", Heartbeat(2, "a", core.commit_index)),
                ("c", Heartbeat(2, "a", core.commit_index)),
            ],
        )
        self.assertEqual(sent(ready, AppendEntries), [])
        for _ in range(3):
            core.tick()
        self.assertEqual(len(sent(take(core), Heartbeat)), 2)

    def test_heartbeat_commit_is_what_follower_holds(self) -> None:
        """
        A Heartbeat carries C{min(match, commit)}, so a follower that has
        not received the committed entries is never told to commit an index
        it holds a different entry at.
        """
        core = leader_core()
        core.propose([b"x"])
        persist(core, take(core))
        ack(core, "b", core.log.last_index)
        drain(core)
        self.assertEqual(core.commit_index, 3)
        core.tick()
        beats = dict(sent(take(core), Heartbeat))
        self.assertEqual(beats["b"].commit, 3)
        self.assertEqual(beats["c"].commit, 2)

    def test_follower_starts_pre_vote_after_election_timeout(self) -> None:
        """
        "If a follower receives no communication over a period of time
        called the election timeout, then it assumes there is no viable
        leader and begins an election."  With pre-vote (thesis 9.6) it first
        becomes a pre-candidate: it does not increment its term or vote, and
        asks every other voter for a vote in term + 1 with C{pre_vote}.  The
        requests wait for the ready's persistence like all non-leader
        messages.
        """
        core = new_core(log=log_of(ABC, 1, 1), pre_vote=True)
        ticks = time_out(core)
        self.assertTrue(E <= ticks < 2 * E, ticks)
        self.assertIs(core.role, Role.PRE_CANDIDATE)
        self.assertEqual(core.hard_state(), HardState(1, None))
        ready = take(core)
        self.assertIsNone(ready.hard_state)
        self.assertEqual(ready.messages, ())
        self.assertEqual(
            sorted(sent(ready, RequestVote, persisted=True)),
            [(peer, RequestVote(2, "a", 3, 1, pre_vote=True)) for peer in ("b", "c")],
        )

    def test_follower_starts_election_after_election_timeout(self) -> None:
        """
        "To begin an election, a follower increments its current term and
        transitions to candidate state.  It then votes for itself and issues
        RequestVote RPCs in parallel to each of the other servers in the
        cluster."  The requests are only sent once the new term and the
        vote for itself are durable (same ready).
        """
        core = new_core(log=log_of(ABC, 1, 1), pre_vote=False)
        ticks = time_out(core)
        self.assertTrue(E <= ticks < 2 * E, ticks)
        self.assertIs(core.role, Role.CANDIDATE)
        ready = take(core)
        self.assertEqual(ready.hard_state, HardState(2, "a"))
        self.assertEqual(ready.messages, ())
        self.assertEqual(
            sorted(sent(ready, RequestVote, persisted=True)),
            [(peer, RequestVote(2, "a", 3, 1)) for peer in ("b", "c")],
        )

    def test_candidate_wins_with_majority(self) -> None:
        """
        "A candidate wins an election if it receives votes from a majority
        of the servers in the full cluster for the same term", and returns
        to follower once a majority refused; otherwise it keeps waiting.
        """
        cases: list[tuple[int, dict[str, bool], Role]] = [
            (1, {}, Role.LEADER),
            (3, {"b": True, "c": True}, Role.LEADER),
            (3, {"b": True}, Role.LEADER),
            (3, {}, Role.CANDIDATE),
            (3, {"b": False}, Role.CANDIDATE),
            (3, {"b": False, "c": False}, Role.FOLLOWER),
            (5, {"b": True, "c": True, "d": True, "e": True}, Role.LEADER),
            (5, {"b": True, "c": True}, Role.LEADER),
            (5, {"b": True}, Role.CANDIDATE),
            (5, {"b": True, "c": False, "d": False}, Role.CANDIDATE),
            (5, {"b": False, "c": False, "d": False}, Role.FOLLOWER),
        ]
        for size, votes, expected in cases:
            voters = tuple("abcde"[:size])
            core = new_core(voters=voters, pre_vote=False)
            time_out(core)
            for voter, granted in votes.items():
                core.step(RequestVoteResponse(core.term, voter, granted))
            self.assertIs(core.role, expected, (size, votes))
            self.assertEqual(core.term, 2)

    def test_vote_from_other_term_not_counted(self) -> None:
        """
        "...votes from a majority of the servers in the full cluster for the
        same term": a grant for another term does not count.
        """
        core = new_core(pre_vote=False)
        time_out(core)
        while core.term < 3:
            core.tick()
        core.step(RequestVoteResponse(2, "b", True))
        self.assertIs(core.role, Role.CANDIDATE)
        core.step(RequestVoteResponse(3, "b", True))
        self.assertIs(core.role, Role.LEADER)

    def test_candidate_follows_leader_of_same_term(self) -> None:
        """
        "If the leader's term (included in its RPC) is at least as large as
        the candidate's current term, then the candidate recognizes the
        leader as legitimate and returns to follower state.  If the term in
        the RPC is smaller than the candidate's current term, then the
        candidate rejects the RPC and continues in candidate state."  Also
        for a pre-candidate, whose term is still the leader's.
        """
        for role in (Role.CANDIDATE, Role.PRE_CANDIDATE):
            for make in (
                lambda t: AppendEntries(t, "c", 1, 1, (), 0),
                lambda t: Heartbeat(t, "c", 0),
            ):
                core = core_in(role)
                core.step(make(core.term - 1))
                self.assertIs(core.role, role)
                term = core.term
                message = make(term)
                core.step(message)
                self.assertIs(core.role, Role.FOLLOWER, (role, message))
                self.assertEqual((core.term, core.leader_id), (term, "c"))

    def test_split_vote_starts_new_election(self) -> None:
        """
        "When this happens, each candidate will time out and start a new
        election by incrementing its term and initiating another round of
        RequestVote RPCs" after a new randomized timeout.
        """
        core = new_core(pre_vote=False)
        time_out(core)
        core.step(RequestVoteResponse(2, "b", False))
        drain(core)
        ticks = 0
        while core.term == 2 and ticks < 2 * E:
            core.tick()
            ticks += 1
        self.assertTrue(E <= ticks < 2 * E, ticks)
        self.assertIs(core.role, Role.CANDIDATE)
        ready = take(core)
        self.assertEqual(ready.hard_state, HardState(3, "a"))
        self.assertEqual(
            sorted(to for to, _ in sent(ready, RequestVote, persisted=True)), ["b", "c"]
        )

    def test_split_vote_in_cluster_resolves(self) -> None:
        """
        Two candidates that split a four-server cluster's votes (each gets
        its own and one other) both time out, and randomized timeouts soon
        elect exactly one leader.
        """
        net = Network(["a", "b", "c", "d"], settings=core_settings(pre_vote=False), seed=3)
        net.cut.update({("a", "d"), ("d", "a"), ("b", "c"), ("c", "b")})
        for core in (net["a"], net["b"]):
            time_out(core)
        net.settle()
        self.assertEqual((net["a"].role, net["b"].role), (Role.CANDIDATE, Role.CANDIDATE))
        self.assertEqual(net.leaders(), [])
        net.heal()
        for _ in range(10 * E):
            net.tick()
            if net.leaders():
                break
        [leader] = net.leaders()
        self.assertGreater(net[leader].term, 2)

    def test_vote_once_per_term(self) -> None:
        """
        "Each server will vote for at most one candidate in a given term, on
        a first-come-first-served basis": the first candidate gets the vote,
        another in the same term does not, the first one asking again gets
        it again (a lost answer), and a new term frees the vote.
        """
        core = new_core("a")
        asks = [("b", 2, True), ("c", 2, False), ("b", 2, True), ("c", 3, True), ("b", 3, False)]
        for candidate, term, granted in asks:
            core.step(RequestVote(term, candidate, 1, 1))
            [(to, answer)] = sent(take(core), RequestVoteResponse)
            self.assertEqual((to, answer.granted, answer.term), (candidate, granted, term))
        self.assertEqual(core.hard_state(), HardState(3, "c"))

    def test_randomized_election_timeouts(self) -> None:
        """
        "Raft uses randomized election timeouts to ensure that split votes
        are rare ... election timeouts are chosen randomly from a fixed
        interval": in C{[E, 2E)}, different across seeds, the same for the
        same seed (the core takes its randomness only from its C{rng}).
        """
        timeouts = []
        for seed in range(40):
            timeouts.append(time_out(new_core(seed=seed)))
        self.assertTrue(all(E <= t < 2 * E for t in timeouts), timeouts)
        self.assertGreater(len(set(timeouts)), E // 2)
        again = [time_out(new_core(seed=seed)) for seed in range(40)]
        self.assertEqual(again, timeouts)

    def test_non_voter_never_campaigns(self) -> None:
        """
        Only voters of the latest configuration start elections: a learner
        and a server whose log holds no configuration yet never do.
        """
        learner = new_core("d", log=[config_entry(1, 1, configuration("a", "b", learners="d"))])
        empty = RaftCore("e", settings=core_settings(), rng=random.Random(1))
        for core in (learner, empty):
            for _ in range(5 * E):
                core.tick()
            self.assertIs(core.role, Role.FOLLOWER)
            ready = core.take_ready()
            self.assertTrue(ready is None or not messages_of(ready))


# -- figure 2 --------------------------------------------------------------------


class PersistenceOrderTests(SynchronousTestCase):
    """
    Figure 2: "Persistent state on all servers (Updated on stable storage
    before responding to RPCs)", and thesis 10.2.1: the leader may write
    its log in parallel with replicating it.
    """

    def test_vote_sent_after_vote_persisted(self) -> None:
        """
        A granted vote travels in C{persisted_messages} of the same ready
        that carries the hard state recording it, so the driver sends it
        only once the vote is durable.
        """
        core = new_core("b")
        core.step(RequestVote(2, "a", 1, 1))
        ready = take(core)
        self.assertEqual(ready.hard_state, HardState(2, "a"))
        self.assertEqual(ready.messages, ())
        self.assertEqual(ready.persisted_messages, (("a", RequestVoteResponse(2, "b", True)),))

    def test_append_response_after_entries_persisted(self) -> None:
        """
        A follower acknowledges entries in C{persisted_messages} of the
        ready that carries them (and the new term).
        """
        core = new_core("b")
        entries = (normal(2, 2), normal(3, 2))
        core.step(AppendEntries(2, "a", 1, 1, entries, 0))
        ready = take(core)
        self.assertEqual(ready.hard_state, HardState(2, None))
        self.assertEqual(ready.entries, entries)
        self.assertEqual(ready.persist_mark, (3, 2))
        self.assertEqual(ready.messages, ())
        [(to, answer)] = sent(ready, AppendEntriesResponse, persisted=True)
        self.assertEqual((to, answer.success, answer.match_index), ("a", True, 3))

    def test_leader_sends_before_own_write(self) -> None:
        """
        Thesis 10.2.1: "the leader can write to its disk in parallel with
        replicating to the followers": the AppendEntries carrying a new
        entry is in C{messages} of the ready that asks to persist it.
        """
        core = leader_core()
        [(index, term)] = core.propose([b"x"])
        ready = take(core)
        self.assertEqual([(e.index, e.term) for e in ready.entries], [(index, term)])
        appends = sent(ready, AppendEntries, persisted=False)
        self.assertEqual(sorted(to for to, _ in appends), ["b", "c"])
        for _, m in appends:
            self.assertEqual(m.entries[-1].index, index)
        self.assertEqual(ready.persisted_messages, ())

    def test_leader_counts_itself_only_once_persisted(self) -> None:
        """
        The leader is one of the majority only for what is on its own disk:
        with one follower reachable and the leader's write still pending,
        the follower's acknowledgement does not commit; the leader's
        C{on_persisted} does.
        """
        net = Network(["a", "b", "c"])
        a = net.elect("a")
        net.tick(times=2)
        committed = a.commit_index
        net.isolate("c")
        net.hold("a")
        [(index, _)] = net.propose("a", b"x")
        self.assertEqual(net["b"].log.last_index, index)
        self.assertEqual(a.commit_index, committed)
        net.release("a")
        self.assertEqual(a.commit_index, index)

    def test_two_followers_commit_without_leader_disk(self) -> None:
        """
        Conversely a majority of followers commits without the leader's
        write: the leader's disk is not on the critical path.
        """
        net = Network(["a", "b", "c"])
        a = net.elect("a")
        net.hold("a")
        [(index, _)] = net.propose("a", b"x")
        self.assertEqual(a.commit_index, index)
        self.assertEqual(a.stable_index, index - 1)

    def test_single_server_commits_after_persisting(self) -> None:
        """
        A cluster of one commits an entry exactly when its own write is
        durable, not when it is proposed.
        """
        core = RaftCore("a", settings=core_settings(), rng=random.Random(0))
        core.bootstrap(configuration("a"))
        persist_all(core)
        time_out(core)
        self.assertIs(core.role, Role.LEADER)
        persist_all(core)
        self.assertEqual(core.commit_index, 2)
        [(index, term)] = core.propose([b"x"])
        ready = take(core)
        self.assertEqual(ready.committed, ())
        self.assertEqual(core.commit_index, 2)
        core.on_persisted(index, term)
        self.assertEqual(core.commit_index, index)
        self.assertEqual([e.data for e in take(core).committed], [b"x"])


# -- 5.3 -------------------------------------------------------------------------


class ReplicationTests(SynchronousTestCase):
    """
    Paper 5.3, "Log replication".
    """

    def test_consistency_check(self) -> None:
        """
        "If the follower does not find an entry in its log with the same
        index and term, then it refuses the new entries": a rejection
        carries the conflicting term and its first index, or the follower's
        last index + 1 when its log is too short, and changes nothing.
        """
        cases: list[tuple[int, int, bool, int, int]] = [
            # prev index, prev term, accepted, conflict term, conflict index
            (3, 2, True, 0, 0),
            (0, 0, True, 0, 0),
            (3, 3, False, 2, 3),
            (2, 3, False, 1, 1),
            (5, 3, False, 0, 5),
        ]
        for prev, prev_term, accepted, cterm, cindex in cases:
            core = new_core("b", log=log_of(ABC, 1, 2, 2), term=3)
            before = entries_of(core)
            core.step(AppendEntries(3, "a", prev, prev_term, (), 0))
            [(_, answer)] = sent(take(core), AppendEntriesResponse)
            self.assertEqual(answer.success, accepted, prev)
            self.assertEqual(answer.index, prev)
            if not accepted:
                self.assertEqual((answer.conflict_term, answer.conflict_index), (cterm, cindex))
                self.assertEqual(answer.last_log_index, 4)
            self.assertEqual(entries_of(core), before)

    def test_conflict_hint_stops_at_commit(self) -> None:
        """
        The conflict index never points at or below the follower's commit
        index: committed entries are never in conflict.
        """
        core = new_core("b", log=log_of(ABC, 1, 1, 1, 1), term=3)
        core.step(AppendEntries(3, "a", 5, 1, (), 3))
        drain(core)
        self.assertEqual(core.commit_index, 3)
        core.step(AppendEntries(3, "a", 5, 2, (), 3))
        [(_, answer)] = sent(take(core), AppendEntriesResponse)
        self.assertEqual((answer.conflict_term, answer.conflict_index), (1, 4))

    def test_append_only_new_entries(self) -> None:
        """
        Figure 2: "If an existing entry conflicts with a new one (same index
        but different terms), delete the existing entry and all that follow
        it.  Append any new entries not already in the log."  A stale or
        duplicated shorter AppendEntries truncates nothing and acknowledges
        only what it carried; a real conflict truncates from there and
        hands only the new entries to the disk.
        """
        core = new_core("b", log=log_of(ABC, 1, 1, 1), term=2)
        full = entries_of(core)
        core.step(AppendEntries(2, "a", 1, 1, (full[1],), 0))
        ready = take(core)
        self.assertEqual(entries_of(core), full)
        self.assertEqual(ready.entries, ())
        [(_, answer)] = sent(ready, AppendEntriesResponse)
        self.assertEqual((answer.success, answer.match_index, answer.last_log_index), (True, 2, 4))

        core.step(AppendEntries(2, "a", 0, 0, tuple(full), 0))
        self.assertEqual(take(core).entries, ())

        core.step(AppendEntries(2, "a", 1, 1, (full[1], normal(3, 2)), 0))
        ready = take(core)
        self.assertEqual(entries_of(core), [*full[:2], normal(3, 2)])
        self.assertEqual(ready.entries, (normal(3, 2),))

    def test_commit_only_what_matches(self) -> None:
        """
        Figure 2: "If leaderCommit > commitIndex, set commitIndex =
        min(leaderCommit, index of last new entry)": a follower holding a
        longer, stale suffix does not commit it on the leader's word.
        """
        core = new_core("b", log=log_of(ABC, 1, 1, 1, 1), term=2)
        core.step(AppendEntries(2, "a", 1, 1, (normal(2, 1),), 5))
        self.assertEqual(core.commit_index, 2)
        self.assertEqual([e.index for e in take(core).committed], [1, 2])

    def test_logs_converge(self) -> None:
        """
        "In Raft, the leader handles inconsistencies by forcing the
        followers' logs to duplicate its own": followers with missing,
        extra and conflicting entries (figure 7's kinds) end up with exactly
        the leader's log.
        """
        logs = {
            "a": log_of(ABC5, 1, 1, 4, 4, 5, 5, 6, 6, 6),
            "b": log_of(ABC5, 1, 1, 4, 4, 5, 5, 6, 6),
            "c": log_of(ABC5, 1, 1, 4),
            "d": log_of(ABC5, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6, 7, 7),
            "e": log_of(ABC5, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3),
        }
        net = Network(
            "abcde", logs=logs, terms={"a": 8, "b": 6, "c": 4, "d": 7, "e": 3}, config=ABC5
        )
        net.isolate("d")
        net.elect("a")
        net.heal()
        net.tick("a", times=3)
        leader_log = entries_of(net["a"])
        for node in "bcde":
            self.assertEqual(entries_of(net[node]), leader_log, node)
            self.assertEqual(net[node].commit_index, net["a"].commit_index, node)

    def test_conflict_hint_skips_whole_terms(self) -> None:
        """
        Paper 5.3: "when rejecting an AppendEntries request, the follower
        can include the term of the conflicting entry and the first index
        it stores for that term.  With this information, the leader can
        decrement nextIndex to bypass all of the conflicting entries in that
        term; one AppendEntries RPC will be required for each term with
        conflicting entries, rather than one RPC per entry."  A follower
        diverged by 400 entries of one term, and one missing 300 entries,
        converge after one rejection each.
        """
        logs = {
            "a": log_of(ABC, *[1] * 9, *[3] * 310),
            "b": log_of(ABC, *[1] * 9, *[2] * 400),
            "c": log_of(ABC, *[1] * 9, *[3] * 10),
        }
        net = Network("abc", logs=logs, terms={"a": 3, "b": 2, "c": 3})
        net.elect("a")
        net.tick("a", times=2)
        rejections = [
            (s, m)
            for s, _, m in net.delivered
            if isinstance(m, AppendEntriesResponse) and not m.success
        ]
        self.assertEqual(sorted(s for s, _ in rejections), ["b", "c"])
        self.assertLessEqual(len(net.sent(AppendEntries, "a", "b")), 6)
        for node in "bc":
            self.assertEqual(entries_of(net[node]), entries_of(net["a"]))
        self.assertEqual(net["b"].commit_index, 321)

    def test_conflict_hint_with_term_known_to_leader(self) -> None:
        """
        When the leader holds entries of the follower's conflicting term it
        resumes right after its own last entry of that term, again in one
        round trip.
        """
        logs = {
            "a": log_of(ABC, *[1] * 9, *[2] * 5, *[4] * 5),
            "b": log_of(ABC, *[1] * 9, *[2] * 200),
            "c": log_of(ABC, *[1] * 9, *[2] * 5),
        }
        net = Network("abc", logs=logs, terms={"a": 4, "b": 2, "c": 2})
        net.elect("a")
        rejections = [
            m
            for s, _, m in net.delivered
            if s == "b" and isinstance(m, AppendEntriesResponse) and not m.success
        ]
        self.assertEqual(len(rejections), 1)
        self.assertEqual((rejections[0].conflict_term, rejections[0].conflict_index), (2, 11))
        retry = net.sent(AppendEntries, "a", "b")[1]
        assert isinstance(retry, AppendEntries)
        self.assertEqual((retry.prev_log_index, retry.prev_log_term), (15, 2))
        self.assertEqual(entries_of(net["b"]), entries_of(net["a"]))

    def test_pipelining_bounded(self) -> None:
        """
        Once a follower matches, the leader pipelines AppendEntries batches
        without waiting for answers, but never more than C{max_inflight}.
        """
        net = Network("abc", settings=core_settings(max_inflight=3, max_append_bytes=30))
        a = net.elect("a")
        net.tick(times=2)
        net.isolate("b", "c")
        for i in range(10):
            a.propose([b"%d" % i])
        net.settle()
        per_peer = [
            len([1 for _, t, m in net.dropped if t == p and isinstance(m, AppendEntries)])
            for p in "bc"
        ]
        self.assertEqual(per_peer, [3, 3])
        pr = a.progress_of("b")
        assert pr is not None
        self.assertTrue(pr.is_paused())


# -- 5.4 -------------------------------------------------------------------------


class SafetyTests(SynchronousTestCase):
    """
    Paper 5.4, "Safety".
    """

    def test_voter_refuses_less_up_to_date_candidate(self) -> None:
        """
        5.4.1: "the voter denies its vote if its own log is more up-to-date
        than that of the candidate" (later last term, or same last term and
        longer), for votes and pre-votes alike.
        """
        cases = [((4, 2), True), ((5, 2), True), ((3, 2), False), ((2, 3), True), ((9, 1), False)]
        for pre_vote in (False, True):
            for (lli, llt), granted in cases:
                voter = new_core("b", log=log_of(ABC, 1, 2, 2), term=2)
                voter.step(RequestVote(3, "c", lli, llt, pre_vote=pre_vote))
                [(_, answer)] = sent(take(voter), RequestVoteResponse)
                self.assertEqual(answer.granted, granted, (lli, llt, pre_vote))
                expected_vote = "c" if granted and not pre_vote else None
                self.assertEqual(voter.voted_for, expected_vote)

    def test_stale_log_cannot_win(self) -> None:
        """
        5.4.1: "a candidate must contact a majority of the cluster in order
        to be elected, which means that every committed entry must be
        present in at least one of those servers": a server missing a
        committed entry times out again and again without winning.
        """
        logs = {"a": log_of(ABC, 1), "b": log_of(ABC, 1, 2), "c": log_of(ABC, 1, 2)}
        for pre_vote in (True, False):
            net = Network("abc", logs=logs, settings=core_settings(pre_vote=pre_vote))
            for _ in range(6 * E):
                net.tick("a")
            self.assertEqual(net.leaders(), [])
            self.assertNotIn("Leader", {e[1] for e in net.events["a"] if e[0] == "role"})

    def test_new_leader_appends_noop(self) -> None:
        """
        5.4.2 and thesis 6.4: a new leader appends a NOOP entry of its own
        term at once, so that earlier entries can commit without waiting
        for a client.
        """
        net = Network("abc", logs={n: log_of(ABC, 1, 1) for n in "abc"})
        a = net.elect("a")
        last = a.log.entry(a.log.last_index)
        self.assertEqual((last.index, last.type, last.term), (4, EntryType.NOOP, a.term))
        self.assertEqual(a.commit_index, 4)

    def test_leader_commits_previous_term_only_indirectly(self) -> None:
        """
        5.4.2: "Raft never commits log entries from previous terms by
        counting replicas.  Only log entries from the leader's current term
        are committed by counting replicas; once an entry from the current
        term has been committed in this way, then all prior entries are
        committed indirectly."
        """
        core = new_core(log=log_of(ABC, 2), term=2)
        make_leader(core, "b")
        self.assertEqual(core.term, 3)
        ack(core, "b", 2)
        ack(core, "c", 2)
        self.assertEqual(core.commit_index, 0)
        self.assertEqual(take(core).committed, ())
        ack(core, "b", 3)
        self.assertEqual(core.commit_index, 3)
        self.assertEqual([e.index for e in take(core).committed], [1, 2, 3])

    def _figure8_prefix(self, block_term4: bool) -> Network:
        """
        Figure 8 (a)-(c) on five servers: S1 leads term 2 and gets index 2
        to S2 only; S5 leads term 3 with its own index 2 kept to itself and
        crashes; S1 restarts and leads term 4, replicating its term-2 entry;
        with C{block_term4} its term-4 entry reaches nobody.
        """
        net = Network(
            ["s1", "s2", "s3", "s4", "s5"],
            settings=core_settings(pre_vote=False, check_quorum=False, max_append_bytes=1),
        )
        net.drop = lambda s, t, m: (
            isinstance(m, AppendEntries) and s == "s1" and t in ("s3", "s4", "s5")
        )
        net.elect("s1")
        self.assertEqual(net["s1"].term, 2)
        self.assertEqual(net["s2"].log.term_at(2), 2)
        net.crash("s1")
        net.drop = lambda s, t, m: isinstance(m, AppendEntries) and s == "s5"
        net.elect("s5")
        self.assertEqual(net["s5"].term, 3)
        net.crash("s5")
        net.drop = None
        if block_term4:
            net.drop = lambda s, t, m: (
                isinstance(m, AppendEntries)
                and any(e.term == 4 for e in m.entries)
                and net[t].log.term_at(2) == 2
            )
        net.restart("s1")
        net.elect("s1")
        self.assertEqual(net["s1"].term, 4)
        net.tick("s1", times=3)
        return net

    def test_figure_8_previous_term_majority_not_committed(self) -> None:
        """
        Figure 8 (c)-(d): an entry of an earlier term stored on a majority
        is not committed by the new leader, and may indeed be overwritten by
        a later leader (S5) that never had it; no server ever applies it.
        """
        net = self._figure8_prefix(block_term4=True)
        holders = [n for n in ("s1", "s2", "s3", "s4") if net[n].log.term_at(2) == 2]
        self.assertGreaterEqual(len(holders), 3)
        self.assertLess(net["s1"].commit_index, 2)
        net.crash("s1")
        net.drop = None
        net.restart("s5")
        net.elect("s5")
        net.tick("s5", times=3)
        for node in ("s2", "s3", "s4", "s5"):
            self.assertEqual(net[node].log.term_at(2), 3, node)
            self.assertEqual(net[node].commit_index, net["s5"].log.last_index, node)
            self.assertEqual(net.applied[node][2].term, 3)

    def test_figure_8_current_term_commit_protects_prior(self) -> None:
        """
        Figure 8 (e): "if S1 replicates an entry from its current term on a
        majority of the servers before crashing ... then this entry is
        committed (S5 cannot win an election)", and so is the term-2 entry
        before it.
        """
        net = self._figure8_prefix(block_term4=False)
        self.assertEqual(net["s1"].commit_index, 3)
        net.crash("s1")
        net.restart("s5")
        for _ in range(6 * E):
            net.tick("s5")
        self.assertNotEqual(net["s5"].role, Role.LEADER)
        net.tick(times=4 * E)
        for node in ("s2", "s3", "s4", "s5"):
            self.assertEqual(net[node].log.term_at(2), 2, node)
            self.assertEqual(net[node].log.term_at(3), 4, node)


# -- thesis 9.6, 6.2, 4.2.3 -----------------------------------------------------


class DisruptionTests(SynchronousTestCase):
    """
    Thesis 9.6 (pre-vote), 6.2 (check-quorum) and 4.2.3 (leader lease on
    votes): a server that was cut off does not disrupt a healthy cluster,
    and a leader that is cut off gives up.
    """

    def test_pre_vote_rejoining_server_does_not_disrupt(self) -> None:
        """
        Thesis 9.6: "the Pre-Vote algorithm solves the issue of a
        partitioned server disrupting the cluster when it rejoins": while
        cut off it keeps asking for pre-votes without ever incrementing its
        term, and when it rejoins the leader keeps its term and leadership.
        """
        net = Network("abc")
        a = net.elect("a")
        term = a.term
        net.isolate("c")
        net.tick(times=5 * E)
        c = net["c"]
        self.assertEqual(c.term, term)
        roles = {e[1] for e in net.events["c"] if e[0] == "role"}
        self.assertIn("PreCandidate", roles)
        self.assertNotIn("Candidate", roles)
        net.heal()
        net.tick(times=3)
        self.assertEqual(net.leaders(), ["a"])
        self.assertEqual((a.term, c.term, c.leader_id, c.role), (term, term, "a", Role.FOLLOWER))
        self.assertEqual(c.commit_index, a.commit_index)

    def test_without_pre_vote_rejoining_server_disrupts(self) -> None:
        """
        The contrast that motivates pre-vote: without it the cut-off server
        inflates its term, and its answer to the next heartbeat deposes the
        healthy leader.
        """
        net = Network("abc", settings=core_settings(pre_vote=False))
        a = net.elect("a")
        term = a.term
        net.isolate("c")
        net.tick(times=5 * E)
        self.assertGreater(net["c"].term, term + 1)
        net.heal()
        net.tick("a")
        self.assertIs(a.role, Role.FOLLOWER)
        self.assertGreater(a.term, term)

    def test_pre_vote_changes_no_state(self) -> None:
        """
        Thesis 9.6: a pre-vote is only a question: the voter changes neither
        its term nor its vote (nothing to persist) and answers with the term
        the pre-candidate asked for.
        """
        core = new_core("b", term=1)
        core.step(RequestVote(2, "a", 1, 1, pre_vote=True))
        ready = take(core)
        self.assertIsNone(ready.hard_state)
        self.assertEqual(core.hard_state(), HardState(1, None))
        self.assertEqual(
            sent(ready, RequestVoteResponse), [("a", RequestVoteResponse(2, "b", True, True))]
        )

    def test_pre_candidate_learns_newer_term(self) -> None:
        """
        A pre-vote refused with a newer term sends the pre-candidate back to
        follower in that term, so it stops asking with a hopeless term.
        """
        core = core_in(Role.PRE_CANDIDATE)
        core.step(RequestVoteResponse(7, "b", False, True))
        self.assertEqual((core.role, core.term), (Role.FOLLOWER, 7))

    def test_pre_vote_majority_starts_real_election(self) -> None:
        """
        Thesis 9.6: "Only if the candidate believed it could get votes from a
        majority of the cluster would it increment its term and start a
        normal election."
        """
        core = core_in(Role.PRE_CANDIDATE)
        core.step(RequestVoteResponse(2, "b", True, True))
        self.assertIs(core.role, Role.CANDIDATE)
        ready = take(core)
        self.assertEqual(ready.hard_state, HardState(2, "a"))
        self.assertEqual(
            sorted(sent(ready, RequestVote, persisted=True)),
            [(p, RequestVote(2, "a", 1, 1)) for p in "bc"],
        )

    def test_check_quorum_steps_down(self) -> None:
        """
        Thesis 6.2: "a leader ... steps down if an election timeout elapses
        without a successful round of heartbeats to a majority of its
        cluster."  It keeps its term (it saw no newer one) and reports the
        event; a leader that hears from a majority stays.
        """
        net = Network("abc")
        a = net.elect("a")
        term = a.term
        net.isolate("c")
        net.tick(times=5 * E)
        self.assertIs(a.role, Role.LEADER)
        net.isolate("a")
        ticks = 0
        while a.role is Role.LEADER and ticks < 3 * E:
            net.tick("a")
            ticks += 1
        self.assertTrue(E <= ticks <= 2 * E, ticks)
        self.assertEqual((a.role, a.term, a.leader_id), (Role.FOLLOWER, term, None))
        self.assertIn(("lost_quorum", str(term)), net.events["a"])

    def test_leader_lease_ignores_votes(self) -> None:
        """
        Thesis 4.2.3: "if a server receives a RequestVote request within the
        minimum election timeout of hearing from a current leader, it does
        not update its term or grant its vote" (no answer at all) -- unless
        the request says it comes from a leadership transfer.  Once the
        lease has run out the vote is granted.
        """
        net = Network("abc")
        net.elect("a")
        net.tick(times=2)
        b = net["b"]
        term = b.term
        up_to_date = (b.log.last_index, b.log.last_term)
        b.step(RequestVote(term + 1, "c", *up_to_date))
        self.assertIsNone(b.take_ready())
        self.assertEqual((b.term, b.voted_for, b.leader_id), (term, "a", "a"))
        net["a"].step(RequestVote(term + 1, "c", *up_to_date))
        self.assertIs(net["a"].role, Role.LEADER)

        b.step(RequestVote(term + 1, "c", *up_to_date, transfer=True))
        [(_, answer)] = sent(take(b), RequestVoteResponse)
        self.assertTrue(answer.granted)
        self.assertEqual(b.hard_state(), HardState(term + 1, "c"))

        net = Network("abc")
        net.elect("a")
        net.tick(times=2)
        b = net["b"]
        for _ in range(E):
            b.tick()
        drain(b)
        b.step(RequestVote(term + 1, "c", *up_to_date))
        [(_, answer)] = sent(take(b), RequestVoteResponse)
        self.assertTrue(answer.granted)


# -- thesis 6.4 ------------------------------------------------------------------


class ReadIndexTests(SynchronousTestCase):
    """
    Thesis 6.4, "Processing read-only queries more efficiently".
    """

    def test_read_waits_for_commit_in_term(self) -> None:
        """
        "If the leader has not yet marked an entry from its current term
        committed, it waits until it has done so": no heartbeat round and
        no read state until the NOOP commits.
        """
        core = new_core()
        make_leader(core, "b")
        core.request_read(1)
        ready = core.take_ready()
        self.assertTrue(ready is None or not sent(ready, Heartbeat))
        ack(core, "b", core.log.last_index)
        ready = take(core)
        beats = sent(ready, Heartbeat, persisted=False)
        self.assertEqual(sorted(to for to, _ in beats), ["b", "c"])
        ctx = beats[0][1].read_ctx
        self.assertGreater(ctx, 0)
        self.assertEqual(ready.read_states, ())
        core.step(HeartbeatResponse(core.term, "c", ctx))
        self.assertEqual(take(core).read_states, (ReadState(1, core.commit_index),))

    def test_reads_share_one_heartbeat_round(self) -> None:
        """
        Thesis 6.4: "the leader can amortize the cost of confirming its
        leadership: it can use a single round of heartbeats for any number
        of read-only queries that it has accumulated": reads arriving in one
        turn are
        confirmed by a single Heartbeat per follower, with one read context,
        and all become ready with the same index.
        """
        core = leader_core()
        for rid in (1, 2, 3):
            core.request_read(rid)
        ready = take(core)
        beats = sent(ready, Heartbeat)
        self.assertEqual(sorted(to for to, _ in beats), ["b", "c"])
        [ctx] = {m.read_ctx for _, m in beats}
        core.step(HeartbeatResponse(core.term, "b", ctx))
        index = core.commit_index
        self.assertEqual(take(core).read_states, tuple(ReadState(rid, index) for rid in (1, 2, 3)))

    def test_read_needs_majority(self) -> None:
        """
        "It issues a new round of heartbeats and waits for their
        acknowledgments from a majority of the cluster": in five servers one acknowledgement is not enough, a
        second is; acknowledgements of an older read context, of plain
        heartbeats and from a learner do not count.
        """
        core = leader_core("a", ("a", "b", "c", "d", "e"))
        core.request_read(1)
        ready = take(core)
        [ctx] = {m.read_ctx for _, m in sent(ready, Heartbeat)}
        core.step(HeartbeatResponse(core.term, "b", ctx))
        core.step(HeartbeatResponse(core.term, "c", 0))
        core.step(HeartbeatResponse(core.term, "d", ctx - 1))
        core.step(HeartbeatResponse(core.term, "b", ctx))
        self.assertIsNone(core.take_ready())
        core.step(HeartbeatResponse(core.term, "e", ctx + 5))
        self.assertEqual(take(core).read_states, (ReadState(1, core.commit_index),))

    def test_read_index_is_commit_at_flush(self) -> None:
        """
        "The leader ... save[s] its current commit index in a local
        variable readIndex": entries committed while the heartbeat round is
        in flight do not raise the read index.
        """
        core = leader_core()
        core.request_read(1)
        read_index = core.commit_index
        ready = take(core)
        [ctx] = {m.read_ctx for _, m in sent(ready, Heartbeat)}
        core.propose([b"x"])
        persist(core, take(core))
        ack(core, "b", core.log.last_index)
        self.assertGreater(core.commit_index, read_index)
        core.step(HeartbeatResponse(core.term, "b", ctx))
        self.assertEqual(take(core).read_states, (ReadState(1, read_index),))

    def test_later_round_confirms_earlier(self) -> None:
        """
        A heartbeat acknowledged for a later read round also confirms the
        earlier rounds, which are released in order.
        """
        core = leader_core()
        core.request_read(1)
        first = take(core)
        core.request_read(2)
        second = take(core)
        [ctx1] = {m.read_ctx for _, m in sent(first, Heartbeat)}
        [ctx2] = {m.read_ctx for _, m in sent(second, Heartbeat)}
        self.assertGreater(ctx2, ctx1)
        core.step(HeartbeatResponse(core.term, "c", ctx2))
        self.assertEqual([rs.request_id for rs in take(core).read_states], [1, 2])

    def test_follower_read(self) -> None:
        """
        Thesis 6.4: "followers could help offload the processing of
        read-only queries ... the follower would issue a request to the
        leader that just asked for a current readIndex": the follower's
        request reaches the leader, which confirms its leadership and
        answers; the follower turns the answer into a read state.
        """
        net = Network("abc")
        a = net.elect("a")
        net.tick(times=2)
        net.clear_history()
        net["b"].request_read(42)
        net["b"].request_read(43)
        net.settle()
        [request] = net.sent(ReadIndexRequest, "b", "a")
        self.assertEqual((request.term, request.sender), (a.term, "b"))
        self.assertEqual(
            net.sent(ReadIndexResponse, "a", "b"),
            [ReadIndexResponse(a.term, "a", request.request_id, a.commit_index, True)],
        )
        self.assertEqual(
            net.read_states["b"], [ReadState(42, a.commit_index), ReadState(43, a.commit_index)]
        )

    def test_follower_read_answers_only_its_batches(self) -> None:
        """
        A follower's reads of one turn travel as one request named by a
        batch id; an answer for a batch it does not know (a duplicate, or
        one it gave up on) is ignored, and a refusal fails every read of
        the batch.
        """
        b = new_core("b")
        b.step(Heartbeat(1, "a", 0))
        take(b)
        b.request_read(7)
        b.request_read(8)
        [(to, request)] = sent(take(b), ReadIndexRequest)
        self.assertEqual(to, "a")
        b.step(ReadIndexResponse(1, "a", request.request_id + 1, 5, True))
        self.assertIsNone(b.take_ready())
        refusal = ReadIndexResponse(1, "a", request.request_id, 0, False)
        b.step(refusal)
        ready = take(b)
        self.assertEqual((ready.failed_reads, ready.read_states), ((7, 8), ()))
        b.step(refusal)
        self.assertIsNone(b.take_ready())

    def test_stepping_down_fails_reads(self) -> None:
        """
        A leader that steps down before confirming its leadership fails
        every pending read: its own at once, a follower's with an
        unsuccessful answer, so that the reads are retried elsewhere.
        """
        core = leader_core()
        core.request_read(1)
        core.step(ReadIndexRequest(core.term, "b", 9))
        take(core)
        core.request_read(2)
        core.step(AppendEntriesResponse(core.term + 1, "c", False, 0))
        ready = take(core)
        self.assertEqual(sorted(ready.failed_reads), [1, 2])
        self.assertEqual(
            sent(ready, ReadIndexResponse),
            [("b", ReadIndexResponse(core.term, "a", 9, 0, False))],
        )
        self.assertEqual(ready.read_states, ())

    def test_reads_waiting_for_commit_fail_on_step_down(self) -> None:
        """
        Reads still waiting for the leader's first commit are failed too.
        """
        core = new_core()
        make_leader(core, "b")
        core.request_read(5)
        drain(core)
        core.step(Heartbeat(core.term + 1, "c", 0))
        self.assertEqual(take(core).failed_reads, (5,))

    def test_no_leader_fails_read_at_once(self) -> None:
        """
        A follower that knows no leader cannot ask anyone: the read fails
        in the next ready, without a message.
        """
        core = new_core("b")
        core.request_read(3)
        ready = take(core)
        self.assertEqual(ready.failed_reads, (3,))
        self.assertEqual(messages_of(ready), [])

    def test_single_voter_reads_immediately(self) -> None:
        """
        A leader that is the only voter needs no heartbeat round.
        """
        core = leader_core("a", ("a",))
        core.request_read(4)
        ready = take(core)
        self.assertEqual(ready.read_states, (ReadState(4, core.commit_index),))
        self.assertEqual(messages_of(ready), [])


# -- thesis 4.1 ------------------------------------------------------------------


class MembershipTests(SynchronousTestCase):
    """
    Thesis 4.1, "Safety" of single-server membership changes, and 4.2.
    """

    def test_configuration_takes_effect_when_appended(self) -> None:
        """
        Thesis 4.1: "a server always uses the latest configuration in its
        log, regardless of whether the entry is committed": on the leader as
        soon as it appends the change, on a follower as soon as it receives
        it, before either commits it.
        """
        core = leader_core()
        index, _ = core.change_membership(MembershipOp.ADD_LEARNER, member("d"))
        self.assertEqual(core.configuration.ids(), {"a", "b", "c", "d"})
        self.assertLess(core.commit_index, index)
        ready = take(core)
        assert ready.configuration is not None
        self.assertEqual(ready.configuration.ids(), {"a", "b", "c", "d"})
        self.assertLessEqual({"b", "c"}, {to for to, _ in sent(ready, AppendEntries)})
        self.assertIsNotNone(core.progress_of("d"))

        follower = new_core("b", term=2)
        entry = core.log.entry(index)
        follower.step(AppendEntries(2, "a", 1, 1, (normal(2, 2), entry), 0))
        self.assertEqual(follower.configuration.ids(), {"a", "b", "c", "d"})
        self.assertEqual(follower.commit_index, 0)
        self.assertIsNotNone(take(follower).configuration)

    def test_truncated_configuration_reverts(self) -> None:
        """
        Thesis 4.1: "a log entry for a configuration change can be removed
        (if there are leadership changes); in this case, a server must be
        prepared to fall back to the previous configuration in its log."
        """
        follower = new_core("b", term=2)
        change = config_entry(2, 2, configuration("a", "b", "c", learners="d"))
        follower.step(AppendEntries(2, "a", 1, 1, (change,), 0))
        drain(follower)
        self.assertIn("d", follower.configuration.ids())
        follower.step(AppendEntries(3, "c", 1, 1, (normal(2, 3),), 0))
        self.assertEqual(follower.configuration, ABC)
        ready = take(follower)
        self.assertEqual(ready.configuration, ABC)
        self.assertEqual(follower.configuration_at(2), ABC)

    def test_one_change_at_a_time(self) -> None:
        """
        Thesis 4.1: single-server changes are safe only one at a time; the
        leader starts no change while a previous one is uncommitted.
        """
        core = leader_core()
        index, _ = core.change_membership(MembershipOp.ADD_LEARNER, member("d"))
        persist(core, take(core))
        self.assertRaises(
            ConfigurationChangeError,
            core.change_membership,
            MembershipOp.ADD_LEARNER,
            member("e"),
        )
        ack(core, "b", index)
        self.assertEqual(core.commit_index, index)
        core.change_membership(MembershipOp.ADD_LEARNER, member("e"))
        self.assertEqual(core.configuration.ids(), set("abcde"))

    def test_change_before_commit_in_term_refused(self) -> None:
        """
        Thesis 4.1 (the bug found in single-server changes): "a leader may
        not append a new configuration entry until it has committed an entry
        from its current term."
        """
        core = new_core()
        make_leader(core, "b")
        self.assertRaises(
            ConfigurationChangeError,
            core.change_membership,
            MembershipOp.ADD_LEARNER,
            member("d"),
        )
        self.assertEqual(core.configuration, ABC)
        ack(core, "b", core.log.last_index)
        core.change_membership(MembershipOp.ADD_LEARNER, member("d"))

    def test_invalid_changes_refused(self) -> None:
        """
        Adding a member twice, promoting a voter or an unknown server,
        removing an unknown server or the last voter are refused before
        anything is appended; a follower refuses with L{NotLeader}.
        """
        core = leader_core()
        last = core.log.last_index
        for op, who in (
            (MembershipOp.ADD_LEARNER, "b"),
            (MembershipOp.PROMOTE, "b"),
            (MembershipOp.PROMOTE, "z"),
            (MembershipOp.REMOVE, "z"),
        ):
            self.assertRaises(ConfigurationChangeError, core.change_membership, op, member(who))
        self.assertEqual(core.log.last_index, last)
        alone = leader_core("a", ("a",))
        self.assertRaises(
            ConfigurationChangeError, alone.change_membership, MembershipOp.REMOVE, member("a")
        )
        self.assertRaises(
            NotLeader, new_core("b").change_membership, MembershipOp.REMOVE, member("c")
        )

    def test_learner_replicates_but_neither_votes_nor_counts(self) -> None:
        """
        Thesis 4.2.1: a non-voting member is one to which "the leader
        replicates log entries ..., but it is not yet counted towards
        majorities for the purpose of voting or commitment": its log follows the
        leader's, candidates do not ask it for votes, its votes and
        acknowledgements do not count, and it never campaigns.
        """
        config = configuration("a", "b", "c", learners=["d"])
        net = Network("abcd", config=config)
        a = net.elect("a")
        self.assertEqual(net.sent(RequestVote, target="d"), [])
        net.propose("a", b"x")
        net.tick(times=2)
        self.assertEqual(entries_of(net["d"]), entries_of(a))
        self.assertEqual(net["d"].commit_index, a.commit_index)

        committed = a.commit_index
        net.isolate("b", "c")
        [(index, _)] = net.propose("a", b"y")
        self.assertEqual(net["d"].log.last_index, index)
        self.assertEqual(a.commit_index, committed)

        net.heal()
        net.isolate("d")
        for _ in range(6 * E):
            net.tick("d")
        self.assertIs(net["d"].role, Role.FOLLOWER)
        self.assertEqual([m for s, _, m in net.dropped if s == "d"], [])

        candidate = new_core("a", log=[config_entry(1, 1, config)], pre_vote=False)
        time_out(candidate)
        candidate.step(RequestVoteResponse(candidate.term, "d", True))
        self.assertIs(candidate.role, Role.CANDIDATE)

    def test_promote_refused_until_caught_up(self) -> None:
        """
        Thesis 4.2.1: a new server joins as a non-voting member until it has
        caught up; promoting it earlier is refused, and once it
        matches the leader it becomes a voter that counts for commitment.
        """
        net = Network("abc", settings=core_settings(promote_max_lag=0))
        a = net.elect("a")
        net.add("d")
        net.isolate("d")
        net.tick(times=2)
        index, _ = a.change_membership(MembershipOp.ADD_LEARNER, member("d"))
        net.settle()
        self.assertEqual(a.commit_index, index)
        self.assertRaises(
            ConfigurationChangeError, a.change_membership, MembershipOp.PROMOTE, member("d")
        )
        net.heal()
        net.tick(times=3)
        self.assertEqual(net["d"].log.last_index, a.log.last_index)
        index, _ = a.change_membership(MembershipOp.PROMOTE, member("d"))
        net.settle()
        self.assertEqual(a.configuration.voters(), {"a", "b", "c", "d"})
        self.assertEqual(a.commit_index, index)
        net.isolate("b", "c")
        [(index, _)] = net.propose("a", b"x")
        self.assertLess(a.commit_index, index)

    def test_removed_leader_steps_down_after_commit(self) -> None:
        """
        Thesis 4.2.2: a leader removed from the configuration steps down once
        the entry removing it is committed; until then it manages the
        cluster without counting itself in majorities.
        """
        net = Network("abc")
        a = net.elect("a")
        net.tick(times=2)
        net.isolate("c")
        index, _ = a.change_membership(MembershipOp.REMOVE, member("a"))
        net.settle()
        self.assertEqual(net["b"].log.last_index, index)
        self.assertEqual(a.stable_index, index)
        self.assertIs(a.role, Role.LEADER)
        self.assertLess(a.commit_index, index)
        net.heal()
        for _ in range(E):
            net.tick("a")
            if a.role is not Role.LEADER:
                break
        self.assertEqual(a.commit_index, index)
        self.assertIs(a.role, Role.FOLLOWER)
        self.assertIn(("removed", "a", str(a.term)), net.events["a"])
        for _ in range(6 * E):
            net.tick()
        [leader] = net.leaders()
        self.assertIn(leader, ("b", "c"))
        self.assertIs(a.role, Role.FOLLOWER)


# -- thesis 3.10 -----------------------------------------------------------------


class TransferTests(SynchronousTestCase):
    """
    Thesis 3.10, "Leadership transfer extension".
    """

    def test_transfer(self) -> None:
        """
        Thesis 3.10: "the prior leader sends its log entries to the target
        server ... [then] sends a TimeoutNow request to the target server.
        This request has the same effect as the target server's election
        timer firing: the target server starts a new election."  The target
        is behind at first, so TimeoutNow waits until it is up to date; it
        campaigns at once (no pre-vote) with C{transfer=True} and wins even
        though the other voter is inside its leader lease.
        """
        net = Network("abc")
        a = net.elect("a")
        term = a.term
        net.isolate("b")
        [(last, _)] = net.propose("a", b"x")
        net.clear_history()
        self.assertEqual(a.transfer_leadership("b"), "b")
        net.settle()
        self.assertEqual(net.sent(TimeoutNow), [])
        self.assertRaises(LeadershipTransferInProgress, a.propose, [b"y"])
        net.heal()
        for _ in range(E - 1):
            net.tick("a")
            if net.sent(TimeoutNow):
                break
        self.assertEqual(net.sent(TimeoutNow, "a", "b"), [TimeoutNow(term, "a")])
        b = net["b"]
        self.assertEqual(
            net.sent(RequestVote, "b"),
            [RequestVote(term + 1, "b", last, term, transfer=True)] * 2,
        )
        self.assertEqual(net.leaders(), ["b"])
        self.assertEqual(b.term, term + 1)
        self.assertEqual(a.leader_id, "b")
        net.tick(times=2)
        self.assertEqual(net["c"].commit_index, b.log.last_index)

    def test_transfer_to_up_to_date_target_is_immediate(self) -> None:
        """
        A target that already matches gets TimeoutNow in the same ready,
        and C{None} picks the most up-to-date voter.
        """
        core = leader_core()
        core.propose([b"x"])
        ack(core, "c", core.log.last_index)
        drain(core)
        self.assertEqual(core.transfer_leadership(None), "c")
        self.assertEqual(sent(take(core), TimeoutNow), [("c", TimeoutNow(core.term, "a"))])

    def test_transfer_aborted_after_election_timeout(self) -> None:
        """
        Thesis 3.10: "If the transfer does not complete within about one
        election timeout, the prior leader aborts the transfer and resumes
        accepting client requests."
        """
        net = Network("abc")
        a = net.elect("a")
        net.isolate("b")
        a.transfer_leadership("b")
        for _ in range(E - 1):
            net.tick("a", "c")
        self.assertRaises(LeadershipTransferInProgress, a.propose, [b"y"])
        net.tick("a", "c")
        self.assertIn(("transfer_aborted", "b", str(a.term)), net.events["a"])
        self.assertIs(a.role, Role.LEADER)
        a.propose([b"y"])

    def test_transfer_refused(self) -> None:
        """
        Only a leader transfers, and only to another voter.
        """
        core = leader_core()
        for target in ("a", "z"):
            self.assertRaises(ConfigurationChangeError, core.transfer_leadership, target)
        self.assertRaises(NotLeader, new_core("b").transfer_leadership, "c")
        self.assertRaises(
            ConfigurationChangeError, leader_core("a", ("a",)).transfer_leadership, None
        )

    def test_successful_transfer_is_not_reported_aborted(self) -> None:
        """
        The C{transfer_aborted} event means the hand-over failed (the node
        logs "leadership transfer ... timed out" and fails the caller's
        Deferred on it).  A transfer that succeeded must not report it when
        the prior leader steps down for the new leader's term.
        """
        net = Network("abc")
        a = net.elect("a")
        a.transfer_leadership("b")
        net.settle()
        self.assertEqual(net.leaders(), ["b"])
        self.assertEqual([e for e in net.events["a"] if e[0] == "transfer_aborted"], [])


# -- paper 7 ---------------------------------------------------------------------


class SnapshotTests(SynchronousTestCase):
    """
    Paper 7, "Log compaction".
    """

    def test_lagging_follower_gets_snapshot(self) -> None:
        """
        Paper 7: "the leader must occasionally send snapshots to followers
        that lag behind ... when the leader has already discarded the next
        log entry that it needs to send to a follower."  The follower's
        progress goes to SNAPSHOT (no more appends) until the snapshot is
        acknowledged; a lost transfer is reported and retried; then the
        follower continues from the snapshot.
        """
        net = Network("abc")
        a = net.elect("a")
        net.tick(times=2)
        net.isolate("c")
        for i in range(20):
            net.propose("a", b"%d" % i)
        index = a.commit_index
        a.snapshot_taken(SnapshotMeta(index, a.term, a.configuration_at(index)))
        a.compact(index)
        self.assertEqual(a.log.offset, index)
        net.heal()
        net.drop = lambda s, t, m: isinstance(m, InstallSnapshot)
        sends: list[str] = []
        for _ in range(2 * E):
            net.tick()
            sends.extend(p for r in net.readies["a"] for p in r.snapshot_sends)
            if sends:
                break
        self.assertEqual(sends[:1], ["c"])
        pr = a.progress_of("c")
        assert pr is not None
        self.assertEqual(pr.state.value, "snapshot")
        net.clear_history()
        net.tick(times=3)
        self.assertEqual(net.sent(AppendEntries, "a", "c"), [])
        net.drop = None
        net.tick(times=3 * E)
        c = net["c"]
        self.assertEqual(c.snapshot.index, index)
        self.assertEqual(c.log.offset, index)
        self.assertEqual(c.log.last_index, a.log.last_index)
        self.assertEqual(c.commit_index, a.commit_index)
        self.assertEqual(c.configuration, a.configuration)
        [(new, _)] = net.propose("a", b"after")
        self.assertEqual(c.log.last_index, new)
        self.assertEqual(pr.state.value, "replicate")

    def test_install_snapshot_resets_log(self) -> None:
        """
        Paper 7: "If instead the follower receives a snapshot that ...
        contains new information not already in the recipient's log ... the
        follower discards its entire log; it is all superseded by the
        snapshot" -- also when it holds a different entry at the snapshot's
        index.  The answer waits for the snapshot's persistence.
        """
        for log in (log_of(ABC, 1, 1, 1), log_of(ABC, *[1] * 8)):
            core = new_core("b", log=log, term=2)
            new_config = configuration("a", "b", "c", learners="d")
            meta = SnapshotMeta(7, 2, new_config)
            self.assertTrue(core.install_snapshot("a", meta))
            self.assertEqual((core.log.offset, core.log.last_index, core.commit_index), (7, 7, 7))
            self.assertEqual(core.snapshot, meta)
            self.assertEqual(core.configuration, new_config)
            ready = take(core)
            self.assertEqual(ready.install_snapshot, meta)
            self.assertEqual(ready.committed, ())
            self.assertEqual(
                ready.persisted_messages,
                (("a", InstallSnapshotResponse(2, "b", 7, 0, True, True)),),
            )

    def test_install_snapshot_keeps_matching_suffix(self) -> None:
        """
        Paper 7: "If the follower receives a snapshot that describes a
        prefix of its log ..., then log entries covered by the snapshot are
        deleted but entries following the snapshot are still valid and must
        be retained."  Nothing is restored: the covered entries are simply
        committed and applied from the log.
        """
        core = new_core("b", log=log_of(ABC, *[1] * 11), term=1)
        meta = SnapshotMeta(10, 1, ABC)
        self.assertFalse(core.install_snapshot("a", meta))
        self.assertEqual((core.log.last_index, core.commit_index), (12, 10))
        ready = take(core)
        self.assertIsNone(ready.install_snapshot)
        self.assertEqual([e.index for e in ready.committed], list(range(1, 11)))
        [(_, answer)] = sent(ready, InstallSnapshotResponse)
        self.assertEqual((answer.done, answer.success, answer.last_index), (True, True, 10))

    def test_old_snapshot_answered_with_commit(self) -> None:
        """
        A snapshot at or below the commit index changes nothing and is
        answered with the commit index, so the leader resumes from there.
        """
        core = new_core("b", log=log_of(ABC, 1, 1, 1), term=1)
        core.step(AppendEntries(1, "a", 4, 1, (), 4))
        drain(core)
        self.assertFalse(core.install_snapshot("a", SnapshotMeta(3, 1, ABC)))
        [(_, answer)] = sent(take(core), InstallSnapshotResponse)
        self.assertEqual((answer.last_index, answer.done), (4, True))
        self.assertEqual(core.log.last_index, 4)

    def test_compaction_keeps_configuration_at(self) -> None:
        """
        Compaction forgets entries, but not which configuration was in force
        at the indexes that remain or at the snapshot; it never compacts
        past the snapshot or what was handed out for applying.
        """
        first = ABC
        second = configuration("a", "b", "c", learners="d")
        log = [config_entry(1, 1, first), normal(2, 1), normal(3, 1), normal(4, 1)]
        log += [config_entry(5, 1, second), normal(6, 1), normal(7, 1), normal(8, 1)]
        core = new_core("b", log=log, term=1)
        core.step(AppendEntries(1, "a", 8, 1, (), 6))
        drain(core)
        core.compact(6)
        self.assertEqual(core.log.offset, 0)
        core.snapshot_taken(SnapshotMeta(6, 1, second))
        core.compact(8)
        self.assertEqual((core.log.offset, core.log.offset_term), (6, 1))
        self.assertIsNone(core.log.term_at(5))
        for index in (6, 7, 8):
            self.assertEqual(core.configuration_at(index), second)
        self.assertEqual(core.configuration, second)

        core = new_core("b", log=log, term=1)
        core.step(AppendEntries(1, "a", 8, 1, (), 8))
        drain(core)
        core.snapshot_taken(SnapshotMeta(8, 1, second))
        core.compact(3)
        self.assertEqual(core.log.offset, 3)
        self.assertEqual(core.configuration_at(3), first)
        self.assertEqual(core.configuration_at(4), first)
        self.assertEqual(core.configuration_at(5), second)

    def test_restart_from_snapshot(self) -> None:
        """
        A core built from a snapshot and the entries after it takes its
        commit index and configuration from the snapshot and knows the term
        at the snapshot's index.
        """
        meta = SnapshotMeta(5, 2, configuration("a", "b", "c", learners="d"))
        core = RaftCore(
            "b", hard_state=HardState(3, None), snapshot=meta, entries=[normal(6, 3), normal(7, 3)]
        )
        self.assertEqual((core.commit_index, core.log.offset, core.log.term_at(5)), (5, 5, 2))
        self.assertEqual(core.configuration, meta.configuration)
        self.assertRaises(ValueError, RaftCore, "b", snapshot=meta, entries=[normal(7, 3)])


# -- persistence -----------------------------------------------------------------


class PersistenceTests(SynchronousTestCase):
    """
    How disk completions and failures feed back into the core.
    """

    def test_on_persisted_ignored_after_truncation(self) -> None:
        """
        etcd's C{stableTo}: a completion for C{(index, term)} is ignored when
        the log no longer holds that entry, so a leader cannot count itself
        for an entry it replaced before the write finished.
        """
        core = new_core("b", term=2)
        core.step(AppendEntries(2, "a", 1, 1, (normal(2, 2), normal(3, 2)), 0))
        first = take(core)
        self.assertEqual(first.persist_mark, (3, 2))
        core.step(AppendEntries(3, "c", 1, 1, (normal(2, 3),), 0))
        second = take(core)
        self.assertEqual(second.persist_mark, (2, 3))
        core.on_persisted(3, 2)
        self.assertEqual(core.stable_index, 1)
        core.on_persisted(2, 2)
        self.assertEqual(core.stable_index, 1)
        core.on_persisted(2, 3)
        self.assertEqual(core.stable_index, 2)
        core.on_persisted(1, 1)
        self.assertEqual(core.stable_index, 2)

    def test_on_persist_failed_rewrites(self) -> None:
        """
        After a failed write the next ready carries again every entry not
        known durable and the hard state, but not what was durable before.
        """
        core = new_core("b", term=1)
        core.step(AppendEntries(2, "a", 1, 1, (normal(2, 2),), 0))
        persist(core, take(core))
        core.step(AppendEntries(2, "a", 2, 2, (normal(3, 2), normal(4, 2)), 0))
        failed = take(core)
        core.on_persist_failed()
        again = take(core)
        self.assertEqual(again.entries, failed.entries)
        self.assertEqual(again.entries, (normal(3, 2), normal(4, 2)))
        self.assertEqual(again.hard_state, HardState(2, None))
        self.assertEqual(again.persist_mark, (4, 2))
        self.assertEqual(again.persisted_messages, ())
        persist(core, again)
        self.assertEqual(core.stable_index, 4)
        self.assertIsNone(core.take_ready())

    def test_bootstrap(self) -> None:
        """
        Bootstrap writes the configuration as entry 1 of term 1, only on an
        empty log; the other servers learn it from the first leader.
        """
        net = Network()
        for node in "abc":
            net.add(node)
        net["a"].bootstrap(ABC)
        self.assertRaises(ValueError, net["a"].bootstrap, ABC)
        net.collect("a")
        self.assertEqual(net.disks["a"].hard_state, HardState(1, None))
        self.assertEqual(net.disks["a"].entries, [config_entry(1, 1, ABC)])
        net.elect("a")
        net.tick(times=2)
        for node in "bc":
            self.assertEqual(net[node].configuration, ABC)
            self.assertEqual(net[node].commit_index, 2)


# -- the role table --------------------------------------------------------------


class RoleTableTests(SynchronousTestCase):
    """
    The role state machine: a complete transition table, enforced.
    """

    def test_table_complete(self) -> None:
        """
        Every role has a row, every target is a role, every role can return
        to follower, and a leader can only become a follower.
        """
        self.assertEqual(set(ROLE_TRANSITIONS), set(Role))
        for role, targets in ROLE_TRANSITIONS.items():
            self.assertTrue(targets <= set(Role))
            self.assertIn(Role.FOLLOWER, targets, role)
        self.assertEqual(ROLE_TRANSITIONS[Role.LEADER], frozenset({Role.FOLLOWER}))
        self.assertEqual([r for r in Role if Role.LEADER in ROLE_TRANSITIONS[r]], [Role.CANDIDATE])

    def test_every_pair_enforced(self) -> None:
        """
        All sixteen role pairs: a pair in the table is allowed, any other
        raises L{IllegalTransition} before the role changes or an event is
        recorded.
        """
        for source in Role:
            for target in Role:
                core = new_core()
                core.role = source
                if target in ROLE_TRANSITIONS[source]:
                    core._set_role(target)
                    self.assertIs(core.role, target)
                else:
                    self.assertRaises(IllegalTransition, core._set_role, target)
                    self.assertIs(core.role, source)
                    self.assertIsNone(core.take_ready())

    def test_role_events_carry_term_of_new_role(self) -> None:
        """
        A C{("role", role, term)} event names the term the server holds the
        new role in (the node logs it as "became <role> in term <term>"): a
        candidate's new term, and the newer term that deposed a leader.
        """
        core = new_core(pre_vote=False)
        time_out(core)
        self.assertEqual(core.term, 2)
        self.assertIn(("role", "Candidate", "2"), take(core).events)
        leader = leader_core()
        leader.step(AppendEntriesResponse(leader.term + 3, "b", False, 0))
        self.assertEqual(leader.term, 5)
        self.assertIn(("role", "Follower", "5"), take(leader).events)

    def test_diagram_matches_table(self) -> None:
        """
        C{docs/state-machines/raft-role.dot} draws exactly the table's
        edges.
        """
        root = pathlib.Path(raft3d.__file__).resolve().parent.parent
        dot = (root / "docs" / "state-machines" / "raft-role.dot").read_text()
        names = {r.value: r for r in Role}
        edges = {(names[a], names[b]) for a, b in re.findall(r"(\w+)\s*->\s*(\w+)", dot)}
        table = {(a, b) for a, targets in ROLE_TRANSITIONS.items() for b in targets}
        self.assertEqual(edges, table)


# -- properties ------------------------------------------------------------------

_OPS = (
    # (operation, weight in percent)
    ("tick", 16),
    ("tick_all", 14),
    ("deliver", 34),
    ("read", 3),
    ("drop", 3),
    ("isolate", 3),
    ("heal", 5),
    ("propose", 12),
    ("hold", 5),
    ("crash", 2),
    ("settle", 3),
)
_OP_TABLE = [name for name, weight in _OPS for _ in range(weight)]
assert len(_OP_TABLE) == 100

_schedule = st.lists(
    st.tuples(st.integers(0, 99).map(_OP_TABLE.__getitem__), st.integers(0, 1000)),
    min_size=200,
    max_size=500,
)


class SafetyPropertyTests(SynchronousTestCase):
    """
    Figure 3's guarantees under random schedules of ticks, deliveries in
    any order, losses, partitions, slow disks, crashes and proposals.
    """

    def check(self, net: Network, state: dict[str, dict[int, Any]]) -> None:
        leaders, committed, commit_term = state["leaders"], state["committed"], state["terms"]
        for node in net.live():
            core = net[node]
            if core.role is Role.LEADER:
                self.assertEqual(
                    leaders.setdefault(core.term, node), node, f"two leaders in {core.term}"
                )
                for index in range(1, core.commit_index + 1):
                    commit_term[index] = min(commit_term.get(index, core.term), core.term)
        for node, applied in net.applied.items():
            for index, entry in applied.items():
                self.assertEqual(committed.setdefault(index, entry), entry, f"{node} at {index}")
        for node in net.live():
            core = net[node]
            if core.role is not Role.LEADER:
                continue
            for index, entry in committed.items():
                if commit_term.get(index, core.term) < core.term and index > core.log.offset:
                    self.assertEqual(core.log.term_at(index), entry.term, "leader completeness")

    def check_reads(self, net: Network, reads: dict[tuple[str, int], int]) -> None:
        """
        Thesis 6.4: a read index is at least the commit index any server had
        reached when the read was requested (linearizability).
        """
        for node, states in net.read_states.items():
            for rs in states:
                if (node, rs.request_id) in reads:
                    self.assertGreaterEqual(rs.index, reads[node, rs.request_id], "stale read")
            states.clear()

    def check_log_matching(self, net: Network) -> None:
        cores = [net[n] for n in net.live()]
        for one in cores:
            for two in cores:
                top = min(one.log.last_index, two.log.last_index)
                same = [
                    i
                    for i in range(1, top + 1)
                    if one.log.term_at(i) is not None and one.log.term_at(i) == two.log.term_at(i)
                ]
                if same:
                    self.assertEqual(one.log.slice(1, same[-1]), two.log.slice(1, same[-1]))

    @settings(max_examples=60, derandomize=True, database=None, deadline=None)
    @given(st.sampled_from([3, 5]), st.booleans(), _schedule)
    def test_random_schedules(self, size: int, pre_vote: bool, ops: list[tuple[str, int]]) -> None:
        """
        Election safety ("at most one leader can be elected in a given
        term"), state machine safety ("if a server has applied a log entry
        at a given index to its state machine, no other server will ever
        apply a different log entry for the same index"), leader
        completeness, log matching, linearizable read indexes, and -- once
        the faults heal -- that a
        leader is elected and commits a new entry on every server.
        """
        ids = [f"n{i}" for i in range(size)]
        net = Network(
            ids,
            seed=size,
            settings=core_settings(
                election_ticks=4, pre_vote=pre_vote, max_inflight=4, max_append_bytes=80
            ),
        )
        state: dict[str, dict[int, Any]] = {"leaders": {}, "committed": {}, "terms": {}}
        proposals = 0
        reads: dict[tuple[str, int], int] = {}
        for op, arg in ops:
            node = ids[arg % size]
            if op == "tick":
                net.tick_node(node)
            elif op == "tick_all":
                for each in net.live():
                    net.tick_node(each)
            elif op in ("deliver", "drop") and net.queue:
                item = net.queue[arg % len(net.queue)]
                del net.queue[arg % len(net.queue)]
                if op == "deliver":
                    net.deliver(item)
            elif op == "isolate":
                net.isolate(node)
            elif op == "heal":
                net.heal()
                for each in sorted(net.held):
                    net.release(each)
            elif op == "propose":
                for leader in net.leaders():
                    proposals += 1
                    try:
                        net[leader].propose([b"p%d" % proposals])
                    except RaftError:
                        pass
                    net.collect(leader)
            elif op == "hold":
                if node in net.held:
                    net.release(node)
                else:
                    net.hold(node)
            elif op == "crash":
                if node in net.crashed:
                    net.restart(node)
                elif len(net.crashed) < (size - 1) // 2:
                    net.crash(node)
            elif op == "settle":
                net.settle()
            elif op == "read" and node not in net.crashed:
                # A read must reflect every entry committed before it began.
                rid = len(reads) + 1
                reads[node, rid] = max(net[n].commit_index for n in net.live())
                net[node].request_read(rid)
                net.collect(node)
            self.check(net, state)
            self.check_reads(net, reads)
        self.check_log_matching(net)
        event(f"leaders elected under faults: {min(len(state['leaders']), 3)}+")
        event(f"entries committed under faults: {'yes' if state['committed'] else 'no'}")

        net.heal()
        for node in sorted(net.crashed):
            net.restart(node)
        for node in sorted(net.held):
            net.release(node)
        for _ in range(20 * E):
            net.tick()
            self.check(net, state)
            if net.leaders():
                break
        leaders = net.leaders()
        self.assertEqual(len(leaders), 1)
        [(index, _)] = net.propose(leaders[0], b"final")
        for _ in range(5 * E):
            net.tick()
            if all(net[node].commit_index >= index for node in ids):
                break
        self.check(net, state)
        self.check_log_matching(net)
        for node in ids:
            self.assertGreaterEqual(net[node].commit_index, index, node)
