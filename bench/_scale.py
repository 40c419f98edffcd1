# -*- test-case-name: tests.bench.test_scale -*-
"""
The scale run: a Raft3D cluster loaded with N objects, then what that state
costs: resident memory per node, snapshot write time and size, the restart
of a node, a member rebuilt from nothing through InstallSnapshot, and the
latency of a paginated list page.

The objects are 20% printers, 20% spools (filaments) and 60% print jobs
(each job on one of the first 100 printers and spools), created through the
leader by wrk at 64 connections, as fast as the cluster takes them.

Raft3D has no HTTP API for membership changes, so "a brand-new member" is
measured as a follower whose data directory is wiped and which is started
again with the same command: it comes back empty and is contacted by the
leader.  The leader still holds the follower's old match index and ignores
its rejections as stale, so the follower stays empty; the harness records
that, then restarts the leader: the new leader probes the empty follower
from scratch and (its log being compacted) can only bring it up to date
through InstallSnapshot.  A real new member would be added as a learner;
this measures the same transfer and restore.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from typing import Any, Callable, Sequence

import attrs

from ._clusters import Raft3DCluster
from ._net import Timeout, request, wait_for
from ._stats import WrkResult
from ._wrk import Runner, Target

_SNAPSHOT_LINE = re.compile(
    r"^(?P<when>\S+) \[[^\]]*\] (?P<node>\S+): snapshot at index (?P<index>\d+)"
    r" \((?P<size>\d+) bytes, (?P<secs>[0-9.]+)s\)"
)
_INSTALLED_LINE = re.compile(r"(?P<node>\S+): installed snapshot at index (?P<index>\d+)")


@attrs.frozen
class SnapshotEvent:
    """
    One "snapshot at index I (S bytes, T s)" line of a node's log.
    """

    node: str
    index: int
    size: int
    seconds: float


def parse_snapshot_lines(text: str) -> list[SnapshotEvent]:
    """
    Every snapshot a node's log reports having written.
    """
    out = []
    for line in text.splitlines():
        m = _SNAPSHOT_LINE.match(line)
        if m is not None:
            out.append(
                SnapshotEvent(
                    m.group("node"),
                    int(m.group("index")),
                    int(m.group("size")),
                    float(m.group("secs")),
                )
            )
    return out


def installed_snapshots(text: str) -> list[int]:
    """
    The indexes of the snapshots a node's log says it installed from the
    leader.
    """
    return [int(m.group("index")) for m in _INSTALLED_LINE.finditer(text)]


def parse_proc_status(text: str) -> dict[str, int]:
    """
    The C{Vm*} sizes of C{/proc/PID/status}, in KiB.
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.startswith("Vm") and value.strip().endswith("kB"):
            out[name] = int(value.split()[0])
    return out


def memory_of(pid: int | None) -> dict[str, int]:
    """
    VmRSS and VmHWM (peak) of a process in KiB, empty if it is gone.
    """
    if pid is None:
        return {}
    try:
        with open(f"/proc/{pid}/status") as f:
            sizes = parse_proc_status(f.read())
    except OSError:
        return {}
    return {k: v for k, v in sizes.items() if k in ("VmRSS", "VmHWM")}


def dir_sizes(path: str) -> dict[str, int]:
    """
    Bytes per kind of file in a node's data directory: snapshots, log
    segments and the rest.
    """
    out = {"snapshots": 0, "segments": 0, "other": 0, "snapshot_files": 0}
    if not os.path.isdir(path):
        return out
    for name in os.listdir(path):
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            continue
        size = os.path.getsize(full)
        if name.endswith(".snap"):
            out["snapshots"] += size
            out["snapshot_files"] += 1
        elif name.endswith(".seg"):
            out["segments"] += size
        else:
            out["other"] += size
    return out


def snapshot_costs(data_dir: str) -> dict[str, Any]:
    """
    Load the newest snapshot file of a node and time, in this process,
    what a node does with it: restoring the farm from it (a restart or an
    InstallSnapshot) and encoding it again (what every snapshot costs a
    node's encoder: C{RaftNode} freezes the state on the reactor and
    encodes it in a forked child, or a pool thread with
    C{--snapshot-encoder thread}; its logged write time includes the
    encoding).
    """
    import cbor2

    from raft3d.farm import FarmState
    from raft3d.storage._snapshots import decode_snapshot

    names = sorted(n for n in os.listdir(data_dir) if n.endswith(".snap"))
    if not names:
        return {}
    path = os.path.join(data_dir, names[-1])
    with open(path, "rb") as f:
        raw = f.read()
    meta, data = decode_snapshot(raw)
    t0 = time.perf_counter()
    outer = cbor2.loads(data)
    farm = FarmState()
    farm.restore(outer["sm"])
    restore_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cbor2.dumps({"v": outer.get("v"), "sm": farm.snapshot(), "sessions": outer.get("sessions")})
    encode_s = time.perf_counter() - t0
    return {
        "file": names[-1],
        "index": meta.index,
        "file_bytes": len(raw),
        "decode_and_restore_s": round(restore_s, 3),
        "encode_s": round(encode_s, 3),
    }


