# -*- test-case-name: tests.raft.test_node -*-
"""
The seams of the engine: what the node driver needs from storage, from the
peer transport and from the replicated state machine, and what it offers to
the service built on it.

Dependencies point inward: L{raft3d.storage} and L{raft3d.transport}
implement these interfaces; the core and the driver only know them.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from ._messages import Message
from ._types import Entry, HardState, Member, NodeIdentity, SnapshotMeta


class CorruptStorage(Exception):
    """
    Storage found damage it cannot repair safely; the node must not start.

    @ivar path: the damaged file.
    @ivar offset: the byte offset of the damage in C{path}.
    """

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(f"{path}: corrupt at byte offset {offset}: {reason}")
        self.path = path
        self.offset = offset
        self.reason = reason


class StorageFull(Exception):
    """
    A write failed for lack of space (ENOSPC/EDQUOT); nothing of the failed
    batch is acknowledged, and the storage accepts writes again later.
    """


@attrs.frozen
class PersistBatch:
    """
    One unit of log/metadata work, made durable as a whole before its
    L{IRaftStorage.save} Deferred fires.

    @ivar hard_state: if not L{None}, replaces the stored term and vote.
    @ivar entries: contiguous entries; storage first discards every stored
        entry whose index is >= C{entries[0].index}, then appends them.
    """

    hard_state: HardState | None = None
    entries: tuple[Entry, ...] = ()


@attrs.frozen
class LoadedState:
    """
    What a node finds in its storage at start-up.

    @ivar identity: L{None} when the storage is empty (never bootstrapped or
        contacted).
    @ivar snapshot: the newest valid snapshot, if any; C{snapshot_data} is its
        payload.
    @ivar entries: every stored log entry, ascending and contiguous.  When
        there is a snapshot they may start before C{snapshot.index + 1} (the
        trailing window kept for lagging followers) but never after it.
    """

    identity: NodeIdentity | None
    hard_state: HardState
    snapshot: SnapshotMeta | None
    snapshot_data: bytes | None
    entries: tuple[Entry, ...]


class IRaftStorage(Interface):
    """
    Durable storage of one node: metadata, log and snapshots.

    Every method returning a L{Deferred} is executed in the order of the
    calls, off the reactor thread for real disks, and its Deferred fires
    (on the reactor thread) only once the work is durable (fsync/fdatasync).
    L{save_snapshot} alone may complete after calls made later: a large
    snapshot must not hold up the log.
    A failed write errbacks its Deferred (L{StorageFull} for lack of space)
    and leaves the storage as it was before that call.
    """

    def load() -> LoadedState:
        """
        Read everything at start-up (synchronously).

        A torn or corrupt record at the tail of the last segment is truncated
        away with a logged warning.  Corruption anywhere else raises
        L{CorruptStorage}.  A corrupt newest snapshot is skipped with a
        warning when the previous one plus the log still covers every entry;
        otherwise L{CorruptStorage}.
        """

    def set_identity(identity: NodeIdentity) -> Deferred[None]:
        """
        Durably record the node and cluster identity (metadata file).
        """

    def save(batch: PersistBatch, blocking: bool = False) -> Deferred[None]:
        """
        Durably apply C{batch}.  An empty batch does no I/O but still fires
        only after every earlier call has completed.

        @param blocking: the caller has nothing to do until the batch is
            durable (a follower, whose answer to the leader waits for it).
            The storage may then write it on the calling thread and return
            a Deferred that has already fired, when no earlier write is
            still in progress and recent writes were quick; or ignore the
            hint.
        """

    def save_snapshot(meta: SnapshotMeta, data: bytes) -> Deferred[None]:
        """
        Durably write a snapshot (temporary file with a checksum, fsync,
        rename, fsync of the directory) and delete all but the newest two.
        Later calls need not wait for it; the rename takes its place among
        them when the file is written.
        """

    def install_snapshot(meta: SnapshotMeta, data: bytes) -> Deferred[None]:
        """
        Like L{save_snapshot}, then discard every log entry: the log now
        continues after C{meta.index}.  Used when a follower receives a
        snapshot from the leader.
        """

    def compact(upto_index: int) -> Deferred[None]:
        """
        Allow deletion of log entries with index <= C{upto_index}; storage
        deletes whole segments only, so some may remain.
        """

    def close() -> Deferred[None]:
        """
        Finish queued work and release files and threads.
        """


class IPeerTransport(Interface):
    """
    Carries L{Message}s between nodes, best effort: a message may be lost,
    and Raft retries.
    """

    def start(receiver: Callable[[Message], None]) -> None:
        """
        Start listening; deliver every well-formed message from an
        authenticated peer to C{receiver}.
        """

    def send(to: str, message: Message) -> None:
        """
        Send C{message} to node C{to} if it is connected; otherwise drop it
        (and connect in the background).
        """

    def set_peers(peers: Mapping[str, str]) -> None:
        """
        Replace the map of node id to raft address of the other members.
        """

    def stop() -> Deferred[None]:
        """
        Close every connection and the listener.
        """


class IStateMachine(Interface):
    """
    The replicated, deterministic state machine.
    """

    def apply(index: int, command: Any) -> Any:
        """
        Apply a committed command and return its result.  Must be
        deterministic: same commands in the same order, same results.
        """

    def snapshot() -> bytes:
        """
        Serialize the whole state.
        """

    def restore(data: bytes) -> None:
        """
        Replace the whole state with one produced by L{snapshot}.
        """


class IBackgroundSnapshot(Interface):
    """
    A state machine whose snapshot can be encoded off the reactor thread.

    Encoding a large state takes seconds; done on the reactor it stalls
    every request and heartbeat.  L{freeze} is the cheap part that must run
    between two L{IStateMachine.apply} calls; the function it returns does
    the expensive part and may run in another thread while the state keeps
    changing.
    """

    def freeze() -> Callable[[], bytes]:
        """
        Capture the state as it is now (copies of what may change, no
        encoding) and return a function that encodes exactly that state:
        the same bytes L{IStateMachine.snapshot} would return now.
        """


class IStreamingSnapshot(IBackgroundSnapshot):
    """
    A state machine whose background snapshot comes in chunks, so that the
    encoder can write it out as it goes instead of holding all of it.
    """

    def freeze_chunks() -> Callable[[], Iterable[bytes | memoryview]]:
        """
        L{IBackgroundSnapshot.freeze}, whose function gives the same bytes
        in chunks, in order, each made when asked for.
        """


class RaftError(Exception):
    """
    Base of the errors the node reports to its clients.
    """


class NotLeader(RaftError):
    """
    This node is not the leader; C{leader} is the leader if known.
    """

    def __init__(self, leader: Member | None) -> None:
        super().__init__(
            f"not the leader; leader is {leader.node_id}" if leader else "no known leader"
        )
        self.leader = leader


class NoLeader(RaftError):
    """
    No leader is known, or it could not be reached in time; retry later.
    """


class ProposalDropped(RaftError):
    """
    The proposal was overwritten by another leader's entry: it was not
    applied and will never be.
    """


class CommitTimeout(RaftError):
    """
    The proposal was not known to be applied in time: it may still commit.
    Retry with the same session to apply it at most once.
    """


class LeadershipTransferInProgress(RaftError):
    """
    The leader is handing over and accepts no proposals for now.
    """


class ConfigurationChangeError(RaftError):
    """
    The membership change cannot be made now (another change is pending, the
    server is unknown, a learner has not caught up...).
    """


@attrs.frozen
class NodeStatus:
    """
    A snapshot of what a node knows, for C{/status} and tests.
    """

    node_id: str
    role: str
    term: int
    leader_id: str | None
    commit_index: int
    applied_index: int
    last_log_index: int
    snapshot_index: int
    members: tuple[Member, ...]

    @property
    def is_leader(self) -> bool:
        return self.role == "Leader"

    @property
    def leader(self) -> Member | None:
        for m in self.members:
            if m.node_id == self.leader_id:
                return m
        return None


ApplyListener = Callable[[int, Any, Any], None]


class IRaftNode(Interface):
    """
    What the service layer uses.
    """

    node_id = Attribute("This node's id.")
    applied_index = Attribute(
        "The index of the last entry applied to the state machine: the version of"
        " the state local reads see."
    )

    def propose(command: Any, session: tuple[str, int] | None = None) -> Deferred[Any]:
        """
        Replicate C{command}; fire with the state machine's result once it is
        committed and applied here.  With C{session} (client id, sequence
        number) the command is applied at most once and a retry gets the
        first result (thesis 6.3).  Errbacks: L{NotLeader}, L{NoLeader},
        L{ProposalDropped}, L{LeadershipTransferInProgress}, L{CommitTimeout}
        (outcome unknown: retry in the same session), and a L{StorageFull}
        that is also a L{RaftError} when this leader cannot write its log
        (certainly not applied).
        """

    def read_index() -> Deferred[int]:
        """
        Fire once the local state machine may serve a linearizable read
        (thesis 6.4), with the read index.  Errbacks: L{NoLeader} (no
        leader known, or it could not confirm its leadership in time).
        """

    def status() -> NodeStatus:
        """
        The node's current status.
        """

    def add_apply_listener(listener: ApplyListener) -> None:
        """
        Call C{listener(index, command, result)} after each applied command,
        on a later reactor turn, in log order.
        """

    def add_learner(member: Member) -> Deferred[None]:
        """
        Add a non-voting member; fires once the change is committed.
        """

    def promote(node_id: str) -> Deferred[None]:
        """
        Make a caught-up learner a voter; fires once committed.
        """

    def remove(node_id: str) -> Deferred[None]:
        """
        Remove a member; fires once committed.
        """

    def transfer_leadership(node_id: str | None = None) -> Deferred[str]:
        """
        Hand leadership to C{node_id} (or the most up-to-date voter); fires
        with the new leader's id.
        """
