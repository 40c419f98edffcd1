"""
Tests for L{raft3d.farm.FarmState.freeze}: the encoder it returns gives the
bytes L{raft3d.farm.FarmState.snapshot} gave at freeze time, however the
state changes afterwards, from the same thread or while the encoder runs in
another one.
"""

from __future__ import annotations

import random
import sys
import threading
import uuid
from typing import Any, Callable

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from raft3d.farm import (
    FarmState,
    JobStatus,
    _index,
    _snapshot,
    _state,
    create_filament,
    create_print_job,
    create_printer,
    set_print_job_status,
)
from raft3d.farm._snapshot import Rows
from raft3d.raft import IBackgroundSnapshot, IStreamingSnapshot

_STATUS_NAMES = ("Queued", "Running", "Done", "Canceled", "RUNNING", "done")
_NEXT = {
    JobStatus.QUEUED: ("Running", "Canceled"),
    JobStatus.RUNNING: ("Done", "Canceled"),
}


class _History:
    """
    Random commands (seeded) over a growing farm, reaching every kind of
    change: creates of each kind, with ids and stamps of the usual width
    and not (kept aside by the columns), non-ASCII text, new names (the
    interners grow), and status changes, mostly legal, that reserve,
    release and consume filament.  Some commands are rejected.
    """

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.printers: list[str] = []
        self.filaments: list[str] = []
        self.jobs: list[str] = []
        self.count = 0

    def _id(self, kind: str) -> str:
        self.count += 1
        rng = self.rng
        form = rng.random()
        if form < 0.8:
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if form < 0.9:
            return f"{kind}{self.count}"
        return f"{kind}-ü-{self.count}"

    def _at(self) -> str:
        rng = self.rng
        form = rng.random()
        minute, second, ms = rng.randrange(60), rng.randrange(60), rng.randrange(1000)
        if form < 0.8:
            return f"2026-01-01T00:{minute:02d}:{second:02d}.{ms:03d}Z"
        if form < 0.9:
            # Non-ASCII, and still 24 bytes: stored in the buffer.
            return f"2026-01-01T00:{minute:02d}:{second:02d}.{ms % 100:02d}Ü"
        return rng.choice(["odd", f"later {ms}", "2026-01-01T00:00:00Z"])

    def _name(self, usual: tuple[str, ...]) -> str:
        rng = self.rng
        return rng.choice(usual) if rng.random() < 0.8 else f"name {rng.randrange(10**6)}"

    def _pick(self, ids: list[str], kind: str) -> str:
        rng = self.rng
        if not ids or rng.random() < 0.03:
            return f"no-such-{kind}"
        return rng.choice(ids)

    def command(self, state: FarmState) -> dict[str, Any]:
        """
        The next command; C{state} (where the commands go) steers status
        changes toward legal ones.
        """
        rng = self.rng
        roll = rng.random()
        if roll < 0.12 or not self.printers:
            new = self._id("p") if rng.random() > 0.03 or not self.printers else self.printers[0]
            self.printers.append(new)
            return create_printer(
                id=new,
                company=self._name(("Prusa", "Bambü")),
                model=self._name(("MK4", "X1")),
                at=self._at(),
            )
        if roll < 0.25 or not self.filaments:
            new = self._id("f")
            self.filaments.append(new)
            total = rng.randrange(100, 3000)
            return create_filament(
                id=new,
                type=rng.choice(["PLA", "petg", "ABS", "TPU"]),
                color=self._name(("red", "black")),
                total_weight_in_grams=total,
                remaining_weight_in_grams=rng.randrange(0, total + 1),
                at=self._at(),
            )
        if roll < 0.6 or not self.jobs:
            new = self._id("j") if rng.random() > 0.03 or not self.jobs else self.jobs[0]
            self.jobs.append(new)
            return create_print_job(
                id=new,
                printer_id=self._pick(self.printers, "printer"),
                filament_id=self._pick(self.filaments, "filament"),
                filepath=rng.choice(["a.gcode", "/g/ü.gcode", f"/g/{rng.randrange(10**9)}"]),
                print_weight_in_grams=rng.randrange(1, 300),
                at=self._at(),
            )
        job_id = self._pick(self.jobs, "job")
        job = state.get_job(job_id)
        choices = _NEXT.get(job.status, ()) if job is not None else ()
        status = rng.choice(choices) if choices and rng.random() < 0.9 else None
        return set_print_job_status(
            id=job_id, status=status or rng.choice(_STATUS_NAMES), at=self._at()
        )


class _Farm:
    """
    A L{FarmState} fed by a L{_History}, with a log of what it applied.
    """

    def __init__(self, seed: int) -> None:
        self.state = FarmState()
        self.history = _History(seed)
        self.log: list[dict[str, Any]] = []

    def run(self, count: int) -> None:
        for _ in range(count):
            self.step()

    def step(self) -> None:
        command = self.history.command(self.state)
        self.log.append(command)
        self.state.apply(len(self.log), command)


