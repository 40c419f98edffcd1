# -*- test-case-name: tests.storage.test_memory -*-
"""
L{MemoryStorage}: a simulated disk for deterministic cluster simulation.

It keeps what a real disk would hold (identity, hard state, log, snapshots)
and a FIFO of writes that are not durable yet.  A simulated "fsync" takes
every write queued so far (and every write issued in the same instant of
the clock) and completes after a delay drawn from a seeded C{random.Random}
on an injected clock; then those writes become durable in order and their
Deferreds fire in order.  Writes issued later wait for the next fsync,
which is the group commit of L{DiskStorage}.

L{MemoryStorage.crash} is power loss: a random prefix of the writes not yet
durable survives, the rest is lost, their Deferreds never fire, and a new
storage holding what survived is returned for the restarted node.  With the
same seed a simulation replays exactly.

Truncation, snapshots, retention and compaction follow the rules in
L{_rules}, shared with L{DiskStorage}.
"""

from __future__ import annotations

import random
from typing import Callable

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from ..raft._interfaces import (
    CorruptStorage,
    IRaftStorage,
    LoadedState,
    PersistBatch,
    StorageFull,
)
from ..raft._types import Entry, HardState, NodeIdentity, SnapshotMeta
from ._rules import (
    KEEP_SNAPSHOTS,
    LogPlan,
    check_log_against_snapshot,
    compaction_limit,
    next_index,
)


@attrs.define
class _Durable:
    """
    What has reached the simulated platter.
    """

    identity: NodeIdentity | None = None
    hard_state: HardState = HardState()
    entries: list[Entry] = attrs.Factory(list)
    snapshots: list[tuple[SnapshotMeta, bytes]] = attrs.Factory(list)

    def copy(self) -> _Durable:
        return _Durable(self.identity, self.hard_state, list(self.entries), list(self.snapshots))

    def snapshot_index(self) -> int | None:
        return self.snapshots[-1][0].index if self.snapshots else None

    def next_index(self) -> int:
        return next_index(self.entries[-1].index if self.entries else None, self.snapshot_index())


_Apply = Callable[[_Durable], None]


@attrs.frozen
class _Op:
    """
    One queued write: how it changes the durable state, and whether an
    injected fault makes it fail instead.
    """

    apply: _Apply
    deferred: Deferred[None]
    faulty: bool


def _failure_of(error: BaseException) -> Failure:
    return Failure(error)  # type: ignore[no-untyped-call]


def _fire(d: Deferred[None], failure: Failure | None) -> None:
    if failure is None:
        d.callback(None)
    else:
        d.errback(failure)


def _set_identity(identity: NodeIdentity) -> _Apply:
    def apply(state: _Durable) -> None:
        state.identity = identity

    return apply


def _save(batch: PersistBatch) -> _Apply:
    def apply(state: _Durable) -> None:
        plan = LogPlan(state.next_index())
        plan.add(batch.entries)
        if batch.hard_state is not None:
            state.hard_state = batch.hard_state
        if plan.truncate_at is not None:
            cut = plan.truncate_at
            state.entries = [e for e in state.entries if e.index < cut]
        state.entries.extend(plan.pending)

    return apply


def _save_snapshot(meta: SnapshotMeta, data: bytes, install: bool) -> _Apply:
    def apply(state: _Durable) -> None:
        key = (meta.index, meta.term)
        kept = [s for s in state.snapshots if (s[0].index, s[0].term) != key]
        kept.append((meta, data))
        kept.sort(key=lambda s: (s[0].index, s[0].term))
        state.snapshots = kept[-KEEP_SNAPSHOTS:]
        if install:
            state.entries = []

    return apply


def _compact(upto_index: int) -> _Apply:
    def apply(state: _Durable) -> None:
        limit = compaction_limit(upto_index, state.snapshot_index())
        state.entries = [e for e in state.entries if e.index > limit]

    return apply


def _nothing(state: _Durable) -> None:
    pass


