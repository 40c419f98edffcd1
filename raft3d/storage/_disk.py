# -*- test-case-name: tests.storage.test_disk -*-
"""
L{DiskStorage}: the real storage of a node, in one directory.

Every write runs on a single dedicated writer thread, in call order, so the
reactor need not wait for the disk and the on-disk state only ever moves by
whole calls.  (A caller that would only wait anyway, a follower, may ask for
a blocking save, written on its own thread while the writer is idle.)  The one exception is the bulk of a snapshot: its file is
written and synced by a second thread, and only the rename that publishes
it joins the writer's queue, so log writes never wait behind a snapshot.  Consecutive L{save<DiskStorage.save>} calls that queue up
while the writer is busy are written with one C{write} and made durable with
one C{fdatasync} (group commit), which is what makes many small Raft batches
cheap.  Results travel back to the reactor thread with C{callFromThread}.

The file formats live in L{_segments}, L{_snapshots} and L{_metadata}; the
decisions shared with L{MemoryStorage<raft3d.storage.MemoryStorage>} live in
L{_rules}.  C{docs/storage.md} describes formats, recovery and durability.
"""

from __future__ import annotations

import os
import threading
import time
from functools import partial
from queue import SimpleQueue
from typing import Callable, ClassVar, Protocol, Sequence, Union, cast

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorCore, IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ..raft._interfaces import CorruptStorage, IRaftStorage, LoadedState, PersistBatch
from ..raft._types import Entry, HardState, NodeIdentity, SnapshotMeta
from ._errors import FormatError
from ._fileio import (
    TMP_SUFFIX,
    as_storage_error,
    atomic_write,
    discard,
    fdatasync,
    fsync_dir,
    write_all,
    write_temporary,
)
from ._metadata import METADATA_NAME, decode_metadata, encode_metadata
from ._rules import (
    LogPlan,
    check_log_against_snapshot,
    compaction_limit,
    fallback_covers,
    next_index,
    snapshots_to_delete,
)
from ._segments import (
    HEADER_SIZE,
    BadRecord,
    check_segment_header,
    encode_records,
    find_intact_record,
    parse_segment_name,
    scan_records,
    segment_header,
    segment_name,
)
from ._snapshots import (
    decode_snapshot,
    encode_snapshot_header,
    parse_snapshot_name,
    snapshot_name,
)

DEFAULT_SEGMENT_SIZE = 64 * 1024 * 1024
DEFAULT_PREALLOCATE = 1024 * 1024
"""
Segments grow in steps of this many zero bytes, written with the records
that need them: an C{fdatasync} that changes a file's length waits for a
journal commit, one into space already written does not (0.39 -> 0.27 ms at
the median with three nodes syncing at once on this machine's disk).  A
step costs one write of about 3 ms.
"""
DEFAULT_BLOCKING_LIMIT = 0.01
"""
Seconds a write may have taken for the next blocking save to be written on
the reactor thread: far below an election timeout, far above an fsync.
"""
BACKGROUND_SUFFIX = ".bg" + TMP_SUFFIX
"""
Suffix of a snapshot being written off the writer thread: distinct from
L{atomic_write}'s, so that an install of the same snapshot on the writer
never shares its temporary file; removed at start-up like any temporary.
"""
CORRUPT_SUFFIX = ".corrupt"
"""Suffix given to a damaged snapshot that was skipped, kept for inspection."""


@attrs.define
class _Segment:
    """
    The in-memory index of one segment file: where each record starts, so
    that truncation is a single C{ftruncate}.

    @ivar size: where the records end.
    @ivar allocated: the file's length; the bytes from C{size} on are zero.
    """

    path: str
    first_index: int
    offsets: list[int]
    size: int
    allocated: int

    @property
    def last_index(self) -> int:
        return self.first_index + len(self.offsets) - 1


@attrs.frozen
class _SetIdentity:
    identity: NodeIdentity
    deferred: Deferred[None]


@attrs.frozen
class _Save:
    batch: PersistBatch
    deferred: Deferred[None]


