# -*- test-case-name: tests.raft.test_node -*-
"""
The Twisted driver of the consensus core.

L{RaftNode} owns a L{RaftCore} and does its I/O: it ticks it from the
injected clock, hands it peer messages, batches the proposals of one reactor
turn into one log append, persists through L{IRaftStorage} (one ordered
writer, one fsync per batch), sends through L{IPeerTransport}, applies
committed entries to the L{IStateMachine}, takes snapshots and streams them
to lagging followers.  Everything that depends on time or chance is injected,
so the simulation in C{tests/raft} drives many nodes on one L{Clock}.

A follower does not refuse proposals: it relays them to the leader in a
L{Propose} message on the peer connection, and the leader answers with the
log positions it appended them at before it replicates them.  The follower
then waits for those positions exactly as the leader waits for its own, so a
client may write through any node at the cost of one extra message, not of
a second HTTP request.
"""

from __future__ import annotations

import heapq
import io
import random
import struct
import zlib
from collections import deque
from typing import IO, Any, Callable, Iterable

import attrs
import cbor2
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ._core import CoreSettings, MembershipOp, RaftCore, ReadState, Ready, Role
from ._interfaces import (
    ApplyListener,
    CommitTimeout,
    ConfigurationChangeError,
    IBackgroundSnapshot,
    IPeerTransport,
    IRaftNode,
    IRaftStorage,
    IStateMachine,
    IStreamingSnapshot,
    LeadershipTransferInProgress,
    NodeStatus,
    NoLeader,
    NotLeader,
    PersistBatch,
    ProposalDropped,
    RaftError,
    StorageFull,
)
from ._messages import (
    AppendEntries,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    Propose,
    ProposeResponse,
    TimeoutNow,
)
from ._notices import CommitNotices
from ._sessions import SessionTable
from ._types import Configuration, Entry, EntryType, Member, NodeIdentity, SnapshotMeta

SNAPSHOT_FORMAT = 1


class LeaderDiskFull(StorageFull, RaftError):
    """
    The leader refused a proposal because it cannot write its log (its disk
    is full).  The proposal was never written, so it is certainly not
    applied.  It is a L{StorageFull} (what happened; the API answers 507)
    and a L{RaftError} (clients retry engine errors: another node will lead
    soon).
    """


@attrs.frozen
class NodeSettings:
    """
    Tuning of a node.  Times are in seconds of the injected clock.

    @ivar tick_interval: one logical tick of the core.
    @ivar election_ticks: minimum election timeout in ticks (randomized up
        to twice that).
    @ivar snapshot_threshold: take a snapshot every this many applied
        entries, and only once the entries applied since the last snapshot
        carry at least C{1 / snapshot_log_ratio} of its size: a large state
        is not rewritten for a few kilobytes of log.
    @ivar snapshot_log_ratio: see C{snapshot_threshold}.
    @ivar snapshot_stagger: each snapshot waits for between 1 and
        C{1 + snapshot_stagger} times C{snapshot_threshold} entries, drawn
        anew after each one, so that the members of a cluster, which apply
        the same entries, do not all write a snapshot at once and stall
        their logs together (hashicorp/raft staggers its snapshot checks
        for the same reason).  0 for exactly the threshold.
    @ivar trailing_entries: entries kept in the log behind a snapshot, so
        slightly lagging followers catch up without a snapshot.
    @ivar snapshot_retry_delay: after a failed snapshot write (disk full),
        wait this long before serializing the state machine again.
    @ivar forward_proposals: a follower relays proposals to the leader
        (L{Propose}) instead of refusing them with L{NotLeader}.
    @ivar forward_timeout: how long a follower waits for the leader to say
        where it appended relayed proposals before reporting their outcome
        as unknown (L{CommitTimeout}).
    @ivar forward_batch: most proposals relayed in one message.
    @ivar commit_notice_delay: how long a leader may hold back the empty
        C{AppendEntries} that tells a follower its commit index moved, so
        that the next batch carries it instead (see L{CommitNotices}).  0
        sends each at once.
    @ivar blocking_follower_writes: a follower asks its storage to write
        on the reactor thread when it can (L{IRaftStorage.save}'s
        C{blocking}): its answer to the leader waits for the write anyway,
        and every write of the leader's next commit waits for that answer.
    """

    tick_interval: float = 0.05
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    max_inflight: int = 64
    max_append_bytes: int = 1 << 20
    pre_vote: bool = True
    check_quorum: bool = True
    snapshot_threshold: int = 65536
    snapshot_log_ratio: float = 4.0
    snapshot_stagger: float = 0.0
    trailing_entries: int = 1024
    snapshot_chunk_size: int = 1 << 20
    snapshot_window: int = 4
    snapshot_timeout: float = 10.0
    snapshot_retry_delay: float = 2.0
    proposal_timeout: float = 10.0
    read_timeout: float = 5.0
    session_ttl: float = 24 * 3600.0
    forward_proposals: bool = True
    forward_timeout: float = 3.0
    forward_batch: int = 256
    commit_notice_delay: float = 0.0
    blocking_follower_writes: bool = True

    def core_settings(self) -> CoreSettings:
        return CoreSettings(
            election_ticks=self.election_ticks,
            heartbeat_ticks=self.heartbeat_ticks,
            max_inflight=self.max_inflight,
            max_append_bytes=self.max_append_bytes,
            pre_vote=self.pre_vote,
            check_quorum=self.check_quorum,
        )


class _Pending:
    """
    A proposal or membership change waiting to be applied at C{index}.
    """

    __slots__ = ("term", "deferred", "deadline")

    def __init__(self, term: int, deferred: Deferred[Any], deadline: float) -> None:
        self.term = term
        self.deferred = deferred
        self.deadline = deadline


def _byte_string_head(length: int) -> bytes:
    """
    The CBOR head of a byte string of C{length} bytes (major type 2).
    """
    if length < 24:
        return bytes([0x40 + length])
    for code, fmt in ((0x58, ">B"), (0x59, ">H"), (0x5A, ">I"), (0x5B, ">Q")):
        if length < 1 << (8 * struct.calcsize(fmt)):
            return bytes([code]) + struct.pack(fmt, length)
    raise ValueError("byte string too long for CBOR")


SnapshotWriter = Callable[[IO[bytes]], None]
"""
Writes a snapshot document into a seekable binary file, from its current
position (see L{write_snapshot_document}).
"""

_SHORT_STATE = 1 << 16
"""
State machine bytes shorter than this are written with the shortest head
once they are all there; longer ones with a four-byte length, which is the
shortest head for them, filled in at the end.
"""

_SLICE = 1 << 20
"""
Most bytes copied by one write: a thread writing a large snapshot into
memory lets the reactor thread run between two slices.
"""