def _replay(log: list[dict[str, Any]]) -> FarmState:
    state = FarmState()
    for index, command in enumerate(log, 1):
        state.apply(index, command)
    return state


class FreezeTests(SynchronousTestCase):
    """
    The encoder returned by C{freeze}, run after further commands in the
    same thread.
    """

    def setUp(self) -> None:
        # Small batches: many batch boundaries, in the old rows and the new.
        self.patch(_snapshot, "_CHUNK", 7)

    def test_provides_background_snapshot(self) -> None:
        """
        L{FarmState} provides the engine's L{IBackgroundSnapshot}, and an
        encoder run at once gives the current snapshot.
        """
        farm = _Farm(1)
        farm.run(50)
        self.assertTrue(verifyObject(IBackgroundSnapshot, farm.state))
        self.assertEqual(farm.state.freeze()(), farm.state.snapshot())
        self.assertEqual(FarmState().freeze()(), FarmState().snapshot())

    def test_provides_streaming_snapshot(self) -> None:
        """
        L{FarmState} provides L{IStreamingSnapshot}: the chunks of a frozen
        state, at most a batch of rows each, are its snapshot at freeze
        time, whatever is applied while they are made.
        """
        farm = _Farm(2)
        farm.run(60)
        self.assertTrue(verifyObject(IStreamingSnapshot, farm.state))
        expected = farm.state.snapshot()
        chunks = farm.state.freeze_chunks()()
        got = [bytes(next(chunks))]
        farm.run(40)
        got += [bytes(chunk) for chunk in chunks]
        self.assertEqual(b"".join(got), expected)
        self.assertGreater(len(got), 60 // 7)
        self.assertEqual(b"".join(FarmState().freeze_chunks()()), FarmState().snapshot())

    @settings(max_examples=40, deadline=None, derandomize=True)
    @given(
        st.integers(min_value=0, max_value=2**32 - 1),
        st.integers(min_value=0, max_value=150),
        st.integers(min_value=0, max_value=300),
    )
    def test_random_histories(self, seed: int, before: int, after: int) -> None:
        """
        Whatever commands follow the freeze (creates of every kind, status
        changes that reserve, release and consume filament, rejections),
        the encoder gives the bytes of the snapshot taken at freeze time,
        and they restore to the state of the commands before it.
        """
        farm = _Farm(seed)
        farm.run(before)
        data = farm.state.snapshot()
        log = list(farm.log)
        encode = farm.state.freeze()
        farm.run(after)
        encoded = encode()
        self.assertEqual(encoded, data)
        restored = FarmState()
        restored.restore(encoded)
        self.assertEqual(restored, _replay(log))

    def test_changes_in_place(self) -> None:
        """
        Every column that commands rewrite keeps its frozen value: job
        status and update stamp, filament remaining weight and update stamp,
        including stamps that move into and out of the columns' side maps.
        """
        state = FarmState()
        t0, t1 = "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:01.000Z"
        state.apply(1, create_printer(id="p", company="c", model="m", at=t0))
        state.apply(
            2,
            create_filament(
                id="f",
                type="PLA",
                color="red",
                total_weight_in_grams=1000,
                remaining_weight_in_grams=1000,
                at=t0,
            ),
        )
        for n, at in enumerate((t0, "odd", t0, t0)):
            state.apply(
                3 + n,
                create_print_job(
                    id=f"j{n}",
                    printer_id="p",
                    filament_id="f",
                    filepath="a",
                    print_weight_in_grams=100,
                    at=at,
                ),
            )
        state.apply(7, set_print_job_status(id="j2", status="Running", at=t0))
        data = state.snapshot()
        encode = state.freeze()
        moves = [
            ("j0", "Running", "odd stamp"),
            ("j0", "Done", t1),
            ("j1", "Canceled", t1),
            ("j2", "Done", "other odd stamp"),
            ("j3", "Canceled", t1),
        ]
        for n, (job_id, status, at) in enumerate(moves, 8):
            self.assertIn(
                "ok", state.apply(n, set_print_job_status(id=job_id, status=status, at=at))
            )
        filament = state.get_filament("f")
        assert filament is not None
        self.assertEqual(
            (filament.remaining_weight_in_grams, filament.updated_at), (800, "other odd stamp")
        )
        self.assertEqual(encode(), data)
        before = FarmState()
        before.restore(data)
        self.assertEqual(
            [(j.status, j.updated_at) for j in before.jobs().items],
            [
                (JobStatus.QUEUED, t0),
                (JobStatus.QUEUED, "odd"),
                (JobStatus.RUNNING, t0),
                (JobStatus.QUEUED, t0),
            ],
        )

    def test_growth(self) -> None:
        """
        Thousands of objects created after the freeze (id index shards
        that regrow, status index blocks that split, interners and buffers
        that grow) change nothing in what the encoder gives.
        """
        self.patch(_index.SortedSeqs, "_LOAD", 4)
        farm = _Farm(2)
        farm.run(100)
        data = farm.state.snapshot()
        log = list(farm.log)
        encode = farm.state.freeze()
        farm.run(4000)
        counts = farm.state.counts()
        self.assertGreater(counts["printers"] + counts["filaments"] + counts["print_jobs"], 1500)
        encoded = encode()
        self.assertEqual(encoded, data)
        restored = FarmState()
        restored.restore(encoded)
        self.assertEqual(restored, _replay(log))

    def test_several_freezes(self) -> None:
        """
        Encoders frozen at different points are independent: each gives its
        own snapshot, whichever runs first.
        """
        farm = _Farm(3)
        frozen = []
        for _ in range(5):
            farm.run(80)
            frozen.append((farm.state.snapshot(), farm.state.freeze()))
        farm.run(80)
        for data, encode in reversed(frozen):
            self.assertEqual(encode(), data)

    def test_restore_after_freeze(self) -> None:
        """
        Restoring another state after the freeze does not change what the
        encoder gives: restore replaces the tables, it does not rewrite
        them.
        """
        farm, other = _Farm(4), _Farm(5)
        farm.run(200)
        other.run(100)
        data = farm.state.snapshot()
        encode = farm.state.freeze()
        farm.state.restore(other.state.snapshot())
        for index, command in enumerate(other.log[:50], 1000):
            farm.state.apply(index, command)
        self.assertEqual(encode(), data)


class _Lockstep:
    """
    Makes an encoder running in another thread stop after each batch of
    rows until the test thread has applied one command: a forced
    interleaving, the same on every run.
    """

    def __init__(self) -> None:
        self.ready = threading.Semaphore(0)
        self.go = threading.Semaphore(0)
        self.finished = False
        self.batches = 0

    def encode_map(self, doc: dict[str, Any]) -> bytes:
        """
        L{_snapshot.encode_map} with a pause after each batch.
        """
        stepped = {
            key: Rows(value.count, self._stepped(value.batch)) if isinstance(value, Rows) else value
            for key, value in doc.items()
        }
        return _snapshot.encode_map(stepped)

    def _stepped(self, batch: Callable[[int, int], Any]) -> Callable[[int, int], Any]:
        def stepped(start: int, stop: int) -> Any:
            rows = batch(start, stop)
            self.batches += 1
            self.ready.release()
            if not self.go.acquire(timeout=30):
                raise RuntimeError("the test thread stopped stepping")
            return rows

        return stepped


def _in_thread(
    encode: Callable[[], bytes], done: Callable[[], None]
) -> tuple[threading.Thread, list[bytes], list[BaseException]]:
    """
    Start C{encode} in a new thread; its result or exception go to the
    returned lists, then C{done} is called.
    """
    results: list[bytes] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(encode())
        except BaseException as e:
            errors.append(e)
        finally:
            done()

    thread = threading.Thread(target=run, name="test snapshot encoder")
    thread.start()
    return thread, results, errors


class ThreadTests(SynchronousTestCase):
    """
    The encoder running in a real thread while this one applies commands,
    as on a node.
    """

    def setUp(self) -> None:
        self.patch(_snapshot, "_CHUNK", 5)
        self.patch(_index.SortedSeqs, "_LOAD", 4)

    def test_lockstep(self) -> None:
        """
        With one command applied between every two batches of the encoder,
        it still gives the snapshot of freeze time.
        """
        farm = _Farm(6)
        farm.run(300)
        data = farm.state.snapshot()
        lockstep = _Lockstep()
        self.patch(_state, "encode_map", lockstep.encode_map)
        encode = farm.state.freeze()

        def done() -> None:
            lockstep.finished = True
            lockstep.ready.release()

        thread, results, errors = _in_thread(encode, done)
        try:
            while True:
                self.assertTrue(lockstep.ready.acquire(timeout=30), "the encoder hangs")
                if lockstep.finished:
                    break
                farm.step()
                lockstep.go.release()
        finally:
            lockstep.go.release()
            thread.join(30)
        self.assertFalse(thread.is_alive())
        self.assertEqual(errors, [])
        counts = _replay(farm.log[:300]).counts()
        self.assertEqual(
            lockstep.batches,
            sum(-(-counts[kind] // 5) for kind in ("printers", "filaments", "print_jobs")),
        )
        self.assertEqual(results, [data])

    def test_free_running(self) -> None:
        """
        With the interpreter switching threads as often as it can, applying
        commands in this thread while the encoder runs in another raises
        nothing in either (no buffer export in the way of a resize) and the
        encoder gives the snapshot of freeze time.
        """
        interval = sys.getswitchinterval()
        sys.setswitchinterval(1e-6)
        self.addCleanup(sys.setswitchinterval, interval)
        farm = _Farm(7)
        farm.run(400)
        data = farm.state.snapshot()
        log = list(farm.log)
        encode = farm.state.freeze()
        thread, results, errors = _in_thread(encode, lambda: None)
        try:
            farm.run(1500)
        finally:
            thread.join(30)
        self.assertFalse(thread.is_alive())
        self.assertEqual(errors, [])
        self.assertEqual(results, [data])
        restored = FarmState()
        restored.restore(results[0])
        self.assertEqual(restored, _replay(log))