@implementer(IRaftStorage)
class MemoryStorage:
    """
    A simulated disk with random but reproducible write latency and power
    loss.

    @param clock: schedules the simulated fsyncs.
    @param rng: draws latencies and crash outcomes; seed it for replay.
    @param fsync_delay: the bounds, in seconds, of a simulated fsync.
    @param blocking_writes: the chance that a blocking L{save}, made while
        no write is pending, is written at once and fires before C{save}
        returns, as L{DiskStorage<raft3d.storage.DiskStorage>} may do;
        otherwise it waits for a simulated fsync like any other write.
    """

    def __init__(
        self,
        clock: IReactorTime,
        rng: random.Random,
        fsync_delay: tuple[float, float] = (0.001, 0.01),
        *,
        blocking_writes: float = 0.0,
        _durable: _Durable | None = None,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._fsync_delay = fsync_delay
        self._blocking_writes = blocking_writes
        self._durable = _durable if _durable is not None else _Durable()
        self._queue: list[_Op] = []
        self._inflight: list[_Op] | None = None
        self._call: IDelayedCall | None = None
        self._started = 0.0
        self._completing = False
        self._faults = 0
        self._closed = False
        self._done = False
        self._close_waiters: list[Deferred[None]] = []
        self._crashed = False

    @property
    def pending(self) -> int:
        """
        How many writes are not durable yet.
        """
        return len(self._queue) + len(self._inflight or ())

    def fail_next_writes(self, n: int) -> None:
        """
        Make the next C{n} writes (counted from now, in call order; empty
        batches and L{close} do not count) errback with L{StorageFull} and
        change nothing, like a full disk.
        """
        self._faults = n

    def crash(self) -> MemoryStorage:
        """
        Simulate power loss.

        A random prefix of the writes not yet durable becomes durable and
        the rest is lost; no pending Deferred ever fires, and this object
        accepts no more work (its methods return Deferreds that never fire,
        as a dead machine would).

        @return: a new storage, with the same clock, random generator and
            latency, holding what survived, for the restarted node.
        """
        pending = (self._inflight or []) + self._queue
        survivors = self._rng.randint(0, len(pending))
        for op in pending[:survivors]:
            self._apply(op)
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        self._inflight = None
        self._queue = []
        self._crashed = True
        return MemoryStorage(
            self._clock,
            self._rng,
            self._fsync_delay,
            blocking_writes=self._blocking_writes,
            _durable=self._durable.copy(),
        )

    def load(self) -> LoadedState:
        """
        The durable state, as a restarted node would find it.
        """
        state = self._durable
        snapshot = state.snapshots[-1] if state.snapshots else None
        entries = state.entries
        meta = snapshot[0] if snapshot is not None else None
        try:
            verdict = check_log_against_snapshot(
                meta,
                entries[0].index if entries else None,
                entries[-1].index if entries else None,
                lambda i: entries[i - entries[0].index].term,
            )
        except ValueError as e:
            raise CorruptStorage("<memory>", 0, str(e))
        if verdict == "discard":
            state.entries = entries = []
        return LoadedState(
            identity=state.identity,
            hard_state=state.hard_state,
            snapshot=meta,
            snapshot_data=snapshot[1] if snapshot is not None else None,
            entries=tuple(entries),
        )

    def set_identity(self, identity: NodeIdentity) -> Deferred[None]:
        return self._enqueue(_set_identity(identity), writes=True)

    def save(self, batch: PersistBatch, blocking: bool = False) -> Deferred[None]:
        writes = batch.hard_state is not None or bool(batch.entries)
        if (
            blocking
            and self._blocking_writes
            and self._inflight is None
            and not self._queue
            and self._rng.random() < self._blocking_writes
        ):
            return self._enqueue(_save(batch), writes=writes, now=True)
        return self._enqueue(_save(batch), writes=writes)

    def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> Deferred[None]:
        return self._enqueue(_save_snapshot(meta, data, False), writes=True)

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> Deferred[None]:
        return self._enqueue(_save_snapshot(meta, data, True), writes=True)

    def compact(self, upto_index: int) -> Deferred[None]:
        return self._enqueue(_compact(upto_index), writes=True)

    def close(self) -> Deferred[None]:
        """
        Fire once every earlier write is durable; later writes fail.
        Calling it again is harmless.
        """
        if self._crashed:
            return Deferred()
        if self._done:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._close_waiters.append(waiter)
        if not self._closed:
            self._enqueue(_nothing, writes=False).addBoth(self._closed_now)
            self._closed = True
        return waiter

    def _closed_now(self, result: object) -> None:
        self._done = True
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _enqueue(self, apply: _Apply, writes: bool, now: bool = False) -> Deferred[None]:
        if self._crashed:
            return Deferred()
        if self._closed:
            return fail(RuntimeError("storage is closed"))
        faulty = writes and self._faults > 0
        if faulty:
            self._faults -= 1
        op = _Op(apply, Deferred(), faulty)
        if now:
            _fire(op.deferred, self._apply(op))
        elif (
            self._inflight is not None
            and not self._completing
            and self._clock.seconds() == self._started
        ):
            # Issued in the same instant as the fsync under way: the writer
            # has not really started yet, so it joins.
            self._inflight.append(op)
        else:
            self._queue.append(op)
            self._start_fsync()
        return op.deferred

    def _start_fsync(self) -> None:
        if self._inflight is not None or not self._queue:
            return
        self._inflight, self._queue = self._queue, []
        self._started = self._clock.seconds()
        delay = self._rng.uniform(*self._fsync_delay)
        self._call = self._clock.callLater(delay, self._complete)

    def _apply(self, op: _Op) -> Failure | None:
        if op.faulty:
            return _failure_of(StorageFull("simulated full disk"))
        try:
            op.apply(self._durable)
        except ValueError as e:
            return _failure_of(e)
        return None

    def _complete(self) -> None:
        group = self._inflight or []
        self._call = None
        results = [(op.deferred, self._apply(op)) for op in group]
        # Still "in flight" while firing, so that writes queued by the
        # callbacks wait and form the next group together.
        self._completing = True
        try:
            for d, failure in results:
                _fire(d, failure)
        finally:
            self._completing = False
            self._inflight = None
        self._start_fsync()