def write_snapshot_document(
    out: IO[bytes], sm_chunks: Iterable[bytes | memoryview], sessions: Any
) -> None:
    """
    Write C{cbor2.dumps({"v": SNAPSHOT_FORMAT, "sm": sm, "sessions":
    sessions})}, byte for byte, where C{sm} is the state machine's bytes
    given in chunks, to C{out} as they come: a snapshot of hundreds of
    megabytes is never held whole, copied, or encoded again.  The byte
    string's length goes before its bytes, so once there are 64 KiB of
    them it is written as a placeholder of the canonical size and filled
    in at the end.

    @raise ValueError: if the state machine's bytes reach 4 GiB.
    """
    start = b"\xa3" + cbor2.dumps("v") + cbor2.dumps(SNAPSHOT_FORMAT) + cbor2.dumps("sm")
    end = cbor2.dumps("sessions") + cbor2.dumps(sessions)
    chunks = iter(sm_chunks)
    first: list[bytes | memoryview] = []
    size = 0
    for chunk in chunks:
        first.append(chunk)
        size += len(chunk)
        if size >= _SHORT_STATE:
            break
    else:
        out.write(start + _byte_string_head(size))
        for chunk in first:
            _write_sliced(out, chunk)
        out.write(end)
        return
    out.write(start)
    length_at = out.tell()
    out.write(bytes(5))
    for chunk in first:
        _write_sliced(out, chunk)
    for chunk in chunks:
        _write_sliced(out, chunk)
        size += len(chunk)
    if size >= 1 << 32:
        raise ValueError(f"a state machine snapshot of {size} bytes is too large")
    after = out.tell()
    out.seek(length_at)
    out.write(_byte_string_head(size))
    out.seek(after)
    out.write(end)


def _write_sliced(out: IO[bytes], chunk: bytes | memoryview) -> None:
    if len(chunk) <= _SLICE:
        out.write(chunk)
        return
    view = memoryview(chunk)
    for start in range(0, len(view), _SLICE):
        out.write(view[start : start + _SLICE])


def bytes_written_by(write: SnapshotWriter) -> bytes:
    """
    What C{write} writes into a file, from memory.
    """
    out = io.BytesIO()
    write(out)
    return out.getvalue()


def _is_envelope(payload: bytes) -> bool:
    """
    Whether a relayed payload is a well-formed C{[command, client, seq]}:
    a leader must never append an entry its replicas could not apply.
    """
    if payload[:1] != b"\x83":
        return False
    try:
        decoded = cbor2.loads(payload)
        canonical = cbor2.dumps(decoded) == payload
    except Exception:
        return False
    return (
        canonical
        and isinstance(decoded, list)
        and len(decoded) == 3
        and (decoded[1] is None or isinstance(decoded[1], str))
        and type(decoded[2]) is int
    )


def _stamp(payload: bytes, now: float) -> bytes:
    """
    Add the leader's timestamp to a relayed C{[command, client, seq]}
    (a 3-array, header byte C{0x83}, checked by L{_is_envelope}) without
    decoding it again: the 4-array header is C{0x84}.
    """
    return b"\x84" + payload[1:] + cbor2.dumps(now)


def _relay_error(error: RaftError) -> str:
    """
    The refusal code of L{_RELAY_ERRORS} for the leader's own C{error}.
    """
    for code, (kind, _) in _RELAY_ERRORS.items():
        if isinstance(error, kind):
            return code
    return "refused"


class _RelayedBatch:
    """
    Proposals a follower relayed to C{leader}, waiting for its answer.
    """

    __slots__ = ("leader", "deferreds", "deadline")

    def __init__(self, leader: str, deferreds: list[Deferred[Any]], deadline: float) -> None:
        self.leader = leader
        self.deferreds = deferreds
        self.deadline = deadline

    def unknown(self, reason: str) -> None:
        """
        Give up waiting: the leader may have appended the proposals.
        """
        for d in self.deferreds:
            d.errback(CommitTimeout(f"{reason}; the request may still take effect"))


_RELAY_ERRORS: dict[str, tuple[type[RaftError], str]] = {
    "not_leader": (NotLeader, "the node it was relayed to is not the leader"),
    "transfer": (LeadershipTransferInProgress, "the leader is handing over leadership"),
    "disk_full": (LeaderDiskFull, "the leader cannot write its log (disk full?)"),
    "refused": (ProposalDropped, "the leader refused the relayed proposal"),
}
"""
The refusals a leader answers a L{Propose} with (nothing was appended): the
error a follower reports for each, and why.
"""

_MAX_PERSIST_BACKOFF = 1.0
"""
Longest wait, in seconds, between two attempts to write a log whose writes
fail (a full disk).
"""

_RECENT_RELAYS = 256
"""
How many batch ids of each follower a leader remembers, to ignore a
duplicated L{Propose}.
"""

_RECENT_RESULTS = 4096
"""
How many applied results a follower keeps while it has relayed proposals
outstanding, for an answer that arrives after its entries were applied.
"""


class _OutgoingSnapshot:
    """
    A snapshot being streamed to one follower with a window of chunks in
    flight; on silence the sender goes back to the last acknowledged byte.
    """

    def __init__(self, meta: SnapshotMeta, data: bytes, now: float) -> None:
        self.meta = meta
        self.data = data
        self.checksum = zlib.crc32(data)
        self.acked = 0
        self.sent = 0
        self.started = False
        self.progress_at = now
        self.resent_at = now


class _StagedSnapshot:
    """
    A complete, verified snapshot from C{leader} that must reach the disk
    before it replaces anything in memory.
    """

    __slots__ = ("leader", "meta", "data", "writing", "retry_at", "failures")

    def __init__(self, leader: str, meta: SnapshotMeta, data: bytes) -> None:
        self.leader = leader
        self.meta = meta
        self.data = data
        self.writing = False
        self.retry_at = 0.0
        self.failures = 0


class _IncomingSnapshot:
    def __init__(self, key: tuple[Any, ...]) -> None:
        self.key = key
        self.buffer = bytearray()