def split_objects(n: int) -> tuple[int, int, int]:
    """
    C{n} objects as (printers, filaments, jobs): 20%, 20%, the rest; at
    least one printer and one filament so that jobs can be created.
    """
    printers = max(1, n // 5)
    filaments = max(1, n // 5)
    return printers, filaments, max(0, n - printers - filaments)


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class ScaleRun:
    """
    The scale run on one fresh cluster.
    """

    def __init__(
        self,
        cluster: Raft3DCluster,
        runner: Runner,
        say: Callable[[str], None],
        *,
        connections: int = 64,
        load_timeout: int = 3600,
        catch_up_timeout: float = 600.0,
        stuck_wait: float = 15.0,
        page_seconds: int = 5,
    ) -> None:
        self._c = cluster
        self._runner = runner
        self._say = say
        self._conns = connections
        self._load_timeout = load_timeout
        self._catch_up_timeout = catch_up_timeout
        self._page_seconds = page_seconds
        self._stuck_wait = stuck_wait

    def run(self, n: int) -> dict[str, Any]:
        out: dict[str, Any] = {"objects_requested": n}
        leader = self._c.wait_ready()
        out["load"] = self._load(n, leader)
        out["settle_s"] = self._settle(leader)
        out["memory_kib"] = {
            m.name: memory_of(self._c.pid(i)) for i, m in enumerate(self._c.members)
        }
        out["status"] = {m.name: self._c.status(i) for i, m in enumerate(self._c.members)}
        out["snapshots"] = self._snapshots()
        try:
            out["snapshot_costs"] = snapshot_costs(self._c.members[leader].data_dir)
        except Exception as e:  # the measurement must not end the run
            out["snapshot_costs"] = {"error": f"{type(e).__name__}: {e}"}
        out["pages"] = self._pages(leader)
        follower = next(i for i in range(len(self._c.members)) if i != leader)
        out["restart"] = self._restart(follower, leader)
        out["rebuild"] = self._rebuild(follower, leader)
        out["memory_after_kib"] = {
            m.name: memory_of(self._c.pid(i)) for i, m in enumerate(self._c.members)
        }
        return out

    # -- loading --------------------------------------------------------------

    def _load_phase(
        self, leader: int, workload: str, count: int, fixture: Sequence[str] = ()
    ) -> WrkResult:
        self._say(f"  scale: {workload} x {count}")
        merged, _ = self._runner.run(
            [Target(self._c.http_addrs[leader], self._conns)],
            system="raft3d",
            workload=workload,
            tag=f"scale-{workload}",
            duration=self._load_timeout,
            quota=count,
            fixture=fixture,
        )
        return merged

    def _first_ids(self, leader: int, kind: str) -> list[str]:
        status, _, body = request(
            "GET", self._c.http_addrs[leader], f"/api/v1/{kind}?limit=100", timeout=60
        )
        if status != 200 or not isinstance(body, list):
            raise RuntimeError(f"listing {kind} failed: {status} {body!r:.200}")
        return [str(item["id"]) for item in body]

    def _load(self, n: int, leader: int) -> dict[str, Any]:
        printers, filaments, jobs = split_objects(n)
        started = time.monotonic()
        phases = {}
        phases["printers"] = self._load_phase(leader, "load_printers", printers)
        phases["filaments"] = self._load_phase(leader, "load_filaments", filaments)
        if jobs:
            fixture = ["printers", *self._first_ids(leader, "printers")]
            fixture += ["filaments", *self._first_ids(leader, "filaments")]
            phases["jobs"] = self._load_phase(leader, "load_jobs", jobs, fixture)
        elapsed = time.monotonic() - started
        created = sum(r.ok for r in phases.values())
        return {
            "objects_created": created,
            "seconds": round(elapsed, 2),
            "objects_per_s": round(created / elapsed, 1) if elapsed > 0 else 0,
            "phases": {name: r.to_json() for name, r in phases.items()},
        }

    def _settle(self, leader: int) -> float:
        """
        Wait until every node has applied what the leader committed.
        """
        started = time.monotonic()
        status = self._c.status(leader)
        target = int(status["commit_index"]) if status else 0

        def caught_up() -> bool | None:
            for i in range(len(self._c.members)):
                st = self._c.status(i)
                if st is None or int(st["applied_index"]) < target:
                    return None
            return True

        wait_for("every node to apply the load", caught_up, self._catch_up_timeout, 0.5)
        return round(time.monotonic() - started, 2)

    # -- measurements ---------------------------------------------------------

    def _snapshots(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self._c.members:
            events = parse_snapshot_lines(_read(m.log_path))
            biggest = max(events, key=lambda e: e.size, default=None)
            slowest = max(events, key=lambda e: e.seconds, default=None)
            out[m.name] = {
                "count": len(events),
                "last": attrs.asdict(events[-1]) if events else None,
                "largest_bytes": biggest.size if biggest else None,
                "slowest_s": slowest.seconds if slowest else None,
                "data_dir_bytes": dir_sizes(m.data_dir),
            }
        return out

    def _pages(self, leader: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        paths = {
            "printers?limit=100": "/api/v1/printers?limit=100",
            "print_jobs?limit=100": "/api/v1/print_jobs?limit=100",
            "print_jobs?status=Queued&limit=100": "/api/v1/print_jobs?status=Queued&limit=100",
            "printers?limit=100 (stale)": "/api/v1/printers?limit=100&consistency=stale",
        }
        for name, path in paths.items():
            self._say(f"  scale: page {name}")
            merged, _ = self._runner.run(
                [Target(self._c.http_addrs[leader], 1)],
                system="raft3d",
                workload="page",
                tag="page",
                duration=self._page_seconds,
                fixture=[path],
            )
            out[name] = merged.to_json()
        return out

    def _wait_applied(
        self, index: int, target: int, timeout: float | None = None
    ) -> tuple[float | None, float | None]:
        """
        Seconds until node C{index} answers C{/status}, and until it has
        applied C{target}; L{None} for what did not happen in time.
        """
        started = time.monotonic()
        answered: float | None = None
        deadline = started + (self._catch_up_timeout if timeout is None else timeout)
        while time.monotonic() < deadline:
            st = self._c.status(index)
            if st is not None:
                if answered is None:
                    answered = time.monotonic() - started
                if int(st.get("applied_index", 0)) >= target:
                    return answered, time.monotonic() - started
            if self._c.pid(index) is None:
                break
            time.sleep(0.1)
        return answered, None

    def _leader_commit(self, leader: int) -> int:
        st = self._c.status(leader)
        return int(st["commit_index"]) if st else 0

    def _restart(self, index: int, leader: int) -> dict[str, Any]:
        name = self._c.members[index].name
        target = self._leader_commit(leader)
        self._say(f"  scale: SIGKILL {name}, restart it, wait for index {target}")
        self._c.kill_member(index)
        self._c.start_member(index)
        answered, caught_up = self._wait_applied(index, target)
        return {
            "node": name,
            "target_index": target,
            "http_up_s": _r(answered),
            "caught_up_s": _r(caught_up),
            "memory_kib": memory_of(self._c.pid(index)),
            "ok": caught_up is not None,
        }

    def _rebuild(self, index: int, leader: int) -> dict[str, Any]:
        """
        Wipe follower C{index} and start it again; if the leader does not
        repair it (it remembers the follower's old match index and ignores
        its rejections as stale, as Raft allows since a member never loses
        acknowledged entries), restart the leader so that a new one starts
        from fresh progress and probes the empty follower.
        """
        member = self._c.members[index]
        target = self._leader_commit(leader)
        self._say(f"  scale: wipe {member.name}'s data, restart it, wait for index {target}")
        self._c.stop_member(index)
        log_before = len(_read(member.log_path))
        shutil.rmtree(member.data_dir, ignore_errors=True)
        os.makedirs(member.data_dir, exist_ok=True)
        self._c.start_member(index)
        result: dict[str, Any] = {
            "node": member.name,
            "method": "follower data directory wiped, same command restarted"
            " (Raft3D has no membership API to add a brand-new member)",
            "target_index": target,
        }
        # A write makes the leader send entries to the empty follower.
        request(
            "POST",
            self._c.http_addrs[leader],
            "/api/v1/printers",
            {"company": "Bench", "model": "nudge"},
            timeout=30,
        )
        answered, caught_up = self._wait_applied(index, target, self._stuck_wait)
        result["http_up_s"] = _r(answered)
        if caught_up is None:
            result["stuck_without_leader_change"] = {
                "waited_s": self._stuck_wait,
                "status": self._c.status(index),
            }
            old = self._c.members[leader].name
            self._say(f"  scale: {member.name} stays empty; restarting the leader {old}")
            started = time.monotonic()
            self._c.stop_member(leader)
            self._c.start_member(leader)
            answered2, caught_up = self._wait_applied(index, target)
            result["method"] += (
                f"; it stayed empty until the leader {old} was restarted (SIGTERM + same command),"
                " times from that restart"
            )
            result["leader_restart_to_caught_up_s"] = _r(
                None if caught_up is None else time.monotonic() - started
            )
        result["caught_up_s"] = _r(caught_up)
        new_log = _read(member.log_path)[log_before:]
        result["installed_snapshot_indexes"] = installed_snapshots(new_log)
        result["memory_kib"] = memory_of(self._c.pid(index))
        result["ok"] = caught_up is not None
        if caught_up is None:
            result["note"] = "did not catch up in time: " + new_log[-1500:]
        try:
            self._c.wait_ready(60)
        except Timeout as e:
            result["cluster_after"] = str(e)
        return result


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def read_text(path: str) -> str:
    """
    A file's text, empty if unreadable (logs of a member that never started).
    """
    return _read(path)
