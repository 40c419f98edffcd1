# -*- test-case-name: tests.integration.test_disk_faults -*-
"""
Disk faults with real processes: what a node does with a damaged data
directory, and with a full disk.

Damage is made by hand in a killed node's C{--raft-dir}, following the file
formats of C{docs/storage.md} (parsed here independently of the storage
code), and the node is restarted with its identical command line:

 - a torn tail (the last record cut short) is repaired with a warning
   naming the file and offset, and the node catches up;
 - a flipped byte inside the log is refused with exit status 78 and an
   error naming the file and the offset of the damaged record; moving the
   directory aside, as C{docs/operations.md} says, brings the node back;
 - a damaged newest snapshot is skipped with a warning when the older
   snapshot and the log cover it, and refused (78, file and offset)
   otherwise.

A full disk is a 4 MiB tmpfs mounted on a node's C{--raft-dir} and filled
with a file (the tests are skipped, with the reason, where mounting is not
permitted).  Whether the full node follows or leads, it stays up and
serves reads, writes are answered promptly (never left to the 10 s commit
timeout), nothing that was not committed is acknowledged, and the node
recovers by itself once the file is deleted.
"""

from __future__ import annotations

import errno
import os
import random
import re
import struct
import subprocess
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import SkipTest, TestCase

from raft3d.service import EXIT_CANNOT_START
from raft3d.testing import ProcessCluster

LOG_MAGIC = b"R3DLOG"
SEGMENT_HEADER = 8
SNAPSHOT_MAGIC = b"R3DSNP"

SMALL_FS = "4m"
PROMPT = 5.0
"""
Seconds within which a write to a node with a full disk must be answered:
well under the 10 s commit timeout that a hanging write would run into.
"""


# -- the formats of docs/storage.md --------------------------------------


def segments(directory: str) -> list[str]:
    """
    The log segments of a data directory, oldest first.
    """
    return sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if re.fullmatch(r"log-\d{20}\.seg", name)
    )


def snapshots(directory: str) -> list[str]:
    """
    The snapshots of a data directory, oldest first (index, then term).
    """
    found = []
    for name in os.listdir(directory):
        m = re.fullmatch(r"snapshot-(\d{20})-(\d{20})\.snap", name)
        if m:
            found.append(((int(m.group(2)), int(m.group(1))), os.path.join(directory, name)))
    return [path for _, path in sorted(found)]


def records(path: str) -> list[tuple[int, int]]:
    """
    The C{(start, end)} byte offsets of every record of a log segment: a
    4-byte length of the rest of the record, then the rest; only zeros (the
    preallocated space) follow the last record.
    """
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == LOG_MAGIC, path
    out = []
    pos = SEGMENT_HEADER
    while pos < len(data) and any(data[pos : pos + 4]):
        (length,) = struct.unpack_from(">I", data, pos)
        out.append((pos, pos + 4 + length))
        pos += 4 + length
    assert not any(data[pos:]), f"{path}: something other than zeros after its records"
    assert pos <= len(data), f"{path} ends inside a record"
    return out


def snapshot_payload_offset(path: str) -> int:
    """
    Where a snapshot file's payload starts: magic, version, the metadata's
    length and the metadata, then payload length and two checksums.
    """
    with open(path, "rb") as f:
        head = f.read(12)
    assert head[:6] == SNAPSHOT_MAGIC, path
    (meta_len,) = struct.unpack_from(">I", head, 8)
    return 12 + meta_len + 8 + 4 + 4