@implementer(IRaftNode)
class RaftNode:
    """
    One Raft server.

    A node whose log writes fail (a full disk) stays up and keeps serving
    reads, retries the write with a backoff of up to a second, and recovers
    by itself when a write succeeds again (L{disk_failing}).  Meanwhile it accepts no new
    proposals as leader and hands leadership to another voter, since a
    leader that cannot write its log cannot be trusted to commit; see
    L{_persist_failed}.

    With C{run_in_thread} (C{deferToThreadPool} on the reactor's pool, or
    a function that runs its argument in a forked child) and a state
    machine that provides L{IBackgroundSnapshot}, snapshots are encoded
    there: the reactor only freezes the state.  It is given a
    L{SnapshotWriter} and fires with the bytes that wrote; with a state
    machine that provides L{IStreamingSnapshot} too, the writer encodes
    and writes a batch at a time.  Without it they are encoded
    inline, which the simulation relies on to be deterministic.

    @ivar on_fatal: called with a reason when the node had to halt because
        its storage can no longer be trusted (the service exits so that a
        supervisor restarts it from disk).
    """

    log = Logger()

    def __init__(
        self,
        node_id: str,
        *,
        clock: IReactorTime,
        storage: IRaftStorage,
        transport: IPeerTransport,
        state_machine: IStateMachine,
        settings: NodeSettings | None = None,
        rng: random.Random | None = None,
        run_in_thread: Callable[[SnapshotWriter], Deferred[bytes]] | None = None,
    ) -> None:
        self.node_id = node_id
        self._run_in_thread = run_in_thread
        self._clock = clock
        self._storage = storage
        self._transport = transport
        self._sm = state_machine
        self.settings = settings or NodeSettings()
        self._notices = CommitNotices(clock, self.settings.commit_notice_delay, transport.send)
        self._send = self._notices.send
        self._rng = rng or random.Random()
        self._core: RaftCore | None = None
        self.identity = NodeIdentity(node_id)
        self.applied_index = 0
        self._sessions = SessionTable(self.settings.session_ttl)
        self._latest_snapshot: tuple[SnapshotMeta, bytes] | None = None
        # Log bytes applied since the newest snapshot, and that snapshot's size.
        self._applied_bytes = 0
        self._snapshot_size = 0
        self._snapshotting = False
        self._snapshot_retry_at = 0.0
        self._snapshot_every = self._next_snapshot_threshold()

        self._queue: list[tuple[list[Any], Deferred[Any]]] = []
        # Batch ids start at random so that a restarted follower's ids do
        # not look like duplicates of its previous life's to the leader.
        self._relay_ids = self._rng.getrandbits(48)
        self._relays_seen: dict[str, deque[int]] = {}
        self._relayed: dict[int, _RelayedBatch] = {}
        self._relayed_in: list[Propose] = []
        self._recent_results: dict[int, tuple[int, Any]] = {}
        self._pending: dict[int, _Pending] = {}
        self._deadlines: deque[tuple[float, int]] = deque()
        self._read_ids = 0
        self._reads: dict[int, tuple[Deferred[int], float]] = {}
        self._read_waiters: list[tuple[int, int, Deferred[int]]] = []
        self._transfers: list[tuple[str, Deferred[str], float]] = []
        self._listeners: list[ApplyListener] = []
        self._event_listeners: list[Callable[[tuple[str, ...]], None]] = []
        self._notifications: list[tuple[int, Any, Any]] = []
        self._committed_later: list[Entry] = []
        self._outgoing: dict[str, _OutgoingSnapshot] = {}
        self._incoming: _IncomingSnapshot | None = None
        self._incoming_data: bytes | None = None
        self._staged: _StagedSnapshot | None = None

        self._ticker: LoopingCall | None = None
        self._process_call: IDelayedCall | None = None
        self._notify_call: IDelayedCall | None = None
        self._disk_failing = False
        self._persist_backoff = 0.0
        self._persist_retry_at = 0.0
        self._persist_skipped = False
        self._halted = False
        self._fatal: str | None = None
        self.on_fatal: Callable[[str], None] = lambda reason: None

    # -- life cycle --------------------------------------------------------------

    @property
    def core(self) -> RaftCore:
        assert self._core is not None, "node not started"
        return self._core

    def start(self, *, bootstrap: Configuration | None = None, cluster_id: str = "") -> None:
        """
        Load storage and start ticking.  With C{bootstrap}, a node whose
        storage is empty writes that initial configuration; a node with data
        just resumes, whatever the arguments (restart with the same command
        line).
        """
        loaded = self._storage.load()
        if loaded.identity is None:
            self.identity = NodeIdentity(self.node_id, cluster_id if bootstrap else "")
            self._storage.set_identity(self.identity).addErrback(self._storage_failed)
        else:
            if loaded.identity.node_id != self.node_id:
                raise ValueError(
                    f"the data directory belongs to node {loaded.identity.node_id!r},"
                    f" not {self.node_id!r}"
                )
            self.identity = loaded.identity
        self._core = RaftCore(
            self.node_id,
            settings=self.settings.core_settings(),
            rng=self._rng,
            hard_state=loaded.hard_state,
            snapshot=loaded.snapshot,
            entries=loaded.entries,
        )
        if loaded.snapshot is not None and loaded.snapshot_data is not None:
            self._restore(loaded.snapshot, loaded.snapshot_data)
        blank = loaded.hard_state.term == 0 and not loaded.entries and loaded.snapshot is None
        if bootstrap is not None and blank:
            # Also after a crash between recording the identity and the
            # first configuration: nothing of the cluster exists yet.
            if not self.identity.cluster_id:
                self.adopt_cluster_id(cluster_id)
            self._core.bootstrap(bootstrap)
            self.log.info(
                "{node}: bootstrapped cluster {cluster} with {members}",
                node=self.node_id,
                cluster=self.identity.cluster_id,
                members=", ".join(m.node_id for m in bootstrap.members),
            )
        self._transport.start(self._receive)
        self._update_peers(self._core.configuration)
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = self._clock
        self._ticker.start(self.settings.tick_interval, now=False)
        self._schedule()

    def adopt_cluster_id(self, cluster_id: str) -> None:
        """
        A fresh node was contacted by a member of cluster C{cluster_id}.
        """
        if self.identity.cluster_id == cluster_id:
            return
        self.identity = NodeIdentity(self.node_id, cluster_id)
        self.log.info("{node}: joined cluster {cluster}", node=self.node_id, cluster=cluster_id)
        self._storage.set_identity(self.identity).addErrback(self._storage_failed)

    def stop(self) -> Deferred[None]:
        """
        Stop ticking and close transport and storage.
        """
        self._halt()
        d: Deferred[None] = self._transport.stop()
        d.addBoth(lambda _: self._storage.close())
        return d

    def halt(self) -> None:
        """
        Stop dead, as if the process were killed: no flushing, no goodbyes.
        (The simulation's crash; storage decides what survives.)
        """
        self._halt()

    def _halt(self) -> None:
        self._halted = True
        if self._ticker is not None and self._ticker.running:
            self._ticker.stop()
        for call in (self._process_call, self._notify_call):
            if call is not None and call.active():
                call.cancel()
        self._process_call = self._notify_call = None
        self._notices.stop()

    # -- public API -----------------------------------------------------------------

    def propose(self, command: Any, session: tuple[str, int] | None = None) -> Deferred[Any]:
        if self._halted:
            return fail(NoLeader("node is stopped"))
        client, seq = session if session is not None else (None, 0)
        d: Deferred[Any] = Deferred()
        self._queue.append(([command, client, seq], d))
        self._schedule()
        return d

    def read_index(self) -> Deferred[int]:
        if self._halted:
            return fail(NoLeader("node is stopped"))
        self._read_ids += 1
        rid = self._read_ids
        d: Deferred[int] = Deferred()
        self._reads[rid] = (d, self._clock.seconds() + self.settings.read_timeout)
        self.core.request_read(rid)
        self._schedule()
        return d

    @property
    def disk_failing(self) -> bool:
        """
        Whether this node's last log write failed (disk full...) and none
        has succeeded since.
        """
        return self._disk_failing

    def status(self) -> NodeStatus:
        core = self.core
        role = core.role
        name = "Candidate" if role is Role.PRE_CANDIDATE else role.value
        return NodeStatus(
            node_id=self.node_id,
            role=name,
            term=core.term,
            leader_id=core.leader_id,
            commit_index=core.commit_index,
            applied_index=self.applied_index,
            last_log_index=core.log.last_index,
            snapshot_index=core.snapshot.index,
            members=core.configuration.members,
        )

    def add_apply_listener(self, listener: ApplyListener) -> None:
        self._listeners.append(listener)

    def add_event_listener(self, listener: Callable[[tuple[str, ...]], None]) -> None:
        """
        Call C{listener} synchronously with each core event (role and leader
        changes...): for logs, metrics and the simulation's invariant checks.
        """
        self._event_listeners.append(listener)

    def add_learner(self, member: Member) -> Deferred[None]:
        return self._change(MembershipOp.ADD_LEARNER, member)

    def remove(self, node_id: str) -> Deferred[None]:
        return self._change(MembershipOp.REMOVE, Member(node_id, ""))

    def promote(self, node_id: str) -> Deferred[None]:
        """
        Promote a learner once it has caught up; retries on every tick until
        the proposal timeout.
        """
        deadline = self._clock.seconds() + self.settings.proposal_timeout
        result: Deferred[None] = Deferred()

        def attempt() -> None:
            d = self._change(MembershipOp.PROMOTE, Member(node_id, ""))

            def retry(f: Failure) -> Failure | None:
                if (
                    isinstance(f.value, ConfigurationChangeError)
                    and "caught up" in str(f.value)
                    and self._clock.seconds() < deadline
                ):
                    self._clock.callLater(self.settings.tick_interval, attempt)
                    return None
                return f

            d.addCallbacks(result.callback, retry)
            d.addErrback(result.errback)

        attempt()
        return result

    def _change(self, op: MembershipOp, member: Member) -> Deferred[None]:
        try:
            index, term = self.core.change_membership(op, member)
        except RaftError as e:
            return fail(e)
        d: Deferred[None] = Deferred()
        self._track(index, term, d)
        self.log.info(
            "{node}: proposed {op} {member} at index {index}",
            node=self.node_id,
            op=op.value,
            member=member.node_id,
            index=index,
        )
        self._schedule()
        return d

    def transfer_leadership(self, node_id: str | None = None) -> Deferred[str]:
        try:
            target = self.core.transfer_leadership(node_id)
        except RaftError as e:
            return fail(e)
        d: Deferred[str] = Deferred()
        timeout = 3 * self.settings.election_ticks * self.settings.tick_interval
        self._transfers.append((target, d, self._clock.seconds() + timeout))
        self.log.info("{node}: handing leadership to {target}", node=self.node_id, target=target)
        self._schedule()
        return d

    def take_snapshot(self) -> Deferred[SnapshotMeta | None]:
        """
        Snapshot the state machine now (on demand; also automatic every
        C{snapshot_threshold} entries).  Fires with the snapshot's metadata,
        or L{None} when there is nothing new to snapshot.
        """
        return self._snapshot_now()

    # -- the loop ---------------------------------------------------------------------

    def _schedule(self) -> None:
        if self._process_call is None and not self._halted:
            self._process_call = self._clock.callLater(0, self._process)

    def _tick(self) -> None:
        if self._halted:
            return
        if self._persist_skipped:
            self._persist_skipped = False
            self.core.on_persist_failed()
        self.core.tick()
        self._expire()
        self._retry_staged_snapshot()
        self._check_snapshot_sends()
        self._hand_over_if_disk_failing()
        self._schedule()

    def _receive(self, message: Message) -> None:
        if self._halted or self._core is None:
            return
        if isinstance(message, Propose):
            self._relayed_in.append(message)
            self._schedule()
            return
        if isinstance(message, ProposeResponse):
            self._on_propose_response(message)
            return
        if self._staged is not None and isinstance(
            message, AppendEntries | InstallSnapshot | TimeoutNow
        ):
            # The log is about to be replaced by the staged snapshot: nothing
            # may change it meanwhile.  The leader sends again.
            return
        self._core.step(message)
        if isinstance(message, InstallSnapshotResponse):
            self._on_snapshot_response(message)
        self._schedule()

    def _process(self) -> None:
        self._process_call = None
        if self._halted:
            return
        self._flush_proposals()
        while not self._halted:
            ready = self.core.take_ready()
            if ready is None:
                break
            self._handle(ready)

    def _flush_proposals(self) -> None:
        """
        Append the proposals of this reactor turn, ours and those followers
        relayed to us, as one batch; or, as a follower, relay ours.
        """
        queue, self._queue = self._queue, []
        relayed, self._relayed_in = self._relayed_in, []
        if queue and self.core.role is not Role.LEADER and self._relay(queue):
            queue = []
        accepted = [m for m in relayed if self._accept_relayed(m)]
        if not queue and not accepted:
            return
        if self._disk_failing and self.core.role is Role.LEADER:
            # Refused before it reaches the log, so it is certainly not
            # applied: the client may retry at once (another node will
            # lead soon).
            full = LeaderDiskFull(
                f"{self.node_id} cannot write its log (disk full?): the request was not applied"
            )
            for _, d in queue:
                d.errback(full)
            return
        now = self._clock.seconds()
        payloads = []
        for envelope, _ in queue:
            envelope.append(now)
            payloads.append(cbor2.dumps(envelope))
        for m in accepted:
            payloads.extend(_stamp(p, now) for p in m.payloads)
        try:
            positions = self.core.propose(payloads)
        except RaftError as e:
            for _, d in queue:
                d.errback(e)
            for m in accepted:
                self._answer_relay(m, (), _relay_error(e))
            return
        for (index, term), (_, d) in zip(positions, queue, strict=False):
            self._track(index, term, d)
        # Answer before _process sends the entries: on the same ordered
        # connection, the follower learns what to wait for first.
        offset = len(queue)
        for m in accepted:
            end = offset + len(m.payloads)
            self._answer_relay(m, tuple(positions[offset:end]))
            if end > offset:
                self._notices.relayed(m.sender, positions[end - 1][0])
            offset = end

    # -- relaying proposals between follower and leader -------------------------------

    def _relay(self, queue: list[tuple[list[Any], Deferred[Any]]]) -> bool:
        """
        As a follower, send C{queue} to the leader in L{Propose} messages;
        C{False} when there is no leader to relay to (the proposals then
        fail as before, with L{NotLeader}).
        """
        core = self.core
        leader = core.leader_id
        if not self.settings.forward_proposals or leader is None or leader == self.node_id:
            return False
        deadline = self._clock.seconds() + self.settings.forward_timeout
        size = max(1, self.settings.forward_batch)
        for start in range(0, len(queue), size):
            chunk = queue[start : start + size]
            self._relay_ids += 1
            bid = self._relay_ids
            self._relayed[bid] = _RelayedBatch(leader, [d for _, d in chunk], deadline)
            payloads = tuple(cbor2.dumps(envelope) for envelope, _ in chunk)
            self._send(leader, Propose(core.term, self.node_id, bid, payloads))
        return True

    def _accept_relayed(self, m: Propose) -> bool:
        """
        Whether the leader takes the proposals a follower relayed (answering
        the follower at once when not).
        """
        core = self.core
        if core.configuration.get(m.sender) is None:
            error = "refused"
        else:
            seen = self._relays_seen.setdefault(m.sender, deque(maxlen=_RECENT_RELAYS))
            if m.batch_id in seen:
                # A duplicated message (the network may repeat one): its
                # first copy was answered.
                return False
            seen.append(m.batch_id)
            error = ""
            if core.role is not Role.LEADER or m.term > core.term:
                error = "not_leader"
            elif self._disk_failing:
                error = "disk_full"
            elif not all(map(_is_envelope, m.payloads)):
                # Checked last: it decodes every payload.
                error = "refused"
        if error == "refused":
            self.log.warn(
                "{node}: refused proposals relayed by {peer}", node=self.node_id, peer=m.sender
            )
        if error:
            self._answer_relay(m, (), error)
        return not error

    def _answer_relay(
        self, m: Propose, positions: tuple[tuple[int, int], ...], error: str = ""
    ) -> None:
        self._send(
            m.sender, ProposeResponse(self.core.term, self.node_id, m.batch_id, positions, error)
        )

    def _on_propose_response(self, m: ProposeResponse) -> None:
        batch = self._relayed.get(m.batch_id)
        if batch is None or batch.leader != m.sender:
            return
        del self._relayed[m.batch_id]
        if m.error or len(m.positions) != len(batch.deferreds):
            error = self._relay_failure(m)
            for d in batch.deferreds:
                d.errback(error)
            return
        for (index, term), d in zip(m.positions, batch.deferreds, strict=True):
            if index > self.applied_index:
                self._track(index, term, d)
                continue
            recent = self._recent_results.get(index)
            if recent is None:
                d.errback(CommitTimeout(f"entry {index} was applied before the leader answered"))
            elif recent[0] == term:
                d.callback(recent[1])
            else:
                d.errback(ProposalDropped(f"entry {index} was overwritten"))

    def _abandon_relays(self) -> None:
        """
        Stop waiting for answers from a node that is no longer the leader we
        know: it crashed or was deposed, and its answer will likely never
        come.  What it received may still commit, so the outcome is unknown.
        """
        leader = self.core.leader_id
        for bid, batch in list(self._relayed.items()):
            if batch.leader != leader:
                del self._relayed[bid]
                batch.unknown(f"leadership moved away from {batch.leader} before it answered")

    def _relay_failure(self, m: ProposeResponse) -> RaftError:
        if not m.error:
            return CommitTimeout(f"{m.sender} answered for the wrong number of proposals")
        if m.error == "not_leader":
            core = self.core
            known = core.leader_id if core.leader_id != m.sender else None
            return NotLeader(core.configuration.get(known) if known else None)
        kind, reason = _RELAY_ERRORS.get(
            m.error, (ProposalDropped, f"the leader answered {m.error[:40]!r}")
        )
        return kind(f"{m.sender}: {reason}; the request was not applied")

    def _track(self, index: int, term: int, d: Deferred[Any]) -> None:
        deadline = self._clock.seconds() + self.settings.proposal_timeout
        superseded = self._pending.get(index)
        if superseded is not None:
            # A proposal relayed in an older term, then this node led and
            # appended its own at the same index: the older one may still
            # commit through another leader, so its outcome is unknown.
            superseded.deferred.errback(
                CommitTimeout(f"entry {index} was superseded here; outcome unknown")
            )
        self._pending[index] = _Pending(term, d, deadline)
        self._deadlines.append((deadline, index))

    def _handle(self, ready: Ready) -> None:
        send = self._send
        leading = self.core.role is Role.LEADER
        saving: Deferred[None] | None = None
        notices: list[tuple[str, Message]] = []
        if ready.committed:
            notices = self._send_entries_first(ready)
        else:
            for to, message in ready.messages:
                send(to, message)
        if ready.configuration is not None:
            self._update_peers(ready.configuration)
        if ready.install_snapshot is not None:
            self._install(ready.install_snapshot)
        if ready.hard_state is not None or ready.entries or ready.persisted_messages:
            if self._disk_failing and self._clock.seconds() < self._persist_retry_at:
                # Not yet time to try the failing disk again: as if this
                # write failed too, without the cost of attempting it.  The
                # core learns it on the next tick (now, it would hand the
                # same entries straight back).
                self._persist_skipped = True
            else:
                saving = self._storage.save(
                    PersistBatch(ready.hard_state, ready.entries),
                    not leading and self.settings.blocking_follower_writes,
                )
                saving.addCallback(self._persisted, ready)
                saving.addErrback(self._persist_failed, ready)
        if ready.committed:
            if self._committed_later or (saving is not None and ready.entries and not leading):
                self._apply_after(saving, ready.committed)
            else:
                self._apply(ready.committed)
        for to, message in notices:
            self._notices.notice(to, message)
        for rs in ready.read_states:
            self._read_ready(rs)
        for rid in ready.failed_reads:
            self._read_failed(rid)
        for peer in ready.snapshot_sends:
            self._start_snapshot_send(peer)
        for chunk in ready.snapshot_chunks:
            self._on_snapshot_chunk(chunk)
        for event in ready.events:
            self._on_event(event)
        if ready.events:
            self._check_transfers()
            self._abandon_relays()
        if self.core.role is not Role.LEADER and self._outgoing:
            self._outgoing.clear()
        self._maybe_snapshot()

    def _apply_after(self, saving: Deferred[None] | None, committed: tuple[Entry, ...]) -> None:
        """
        Apply C{committed} once C{saving} (or the save already waited for)
        is done.

        A follower told of a commit by the C{AppendEntries} that also brings
        new entries answers the leader when those are on disk; applying
        meanwhile would hold the interpreter lock when the writer thread
        needs it to report the fsync, and delay the answer that the
        leader's next commit waits for.  So the answer goes first.  Entries
        committed meanwhile queue behind, so they apply in order.
        """
        waiting = bool(self._committed_later)
        self._committed_later.extend(committed)
        if not waiting:
            assert saving is not None
            saving.addBoth(self._apply_committed_later)

    def _apply_committed_later(self, result: object) -> object:
        entries, self._committed_later = tuple(self._committed_later), []
        if not self._halted:
            self._apply(entries)
        return result

    def _send_entries_first(self, ready: Ready) -> list[tuple[str, Message]]:
        """
        Send the messages of C{ready} that carry entries (or anything but an
        empty C{AppendEntries}) and return the rest, to be sent once the
        committed entries are applied: a notice of the new commit index
        does not delay the answers to the clients whose entries it
        commits.  A peer's messages keep their order (once one of them is
        held back, the later ones are too); holding a message back only
        delays it, which Raft tolerates of any network.
        """
        send = self._send
        held: list[tuple[str, Message]] = []
        holding: set[str] = set()
        for to, message in ready.messages:
            if to in holding or (isinstance(message, AppendEntries) and not message.entries):
                holding.add(to)
                held.append((to, message))
            else:
                send(to, message)
        return held

    def _persisted(self, _: object, ready: Ready) -> None:
        if self._halted:
            return
        if self._disk_failing:
            self._disk_failing = False
            self._persist_backoff = 0.0
            self.log.info("{node}: log writes succeed again", node=self.node_id)
        send = self._send
        for to, message in ready.persisted_messages:
            send(to, message)
        if ready.persist_mark is not None:
            self.core.on_persisted(*ready.persist_mark)
        self._schedule()

    def _persist_failed(self, failure: Failure, ready: Ready) -> None:
        """
        A log write failed (disk full...): nothing of it is acknowledged.
        The core writes everything not known durable again with the next
        ready, which the next tick produces at the latest.

        Meanwhile:

         - the messages of C{ready} that had to wait for it are dropped
           (acknowledgements, votes, heartbeat answers): a follower falls
           silent and keeps what it had applied, which stale reads still
           see; the leader and the healthy majority go on without it.
         - a leader stops taking proposals (L{_flush_proposals}) and hands
           leadership to another voter (L{_hand_over_if_disk_failing}).
         - proposals that can only commit with this node's own log write
           (no majority without it) fail at once with L{CommitTimeout}:
           they stay in the log and still take effect if the disk comes
           back, so the client must retry with the same session, exactly
           as after a timeout, but it does not wait for the timeout.
        """
        if self._halted:
            return
        if not self._disk_failing:
            self._disk_failing = True
            self.log.error(
                "{node}: log write failed, retrying until it succeeds: {error}",
                node=self.node_id,
                error=failure.getErrorMessage(),
            )
        self.core.on_persist_failed()
        # Each attempt rewrites everything not yet durable: back off up to
        # a second rather than rewriting it on every turn.
        self._persist_backoff = min(
            _MAX_PERSIST_BACKOFF, max(self.settings.tick_interval, 2 * self._persist_backoff)
        )
        self._persist_retry_at = self._clock.seconds() + self._persist_backoff
        if self.core.role is Role.LEADER:
            if not self._majority_without_me():
                self._fail_pending(
                    "this node cannot write its log (disk full?) and the cluster cannot commit"
                    " without it; the request may still take effect once it can: retry in the"
                    " same session (Idempotency-Key)"
                )
            self._hand_over_if_disk_failing()

    def _majority_without_me(self) -> bool:
        """
        Whether the other voters are a majority on their own.
        """
        voters = self.core.configuration.voters()
        others = len(voters - {self.node_id})
        return others >= len(voters) // 2 + 1

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for waiter in pending.values():
            waiter.deferred.errback(CommitTimeout(reason))

    def _hand_over_if_disk_failing(self) -> None:
        """
        A leader whose log writes fail hands leadership to the most
        up-to-date other voter, and tries again after each failed transfer
        for as long as its disk fails (as HashiCorp Raft steps down when
        its log store fails).  Only a healthy node can then win: this one
        cannot persist a vote or its term, so its own campaign messages
        never leave.
        """
        core = self.core
        if (
            not self._disk_failing
            or self._halted
            or core.role is not Role.LEADER
            or self._transfers
            or not (core.configuration.voters() - {self.node_id})
        ):
            return
        self.log.warn(
            "{node}: cannot write its log; refusing writes and handing over leadership",
            node=self.node_id,
        )
        self.transfer_leadership(None).addErrback(lambda _: None)

    def _storage_failed(self, failure: Failure) -> None:
        """
        A write whose failure leaves memory and disk disagreeing (the node's
        identity): halt, so that a restart reloads from disk.
        """
        self._halt_fatal(failure.getErrorMessage())

    def _halt_fatal(self, reason: str) -> None:
        self._fatal = reason
        self.log.critical(
            "{node}: storage failure, halting: {error}", node=self.node_id, error=self._fatal
        )
        self._halt()
        self.on_fatal(self._fatal)

    def _update_peers(self, configuration: Configuration) -> None:
        self._transport.set_peers(
            {m.node_id: m.raft_addr for m in configuration.members if m.node_id != self.node_id}
        )

    def _on_event(self, event: tuple[str, ...]) -> None:
        for listener in self._event_listeners:
            listener(event)
        kind = event[0]
        if kind == "role":
            self.log.info(
                "{node}: became {role} in term {term}",
                node=self.node_id,
                role=event[1],
                term=event[2],
            )
        elif kind == "leader":
            self.log.info(
                "{node}: leader is {leader} in term {term}",
                node=self.node_id,
                leader=event[1],
                term=event[2],
            )
        elif kind == "lost_quorum":
            self.log.warn(
                "{node}: stepping down in term {term}: no contact with a majority",
                node=self.node_id,
                term=event[1],
            )
        elif kind == "transfer_aborted":
            self.log.warn(
                "{node}: leadership transfer to {target} timed out",
                node=self.node_id,
                target=event[1],
            )
            for target, d, _ in self._transfers:
                if target == event[1] and self.core.role is Role.LEADER:
                    d.errback(ConfigurationChangeError(f"transfer to {target} timed out"))
            self._transfers = [t for t in self._transfers if not t[1].called]
        elif kind == "removed":
            self.log.info("{node}: removed from the cluster, stepping down", node=self.node_id)
        else:
            self.log.info("{node}: {event}", node=self.node_id, event=" ".join(event))

    def _check_transfers(self) -> None:
        core = self.core
        keep = []
        for target, d, deadline in self._transfers:
            if d.called:
                continue
            if core.role is not Role.LEADER and core.leader_id == target:
                d.callback(target)
            else:
                keep.append((target, d, deadline))
        self._transfers = keep

    # -- applying ---------------------------------------------------------------------

    def _apply(self, entries: tuple[Entry, ...]) -> None:
        pending = self._pending
        for entry in entries:
            index = entry.index
            if index <= self.applied_index:
                continue
            waiter = pending.pop(index, None)
            if waiter is not None and waiter.term != entry.term:
                waiter.deferred.errback(ProposalDropped(f"entry {index} was overwritten"))
                waiter = None
            result: Any = None
            if entry.type is EntryType.NORMAL:
                # Always decode what the log holds, so the leader applies
                # exactly what its followers apply.
                self._applied_bytes += len(entry.data)
                command, client, seq, timestamp = cbor2.loads(entry.data)
                result = self._apply_command(index, command, client, seq, timestamp)
                self._notifications.append((index, command, result))
                if self._relayed:
                    self._remember_result(index, entry.term, result)
            self.applied_index = index
            if waiter is not None:
                waiter.deferred.callback(result)
        if self._notifications and self._notify_call is None:
            self._notify_call = self._clock.callLater(0, self._notify)
        self._release_reads()

    def _apply_command(
        self, index: int, command: Any, client: str | None, seq: int, timestamp: float
    ) -> Any:
        self._sessions.advance(timestamp)
        if client is not None:
            seen, result = self._sessions.lookup(client, seq)
            if seen:
                return result
        try:
            result = self._sm.apply(index, command)
        except Exception:
            # Deterministic on every replica (same code, same command), so
            # recording the failure keeps replicas identical.
            self.log.failure(
                "{node}: state machine failed on entry {index}", node=self.node_id, index=index
            )
            result = {"error": {"code": "internal", "message": "command failed"}}
        if client is not None:
            self._sessions.record(client, seq, result)
        return result

    def _remember_result(self, index: int, term: int, result: Any) -> None:
        recent = self._recent_results
        recent[index] = (term, result)
        if len(recent) > 2 * _RECENT_RESULTS:
            for old in [i for i in recent if i <= index - _RECENT_RESULTS]:
                del recent[old]

    def _notify(self) -> None:
        self._notify_call = None
        notifications, self._notifications = self._notifications, []
        for listener in self._listeners:
            for index, command, result in notifications:
                try:
                    listener(index, command, result)
                except Exception:
                    self.log.failure("apply listener failed")

    def _expire(self) -> None:
        now = self._clock.seconds()
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, index = self._deadlines.popleft()
            waiter = self._pending.get(index)
            if waiter is not None and waiter.deadline == deadline:
                del self._pending[index]
                waiter.deferred.errback(CommitTimeout(f"entry {index} not applied in time"))
        for bid, batch in list(self._relayed.items()):
            if batch.deadline <= now:
                del self._relayed[bid]
                batch.unknown(f"{batch.leader} did not say in time where it appended it")
        if not self._relayed:
            self._recent_results.clear()
        for rid, (read, deadline) in list(self._reads.items()):
            if deadline <= now:
                del self._reads[rid]
                read.errback(NoLeader("read index not confirmed in time"))
        for target, transfer, deadline in self._transfers:
            if deadline <= now and not transfer.called:
                transfer.errback(ConfigurationChangeError(f"transfer to {target} timed out"))
        self._transfers = [t for t in self._transfers if not t[1].called]

    # -- reads ----------------------------------------------------------------------

    def _read_ready(self, rs: ReadState) -> None:
        found = self._reads.pop(rs.request_id, None)
        if found is None:
            return
        d = found[0]
        if rs.index <= self.applied_index:
            d.callback(rs.index)
        else:
            heapq.heappush(self._read_waiters, (rs.index, rs.request_id, d))

    def _read_failed(self, rid: int) -> None:
        found = self._reads.pop(rid, None)
        if found is not None:
            found[0].errback(NoLeader("leadership could not be confirmed"))

    def _release_reads(self) -> None:
        waiters = self._read_waiters
        while waiters and waiters[0][0] <= self.applied_index:
            index, _, d = heapq.heappop(waiters)
            d.callback(index)

    # -- snapshots --------------------------------------------------------------------

    def _snapshot_encoder(self) -> SnapshotWriter:
        """
        Freeze the state machine and the sessions as they are now; return
        the function that encodes them into one snapshot document and
        writes it out.
        """
        sessions = self._sessions.to_wire()
        sm_chunks: Callable[[], Iterable[bytes | memoryview]]
        if IStreamingSnapshot.providedBy(self._sm):
            sm_chunks = self._sm.freeze_chunks()
        elif IBackgroundSnapshot.providedBy(self._sm):
            encode_sm = self._sm.freeze()

            def sm_chunks() -> Iterable[bytes]:
                return (encode_sm(),)
        else:
            data = self._sm.snapshot()

            def sm_chunks() -> Iterable[bytes]:
                return (data,)

        def encode(out: IO[bytes]) -> None:
            write_snapshot_document(out, sm_chunks(), sessions)

        return encode

    def _encode_snapshot(self) -> Deferred[bytes]:
        encode = self._snapshot_encoder()
        if self._run_in_thread is not None and IBackgroundSnapshot.providedBy(self._sm):
            return self._run_in_thread(encode)
        return succeed(bytes_written_by(encode))

    def _restore(self, meta: SnapshotMeta, data: bytes) -> None:
        decoded = cbor2.loads(data)
        self._sm.restore(decoded["sm"])
        self._sessions = SessionTable(self.settings.session_ttl)
        self._sessions.restore(decoded["sessions"])
        self.applied_index = meta.index
        self._latest_snapshot = (meta, data)
        self._snapshot_size = len(data)
        self._applied_bytes = 0
        for index in [i for i in self._pending if i <= meta.index]:
            self._pending.pop(index).deferred.errback(
                CommitTimeout(f"entry {index} was replaced by a snapshot; outcome unknown")
            )
        self._release_reads()

    def _maybe_snapshot(self) -> None:
        if (
            not self._snapshotting
            and self.applied_index - self.core.snapshot.index >= self._snapshot_every
            and self._applied_bytes * self.settings.snapshot_log_ratio >= self._snapshot_size
            and self._clock.seconds() >= self._snapshot_retry_at
        ):
            self._snapshot_now()

    def _next_snapshot_threshold(self) -> int:
        """
        Entries to apply before the next snapshot (see
        C{NodeSettings.snapshot_stagger}).
        """
        threshold = self.settings.snapshot_threshold
        stagger = self.settings.snapshot_stagger
        if stagger <= 0:
            return threshold
        return threshold + int(threshold * stagger * self._rng.random())

    def _snapshot_now(self) -> Deferred[SnapshotMeta | None]:
        core = self.core
        index = self.applied_index
        if self._snapshotting or index <= core.snapshot.index:
            return succeed(None)
        term = core.log.term_at(index)
        if term is None:
            return succeed(None)
        meta = SnapshotMeta(index, term, core.configuration_at(index))
        self._snapshotting = True
        frozen_bytes, self._applied_bytes = self._applied_bytes, 0
        started = self._clock.seconds()

        def encoded(data: bytes) -> Deferred[bytes]:
            if self._halted:
                return succeed(data)
            return self._storage.save_snapshot(meta, data).addCallback(lambda _: data)

        def written(data: bytes) -> SnapshotMeta:
            self._snapshotting = False
            self._snapshot_every = self._next_snapshot_threshold()
            if self._halted:
                return meta
            self._latest_snapshot = (meta, data)
            self._snapshot_size = len(data)
            core.snapshot_taken(meta)
            upto = meta.index - self.settings.trailing_entries
            if upto > 0:
                core.compact(upto)
                self._storage.compact(upto).addErrback(
                    lambda f: self.log.error("compaction failed: {e}", e=f.getErrorMessage())
                )
            self.log.info(
                "{node}: snapshot at index {index} ({size} bytes, {secs:.3f}s)",
                node=self.node_id,
                index=meta.index,
                size=len(data),
                secs=self._clock.seconds() - started,
            )
            return meta

        def failed(f: Failure) -> None:
            # Not at once again: serializing the whole state machine on
            # every turn while the disk is full would burn the CPU.
            self._snapshotting = False
            self._applied_bytes += frozen_bytes
            self._snapshot_retry_at = self._clock.seconds() + self.settings.snapshot_retry_delay
            self.log.error(
                "{node}: snapshot failed, retrying in {delay:g}s: {e}",
                node=self.node_id,
                delay=self.settings.snapshot_retry_delay,
                e=f.getErrorMessage(),
            )

        return self._encode_snapshot().addCallback(encoded).addCallbacks(written, failed)

    def _install(self, meta: SnapshotMeta) -> None:
        data = self._incoming_data
        self._incoming_data = None
        assert data is not None
        self._restore(meta, data)
        self.log.info(
            "{node}: installed snapshot at index {index} from the leader",
            node=self.node_id,
            index=meta.index,
        )

    def _store_staged_snapshot(self) -> None:
        """
        Write the staged snapshot (and drop the log it replaces) before
        touching memory: if the disk is full the write fails, nothing has
        changed, and the node stays up, serving what it has, and tries again
        every C{snapshot_retry_delay} until the disk has room.
        """
        staged = self._staged
        assert staged is not None
        staged.writing = True
        d = self._storage.install_snapshot(staged.meta, staged.data)
        d.addCallbacks(
            self._staged_snapshot_stored,
            self._staged_snapshot_failed,
            callbackArgs=(staged,),
            errbackArgs=(staged,),
        )

    def _staged_snapshot_stored(self, _: object, staged: _StagedSnapshot) -> None:
        if self._halted or self._staged is not staged:
            return
        self._staged = None
        core = self.core
        core.campaign_blocked = False
        if staged.failures:
            self.log.info("{node}: snapshot stored after all", node=self.node_id)
        if not core.install_snapshot(staged.leader, staged.meta):
            # Nothing could change the log while it was being written.
            self._halt_fatal("the log moved while a snapshot that replaces it was stored")
            return
        self._incoming_data = staged.data
        self._schedule()

    def _staged_snapshot_failed(self, failure: Failure, staged: _StagedSnapshot) -> None:
        if self._halted or self._staged is not staged:
            return
        staged.writing = False
        staged.failures += 1
        staged.retry_at = self._clock.seconds() + self.settings.snapshot_retry_delay
        if staged.failures == 1:
            self.log.error(
                "{node}: cannot store the snapshot at index {index} from the leader,"
                " retrying until it can: {error}",
                node=self.node_id,
                index=staged.meta.index,
                error=failure.getErrorMessage(),
            )

    def _retry_staged_snapshot(self) -> None:
        staged = self._staged
        if staged is not None and not staged.writing and self._clock.seconds() >= staged.retry_at:
            self._store_staged_snapshot()

    def _start_snapshot_send(self, peer: str) -> None:
        if peer in self._outgoing:
            return
        if self._latest_snapshot is None:
            self.core.report_snapshot(peer, False)
            return
        meta, data = self._latest_snapshot
        self.log.info(
            "{node}: sending snapshot at index {index} to {peer}",
            node=self.node_id,
            index=meta.index,
            peer=peer,
        )
        self._outgoing[peer] = _OutgoingSnapshot(meta, data, self._clock.seconds())
        self._pump_snapshot(peer)

    def _pump_snapshot(self, peer: str) -> None:
        out = self._outgoing[peer]
        core = self.core
        size = len(out.data)
        chunk = self.settings.snapshot_chunk_size
        window = chunk * self.settings.snapshot_window
        while (out.sent < size or not out.started) and out.sent - out.acked < window:
            end = min(out.sent + chunk, size)
            self._send(
                peer,
                InstallSnapshot(
                    term=core.term,
                    sender=self.node_id,
                    last_index=out.meta.index,
                    last_term=out.meta.term,
                    configuration=out.meta.configuration,
                    offset=out.sent,
                    data=out.data[out.sent : end],
                    done=end >= size,
                    size=size,
                    checksum=out.checksum,
                ),
            )
            out.started = True
            out.sent = end
            if end >= size:
                break

    def _on_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        out = self._outgoing.get(m.sender)
        if out is None or self.core.role is not Role.LEADER:
            return
        if m.done:
            del self._outgoing[m.sender]
            return
        if m.last_index != out.meta.index:
            return
        now = self._clock.seconds()
        if not m.success:
            out.acked = out.sent = 0
            out.started = False
            out.progress_at = out.resent_at = now
        elif m.offset > out.acked:
            out.acked = m.offset
            out.sent = max(out.sent, m.offset)
            out.progress_at = out.resent_at = now
        elif m.offset < out.acked:
            # The follower lost what it had (it restarted): resume there.
            out.acked = out.sent = m.offset
            out.started = m.offset > 0
            out.resent_at = now
        else:
            return
        self._pump_snapshot(m.sender)

    def _check_snapshot_sends(self) -> None:
        now = self._clock.seconds()
        for peer, out in list(self._outgoing.items()):
            if now - out.progress_at > self.settings.snapshot_timeout:
                del self._outgoing[peer]
                self.log.warn("{node}: snapshot to {peer} timed out", node=self.node_id, peer=peer)
                self.core.report_snapshot(peer, False)
            elif now - out.resent_at > max(0.5, 10 * self.settings.tick_interval):
                # Nothing acknowledged for a while: a chunk was lost, go back
                # to the last acknowledged byte.
                out.sent = out.acked
                out.started = out.acked > 0
                out.resent_at = now
                self._pump_snapshot(peer)

    def _on_snapshot_chunk(self, m: InstallSnapshot) -> None:
        core = self.core
        key = (m.sender, m.last_index, m.last_term, m.size, m.checksum)
        if m.offset == 0 and (self._incoming is None or self._incoming.key != key):
            self._incoming = _IncomingSnapshot(key)
        incoming = self._incoming
        if incoming is None or incoming.key != key:
            core.ack_snapshot_chunk(m.sender, m.last_index, 0, False)
            return
        buffer = incoming.buffer
        if m.offset == len(buffer):
            buffer += m.data
        if len(buffer) > m.size:
            self._incoming = None
            core.ack_snapshot_chunk(m.sender, m.last_index, 0, False)
            return
        if m.done and m.offset + len(m.data) == len(buffer) == m.size:
            self._incoming = None
            if zlib.crc32(buffer) != m.checksum:
                self.log.warn("{node}: snapshot checksum mismatch, asking again", node=self.node_id)
                core.ack_snapshot_chunk(m.sender, m.last_index, 0, False)
                return
            meta = SnapshotMeta(m.last_index, m.last_term, m.configuration)
            if core.wants_snapshot(meta):
                self._staged = _StagedSnapshot(m.sender, meta, bytes(buffer))
                core.campaign_blocked = True
                self._store_staged_snapshot()
            else:
                core.install_snapshot(m.sender, meta)
            return
        core.ack_snapshot_chunk(m.sender, m.last_index, len(buffer), True)
