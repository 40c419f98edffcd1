# -*- test-case-name: tests.raft.test_core -*-
"""
The Raft consensus core: a deterministic state machine with no I/O.

The driver feeds it ticks (L{RaftCore.tick}), peer messages
(L{RaftCore.step}), proposals and disk completions, then collects the work
to do with L{RaftCore.take_ready}: hard state and entries to persist,
messages to send now, messages to send only once that persistence is
durable, committed entries to apply, read indexes that became safe.  This is
the shape of etcd/raft's C{Ready}; it is what lets the simulation in
C{tests/raft} run thousands of seeded fault schedules in one process.

Section numbers refer to the Raft paper (Ongaro & Ousterhout, 2014) and to
Ongaro's thesis (2014).
"""

from __future__ import annotations

import enum
import random
from typing import Callable

import attrs
import cbor2

from ._interfaces import (
    ConfigurationChangeError,
    LeadershipTransferInProgress,
    NotLeader,
)
from ._log import RaftLog
from ._messages import (
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    ReadIndexRequest,
    ReadIndexResponse,
    RequestVote,
    RequestVoteResponse,
    TimeoutNow,
)
from ._progress import Progress, ProgressState
from ._types import (
    Configuration,
    Entry,
    EntryType,
    HardState,
    Member,
    SnapshotMeta,
)


class Role(enum.Enum):
    """
    The roles of a server (paper 5.1) plus the pre-candidate of thesis 9.6.
    """

    FOLLOWER = "Follower"
    PRE_CANDIDATE = "PreCandidate"
    CANDIDATE = "Candidate"
    LEADER = "Leader"


ROLE_TRANSITIONS: dict[Role, frozenset[Role]] = {
    Role.FOLLOWER: frozenset({Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE}),
    Role.PRE_CANDIDATE: frozenset({Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE}),
    Role.CANDIDATE: frozenset({Role.FOLLOWER, Role.PRE_CANDIDATE, Role.CANDIDATE, Role.LEADER}),
    Role.LEADER: frozenset({Role.FOLLOWER}),
}
"""
The complete role transition table; see C{docs/state-machines/raft-role.dot}.
A transition missing here is a bug and raises before any state changes.
"""


class IllegalTransition(AssertionError):
    """
    The core tried a role change that the transition table forbids.
    """


class MembershipOp(enum.Enum):
    ADD_LEARNER = "add_learner"
    PROMOTE = "promote"
    REMOVE = "remove"


@attrs.frozen
class CoreSettings:
    """
    Tuning of the core, in ticks and sizes.

    @ivar election_ticks: minimum election timeout; each node draws its
        timeout from C{[election_ticks, 2 * election_ticks)}.
    @ivar heartbeat_ticks: interval between leader heartbeats.
    @ivar max_inflight: AppendEntries batches in flight per follower.
    @ivar max_append_bytes: payload bytes per AppendEntries.
    @ivar promote_max_lag: how far behind the leader's last index a learner
        may be and still be promoted.
    """

    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_inflight: int = 64
    max_append_bytes: int = 1 << 20
    pre_vote: bool = True
    check_quorum: bool = True
    promote_max_lag: int = 256


@attrs.frozen
class ReadState:
    """
    A read request became safe to serve once C{index} is applied.
    """

    request_id: int
    index: int


@attrs.frozen
class Ready:
    """
    The work the driver must do, collected since the last L{take_ready}.

    Order matters: send C{messages} at once; if C{install_snapshot} is set,
    restore the state machine from the received snapshot and persist it;
    persist C{hard_state} and C{entries}; once that is durable send
    C{persisted_messages} and report C{persist_mark} with
    L{RaftCore.on_persisted}.  C{committed} may be applied at once.
    """

    hard_state: HardState | None
    entries: tuple[Entry, ...]
    persist_mark: tuple[int, int] | None
    messages: tuple[tuple[str, Message], ...]
    persisted_messages: tuple[tuple[str, Message], ...]
    committed: tuple[Entry, ...]
    read_states: tuple[ReadState, ...]
    failed_reads: tuple[int, ...]
    snapshot_sends: tuple[str, ...]
    snapshot_chunks: tuple[InstallSnapshot, ...]
    install_snapshot: SnapshotMeta | None
    configuration: Configuration | None
    events: tuple[tuple[str, ...], ...]


def encode_configuration(configuration: Configuration) -> bytes:
    return cbor2.dumps(configuration.to_wire())


def decode_configuration(data: bytes) -> Configuration:
    return Configuration.from_wire(cbor2.loads(data))


@attrs.define
class _ReadBatch:
    """
    Read requests waiting for one heartbeat round to confirm leadership.
    """

    ctx: int
    index: int
    requests: list[tuple[str | None, int]]
    acks: set[str]


_MAX_FOLLOWER_READ_BATCHES = 4096
"""
How many unanswered read batches a follower remembers.
"""