@attrs.frozen
class _SaveSnapshot:
    meta: SnapshotMeta
    data: bytes
    install: bool
    deferred: Deferred[None]


@attrs.frozen
class _PublishSnapshot:
    """
    Rename a snapshot written by the snapshot thread into place.
    """

    meta: SnapshotMeta
    temporary: str
    deferred: Deferred[None]


@attrs.frozen
class _Compact:
    upto_index: int
    deferred: Deferred[None]


@attrs.frozen
class _Close:
    deferred: Deferred[None]


_Op = Union[_SetIdentity, _Save, _SaveSnapshot, _PublishSnapshot, _Compact, _Close]
_Results = list[tuple[Deferred[None], Union[Failure, None]]]


class _Runner(Protocol):
    """
    Where writer work runs and where its results are delivered.
    """

    def submit(self, work: Callable[[], None]) -> None:
        """Run C{work} on the writer."""

    def deliver(self, fn: Callable[[], None]) -> None:
        """Run C{fn} on the reactor thread."""

    def stop(self) -> None:
        """Release the writer; called on the reactor thread."""


class _ThreadRunner:
    """
    The production runner: one dedicated thread fed by a C{SimpleQueue},
    results delivered with C{callFromThread}.

    Not Twisted's C{ThreadPool}: its coordination (a coordinator worker,
    context propagation, idle bookkeeping) cost about 0.14 ms per save on
    this machine, a third of a whole fdatasync, on every write's critical
    path.  One thread with a queue costs a few microseconds.
    """

    _log: ClassVar[Logger] = Logger()

    def __init__(self, reactor: IReactorFromThreads, name: str) -> None:
        self._reactor = reactor
        self._work: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name)
        self._thread.start()
        self._stopped = False
        self._trigger: object | None = None
        if IReactorCore.providedBy(reactor):
            # Without close() a live non-daemon thread would keep the process
            # from exiting; stop it with the reactor as a last resort.
            self._trigger = cast(IReactorCore, reactor).addSystemEventTrigger(
                "during", "shutdown", self.stop
            )

    def _run(self) -> None:
        while True:
            work = self._wait()
            if work is None:
                return
            try:
                work()
            except BaseException:
                self._log.failure("storage writer failed")

    def _wait(self) -> Callable[[], None] | None:
        """
        The next work, when there is some (a method of its own so that
        profiles see the thread waiting, not working).
        """
        return self._work.get()

    def submit(self, work: Callable[[], None]) -> None:
        self._work.put(work)

    def deliver(self, fn: Callable[[], None]) -> None:
        self._reactor.callFromThread(fn)

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self._trigger is not None:
            try:
                cast(IReactorCore, self._reactor).removeSystemEventTrigger(self._trigger)
            except (ValueError, KeyError):
                pass
        self._work.put(None)
        if threading.current_thread() is not self._thread:
            self._thread.join()


class _InlineRunner:
    """
    The test runner: work runs at once and results are delivered at once,
    so tests need neither a reactor nor a thread.
    """

    def submit(self, work: Callable[[], None]) -> None:
        work()

    def deliver(self, fn: Callable[[], None]) -> None:
        fn()

    def stop(self) -> None:
        pass


def _failure_of(error: BaseException) -> Failure:
    return Failure(error)  # type: ignore[no-untyped-call]


def _fire(results: _Results, then: Callable[[], None] | None = None) -> None:
    if then is not None:
        then()
    for d, failure in results:
        if failure is None:
            d.callback(None)
        else:
            d.errback(failure)


