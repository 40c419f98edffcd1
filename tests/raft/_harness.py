# -*- test-case-name: tests.raft.test_core -*-
"""
An in-memory network of L{RaftCore}s for the core's unit tests.

The cores are pure, so a "cluster" is a dictionary of them and a FIFO queue
of messages.  Persisting a L{Ready} is immediate unless a node's disk is
I{held}: then its readies wait, exactly as if the fsync were slow, and the
messages that must follow the fsync (C{persisted_messages}) wait with them.
Each node also has a model disk (hard state and entries) so that a crash
loses exactly what was not yet durable and a restart rebuilds the core from
what was.  Snapshot transfer is done here the way the node driver does it,
in one chunk.

Everything is deterministic: randomness comes from seeded
L{random.Random}s and delivery order is the order of sending.
"""

from __future__ import annotations

import random
from collections import deque
from typing import Callable, Iterable

import attrs

from raft3d.raft import (
    Configuration,
    Entry,
    EntryType,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Member,
    Message,
    RequestVoteResponse,
    SnapshotMeta,
)
from raft3d.raft._core import (
    CoreSettings,
    RaftCore,
    ReadState,
    Ready,
    Role,
    encode_configuration,
)


def member(node_id: str, voter: bool = True) -> Member:
    """
    A member with a made-up address.
    """
    return Member(node_id, f"raft:{node_id}", f"http:{node_id}", voter)


def configuration(*voters: str, learners: Iterable[str] = ()) -> Configuration:
    """
    A configuration of C{voters} and C{learners}, sorted by id as
    L{Configuration.with_member} keeps them.
    """
    members = [member(v) for v in voters] + [member(v, False) for v in learners]
    return Configuration(tuple(sorted(members, key=lambda m: m.node_id)))


def config_entry(index: int, term: int, config: Configuration) -> Entry:
    return Entry(index, term, EntryType.CONFIG, encode_configuration(config))


def normal(index: int, term: int, data: bytes | None = None) -> Entry:
    return Entry(index, term, EntryType.NORMAL, data if data is not None else b"%d" % index)


def log_of(config: Configuration, *terms: int) -> list[Entry]:
    """
    A log whose entry 1 (term 1) holds C{config} and whose entries 2... have
    the given C{terms}.
    """
    out = [config_entry(1, 1, config)]
    for position, term in enumerate(terms):
        out.append(normal(position + 2, term))
    return out


def entries_of(core: RaftCore) -> list[Entry]:
    return core.log.slice(core.log.first_index, core.log.last_index)


@attrs.define
class Disk:
    """
    What one node has made durable.
    """

    hard_state: HardState = HardState()
    snapshot: SnapshotMeta | None = None
    entries: list[Entry] = attrs.Factory(list)

    def write(self, ready: Ready) -> None:
        if ready.hard_state is not None:
            self.hard_state = ready.hard_state
        if ready.entries:
            first = ready.entries[0].index
            self.entries = [e for e in self.entries if e.index < first]
            if self.entries and self.entries[-1].index != first - 1:
                raise AssertionError(f"hole in the log before {first}")
            self.entries.extend(ready.entries)

    def install(self, meta: SnapshotMeta) -> None:
        self.snapshot = meta
        self.entries = []


Filter = Callable[[str, str, Message], bool]