class RaftCore:
    """
    One server's consensus state.  Single-threaded, no I/O, no clock: time
    passes only through L{tick}, randomness only through the given C{rng}.
    """

    def __init__(
        self,
        node_id: str,
        *,
        settings: CoreSettings | None = None,
        rng: random.Random | None = None,
        hard_state: HardState | None = None,
        snapshot: SnapshotMeta | None = None,
        entries: tuple[Entry, ...] | list[Entry] = (),
    ) -> None:
        self.node_id = node_id
        self.settings = settings or CoreSettings()
        self._rng = rng or random.Random()
        hard_state = hard_state or HardState()
        self.term = hard_state.term
        self.voted_for = hard_state.voted_for
        self._persisted_hard_state = hard_state
        self.role = Role.FOLLOWER
        self.leader_id: str | None = None

        self.snapshot = snapshot or SnapshotMeta(0, 0, Configuration())
        if entries:
            offset = entries[0].index - 1
            if offset > self.snapshot.index:
                raise ValueError("log starts after the snapshot: entries are missing")
            offset_term: int | None
            if offset == self.snapshot.index:
                offset_term = self.snapshot.term
            elif offset == 0:
                offset_term = 0
            else:
                offset_term = None
            self.log = RaftLog(offset, offset_term, entries)
            if self.log.last_index < self.snapshot.index:
                self.log.reset(self.snapshot.index, self.snapshot.term)
            elif self.log.term_at(self.snapshot.index) != self.snapshot.term:
                self.log.reset(self.snapshot.index, self.snapshot.term)
        else:
            self.log = RaftLog(self.snapshot.index, self.snapshot.term)
        self.commit_index = self.snapshot.index
        self._applied_handed = self.snapshot.index
        self._stable_index = self.log.last_index
        self._unstable_from = self.log.last_index + 1

        self._configs: list[tuple[int, Configuration]] = [
            (self.snapshot.index, self.snapshot.configuration)
        ]
        for entry in self.log.slice(self.snapshot.index + 1, self.log.last_index):
            if entry.type is EntryType.CONFIG:
                self._configs.append((entry.index, decode_configuration(entry.data)))
        self._configuration_changed = True

        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = 0
        self._reset_randomized_timeout()
        self._votes: dict[str, bool] = {}
        self._progress: dict[str, Progress] = {}
        self._pending_conf_index = 0
        self._transferee: str | None = None

        self._read_ctx = 0
        self._reads_before_commit: list[tuple[str | None, int]] = []
        self._reads_unsent: list[tuple[str | None, int]] = []
        self._read_batches: list[_ReadBatch] = []

        self._messages: list[tuple[str, Message]] = []
        self._persisted_messages: list[tuple[str, Message]] = []
        # A follower's reads of this turn, and its batches sent to the
        # leader by batch id.
        self._follower_reads: list[int] = []
        self._read_batch_id = 0
        self._follower_read_batches: dict[int, list[int]] = {}
        self._read_states: list[ReadState] = []
        self._failed_reads: list[int] = []
        self._snapshot_sends: list[str] = []
        self._snapshot_chunks: list[InstallSnapshot] = []
        self._install_snapshot: SnapshotMeta | None = None
        # Set by the driver while it stores a snapshot that will replace
        # the log: the node must not lead (and append) before that is done.
        self.campaign_blocked = False
        self._events: list[tuple[str, ...]] = []

    # -- configuration --------------------------------------------------

    @property
    def configuration(self) -> Configuration:
        """
        The latest configuration in the log: it takes effect when appended
        (thesis 4.1).
        """
        return self._configs[-1][1]

    def configuration_at(self, index: int) -> Configuration:
        """
        The configuration in force at C{index}.
        """
        for at, config in reversed(self._configs):
            if at <= index:
                return config
        return self._configs[0][1]

    def _voters(self) -> frozenset[str]:
        return self.configuration.voters()

    def _quorum(self) -> int:
        return len(self._voters()) // 2 + 1

    def promotable(self) -> bool:
        """
        Whether this node may start elections: only voters of the latest
        configuration campaign.
        """
        return self.node_id in self._voters()

    def _on_log_configs_changed(self) -> None:
        self._configuration_changed = True
        if self.role is Role.LEADER:
            config = self.configuration
            for node_id in list(self._progress):
                if node_id not in config.ids() and node_id != self.node_id:
                    del self._progress[node_id]
            for member in config.members:
                if member.node_id not in self._progress:
                    self._progress[member.node_id] = Progress(
                        self.log.last_index + 1, self.settings.max_inflight
                    )
            if self._transferee is not None and self._transferee not in self._voters():
                self._abort_transfer()

    # -- time --------------------------------------------------------------

    def _reset_randomized_timeout(self) -> None:
        e = self.settings.election_ticks
        self._randomized_timeout = e + self._rng.randrange(e)

    def tick(self) -> None:
        """
        Advance logical time by one tick.
        """
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            # A server that may not campaign keeps counting, so that its
            # leader lease runs out and it grants votes to those who may.
            if (
                self._election_elapsed >= self._randomized_timeout
                and self.promotable()
                and not self.campaign_blocked
            ):
                self._election_elapsed = 0
                self._campaign(pre_vote=self.settings.pre_vote, transfer=False)

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.settings.election_ticks:
            self._election_elapsed = 0
            if self.settings.check_quorum:
                active = {self.node_id} | {
                    p for p, pr in self._progress.items() if pr.recent_active
                }
                for pr in self._progress.values():
                    pr.recent_active = False
                if len(active & self._voters()) < self._quorum():
                    self._events.append(("lost_quorum", str(self.term)))
                    self._become_follower(self.term, None)
                    return
            if self._transferee is not None:
                self._abort_transfer()
        if self.role is Role.LEADER and self._heartbeat_elapsed >= self.settings.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat(0)

    # -- roles -------------------------------------------------------------

    def _set_role(self, role: Role, term: int | None = None) -> None:
        """
        Check the transition, then take C{role}.  C{term} is the term the
        role is held in when the caller moves to it right after (the event
        must name it); by default the current term.
        """
        if role not in ROLE_TRANSITIONS[self.role]:
            raise IllegalTransition(f"{self.role.value} -> {role.value}")
        previous = self.role
        self.role = role
        if previous is not role or role is Role.CANDIDATE:
            self._events.append(("role", role.value, str(self.term if term is None else term)))

    def _become_follower(self, term: int, leader: str | None) -> None:
        self._set_role(Role.FOLLOWER, max(term, self.term))
        if term > self.term:
            self.term = term
            self.voted_for = None
        if leader != self.leader_id and leader is not None:
            self._events.append(("leader", leader, str(self.term)))
        self.leader_id = leader
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self._votes = {}
        self._progress = {}
        # Stepping down ends a transfer without it having failed: the new
        # leader may well be the target.  Only a timeout (or the target's
        # removal) reports "transfer_aborted".
        self._transferee = None
        self._fail_leader_reads()

    def _campaign(self, *, pre_vote: bool, transfer: bool) -> None:
        if pre_vote:
            self._set_role(Role.PRE_CANDIDATE)
            term = self.term + 1
        else:
            self._set_role(Role.CANDIDATE, self.term + 1)
            self.term += 1
            self.voted_for = self.node_id
            term = self.term
        self.leader_id = None
        self._election_elapsed = 0
        self._reset_randomized_timeout()
        self._votes = {}
        self._fail_leader_reads()
        if self._record_vote(self.node_id, True, pre_vote):
            return
        for voter in sorted(self._voters()):
            if voter == self.node_id:
                continue
            self._send(
                voter,
                RequestVote(
                    term=term,
                    sender=self.node_id,
                    last_log_index=self.log.last_index,
                    last_log_term=self.log.last_term,
                    pre_vote=pre_vote,
                    transfer=transfer,
                ),
            )

    def _record_vote(self, voter: str, granted: bool, pre_vote: bool) -> bool:
        """
        Count a vote; return whether the election was decided.
        """
        self._votes[voter] = granted
        voters = self._voters()
        yes = sum(1 for v, g in self._votes.items() if g and v in voters)
        no = sum(1 for v, g in self._votes.items() if not g and v in voters)
        if yes >= self._quorum():
            if pre_vote:
                self._campaign(pre_vote=False, transfer=False)
            else:
                self._become_leader()
            return True
        if no >= self._quorum():
            self._become_follower(self.term, None)
            return True
        return False

    def _become_leader(self) -> None:
        self._set_role(Role.LEADER)
        self.leader_id = self.node_id
        self._events.append(("leader", self.node_id, str(self.term)))
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._votes = {}
        self._progress = {}
        for member in self.configuration.members:
            self._progress[member.node_id] = Progress(
                self.log.last_index + 1, self.settings.max_inflight
            )
        if self.node_id not in self._progress:
            self._progress[self.node_id] = Progress(
                self.log.last_index + 1, self.settings.max_inflight
            )
        for pr in self._progress.values():
            pr.recent_active = True
        # A new leader does not know what is committed until an entry of its
        # own term commits (paper 5.4.2, thesis 6.4).
        self._pending_conf_index = self.log.last_index
        self._append_local([(EntryType.NOOP, b"")])
        self._broadcast_append()

    # -- sending -------------------------------------------------------------

    def _send(self, to: str, message: Message) -> None:
        """
        Queue C{message}.  A leader's messages depend on nothing that is not
        already durable (its term was persisted before it campaigned), so
        they go at once; a follower's or candidate's answers reflect term,
        vote and log state and wait for persistence (paper figure 2).
        """
        if self.role is Role.LEADER:
            self._messages.append((to, message))
        else:
            self._persisted_messages.append((to, message))

    def _peers(self) -> list[str]:
        return [p for p in self._progress if p != self.node_id]

    def _broadcast_append(self, send_if_empty: bool = False) -> None:
        for peer in self._peers():
            self._maybe_send_append(peer, send_if_empty)

    def _broadcast_heartbeat(self, ctx: int) -> None:
        for peer in self._peers():
            pr = self._progress[peer]
            self._send(
                peer,
                Heartbeat(
                    term=self.term,
                    sender=self.node_id,
                    commit=min(pr.match, self.commit_index),
                    read_ctx=ctx,
                ),
            )

    def _maybe_send_append(self, peer: str, send_if_empty: bool = False) -> bool:
        pr = self._progress[peer]
        if pr.is_paused():
            return False
        prev = pr.next - 1
        prev_term = self.log.term_at(prev)
        if prev_term is None or prev < self.log.offset:
            if pr.state is not ProgressState.SNAPSHOT:
                pr.become_snapshot(self.snapshot.index)
                self._snapshot_sends.append(peer)
            return False
        entries = self.log.slice(pr.next, self.log.last_index, self.settings.max_append_bytes)
        if not entries and not send_if_empty:
            return False
        self._send(
            peer,
            AppendEntries(
                term=self.term,
                sender=self.node_id,
                prev_log_index=prev,
                prev_log_term=prev_term,
                entries=tuple(entries),
                leader_commit=self.commit_index,
            ),
        )
        if entries:
            pr.sent(entries[-1].index)
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = True
        return True

    # -- the log -------------------------------------------------------------

    def _append_local(self, items: list[tuple[EntryType, bytes]]) -> list[tuple[int, int]]:
        first = self.log.last_index + 1
        entries = [
            Entry(first + i, self.term, etype, data) for i, (etype, data) in enumerate(items)
        ]
        self.log.append(entries)
        configs = False
        for entry in entries:
            if entry.type is EntryType.CONFIG:
                self._configs.append((entry.index, decode_configuration(entry.data)))
                configs = True
        if configs:
            self._on_log_configs_changed()
        if len(self._voters()) == 1 and self.node_id in self._voters():
            # Alone: nothing to wait for but our own fsync.
            pass
        return [(e.index, e.term) for e in entries]

    def _truncate_after(self, index: int) -> None:
        self.log.truncate_after(index)
        self._unstable_from = min(self._unstable_from, index + 1)
        self._stable_index = min(self._stable_index, index)
        before = len(self._configs)
        while len(self._configs) > 1 and self._configs[-1][0] > index:
            self._configs.pop()
        if len(self._configs) != before:
            self._on_log_configs_changed()

    def _append_from_leader(self, entries: tuple[Entry, ...]) -> None:
        """
        Append what is new, truncating at the first conflict only (paper
        5.3, step 3): a stale or duplicated message never removes entries.
        """
        for position, entry in enumerate(entries):
            if entry.index <= self.log.last_index:
                if self.log.term_at(entry.index) == entry.term:
                    continue
                if entry.index <= self.commit_index:
                    raise AssertionError(
                        f"conflict at committed index {entry.index} (commit {self.commit_index})"
                    )
                self._truncate_after(entry.index - 1)
            new = entries[position:]
            self.log.append(new)
            if any(e.type is EntryType.CONFIG for e in new):
                for e in new:
                    if e.type is EntryType.CONFIG:
                        self._configs.append((e.index, decode_configuration(e.data)))
                self._on_log_configs_changed()
            return

    def _commit_to(self, index: int) -> None:
        if index > self.commit_index:
            self.commit_index = index

    def _maybe_commit(self) -> bool:
        """
        Advance the commit index to the highest index a majority of voters
        hold, but only by counting replicas of an entry of the current term
        (paper 5.4.2; Figure 8).
        """
        matches = []
        for voter in self._voters():
            if voter == self.node_id:
                matches.append(self._stable_index)
            else:
                pr = self._progress.get(voter)
                matches.append(pr.match if pr else 0)
        if not matches:
            return False
        matches.sort(reverse=True)
        candidate = matches[self._quorum() - 1]
        if candidate <= self.commit_index or self.log.term_at(candidate) != self.term:
            return False
        first_in_term = self.log.term_at(self.commit_index) != self.term
        self.commit_index = candidate
        if first_in_term:
            self._reads_unsent.extend(self._reads_before_commit)
            self._reads_before_commit = []
        self._after_commit()
        return True

    def _after_commit(self) -> None:
        # A leader removed from the configuration leads until the change
        # commits, then steps down (thesis 4.2.2).
        config_index = self._configs[-1][0]
        if (
            self.role is Role.LEADER
            and config_index <= self.commit_index
            and self.node_id not in self.configuration.voters()
        ):
            self._events.append(("removed", self.node_id, str(self.term)))
            self._become_follower(self.term, None)

    # -- persistence ---------------------------------------------------------

    def on_persisted(self, index: int, term: int) -> None:
        """
        The driver made entries up to C{(index, term)} durable.  Ignored when
        the log has since been truncated there (etcd's C{stableTo}).
        """
        if index > self._stable_index and self.log.term_at(index) == term:
            self._stable_index = index
            if self.role is Role.LEADER and self._maybe_commit():
                self._broadcast_append(send_if_empty=True)

    def on_persist_failed(self) -> None:
        """
        A write failed: everything not known durable is written again with
        the next L{take_ready}.
        """
        self._unstable_from = min(self._unstable_from, self._stable_index + 1)
        self._persisted_hard_state = HardState(-1, None)

    # -- input ---------------------------------------------------------------

    def bootstrap(self, configuration: Configuration) -> None:
        """
        Write the initial configuration of a brand-new cluster as entry 1 of
        term 1.  Only for an empty log.
        """
        if self.log.last_index != 0 or self.term != 0:
            raise ValueError("bootstrap needs empty storage")
        self.term = 1
        self._append_local([(EntryType.CONFIG, encode_configuration(configuration))])

    def propose(self, payloads: list[bytes]) -> list[tuple[int, int]]:
        """
        Append commands as one batch; return their C{(index, term)}.

        @raise NotLeader: unless this node leads.
        @raise LeadershipTransferInProgress: while handing over.
        """
        self._check_can_propose()
        positions = self._append_local([(EntryType.NORMAL, p) for p in payloads])
        self._broadcast_append()
        if len(self._voters()) == 1:
            self._maybe_commit()
        return positions

    def _check_can_propose(self) -> None:
        if self.role is not Role.LEADER:
            raise NotLeader(self.configuration.get(self.leader_id) if self.leader_id else None)
        if self._transferee is not None:
            raise LeadershipTransferInProgress(f"handing leadership to {self._transferee}")

    def change_membership(self, op: MembershipOp, member: Member) -> tuple[int, int]:
        """
        Propose a single-server change (thesis 4.1): add a learner, promote a
        caught-up learner to voter, or remove a server.

        @raise ConfigurationChangeError: if the change is not allowed now.
        """
        self._check_can_propose()
        if self.log.term_at(self.commit_index) != self.term:
            raise ConfigurationChangeError("the leader has not committed an entry of its term yet")
        if self._pending_conf_index > self.commit_index:
            raise ConfigurationChangeError("another configuration change is in progress")
        config = self.configuration
        current = config.get(member.node_id)
        if op is MembershipOp.ADD_LEARNER:
            if current is not None:
                raise ConfigurationChangeError(f"{member.node_id} is already a member")
            new = config.with_member(attrs.evolve(member, voter=False))
        elif op is MembershipOp.PROMOTE:
            if current is None:
                raise ConfigurationChangeError(f"{member.node_id} is not a member")
            if current.voter:
                raise ConfigurationChangeError(f"{member.node_id} is already a voter")
            pr = self._progress.get(member.node_id)
            if pr is None or pr.match + self.settings.promote_max_lag < self.log.last_index:
                raise ConfigurationChangeError(f"{member.node_id} has not caught up yet")
            new = config.with_member(attrs.evolve(current, voter=True))
        else:
            if current is None:
                raise ConfigurationChangeError(f"{member.node_id} is not a member")
            new = config.without(member.node_id)
            if not new.voters():
                raise ConfigurationChangeError("cannot remove the last voter")
        [position] = self._append_local([(EntryType.CONFIG, encode_configuration(new))])
        self._pending_conf_index = position[0]
        self._broadcast_append()
        if len(self._voters()) <= 1:
            self._maybe_commit()
        return position

    def transfer_leadership(self, target: str | None) -> str:
        """
        Start handing leadership to C{target} (or the most up-to-date voter)
        with TimeoutNow (thesis 3.10); proposals are refused meanwhile and
        the transfer is abandoned after an election timeout.
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.configuration.get(self.leader_id) if self.leader_id else None)
        voters = self._voters() - {self.node_id}
        if target is None:
            if not voters:
                raise ConfigurationChangeError("no other voter to hand leadership to")
            target = max(sorted(voters), key=lambda v: self._progress[v].match)
        if target not in voters:
            raise ConfigurationChangeError(f"{target} is not another voter")
        self._transferee = target
        self._election_elapsed = 0
        if self._progress[target].match == self.log.last_index:
            self._send(target, TimeoutNow(self.term, self.node_id))
        else:
            self._maybe_send_append(target)
        return target

    def _abort_transfer(self) -> None:
        assert self._transferee is not None
        self._events.append(("transfer_aborted", self._transferee, str(self.term)))
        self._transferee = None

    def request_read(self, request_id: int) -> None:
        """
        Ask for a linearizable read index (thesis 6.4).  The answer comes as
        a L{ReadState} or a failed read in a later L{Ready}.
        """
        if self.role is Role.LEADER:
            self._leader_read(None, request_id)
        elif self.leader_id is not None:
            self._follower_reads.append(request_id)
        else:
            self._failed_reads.append(request_id)

    def _flush_follower_reads(self) -> None:
        """
        Ask the leader once for all the reads of this turn: one
        L{ReadIndexRequest} whose id names the batch.
        """
        reads, self._follower_reads = self._follower_reads, []
        if not reads:
            return
        if self.role is Role.LEADER:
            for rid in reads:
                self._leader_read(None, rid)
            return
        if self.leader_id is None:
            self._failed_reads.extend(reads)
            return
        self._read_batch_id += 1
        self._follower_read_batches[self._read_batch_id] = reads
        stale = self._read_batch_id - _MAX_FOLLOWER_READ_BATCHES
        if stale in self._follower_read_batches:
            # Never answered (a lost message): the driver has timed its reads out.
            del self._follower_read_batches[stale]
        self._persisted_messages.append(
            (self.leader_id, ReadIndexRequest(self.term, self.node_id, self._read_batch_id))
        )

    def _leader_read(self, origin: str | None, request_id: int) -> None:
        if self.log.term_at(self.commit_index) != self.term:
            self._reads_before_commit.append((origin, request_id))
        elif self._voters() == {self.node_id}:
            self._read_ready(origin, request_id, self.commit_index)
        else:
            self._reads_unsent.append((origin, request_id))

    def _read_ready(self, origin: str | None, request_id: int, index: int) -> None:
        if origin is None:
            self._read_states.append(ReadState(request_id, index))
        else:
            self._send(origin, ReadIndexResponse(self.term, self.node_id, request_id, index, True))

    def _flush_reads(self) -> None:
        """
        Confirm every read queued this turn with one heartbeat round.
        """
        if not self._reads_unsent or self.role is not Role.LEADER:
            return
        if self._voters() == {self.node_id}:
            for origin, rid in self._reads_unsent:
                self._read_ready(origin, rid, self.commit_index)
            self._reads_unsent = []
            return
        self._read_ctx += 1
        self._read_batches.append(
            _ReadBatch(self._read_ctx, self.commit_index, self._reads_unsent, {self.node_id})
        )
        self._reads_unsent = []
        self._broadcast_heartbeat(self._read_ctx)

    def _fail_leader_reads(self) -> None:
        pending = list(self._reads_before_commit) + list(self._reads_unsent)
        for batch in self._read_batches:
            pending.extend(batch.requests)
        self._reads_before_commit = []
        self._reads_unsent = []
        self._read_batches = []
        for origin, rid in pending:
            if origin is None:
                self._failed_reads.append(rid)
            else:
                self._persisted_messages.append(
                    (origin, ReadIndexResponse(self.term, self.node_id, rid, 0, False))
                )

    def _ack_read(self, peer: str, ctx: int) -> None:
        voters = self._voters()
        if peer not in voters:
            return
        for batch in self._read_batches:
            if batch.ctx <= ctx:
                batch.acks.add(peer)
        while self._read_batches:
            batch = self._read_batches[0]
            if len(batch.acks & voters) < self._quorum():
                break
            self._read_batches.pop(0)
            for origin, rid in batch.requests:
                self._read_ready(origin, rid, batch.index)

    def step(self, m: Message) -> None:
        """
        Process one message from a peer.
        """
        if m.sender == self.node_id:
            return
        if m.term > self.term:
            if isinstance(m, RequestVote):
                in_lease = (
                    self.settings.check_quorum
                    and self.leader_id is not None
                    and self._election_elapsed < self.settings.election_ticks
                )
                if in_lease and not m.transfer:
                    # Thesis 4.2.3: ignore disruptive candidates while a
                    # leader is known to be alive.
                    return
                if not m.pre_vote:
                    self._become_follower(m.term, None)
            elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
                pass
            elif isinstance(m, ReadIndexRequest | ReadIndexResponse):
                pass
            else:
                leader = (
                    m.sender
                    if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot | TimeoutNow)
                    else None
                )
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            if isinstance(m, AppendEntries | Heartbeat | InstallSnapshot):
                # A deposed leader learns of the new term from the answer.
                self._send(
                    m.sender,
                    AppendEntriesResponse(self.term, self.node_id, False, 0),
                )
                return
            if isinstance(m, RequestVote) and m.pre_vote:
                self._send(m.sender, RequestVoteResponse(self.term, self.node_id, False, True))
                return
            if not isinstance(m, ReadIndexRequest | ReadIndexResponse):
                # Read index answers stay valid across terms: the leader
                # confirmed its leadership after the request arrived.
                return
        handler = self._handlers.get(type(m))
        if handler is not None:
            handler(self, m)

    def _handle_request_vote(self, m: RequestVote) -> None:
        can_vote = (
            self.voted_for == m.sender
            or (self.voted_for is None and self.leader_id is None)
            or (m.pre_vote and m.term > self.term)
        )
        granted = can_vote and self.log.is_up_to_date(m.last_log_index, m.last_log_term)
        if granted and not m.pre_vote:
            self.voted_for = m.sender
            self._election_elapsed = 0
        term = m.term if (m.pre_vote and granted) else self.term
        self._send(m.sender, RequestVoteResponse(term, self.node_id, granted, m.pre_vote))

    def _handle_vote_response(self, m: RequestVoteResponse) -> None:
        if m.pre_vote:
            if self.role is not Role.PRE_CANDIDATE:
                return
            if m.granted and m.term != self.term + 1:
                return
        else:
            if self.role is not Role.CANDIDATE or m.term != self.term:
                return
        self._record_vote(m.sender, m.granted, m.pre_vote)

    def _handle_append(self, m: AppendEntries) -> None:
        self._follow(m.sender, m.term)
        if m.prev_log_index < self.commit_index:
            self._reply_append(m, True, match_index=self.commit_index)
            return
        term = self.log.term_at(m.prev_log_index)
        if term != m.prev_log_term:
            if m.prev_log_index > self.log.last_index:
                conflict_index, conflict_term = self.log.last_index + 1, 0
            else:
                conflict_term = term or 0
                conflict_index = self.log.first_index_of_term(
                    m.prev_log_index, self.commit_index + 1
                )
            self._reply_append(m, False, conflict_term=conflict_term, conflict_index=conflict_index)
            return
        self._append_from_leader(m.entries)
        match = m.prev_log_index + len(m.entries)
        self._commit_to(min(m.leader_commit, match))
        self._reply_append(m, True, match_index=match)

    def _reply_append(
        self,
        m: AppendEntries,
        success: bool,
        match_index: int = 0,
        conflict_term: int = 0,
        conflict_index: int = 0,
    ) -> None:
        self._send(
            m.sender,
            AppendEntriesResponse(
                self.term,
                self.node_id,
                success,
                m.prev_log_index,
                match_index=match_index,
                conflict_term=conflict_term,
                conflict_index=conflict_index,
                last_log_index=self.log.last_index,
            ),
        )

    def _follow(self, leader: str, term: int) -> None:
        """
        A message from the leader of our term: follow it.
        """
        if self.role is not Role.FOLLOWER:
            self._become_follower(term, leader)
        self._hear_from_leader(leader)

    def _active_progress(self, peer: str) -> Progress | None:
        """
        As leader, the progress of C{peer}, which just answered us.
        """
        if self.role is not Role.LEADER:
            return None
        pr = self._progress.get(peer)
        if pr is not None:
            pr.recent_active = True
        return pr

    def _hear_from_leader(self, leader: str) -> None:
        if self.leader_id != leader:
            self._events.append(("leader", leader, str(self.term)))
        self.leader_id = leader
        self._election_elapsed = 0

    def _handle_append_response(self, m: AppendEntriesResponse) -> None:
        pr = self._active_progress(m.sender)
        if pr is None:
            return
        if not m.success:
            if m.index == 0 and m.conflict_index == 0:
                return
            if m.last_log_index < pr.match:
                # The follower lost entries it had acknowledged: its disk
                # was wiped or replaced.  Raft assumes durable storage, so
                # all we can do is repair it from what it now holds.
                self._events.append(("follower_lost_log", m.sender, str(m.last_log_index)))
                pr.match = m.last_log_index
                pr.become_probe(m.last_log_index + 1)
                self._maybe_send_append(m.sender, send_if_empty=True)
                return
            if pr.state is ProgressState.REPLICATE and m.index <= pr.match:
                return
            if pr.state is ProgressState.PROBE and m.index != pr.next - 1:
                return
            if pr.state is ProgressState.SNAPSHOT:
                return
            next_index = m.conflict_index
            if m.conflict_term > 0:
                found = self.log.last_index_of_term(m.conflict_term, m.index)
                if found is not None:
                    next_index = found + 1
            next_index = max(pr.match + 1, min(next_index, m.index))
            pr.become_probe(next_index)
            self._maybe_send_append(m.sender, send_if_empty=True)
            return
        moved = pr.acknowledge(m.match_index)
        if pr.state is ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state is ProgressState.SNAPSHOT and pr.match >= pr.pending_snapshot:
            pr.become_probe(pr.match + 1)
            pr.become_replicate()
        if moved and self._maybe_commit():
            self._broadcast_append(send_if_empty=True)
        elif self.role is Role.LEADER:
            while self._maybe_send_append(m.sender):
                pass
        if (
            self.role is Role.LEADER
            and m.sender == self._transferee
            and pr.match == self.log.last_index
        ):
            self._send(m.sender, TimeoutNow(self.term, self.node_id))

    def _handle_heartbeat(self, m: Heartbeat) -> None:
        self._follow(m.sender, m.term)
        last = self.log.last_index
        if m.commit > last:
            # The leader's commit for us never exceeds what we acknowledged:
            # we lost acknowledged entries (a wiped disk).  Say so, so that
            # it repairs us even when it has nothing new to send.
            self._send(
                m.sender,
                AppendEntriesResponse(
                    self.term,
                    self.node_id,
                    False,
                    m.commit,
                    conflict_index=last + 1,
                    last_log_index=last,
                ),
            )
        self._commit_to(min(m.commit, last))
        self._send(m.sender, HeartbeatResponse(self.term, self.node_id, m.read_ctx))

    def _handle_heartbeat_response(self, m: HeartbeatResponse) -> None:
        pr = self._active_progress(m.sender)
        if pr is None:
            return
        if pr.state is ProgressState.PROBE:
            pr.probe_sent = False
        elif pr.state is ProgressState.REPLICATE and pr.match < self.log.last_index:
            # Pipelined batches may have been lost: after a few heartbeats
            # without progress fall back to probing from the match index.
            pr.heartbeat_stalls = pr.heartbeat_stalls + 1 if pr.match == pr.heartbeat_match else 0
            pr.heartbeat_match = pr.match
            if pr.heartbeat_stalls >= max(3, self.settings.election_ticks // 2):
                pr.become_probe(pr.match + 1)
        if pr.match < self.log.last_index:
            self._maybe_send_append(m.sender, send_if_empty=pr.state is ProgressState.PROBE)
        if m.read_ctx:
            self._ack_read(m.sender, m.read_ctx)

    def _handle_install_snapshot(self, m: InstallSnapshot) -> None:
        self._follow(m.sender, m.term)
        if m.last_index <= self.commit_index:
            self._send(
                m.sender,
                InstallSnapshotResponse(
                    self.term, self.node_id, self.commit_index, m.size, done=True
                ),
            )
            return
        self._snapshot_chunks.append(m)

    def ack_snapshot_chunk(self, leader: str, last_index: int, offset: int, success: bool) -> None:
        """
        The driver stored a chunk (or refused it): tell the leader which
        byte it expects next.
        """
        self._send(
            leader,
            InstallSnapshotResponse(self.term, self.node_id, last_index, offset, False, success),
        )

    def wants_snapshot(self, meta: SnapshotMeta) -> bool:
        """
        Whether L{install_snapshot} of C{meta} would replace the log (and
        so the driver must store it), rather than only move the commit index.
        """
        return meta.index > self.commit_index and self.log.term_at(meta.index) != meta.term

    def install_snapshot(self, leader: str, meta: SnapshotMeta) -> bool:
        """
        A complete, verified snapshot arrived from C{leader}.  Return whether
        the driver must restore the state machine from it and persist it;
        when the log already holds its last entry, only the commit index
        moves and the log suffix is kept.
        """
        done = InstallSnapshotResponse(
            self.term, self.node_id, meta.index, 0, done=True, success=True
        )
        if not self.wants_snapshot(meta):
            if meta.index <= self.commit_index:
                self._send(leader, attrs.evolve(done, last_index=self.commit_index))
            else:
                self._commit_to(meta.index)
                self._send(leader, done)
            return False
        self.log.reset(meta.index, meta.term)
        self.snapshot = meta
        self.commit_index = meta.index
        self._applied_handed = meta.index
        self._stable_index = meta.index
        self._unstable_from = meta.index + 1
        self._configs = [(meta.index, meta.configuration)]
        self._configuration_changed = True
        self._install_snapshot = meta
        self._send(leader, done)
        return True

    def _handle_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        pr = self._active_progress(m.sender)
        if pr is None:
            return
        if pr.state is not ProgressState.SNAPSHOT:
            return
        if m.done and m.success:
            pr.acknowledge(m.last_index)
            pr.become_probe(pr.match + 1)
            if self._maybe_commit():
                self._broadcast_append(send_if_empty=True)
            else:
                self._maybe_send_append(m.sender, send_if_empty=True)
        elif not m.success and m.offset == 0 and m.done:
            self.report_snapshot(m.sender, False)

    def report_snapshot(self, peer: str, success: bool) -> None:
        """
        The driver gave up sending a snapshot to C{peer}; probe again from
        its match index, which will ask for a snapshot afresh.
        """
        pr = self._progress.get(peer)
        if self.role is not Role.LEADER or pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        pr.pending_snapshot = 0
        pr.become_probe(pr.match + 1)
        pr.probe_sent = True

    def _handle_timeout_now(self, m: TimeoutNow) -> None:
        if self.role is Role.LEADER:
            # Only a confused or hostile peer sends this to a leader.
            return
        if self.promotable():
            self._events.append(("transfer_received", m.sender, str(self.term)))
            self._campaign(pre_vote=False, transfer=True)

    def _handle_read_request(self, m: ReadIndexRequest) -> None:
        if self.role is Role.LEADER:
            self._leader_read(m.sender, m.request_id)
        else:
            self._persisted_messages.append(
                (m.sender, ReadIndexResponse(self.term, self.node_id, m.request_id, 0, False))
            )

    def _handle_read_response(self, m: ReadIndexResponse) -> None:
        reads = self._follower_read_batches.pop(m.request_id, None)
        if reads is None:
            return
        if m.success:
            self._read_states.extend(ReadState(rid, m.index) for rid in reads)
        else:
            self._failed_reads.extend(reads)

    _handlers: dict[type, Callable[[RaftCore, Message], None]] = {
        RequestVote: _handle_request_vote,  # type: ignore[dict-item]
        RequestVoteResponse: _handle_vote_response,  # type: ignore[dict-item]
        AppendEntries: _handle_append,  # type: ignore[dict-item]
        AppendEntriesResponse: _handle_append_response,  # type: ignore[dict-item]
        Heartbeat: _handle_heartbeat,  # type: ignore[dict-item]
        HeartbeatResponse: _handle_heartbeat_response,  # type: ignore[dict-item]
        InstallSnapshot: _handle_install_snapshot,  # type: ignore[dict-item]
        InstallSnapshotResponse: _handle_snapshot_response,  # type: ignore[dict-item]
        TimeoutNow: _handle_timeout_now,  # type: ignore[dict-item]
        ReadIndexRequest: _handle_read_request,  # type: ignore[dict-item]
        ReadIndexResponse: _handle_read_response,  # type: ignore[dict-item]
    }

    # -- snapshots and compaction ------------------------------------------------

    def snapshot_taken(self, meta: SnapshotMeta) -> None:
        """
        The driver durably wrote a snapshot of the state up to C{meta.index}.
        """
        if meta.index > self.snapshot.index:
            self.snapshot = meta

    def compact(self, index: int) -> None:
        """
        Forget entries up to C{index} (they are in a snapshot).
        """
        index = min(index, self.snapshot.index, self._applied_handed)
        if index <= self.log.offset:
            return
        self.log.compact(index)
        while len(self._configs) > 1 and self._configs[1][0] <= index:
            self._configs.pop(0)

    # -- output ---------------------------------------------------------------

    def hard_state(self) -> HardState:
        return HardState(self.term, self.voted_for)

    @property
    def stable_index(self) -> int:
        return self._stable_index

    def progress_of(self, peer: str) -> Progress | None:
        return self._progress.get(peer)

    def take_ready(self) -> Ready | None:
        """
        Collect the work accumulated since the last call, or L{None}.
        """
        self._flush_follower_reads()
        self._flush_reads()
        hard_state = self.hard_state()
        hs: HardState | None = None
        if hard_state != self._persisted_hard_state:
            hs = hard_state
            self._persisted_hard_state = hard_state
        entries: list[Entry] = []
        mark = None
        if self._unstable_from <= self.log.last_index:
            entries = self.log.slice(self._unstable_from, self.log.last_index)
            self._unstable_from = self.log.last_index + 1
            mark = (entries[-1].index, entries[-1].term)
        committed: list[Entry] = []
        if self.commit_index > self._applied_handed:
            committed = self.log.slice(self._applied_handed + 1, self.commit_index)
            self._applied_handed = self.commit_index
        config = self.configuration if self._configuration_changed else None
        self._configuration_changed = False
        if not (
            hs
            or entries
            or committed
            or config
            or self._messages
            or self._persisted_messages
            or self._read_states
            or self._failed_reads
            or self._snapshot_sends
            or self._snapshot_chunks
            or self._install_snapshot
            or self._events
        ):
            return None
        ready = Ready(
            hard_state=hs,
            entries=tuple(entries),
            persist_mark=mark,
            messages=tuple(self._messages),
            persisted_messages=tuple(self._persisted_messages),
            committed=tuple(committed),
            read_states=tuple(self._read_states),
            failed_reads=tuple(self._failed_reads),
            snapshot_sends=tuple(self._snapshot_sends),
            snapshot_chunks=tuple(self._snapshot_chunks),
            install_snapshot=self._install_snapshot,
            configuration=config,
            events=tuple(self._events),
        )
        self._messages = []
        self._persisted_messages = []
        self._read_states = []
        self._failed_reads = []
        self._snapshot_sends = []
        self._snapshot_chunks = []
        self._install_snapshot = None
        self._events = []
        return ready