@implementer(IRaftStorage)
class DiskStorage:
    """
    Metadata, log segments and snapshots in one directory (C{--raft-dir}).

    Call L{load} once, before any write.

    @param directory: created by L{load} if missing.
    @param reactor: delivers results to the reactor thread.  Required
        unless C{_synchronous}.
    @param segment_size: a new segment is started once the current one has
        reached this many bytes (a batch is never split, so a segment may
        exceed it by one batch).
    @param preallocate: segments are extended in steps of this many zero
        bytes ahead of their records; 0 writes each record at the end of
        the file.
    @param blocking_limit: a blocking L{save} is written on the calling
        thread only while the last write took less than this many seconds.
    @param log: where recovery warnings go.
    @param _synchronous: test hook: run writes inline and fire their
        Deferreds at once, with no thread.  Group commit still applies to
        saves made while a write is in progress (by a callback fired in the
        middle of a drain, or by a test's patched C{os} function).
    """

    def __init__(
        self,
        directory: str,
        *,
        reactor: IReactorFromThreads | None = None,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        preallocate: int = DEFAULT_PREALLOCATE,
        blocking_limit: float = DEFAULT_BLOCKING_LIMIT,
        log: Logger | None = None,
        _synchronous: bool = False,
        _timer: Callable[[], float] = time.monotonic,
    ) -> None:
        if reactor is None and not _synchronous:
            raise TypeError("DiskStorage needs a reactor")
        if segment_size < 1:
            raise ValueError("segment_size must be positive")
        if preallocate < 0:
            raise ValueError("preallocate must not be negative")
        self._dir = directory
        self._reactor = reactor
        self._segment_size = segment_size
        self._preallocate = preallocate
        self._blocking_limit = blocking_limit
        self._timer = _timer
        self._log = log if log is not None else Logger()
        self._synchronous = _synchronous

        # Reactor-side state.
        self._loaded = False
        self._closing = False
        self._closed = False
        self._close_waiters: list[Deferred[None]] = []
        self._runner: _Runner | None = None
        self._snapshot_runner: _Runner | None = None
        self._snapshot_writes = 0
        self._snapshot_waiters: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._queue: list[_Op] = []
        self._draining = False

        # Writer-side state, set up by load().
        self._identity: NodeIdentity | None = None
        self._hard_state = HardState()
        self._segments: list[_Segment] = []
        self._fd: int | None = None
        self._fd_path: str | None = None
        self._needs_trim = False
        self._snapshots: dict[tuple[int, int], str] = {}
        # How long the last group of saves took to write, on either thread:
        # whether a blocking save may be written on the reactor thread.
        self._last_write = 0.0

    # -- start-up ---------------------------------------------------------

    def load(self) -> LoadedState:
        """
        Read and check everything, repair a torn tail, and return it.

        @raise CorruptStorage: on damage that a crash cannot explain.
        """
        if self._loaded:
            raise RuntimeError("load() may only be called once")
        os.makedirs(self._dir, exist_ok=True)
        names = sorted(os.listdir(self._dir))
        changed = False
        for name in names:
            if name.endswith(TMP_SUFFIX):
                self._log.info("Removing leftover temporary file {name}", name=name)
                os.unlink(self._path(name))
                changed = True
        identity, hard_state = self._read_metadata()
        segments, entries, seg_changed = self._load_segments(names)
        changed = changed or seg_changed
        first = entries[0].index if entries else None
        last = entries[-1].index if entries else None
        snapshot, data, snap_changed = self._load_snapshots(names, first, last)
        changed = changed or snap_changed
        try:
            verdict = check_log_against_snapshot(
                snapshot, first, last, lambda i: entries[i - entries[0].index].term
            )
        except ValueError as e:
            raise CorruptStorage(segments[0].path, HEADER_SIZE, str(e))
        if verdict == "discard":
            self._log.warn(
                "Log {first}..{last} does not continue snapshot {index}/{term}; discarding it",
                first=first,
                last=last,
                index=snapshot.index if snapshot else None,
                term=snapshot.term if snapshot else None,
            )
            for seg in reversed(segments):
                os.unlink(seg.path)
            segments, entries, changed = [], [], True
        if changed:
            fsync_dir(self._dir)
        self._identity = identity
        self._hard_state = hard_state
        self._segments = segments
        self._loaded = True
        return LoadedState(
            identity=identity,
            hard_state=hard_state,
            snapshot=snapshot,
            snapshot_data=data,
            entries=tuple(entries),
        )

    def _path(self, name: str) -> str:
        return os.path.join(self._dir, name)

    def _read_metadata(self) -> tuple[NodeIdentity | None, HardState]:
        path = self._path(METADATA_NAME)
        try:
            with open(path, "rb") as f:
                buf = f.read()
        except FileNotFoundError:
            return None, HardState()
        try:
            return decode_metadata(buf)
        except FormatError as e:
            raise CorruptStorage(path, e.offset, e.reason)

    def _load_segments(self, names: Sequence[str]) -> tuple[list[_Segment], list[Entry], bool]:
        found = sorted(
            (first, name) for name in names if (first := parse_segment_name(name)) is not None
        )
        segments: list[_Segment] = []
        entries: list[Entry] = []
        changed = False
        for position, (first, name) in enumerate(found):
            path = self._path(name)
            is_last = position == len(found) - 1
            with open(path, "rb") as f:
                buf = f.read()
            header_damage = check_segment_header(buf)
            if header_damage is None:
                result = scan_records(buf, first)
                found_entries, offsets, end = result.entries, result.offsets, result.end
                damage = result.damage
                lo_index = first + len(found_entries) + 1
            else:
                found_entries, offsets, end = [], [], 0
                damage = header_damage
                lo_index = first
            if damage is not None:
                if not is_last or isinstance(damage, BadRecord):
                    raise CorruptStorage(path, damage.offset, damage.reason)
                later = find_intact_record(buf, damage.offset, lo_index)
                if later is not None:
                    raise CorruptStorage(
                        path,
                        damage.offset,
                        f"{damage.reason}; an intact record follows at offset {later}",
                    )
                self._log.warn(
                    "Torn tail in {path} at offset {offset} ({reason}); truncating",
                    path=path,
                    offset=damage.offset,
                    reason=damage.reason,
                )
                if found_entries:
                    with open(path, "r+b") as f:
                        f.truncate(end)
                        f.flush()
                        fdatasync(f.fileno())
            if not found_entries:
                if not is_last:
                    raise CorruptStorage(path, HEADER_SIZE, "empty segment before the last one")
                os.unlink(path)
                changed = True
                continue
            if entries and first != entries[-1].index + 1:
                raise CorruptStorage(
                    path, 0, f"segment starts at index {first}, expected {entries[-1].index + 1}"
                )
            segments.append(
                _Segment(path, first, offsets, end, len(buf) if damage is None else end)
            )
            entries.extend(found_entries)
        return segments, entries, changed

    def _load_snapshots(
        self, names: Sequence[str], first: int | None, last: int | None
    ) -> tuple[SnapshotMeta | None, bytes | None, bool]:
        found = sorted(
            ((key, name) for name in names if (key := parse_snapshot_name(name)) is not None),
            reverse=True,
        )
        skipped: list[tuple[tuple[int, int], str, FormatError]] = []
        chosen: tuple[SnapshotMeta, bytes] | None = None
        for key, name in found:
            path = self._path(name)
            with open(path, "rb") as f:
                buf = f.read()
            try:
                meta, data = decode_snapshot(buf)
                if (meta.index, meta.term) != key:
                    raise FormatError(
                        0, f"content is snapshot {meta.index}/{meta.term}, not what its name says"
                    )
            except FormatError as e:
                skipped.append((key, path, e))
                continue
            chosen = (meta, data)
            break
        if skipped:
            (newest_index, _), path, error = skipped[0]
            fallback = chosen[0].index if chosen is not None else 0
            if not fallback_covers(fallback, newest_index, first, last):
                raise CorruptStorage(
                    path,
                    error.offset,
                    f"{error.reason}; no older snapshot and log cover index {newest_index}",
                )
            for _, path, error in skipped:
                self._log.warn(
                    "Skipping damaged snapshot {path} (offset {offset}: {reason});"
                    " the older snapshot and the log cover it",
                    path=path,
                    offset=error.offset,
                    reason=error.reason,
                )
                os.replace(path, path + CORRUPT_SUFFIX)
        bad = {key for key, _, _ in skipped}
        self._snapshots = {key: name for key, name in found if key not in bad}
        if chosen is None:
            return None, None, bool(skipped)
        return chosen[0], chosen[1], bool(skipped)

    # -- the reactor side -------------------------------------------------

    def set_identity(self, identity: NodeIdentity) -> Deferred[None]:
        return self._enqueue(_SetIdentity(identity, Deferred()))

    def save(self, batch: PersistBatch, blocking: bool = False) -> Deferred[None]:
        """
        Queue C{batch} for the writer; an empty batch while the writer is
        idle (as for a follower's answer to a heartbeat) has nothing to
        wait for, and fires on the next reactor turn without it.

        A C{blocking} save is written on the calling thread when the writer
        is idle and the last write took less than C{blocking_limit}: the
        caller would only wait anyway, and handing the write to the writer
        thread and its result back costs two thread wake-ups, each of which
        waits for the interpreter lock and a free core (0.35-0.45 ms of a
        1.5-2 ms replication round with one client on this machine).  A slow disk is thus
        felt by the reactor at most once before writes go back to the
        writer thread.
        """
        if blocking and self._write_inline():
            return self._save_now(batch)
        if batch.hard_state is None and not batch.entries and self._runner is not None:
            with self._lock:
                idle = not self._draining and not self._queue
            if idle and not self._closing:
                # Every earlier result is already on its way to the reactor
                # thread, ahead of this one.
                d: Deferred[None] = Deferred()
                self._runner.deliver(partial(d.callback, None))
                return d
        return self._enqueue(_Save(batch, Deferred()))

    def _write_inline(self) -> bool:
        """
        Whether a blocking save may be written on the calling thread now,
        and if so claim the writer's side for it (L{_save_now} releases it).
        """
        if self._closing or not self._loaded or self._last_write >= self._blocking_limit:
            return False
        with self._lock:
            if self._draining or self._queue:
                return False
            self._draining = True
        return True

    def _save_now(self, batch: PersistBatch) -> Deferred[None]:
        save = _Save(batch, Deferred())
        try:
            results = self._run_saves([save])
        except Exception as e:
            # As on the writer thread: a bug fails this save, not the caller.
            results = [(save.deferred, self._failure(e))]
        finally:
            with self._lock:
                self._draining = False
        _fire(results)
        return save.deferred

    def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> Deferred[None]:
        """
        Write the snapshot file on the snapshot thread, then publish it in
        order with the writer's other work: saves made meanwhile do not wait
        for it, and it completes once it is renamed into place.
        """
        self._check_open()
        if self._closing:
            return fail(RuntimeError("storage is closed"))
        op = _SaveSnapshot(meta, data, False, Deferred())
        runner = self._snapshot_runner
        if runner is None:
            runner = self._snapshot_runner = self._new_runner("raft3d-snapshots")
        self._snapshot_writes += 1
        runner.submit(partial(self._write_snapshot_file, runner, op))
        return op.deferred

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> Deferred[None]:
        return self._enqueue(_SaveSnapshot(meta, data, True, Deferred()))

    def compact(self, upto_index: int) -> Deferred[None]:
        return self._enqueue(_Compact(upto_index, Deferred()))

    def close(self) -> Deferred[None]:
        """
        Finish queued work, close files and stop the writer thread.  Calling
        it again is harmless: the Deferred fires once the first close is
        done.
        """
        if self._closed:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._close_waiters.append(waiter)
        if self._closing:
            return waiter
        self._closing = True
        self._after_snapshot_writes(self._close_writer)
        return waiter

    def _close_writer(self) -> None:
        if self._runner is None:
            self._closed_now()
        else:
            self._queue_op(_Close(Deferred())).addBoth(self._closed_now)

    def _closed_now(self, result: object = None) -> None:
        # Runs on the reactor thread once the writer has closed its files
        # (or at once when it never started).
        if self._runner is None:
            self._close_files()
        if self._snapshot_runner is not None:
            self._snapshot_runner.stop()
        self._closed = True
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _check_open(self) -> None:
        if not self._loaded:
            raise RuntimeError("call load() before writing")

    def _new_runner(self, kind: str) -> _Runner:
        if self._synchronous:
            return _InlineRunner()
        assert self._reactor is not None
        return _ThreadRunner(self._reactor, f"{kind}:{self._dir}")

    def _enqueue(self, op: _Op) -> Deferred[None]:
        self._check_open()
        if self._closing:
            return fail(RuntimeError("storage is closed"))
        return self._queue_op(op)

    def _queue_op(self, op: _Op) -> Deferred[None]:
        """
        Queue C{op} for the writer, even while closing (for work that was
        accepted before L{close}).
        """
        if self._runner is None:
            self._runner = self._new_runner("raft3d-storage")
        with self._lock:
            self._queue.append(op)
            if self._draining:
                return op.deferred
            self._draining = True
        self._runner.submit(self._drain)
        return op.deferred

    # -- the snapshot thread ----------------------------------------------

    def _write_snapshot_file(self, runner: _Runner, op: _SaveSnapshot) -> None:
        """
        Runs on the snapshot thread: the file under a temporary name,
        synced; L{_snapshot_written} takes it from there.
        """
        temporary = self._path(snapshot_name(op.meta) + BACKGROUND_SUFFIX)
        try:
            write_temporary(temporary, [encode_snapshot_header(op.meta, op.data), op.data])
        except Exception as e:
            runner.deliver(partial(self._snapshot_written, op, temporary, self._failure(e)))
        else:
            runner.deliver(partial(self._snapshot_written, op, temporary, None))

    def _snapshot_written(self, op: _SaveSnapshot, temporary: str, failure: Failure | None) -> None:
        if failure is None:
            self._queue_op(_PublishSnapshot(op.meta, temporary, op.deferred))
        else:
            op.deferred.errback(failure)
        self._snapshot_writes -= 1
        if not self._snapshot_writes:
            waiters, self._snapshot_waiters = self._snapshot_waiters, []
            for waiter in waiters:
                waiter()

    def _after_snapshot_writes(self, fn: Callable[[], None]) -> None:
        """
        Call C{fn} once no snapshot file is being written (at once if none
        is), so that their renames are queued before it.
        """
        if self._snapshot_writes:
            self._snapshot_waiters.append(fn)
        else:
            fn()

    # -- the writer side --------------------------------------------------

    def _drain(self) -> None:
        """
        Run queued operations until the queue is empty.  Each pass takes
        everything queued so far, so saves that arrived while the previous
        pass was writing form one group commit.
        """
        runner = self._runner
        assert runner is not None
        while True:
            with self._lock:
                ops, self._queue = self._queue, []
                if not ops:
                    self._draining = False
                    return
            i = 0
            while i < len(ops):
                op = ops[i]
                then: Callable[[], None] | None = None
                j = i + 1
                if isinstance(op, _Save):
                    while j < len(ops) and isinstance(ops[j], _Save):
                        j += 1
                elif isinstance(op, _Close):
                    then = runner.stop
                try:
                    if isinstance(op, _Save):
                        results = self._run_saves(cast("list[_Save]", ops[i:j]))
                    else:
                        results = [(op.deferred, self._run_one(op))]
                except Exception as e:
                    # A bug must not wedge the writer: fail these calls and
                    # carry on with the next ones.
                    failure = self._failure(e)
                    results = [(o.deferred, failure) for o in ops[i:j]]
                i = j
                runner.deliver(partial(_fire, results, then))

    def _run_one(self, op: _Op) -> Failure | None:
        try:
            if isinstance(op, _SetIdentity):
                self._write_metadata(op.identity, self._hard_state)
                self._identity = op.identity
            elif isinstance(op, _SaveSnapshot):
                self._write_snapshot(op.meta, op.data, op.install)
            elif isinstance(op, _PublishSnapshot):
                self._publish_snapshot(op.meta, op.temporary)
            elif isinstance(op, _Compact):
                self._compact(op.upto_index)
            elif isinstance(op, _Close):
                self._close_files()
        except Exception as e:
            return self._failure(e)
        return None

    def _failure(self, error: Exception) -> Failure:
        reported = as_storage_error(error)
        if reported is error and not isinstance(error, (OSError, ValueError)):
            self._log.failure("Unexpected error in the storage writer", _failure_of(error))
        return _failure_of(reported)

    def _run_saves(self, saves: list[_Save]) -> _Results:
        """
        Write a group of saves with one write and one fdatasync.  A save
        that is malformed fails alone; an I/O error fails the whole group
        and leaves the files as they were before it.
        """
        plan = LogPlan(self._stored_next())
        hard_state: HardState | None = None
        results: _Results = []
        accepted: list[int] = []
        for save in saves:
            try:
                plan.add(save.batch.entries)
            except ValueError as e:
                results.append((save.deferred, _failure_of(e)))
                continue
            if save.batch.hard_state is not None:
                hard_state = save.batch.hard_state
            accepted.append(len(results))
            results.append((save.deferred, None))
        if not accepted:
            return results
        writes = bool(plan.pending) or plan.truncate_at is not None or hard_state is not None
        started = self._timer()
        try:
            self._write_group(plan, hard_state)
        except Exception as e:
            failure = self._failure(e)
            for k in accepted:
                results[k] = (results[k][0], failure)
        if writes:
            self._last_write = self._timer() - started
        return results

    def _stored_next(self) -> int:
        """
        The index the stored log continues at, derived from the files so
        that it stays right even after a write failed half-way, and equal
        to what a restart would find: after the last segment's last record
        (or at the first index of a segment cut back to nothing), else after
        the newest snapshot.
        """
        if self._segments:
            return self._segments[-1].last_index + 1
        newest = max(self._snapshots) if self._snapshots else None
        return next_index(None, newest[0] if newest else None)

    def _write_group(self, plan: LogPlan, hard_state: HardState | None) -> None:
        # The hard state goes first: if a crash keeps only part of the
        # group, a newer term or vote without the entries is safe, entries
        # of a term the node does not remember are not.
        previous = self._hard_state
        wrote_metadata = False
        if hard_state is not None and hard_state != previous:
            self._write_metadata(self._identity, hard_state)
            wrote_metadata = True
        try:
            if plan.truncate_at is not None:
                self._truncate(plan.truncate_at)
            if plan.pending:
                self._append(plan.pending)
        except BaseException:
            if wrote_metadata:
                try:
                    self._write_metadata(self._identity, previous)
                except Exception:
                    self._log.failure("Could not restore the hard state after a failed save")
            raise

    def _write_metadata(self, identity: NodeIdentity | None, hard_state: HardState) -> None:
        atomic_write(self._dir, METADATA_NAME, [encode_metadata(identity, hard_state)])
        self._hard_state = hard_state

    def _open_current(self) -> int:
        seg = self._segments[-1]
        if self._fd is None or self._fd_path != seg.path:
            self._close_files()
            self._fd = os.open(seg.path, os.O_RDWR)
            self._fd_path = seg.path
        return self._fd

    def _close_files(self) -> None:
        if self._fd is not None:
            fd, self._fd, self._fd_path = self._fd, None, None
            os.close(fd)

    def _remove_last_segment(self) -> None:
        seg = self._segments[-1]
        if self._fd_path == seg.path:
            self._close_files()
        os.unlink(seg.path)
        self._segments.pop()
        self._needs_trim = False

    def _truncate(self, index: int) -> None:
        """
        Discard every stored entry with index >= C{index}.  Later segments
        go first (and durably), so that a crash half-way leaves a shorter
        but contiguous log, never an overlap.
        """
        removed = False
        while self._segments and self._segments[-1].first_index > index:
            self._remove_last_segment()
            removed = True
        if removed:
            fsync_dir(self._dir)
        if self._segments and index <= self._segments[-1].last_index:
            seg = self._segments[-1]
            keep = index - seg.first_index
            offset = seg.offsets[keep]
            fd = self._open_current()
            os.ftruncate(fd, offset)
            fdatasync(fd)
            del seg.offsets[keep:]
            seg.size = seg.allocated = offset
            self._needs_trim = False

    def _append(self, entries: Sequence[Entry]) -> None:
        seg = self._segments[-1] if self._segments else None
        if seg is None or (seg.offsets and seg.size >= self._segment_size):
            self._append_new_segment(entries)
        else:
            fd = self._open_current()
            if self._needs_trim:
                os.ftruncate(fd, seg.size)
                seg.allocated = seg.size
                self._needs_trim = False
            data, offsets = encode_records(entries, seg.size)
            end = seg.size + len(data)
            try:
                write_all(fd, data + self._zero_fill(seg.allocated, end), seg.size)
                fdatasync(fd)
            except BaseException:
                # Cut back to the records, so that nothing but zeros ever
                # follows them (what recovery counts on).
                seg.allocated = seg.size
                try:
                    os.ftruncate(fd, seg.size)
                    fdatasync(fd)
                except OSError:
                    self._needs_trim = True
                raise
            seg.offsets.extend(offsets)
            seg.size = end
            seg.allocated = max(seg.allocated, self._allocation(end))

    def _append_new_segment(self, entries: Sequence[Entry]) -> None:
        first = entries[0].index
        path = self._path(segment_name(first))
        data, offsets = encode_records(entries, HEADER_SIZE)
        end = HEADER_SIZE + len(data)
        self._close_files()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            write_all(fd, segment_header() + data + self._zero_fill(0, end), 0)
            fdatasync(fd)
            fsync_dir(self._dir)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(path)
                fsync_dir(self._dir)
            except OSError:
                self._log.failure(
                    "Could not remove the segment {path} after a failed write", path=path
                )
            raise
        self._fd, self._fd_path = fd, path
        self._segments.append(_Segment(path, first, offsets, end, self._allocation(end)))

    def _allocation(self, end: int) -> int:
        """
        The length of a segment file whose records end at C{end}: the next
        step of preallocated space, or C{end} itself without any.
        """
        step = self._preallocate
        return -(-end // step) * step if step else end

    def _zero_fill(self, allocated: int, end: int) -> bytes:
        """
        The zeros to write after records ending at C{end} in a file of
        length C{allocated}: none while they fit, else up to the next step.
        """
        return bytes(self._allocation(end) - end) if end > allocated else b""

    def _write_snapshot(self, meta: SnapshotMeta, data: bytes, install: bool) -> None:
        name = snapshot_name(meta)
        atomic_write(self._dir, name, [encode_snapshot_header(meta, data), data])
        self._adopt_snapshot(meta, name, install)

    def _publish_snapshot(self, meta: SnapshotMeta, temporary: str) -> None:
        name = snapshot_name(meta)
        try:
            os.replace(temporary, self._path(name))
            fsync_dir(self._dir)
        except BaseException:
            discard(temporary)
            raise
        self._adopt_snapshot(meta, name, False)

    def _adopt_snapshot(self, meta: SnapshotMeta, name: str, install: bool) -> None:
        """
        Record a snapshot now durably in place, delete all but the newest
        two and, for an install, the whole log.
        """
        self._snapshots[(meta.index, meta.term)] = name
        old = snapshots_to_delete(list(self._snapshots))
        for key in old:
            try:
                os.unlink(self._path(self._snapshots.pop(key)))
            except OSError:
                self._log.failure("Could not delete an old snapshot")
        if install:
            while self._segments:
                self._remove_last_segment()
        if old or install:
            fsync_dir(self._dir)

    def _compact(self, upto_index: int) -> None:
        newest = max(self._snapshots) if self._snapshots else None
        limit = compaction_limit(upto_index, newest[0] if newest else None)
        removed = False
        while len(self._segments) > 1 and self._segments[0].last_index <= limit:
            os.unlink(self._segments[0].path)
            self._segments.pop(0)
            removed = True
        if removed:
            fsync_dir(self._dir)