class Network:
    """
    Cores joined by an in-memory, FIFO, lossless-unless-told network.

    @ivar queue: messages sent and not yet delivered, as C{(from, to, msg)}.
    @ivar delivered: every message handed to a core, in order.
    @ivar dropped: every message the network lost.
    @ivar applied: per node, the committed entries handed out, by index.
    @ivar readies: per node, every L{Ready} taken.
    @ivar isolated: nodes that can neither send nor receive.
    @ivar cut: one-way links that lose everything.
    @ivar held: nodes whose disk is slow: their readies wait in C{pending}.
    @ivar drop: if set, a predicate; messages it returns C{True} for are lost.
    """

    def __init__(
        self,
        ids: Iterable[str] = (),
        *,
        seed: int = 0,
        settings: CoreSettings | None = None,
        config: Configuration | None = None,
        logs: dict[str, list[Entry]] | None = None,
        terms: dict[str, int] | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        self.settings = settings or CoreSettings(election_ticks=10, heartbeat_ticks=1)
        self.cores: dict[str, RaftCore] = {}
        self.disks: dict[str, Disk] = {}
        self.crashed: set[str] = set()
        self.queue: deque[tuple[str, str, Message]] = deque()
        self.delivered: list[tuple[str, str, Message]] = []
        self.dropped: list[tuple[str, str, Message]] = []
        self.applied: dict[str, dict[int, Entry]] = {}
        self.readies: dict[str, list[Ready]] = {}
        self.read_states: dict[str, list[ReadState]] = {}
        self.failed_reads: dict[str, list[int]] = {}
        self.events: dict[str, list[tuple[str, ...]]] = {}
        self.pending: dict[str, list[Ready]] = {}
        self.isolated: set[str] = set()
        self.cut: set[tuple[str, str]] = set()
        self.held: set[str] = set()
        self.drop: Filter | None = None
        self.snapshot_timers: dict[tuple[str, str], int] = {}
        ids = list(ids)
        if ids and config is None:
            config = configuration(*ids)
        for node_id in ids:
            if logs is not None and node_id in logs:
                entries = logs[node_id]
            elif config is not None:
                entries = [config_entry(1, 1, config)]
            else:
                entries = []
            term = (terms or {}).get(node_id, max((e.term for e in entries), default=0))
            self.add(node_id, HardState(term, None), entries)

    # -- membership of the simulation --------------------------------------

    def add(
        self,
        node_id: str,
        hard_state: HardState | None = None,
        entries: list[Entry] | None = None,
        snapshot: SnapshotMeta | None = None,
    ) -> RaftCore:
        """
        Start a node whose disk holds C{hard_state}, C{snapshot} and
        C{entries}.
        """
        disk = Disk(hard_state or HardState(), snapshot, list(entries or []))
        self.disks[node_id] = disk
        self.applied.setdefault(node_id, {})
        self.read_states.setdefault(node_id, [])
        self.failed_reads.setdefault(node_id, [])
        self.events.setdefault(node_id, [])
        self.readies.setdefault(node_id, [])
        self.pending[node_id] = []
        return self._boot(node_id)

    def _boot(self, node_id: str) -> RaftCore:
        disk = self.disks[node_id]
        core = RaftCore(
            node_id,
            settings=self.settings,
            rng=random.Random(self.rng.getrandbits(32)),
            hard_state=disk.hard_state,
            snapshot=disk.snapshot,
            entries=tuple(disk.entries),
        )
        self.cores[node_id] = core
        self.crashed.discard(node_id)
        # A fresh core reports its configuration once; nothing else.
        self.collect(node_id)
        return core

    def crash(self, node_id: str) -> None:
        """
        Lose the node's memory and whatever it had not made durable.
        """
        self.crashed.add(node_id)
        self.pending[node_id] = []

    def restart(self, node_id: str) -> RaftCore:
        return self._boot(node_id)

    def __getitem__(self, node_id: str) -> RaftCore:
        return self.cores[node_id]

    def live(self) -> list[str]:
        return [n for n in sorted(self.cores) if n not in self.crashed]

    # -- faults ---------------------------------------------------------------

    def isolate(self, *node_ids: str) -> None:
        self.isolated.update(node_ids)

    def heal(self) -> None:
        self.isolated.clear()
        self.cut.clear()
        self.drop = None

    def hold(self, node_id: str) -> None:
        """
        Make the node's disk slow: its readies are not persisted until
        L{release}.
        """
        self.held.add(node_id)

    def release(self, node_id: str) -> None:
        """
        Finish every pending write of the node, in order.
        """
        self.held.discard(node_id)
        pending, self.pending[node_id] = self.pending[node_id], []
        for ready in pending:
            self._persist(node_id, ready)
        self.collect(node_id)

    # -- driving -------------------------------------------------------------

    def collect(self, node_id: str) -> list[Ready]:
        """
        Take and carry out every ready of the node.
        """
        taken: list[Ready] = []
        if node_id in self.crashed:
            return taken
        core = self.cores[node_id]
        for _ in range(1000):
            ready = core.take_ready()
            if ready is None:
                return taken
            taken.append(ready)
            self._handle(node_id, ready)
        raise AssertionError(f"{node_id} never stops producing work")

    def collect_all(self) -> None:
        for node_id in self.live():
            self.collect(node_id)

    def _handle(self, node_id: str, ready: Ready) -> None:
        core = self.cores[node_id]
        self.readies[node_id].append(ready)
        for to, message in ready.messages:
            self.queue.append((node_id, to, message))
        self.events[node_id].extend(ready.events)
        if ready.install_snapshot is not None:
            self.disks[node_id].install(ready.install_snapshot)
        for entry in ready.committed:
            self._apply(node_id, entry)
        self.read_states[node_id].extend(ready.read_states)
        self.failed_reads[node_id].extend(ready.failed_reads)
        for peer in ready.snapshot_sends:
            self._send_snapshot(node_id, peer)
        for chunk in ready.snapshot_chunks:
            if chunk.done:
                meta = SnapshotMeta(chunk.last_index, chunk.last_term, chunk.configuration)
                core.install_snapshot(chunk.sender, meta)
        if node_id in self.held:
            self.pending[node_id].append(ready)
        else:
            self._persist(node_id, ready)

    def _apply(self, node_id: str, entry: Entry) -> None:
        applied = self.applied[node_id]
        if entry.index in applied and applied[entry.index] != entry:
            raise AssertionError(f"{node_id} applied two entries at {entry.index}")
        applied[entry.index] = entry

    def _persist(self, node_id: str, ready: Ready) -> None:
        self.disks[node_id].write(ready)
        for to, message in ready.persisted_messages:
            self.queue.append((node_id, to, message))
        if ready.persist_mark is not None:
            self.cores[node_id].on_persisted(*ready.persist_mark)

    def _send_snapshot(self, leader: str, peer: str) -> None:
        core = self.cores[leader]
        meta = core.snapshot
        if meta.index == 0:
            core.report_snapshot(peer, False)
            return
        self.snapshot_timers[leader, peer] = 0
        chunk = InstallSnapshot(
            term=core.term,
            sender=leader,
            last_index=meta.index,
            last_term=meta.term,
            configuration=meta.configuration,
            offset=0,
            data=b"",
            done=True,
            size=0,
            checksum=0,
        )
        self.queue.append((leader, peer, chunk))

    def lost(self, source: str, target: str, message: Message) -> bool:
        return (
            target not in self.cores
            or target in self.crashed
            or source in self.isolated
            or target in self.isolated
            or (source, target) in self.cut
            or (self.drop is not None and self.drop(source, target, message))
        )

    def deliver(self, item: tuple[str, str, Message]) -> None:
        """
        Hand one message to its target (or lose it) and carry out the work
        that follows.
        """
        source, target, message = item
        if self.lost(source, target, message):
            self.dropped.append(item)
            return
        self.delivered.append(item)
        if isinstance(message, InstallSnapshotResponse) and message.done:
            self.snapshot_timers.pop((target, source), None)
        self.cores[target].step(message)
        self.collect(target)

    def settle(self, limit: int = 100_000) -> None:
        """
        Deliver messages until none is left.
        """
        self.collect_all()
        for _ in range(limit):
            if not self.queue:
                return
            self.deliver(self.queue.popleft())
        raise AssertionError("the network never settles")

    def tick_node(self, node_id: str) -> None:
        """
        Tick one node and carry out its work, without delivering anything.
        Like the node driver, give up on a snapshot transfer that did not
        finish within two election timeouts.
        """
        if node_id in self.crashed:
            return
        core = self.cores[node_id]
        core.tick()
        for (leader, peer), ticks in list(self.snapshot_timers.items()):
            if leader != node_id:
                continue
            if ticks + 1 >= 2 * self.settings.election_ticks:
                del self.snapshot_timers[leader, peer]
                core.report_snapshot(peer, False)
            else:
                self.snapshot_timers[leader, peer] = ticks + 1
        self.collect(node_id)

    def tick(self, *node_ids: str, times: int = 1) -> None:
        """
        Tick the given nodes (all live ones by default) C{times} times,
        letting the network settle after each round.
        """
        for _ in range(times):
            for node_id in node_ids or tuple(self.live()):
                self.tick_node(node_id)
            self.settle()

    def elect(self, node_id: str) -> RaftCore:
        """
        Tick only C{node_id} until it leads; the others never time out.
        """
        core = self.cores[node_id]
        for _ in range(4 * self.settings.election_ticks):
            if core.role is Role.LEADER:
                return core
            self.tick(node_id)
        if core.role is not Role.LEADER:
            raise AssertionError(f"{node_id} did not win: {core.role}")
        return core

    def propose(self, node_id: str, *payloads: bytes) -> list[tuple[int, int]]:
        positions = self.cores[node_id].propose(list(payloads))
        self.settle()
        return positions

    def leaders(self) -> list[str]:
        return [n for n in self.live() if self.cores[n].role is Role.LEADER]

    def sent(
        self, kind: type[Message], source: str | None = None, target: str | None = None
    ) -> list[Message]:
        """
        Messages of C{kind} delivered so far, optionally by link end.
        """
        return [
            m
            for s, t, m in self.delivered
            if isinstance(m, kind)
            and (source is None or s == source)
            and (target is None or t == target)
        ]

    def clear_history(self) -> None:
        self.delivered.clear()
        self.dropped.clear()
        for node_id in self.events:
            self.events[node_id].clear()


def take(core: RaftCore) -> Ready:
    """
    The core's next ready; fail if it has no work.
    """
    ready = core.take_ready()
    if ready is None:
        raise AssertionError(f"{core.node_id} has no ready")
    return ready


def drain(core: RaftCore) -> list[Ready]:
    """
    Take every ready of a core driven by hand, persisting nothing.
    """
    out = []
    while (ready := core.take_ready()) is not None:
        out.append(ready)
    return out


def persist(core: RaftCore, ready: Ready) -> None:
    """
    Report the ready's writes durable.
    """
    if ready.persist_mark is not None:
        core.on_persisted(*ready.persist_mark)


def persist_all(core: RaftCore) -> list[Ready]:
    """
    Take every ready of a core driven by hand, reporting each one durable
    before taking the next (which may then hold newly committed entries).
    """
    out = []
    while (ready := core.take_ready()) is not None:
        out.append(ready)
        persist(core, ready)
    return out


def messages_of(ready: Ready) -> list[tuple[str, Message]]:
    return list(ready.messages) + list(ready.persisted_messages)


def settings(**overrides: object) -> CoreSettings:
    """
    Test settings: election timeout of 10 ticks, heartbeat every tick.
    """
    values: dict[str, object] = dict(election_ticks=10, heartbeat_ticks=1)
    values.update(overrides)
    return CoreSettings(**values)  # type: ignore[arg-type]


def time_out(core: RaftCore) -> int:
    """
    Tick a lone core until it starts an election (as pre-candidate,
    candidate, or straight to leader when alone); return the ticks taken.
    """
    for ticks in range(1, 4 * core.settings.election_ticks):
        core.tick()
        if core.role is not Role.FOLLOWER:
            return ticks
    raise AssertionError(f"{core.node_id} never campaigned")


def make_leader(core: RaftCore, *voters: str) -> None:
    """
    Drive a hand-held core to leadership: time out, then receive granted
    (pre-)votes from C{voters}.  Readies are drained and persisted.
    """
    time_out(core)
    if core.role is Role.PRE_CANDIDATE:
        for voter in voters:
            core.step(RequestVoteResponse(core.term + 1, voter, True, True))
            if core.role is not Role.PRE_CANDIDATE:
                break
    for voter in voters:
        if core.role is Role.LEADER:
            break
        core.step(RequestVoteResponse(core.term, voter, True, False))
    if core.role is not Role.LEADER:
        raise AssertionError(f"{core.node_id} is {core.role}")
    persist_all(core)


__all__ = [
    "Disk",
    "Network",
    "config_entry",
    "configuration",
    "drain",
    "entries_of",
    "log_of",
    "make_leader",
    "member",
    "messages_of",
    "normal",
    "persist",
    "persist_all",
    "settings",
    "take",
    "time_out",
]