def flip_byte(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


# -- a small file system ---------------------------------------------------


def mount_small_fs(test: TestCase, path: str) -> None:
    """
    Mount a L{SMALL_FS} tmpfs on C{path} (unmounted in cleanup), or skip
    the test saying why that is impossible here.
    """
    os.makedirs(path, exist_ok=True)
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={SMALL_FS}", "tmpfs", path],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as e:
        raise SkipTest(f"cannot run mount to make a small file system: {e}")
    if done.returncode != 0:
        raise SkipTest(
            f"cannot mount a {SMALL_FS} tmpfs on {path} (needs root or CAP_SYS_ADMIN):"
            f" {done.stderr.strip() or done.returncode}"
        )
    # Lazy: the node may still have files open when cleanups run.
    test.addCleanup(subprocess.run, ["umount", "-l", path], check=False)


def fill(path: str) -> str:
    """
    Fill the file system of C{path} with a file, to the last byte; return
    the file's path.
    """
    filler = os.path.join(path, "filler")
    chunk = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        for size in (4096, 512, 1):
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
    return filler


class _Base(TestCase):
    timeout = 300

    def run_test(self, body: Any) -> Deferred[None]:
        async def guarded() -> None:
            try:
                await body
            except self.failureException:
                raise
            except SkipTest:
                raise
            except Exception as e:
                self.cluster.fail(f"{type(e).__name__}: {e}")

        return Deferred.fromCoroutine(guarded())

    def make_cluster(self, *extra: str) -> ProcessCluster:
        self.cluster = ProcessCluster(self, reactor, extra_args=extra)
        self.acked: dict[str, dict[str, Any]] = {}
        self.rng = random.Random()
        return self.cluster

    async def write(
        self, node: str | None = None, key: str | None = None, deadline: float = 60.0
    ) -> tuple[dict[str, Any], list[str]]:
        """
        Create a printer whose model is its C{Idempotency-Key}, through
        C{node} (a random one by default), retrying with the same key on a
        503, 507 or network error until it is acknowledged.  Every answer
        must come within L{PROMPT} seconds.  Returns the printer and the
        codes of the failed attempts.
        """
        c = self.cluster
        key = key or f"p{len(self.acked) + 1}-{self.rng.getrandbits(32):08x}"
        give_up = reactor.seconds() + deadline
        failed: list[str] = []
        while True:
            target = node or self.rng.choice(list(c.specs))
            began = reactor.seconds()
            try:
                code, value, _ = await c.call(
                    "POST",
                    target,
                    "/api/v1/printers",
                    {"company": "Raft3D", "model": key},
                    headers={b"Idempotency-Key": key.encode()},
                )
            except Exception as e:
                failed.append(type(e).__name__)
            else:
                took = reactor.seconds() - began
                if took > PROMPT:
                    c.fail(f"a write to {target} took {took:.1f} s to answer ({code} {value})")
                if code == 201:
                    self.assertEqual(value["model"], key)
                    if key in self.acked:
                        self.assertEqual(self.acked[key], value)
                    self.acked[key] = value
                    return value, failed
                if code not in (503, 507):
                    c.fail(f"write to {target}: {code} {value}")
                self.assertEqual(set(value), {"error"})
                failed.append(f"{code} {value['error']['code']}")
            if reactor.seconds() > give_up:
                c.fail(f"write {key} not acknowledged within {deadline:.0f} s: {failed}")
            await deferLater(reactor, 0.1, lambda: None)

    async def check_everywhere(self, deadline: float = 60.0) -> None:
        """
        Once converged, every node holds exactly the acknowledged printers,
        each once.
        """
        c = self.cluster
        await c.converged(deadline)
        expected = {p["id"]: p for p in self.acked.values()}
        for name in c.specs:
            printers = await c.stale_list(name, "printers")
            models = [p["model"] for p in printers]
            self.assertEqual(len(models), len(set(models)), f"a printer made twice on {name}")
            self.assertEqual({p["id"]: p for p in printers}, expected, f"printers on {name}")

    async def wait_line(self, name: str, text: str) -> str:
        """
        Wait until node C{name}'s latest run prints a line containing
        C{text}; return the line.
        """
        c = self.cluster

        async def probe() -> str | None:
            for line in c.output(name).lines:
                if text in line:
                    return line
            return None

        line: str = await c.wait_for(f"{name} to log {text!r}", probe)
        return line

    async def follower(self, leader: str) -> str:
        return sorted(n for n in self.cluster.specs if n != leader)[-1]


class DamagedLogTests(_Base):
    """
    Torn tails and flipped bytes in log segments.
    """

    def test_torn_tail(self) -> Deferred[None]:
        """
        Kill the leader, cut its last log segment at a random byte inside
        the last record, and restart it with the same command: it starts,
        logs a warning naming the segment and the offset of the cut record,
        follows the new leader and catches up with what was written while
        it was down; every node holds every acknowledged write, once.

        The cluster is converged before the kill: the cut record is one
        the node had acknowledged (a real torn write never was), and this
        way the two others still hold every acknowledged entry.
        """
        return self.run_test(self.torn_tail(leader=True))

    def test_torn_tail_follower(self) -> Deferred[None]:
        """
        The same with a follower as the victim.  The leader took the cut
        record as stored (the follower had acknowledged it), so it must
        notice the follower's shorter log and send it again.
        """
        return self.run_test(self.torn_tail(leader=False))

    async def torn_tail(self, leader: bool) -> None:
        c = self.make_cluster()
        c.start_all()
        first = await c.leader()
        for _ in range(30):
            await self.write()
        await c.converged()
        victim = first if leader else await self.follower(first)
        await c.kill(victim)
        segment = segments(c.specs[victim].raft_dir)[-1]
        start, end = records(segment)[-1]
        # Keep at least one non-zero byte of the record: zeros alone from
        # its start are where the records end (preallocated space), which
        # cuts the record off just the same but without a warning.
        with open(segment, "rb") as f:
            f.seek(start)
            first_nonzero = start + next(i for i, b in enumerate(f.read(end - start)) if b)
        cut = self.rng.randrange(first_nonzero + 1, end)
        os.truncate(segment, cut)
        survivors = [n for n in c.specs if n != victim]
        await c.leader(among=survivors)
        for _ in range(10):
            await self.write(self.rng.choice(survivors))
        c.start(victim)
        await c.wait_up(victim)
        line = await self.wait_line(victim, "Torn tail in")
        self.assertIn(f"Torn tail in {segment} at offset {start} ", line)
        await self.check_everywhere(deadline=30)
        await self.write(victim)
        await self.check_everywhere()

    def test_flipped_byte(self) -> Deferred[None]:
        """
        Flip a byte inside a record in the middle of a follower's log: at
        restart the node refuses to start, exits with status 78 and logs an
        error naming the segment and the offset of the damaged record.
        """
        return self.run_test(self.flipped_byte(recover=False))

    def test_flipped_byte_recovery(self) -> Deferred[None]:
        """
        The same, then the recovery of C{docs/operations.md}: moving the
        directory aside and starting the node again (a node without
        C{--bootstrap}: the identical command) brings it back with
        everything.
        """
        return self.run_test(self.flipped_byte(recover=True))

    async def flipped_byte(self, recover: bool) -> None:
        c = self.make_cluster()
        c.start_all()
        leader = await c.leader()
        for _ in range(30):
            await self.write()
        await c.converged()
        victim = await self.follower(leader)
        self.assertFalse(c.specs[victim].bootstrap)
        await c.kill(victim)
        segment = segments(c.specs[victim].raft_dir)[-1]
        found = records(segment)
        start, end = found[len(found) // 2]
        flip_byte(segment, self.rng.randrange(start, end))
        c.start(victim)
        ended = await c.output(victim).when_ended()
        self.assertEqual(ended.status, EXIT_CANNOT_START, c.tails())
        self.assertTrue(
            any(
                f"{segment}: corrupt at byte offset {start}:" in line
                and "Exiting with status 78" in line
                for line in c.output(victim).lines
            ),
            c.tails(),
        )
        if not recover:
            return
        directory = c.specs[victim].raft_dir
        os.rename(directory, directory + ".damaged")
        await self.write(leader)
        c.start(victim)
        await c.wait_up(victim)
        await self.check_everywhere(deadline=30)


class DamagedSnapshotTests(_Base):
    """
    A damaged newest snapshot, with and without an older snapshot and log
    to fall back on.
    """

    def test_fallback_to_older_snapshot(self) -> Deferred[None]:
        """
        With snapshots every 20 entries, a follower holds two snapshots and
        the log since before the older one.  Damage the newest one's
        payload: at restart the node skips it with a warning naming the
        file and the payload's offset, renames it C{.corrupt}, starts from
        the older snapshot and the log, and catches up.
        """
        return self.run_test(self.fallback())

    async def fallback(self) -> None:
        c = self.make_cluster("--snapshot-threshold", "20", "--trailing-logs", "5")
        c.start_all()
        leader = await c.leader()
        victim = await self.follower(leader)

        async def two_snapshots() -> bool:
            await self.write()
            return len(snapshots(c.specs[victim].raft_dir)) >= 2

        await c.wait_for(f"{victim} to keep two snapshots", two_snapshots)
        await c.converged()
        await c.kill(victim)
        newest = snapshots(c.specs[victim].raft_dir)[-1]
        offset = snapshot_payload_offset(newest)
        flip_byte(newest, offset + self.rng.randrange(os.path.getsize(newest) - offset))
        c.start(victim)
        await c.wait_up(victim)
        line = await self.wait_line(victim, "Skipping damaged snapshot")
        self.assertIn(f"Skipping damaged snapshot {newest} (offset {offset}:", line)
        self.assertTrue(os.path.exists(newest + ".corrupt"))
        await self.write(victim)
        await self.check_everywhere()

    def test_refuse_without_fallback(self) -> Deferred[None]:
        """
        A follower that was sent the leader's snapshot holds only that
        snapshot and the log after it.  Damage the snapshot's payload: at
        restart the node refuses to start, exits with status 78 and names
        the snapshot file and the payload's offset, rather than start
        without the entries the snapshot replaced.
        """
        return self.run_test(self.refuse())

    async def refuse(self) -> None:
        c = self.make_cluster("--snapshot-threshold", "20", "--trailing-logs", "5")
        c.start_all()
        leader = await c.leader()
        for _ in range(5):
            await self.write()
        await c.converged()
        victim = await self.follower(leader)
        self.assertEqual(snapshots(c.specs[victim].raft_dir), [])
        await c.kill(victim)
        survivors = [n for n in c.specs if n != victim]
        for _ in range(60):
            await self.write(self.rng.choice(survivors))
        c.start(victim)
        await c.wait_up(victim)
        await self.wait_line(victim, "installed snapshot at index")
        # The leader's snapshot may end at its last entry: one more write
        # puts an entry in the follower's log after the snapshot.
        await self.write(self.rng.choice(survivors))
        await c.converged()
        await c.kill(victim)
        directory = c.specs[victim].raft_dir
        [installed] = snapshots(directory)
        self.assertGreater(int(os.path.basename(segments(directory)[0])[4:24]), 1)
        offset = snapshot_payload_offset(installed)
        flip_byte(installed, offset + self.rng.randrange(os.path.getsize(installed) - offset))
        c.start(victim)
        ended = await c.output(victim).when_ended()
        self.assertEqual(ended.status, EXIT_CANNOT_START, c.tails())
        self.assertTrue(
            any(
                f"{installed}: corrupt at byte offset {offset}:" in line
                and "Exiting with status 78" in line
                for line in c.output(victim).lines
            ),
            c.tails(),
        )


class DiskFullTests(_Base):
    """
    A node whose C{--raft-dir} is a full file system.
    """

    def full_cluster(self, nodes: int = 3) -> ProcessCluster:
        """
        A cluster whose every node keeps its data on a small tmpfs of its
        own (so that any of them can be made to run out of space).
        """
        # Preallocated log space outlasts a full disk for thousands of
        # writes; a small step makes the full disk felt within a few.
        c = self.cluster = ProcessCluster(
            self, reactor, nodes=nodes, extra_args=["--log-preallocate", "4096"]
        )
        self.acked = {}
        self.rng = random.Random()
        for spec in c.specs.values():
            mount_small_fs(self, spec.raft_dir)
        return c

    async def reads_served(self, name: str) -> None:
        """
        Node C{name} answers stale reads with every printer it had before
        its disk filled (at least), and linearizable reads either with
        every acknowledged printer or with a JSON 503: never stale data.
        """
        c = self.cluster
        seen = {p["model"] for p in await c.stale_list(name, "printers")}
        self.assertLessEqual(seen, set(self.acked))
        code, value, _ = await c.call("GET", name, "/api/v1/printers")
        if code == 200:
            self.assertEqual({p["model"] for p in value}, set(self.acked))
        else:
            self.assertEqual((code, set(value)), (503, {"error"}), value)

    def test_follower_disk_full(self) -> Deferred[None]:
        """
        Fill a follower's disk: writes through any node, the full one
        included (forwarded), are acknowledged promptly by the healthy
        majority; the full node stays up, logs the failure, serves reads,
        and the healthy nodes serve linearizable reads with every write.
        Delete the filler: the node recovers by itself, catches up, and
        takes writes again.
        """
        return self.run_test(self.follower_full())

    async def follower_full(self) -> None:
        c = self.full_cluster()
        c.start_all()
        leader = await c.leader()
        for _ in range(5):
            await self.write()
        victim = await self.follower(leader)
        filler = fill(c.specs[victim].raft_dir)
        acked_before = len(self.acked)

        async def failing() -> bool:
            await self.write()
            return any("log write failed" in line for line in c.output(victim).lines)

        await c.wait_for(f"{victim} to fail a log write", failing)
        for name in c.specs:
            await self.write(name)
        self.assertGreater(len(self.acked), acked_before)
        self.assertTrue(c.running(victim))
        await self.reads_served(victim)
        for name in c.specs:
            if name != victim:
                printers = await c.ok("GET", name, "/api/v1/printers")
                self.assertEqual({p["model"] for p in printers}, set(self.acked))
        self.assertEqual(await c.leader(), leader)
        os.unlink(filler)
        await self.wait_line(victim, "log writes succeed again")
        await self.write(victim)
        await self.check_everywhere()

    def test_leader_disk_full(self) -> Deferred[None]:
        """
        Fill the leader's disk: every write sent to it is answered
        promptly (201, or 507 C{storage_full} / 503 while it hands over,
        retried with the same key), it hands leadership to a healthy node,
        and then writes through any node succeed.  It stays up and serves
        reads; deleting the filler lets it recover and catch up, and every
        node holds each acknowledged write once.
        """
        return self.run_test(self.leader_full())

    async def leader_full(self) -> None:
        c = self.full_cluster()
        c.start_all()
        victim = await c.leader()
        for _ in range(5):
            await self.write()
        filler = fill(c.specs[victim].raft_dir)
        refusals: list[str] = []

        async def handed_over() -> bool:
            _, failed = await self.write(victim)
            refusals.extend(failed)
            status = await c.status(victim)
            return status is not None and not status["is_leader"]

        await c.wait_for(f"{victim} to hand leadership over", handed_over)
        await self.wait_line(victim, "cannot write its log; refusing writes")
        new = await c.leader(other_than=victim)
        for name in c.specs:
            await self.write(name)
        self.assertTrue(c.running(victim))
        await self.reads_served(victim)
        printers = await c.ok("GET", new, "/api/v1/printers")
        self.assertEqual({p["model"] for p in printers}, set(self.acked))
        os.unlink(filler)
        await self.wait_line(victim, "log writes succeed again")
        await self.write(victim)
        await self.check_everywhere()
        print(f"\n[disk full] answers to the full leader before the hand-over: {refusals}")

    def test_single_node_disk_full(self) -> Deferred[None]:
        """
        A single-node cluster cannot hand over: with its disk full, a write
        is answered at once with a 503 C{timeout} (it was in the log when
        the write failed: it may still take effect) or a 507
        C{storage_full} (refused before the log), never left hanging; reads,
        linearizable included, keep working.  Once the filler is deleted
        the write that was in the log takes effect by itself, and its retry
        with the same key returns that same printer: exactly once.
        """
        return self.run_test(self.single_full())

    async def single_full(self) -> None:
        c = self.full_cluster(nodes=1)
        c.start("node1")
        await c.leader()
        for _ in range(3):
            await self.write()
        filler = fill(c.specs["node1"].raft_dir)
        answers: list[tuple[str, int, str]] = []

        async def refused() -> bool:
            key = f"full-{len(answers)}"
            began = reactor.seconds()
            code, value, _ = await c.call(
                "POST",
                "node1",
                "/api/v1/printers",
                {"company": "Raft3D", "model": key},
                headers={b"Idempotency-Key": key.encode()},
            )
            self.assertLess(reactor.seconds() - began, PROMPT, (code, value))
            if code == 201:
                self.acked[key] = value
                answers.append((key, code, "created"))
            else:
                self.assertIn(code, (503, 507), value)
                answers.append((key, code, value["error"]["code"]))
            return answers[-1][1:] == (507, "storage_full")

        await c.wait_for("a write refused with 507 storage_full", refused)
        in_log = [key for key, code, why in answers if (code, why) == (503, "timeout")]
        refused_keys = [key for key, code, _ in answers if code == 507]
        self.assertEqual(len(in_log), 1, answers)
        await self.reads_served("node1")
        code, _, _ = await c.call("GET", "node1", "/api/v1/printers")
        self.assertEqual(code, 200)
        os.unlink(filler)
        await self.wait_line("node1", "log writes succeed again")
        await c.converged()
        models = {p["model"]: p for p in await c.stale_list("node1", "printers")}
        self.assertIn(in_log[0], models)
        self.assertFalse(set(refused_keys) & set(models))
        for key in in_log + refused_keys:
            printer, _ = await self.write("node1", key)
            if key in in_log:
                self.assertEqual(printer, models[key])
        await self.check_everywhere()
