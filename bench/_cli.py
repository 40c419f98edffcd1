# -*- test-case-name: tests.bench.test_cli -*-
"""
C{python -m bench}: the whole benchmark in one command.

Phases, in this order (each can be skipped):

 1. reference rows: C{fdatasync} of 4 KiB appends, then one Twisted
    process (plain C{Resource}, then a Klein route) answering creates with
    no Raft and no disk;
 2. and 3. for each workload in turn, a fresh 3-member cluster of etcd and
    one of Raft3D side by side, every row on the leader then spread over
    the members, the two systems taking turns row by row in alternating
    order (so the two halves of each ratio are measured seconds apart:
    the machine's speed drifts by tens of percent within minutes);
 4. the py-spy profile of the Raft3D leader under the 64-connection creates;
 5. the scale run (C{--scale N} objects).

Every process goes through one L{Supervisor}; whatever happens (an error,
Ctrl-C, SIGTERM) they are all stopped and the results gathered so far are
written under C{bench/results/<timestamp>/} with C{bench/results/latest.md}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from functools import partial
from typing import Any, Callable, Sequence

import attrs

from ._clusters import Cluster, EtcdCluster, Raft3DCluster, row_fixture
from ._cpu import sample, usage_between
from ._flame import parse_collapsed, summarise
from ._logs import scan_etcd, scan_raft3d
from ._machine import describe, raft3d_under_test
from ._net import HOST, free_ports, request, wait_for
from ._procs import Interrupted, Supervisor, install_signal_handlers
from ._profile import run_profile
from ._report import chart, markdown
from ._scale import ScaleRun
from ._stats import latency_summary
from ._wrk import Runner, Target, WrkFailed, row_targets, row_writers

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
RESULTS_DIR = os.path.join(BENCH_DIR, "results")

WORKLOADS = ("create", "read", "stale", "stale_writes", "mixed")
MODES = ("leader", "spread")
PHASES = ("reference", "etcd", "raft3d", "profile", "scale")
LOG_COPY_LIMIT = 4 * 1024 * 1024
FOREIGN_LIMIT = 10.0
"""
Percent of the machine busy outside the benchmark above which a row is
flagged as disturbed.
"""


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        return [kind(part.strip()) for part in text.split(",") if part.strip()]

    return parse


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """
    The command line; C{--quick} changes the defaults of the others.
    """
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark Raft3D against etcd on 127.0.0.1 (see docs/performance.md).",
    )
    p.add_argument("--quick", action="store_true", help="smoke test: short runs, fewer rows")
    p.add_argument("--connections", type=_csv(int), help="default 1,16,64,256 (quick: 1,16)")
    p.add_argument("--duration", type=int, help="seconds per row (default 10, quick 2)")
    p.add_argument(
        "--warmup", type=int, help="seconds of unmeasured load per cluster (default 3, quick 1)"
    )
    p.add_argument(
        "--workloads",
        type=_csv(str),
        default=list(WORKLOADS),
        help="default all: " + ",".join(WORKLOADS),
    )
    p.add_argument("--modes", type=_csv(str), default=list(MODES), help="leader,spread")
    p.add_argument(
        "--phases", type=_csv(str), default=list(PHASES), help="default all: " + ",".join(PHASES)
    )
    p.add_argument(
        "--scale", type=int, help="objects for the scale run (default 50000, quick 2000)"
    )
    p.add_argument("--profile-seconds", type=int, help="py-spy window (default 20, quick 5)")
    p.add_argument("--profile-connections", type=int, default=64)
    p.add_argument("--wrk-threads", type=int, default=1, help="threads per wrk process (default 1)")
    p.add_argument("--timeout", type=int, default=10, help="wrk request timeout in seconds")
    p.add_argument(
        "--work-dir",
        default=None,
        help="where the temporary data directories go (default: the system temp dir)",
    )
    p.add_argument("--keep-data", action="store_true", help="keep the data directories")
    p.add_argument("--results-dir", default=RESULTS_DIR)
    p.add_argument(
        "--twistd",
        default=None,
        help="twistd with the raft3d plugin (default: next to this Python)",
    )
    p.add_argument("--etcd", default=None)
    p.add_argument("--wrk", default=None)
    p.add_argument("--py-spy", default=None)
    p.add_argument("--no-install", action="store_true", help="never install missing tools")
    p.add_argument(
        "--render",
        metavar="RESULTS_DIR",
        default=None,
        help="only rewrite results.md, chart.png and the profile summary of an earlier run",
    )
    args = p.parse_args(list(argv))
    quick = args.quick
    if args.connections is None:
        args.connections = [1, 16] if quick else [1, 16, 64, 256]
    if args.duration is None:
        args.duration = 2 if quick else 10
    if args.warmup is None:
        args.warmup = 1 if quick else 3
    if args.scale is None:
        args.scale = 2000 if quick else 50_000
    if args.profile_seconds is None:
        args.profile_seconds = 5 if quick else 20
    for name, allowed in (("workloads", WORKLOADS), ("modes", MODES), ("phases", PHASES)):
        unknown = sorted(set(getattr(args, name)) - set(allowed))
        if unknown:
            p.error(f"unknown {name}: {', '.join(unknown)} (choose from {', '.join(allowed)})")
    if any(c < 1 for c in args.connections):
        p.error("--connections must be positive")
    return args


# -- tools ------------------------------------------------------------------


@attrs.frozen
class Tools:
    twistd: str | None
    etcd: str | None
    wrk: str | None
    py_spy: str | None
    matplotlib: bool


def _beside_python(name: str) -> str | None:
    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.access(candidate, os.X_OK) else shutil.which(name)


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def find_tools(args: argparse.Namespace) -> Tools:
    return Tools(
        twistd=args.twistd or _beside_python("twistd"),
        etcd=args.etcd or shutil.which("etcd"),
        wrk=args.wrk or shutil.which("wrk"),
        py_spy=args.py_spy or _beside_python("py-spy"),
        matplotlib=_has_matplotlib(),
    )


def ensure_tools(args: argparse.Namespace, say: Callable[[str], None]) -> Tools:
    """
    Find the tools, installing what is missing unless C{--no-install}:
    Debian's C{etcd-server} and C{wrk} with apt-get (as root), C{py-spy}
    and C{matplotlib} with this Python's pip (in a virtualenv only).
    """
    tools = find_tools(args)
    if args.no_install:
        return tools
    debs = [pkg for pkg, have in (("etcd-server", tools.etcd), ("wrk", tools.wrk)) if not have]
    if debs and os.geteuid() == 0 and shutil.which("apt-get"):
        say(f"installing {' '.join(debs)} with apt-get")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", *debs]
        if subprocess.run(install, env=env, check=False).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=False)
            subprocess.run(install, env=env, check=False)
    pips = [
        pkg
        for pkg, have in (("py-spy", tools.py_spy), ("matplotlib", tools.matplotlib))
        if not have
    ]
    if pips and sys.prefix != sys.base_prefix:
        say(f"installing {' '.join(pips)} with pip")
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *pips], check=False)
    return find_tools(args)


def twistd_has_raft3d(twistd: str) -> bool:
    """
    Whether C{twistd --help} lists the C{raft3d} plugin (run outside the
    checkout, so the installed package is what counts).
    """
    try:
        done = subprocess.run(
            [twistd, "--help"],
            capture_output=True,
            timeout=60,
            cwd=tempfile.gettempdir(),
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b" raft3d " in done.stdout


# -- the benchmark -------------------------------------------------------------


@attrs.define
class _Contender:
    """
    One system's cluster in a comparison, and its leader as last seen.
    """

    system: str
    phase: str
    cluster: Cluster
    fixture: list[str]
    leader: int


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Bench:
    """
    The phases, sharing one supervisor, one wrk runner and one result dict.
    """

    def __init__(
        self,
        args: argparse.Namespace,
        tools: Tools,
        supervisor: Supervisor,
        work_dir: str,
        out_dir: str,
        say: Callable[[str], None],
    ) -> None:
        self.args = args
        self.tools = tools
        self.sup = supervisor
        self.work = work_dir
        self.out = out_dir
        self.say = say
        self.runner = Runner(
            supervisor,
            wrk=tools.wrk or "wrk",
            threads=args.wrk_threads,
            timeout=args.timeout,
            say=say,
        )
        self.data: dict[str, Any] = {
            "rows": [],
            "reference_rows": [],
            "problems": [],
            "logs": {},
        }
        self._serial = 0

    # -- helpers --------------------------------------------------------------

    def problem(self, what: str, details: str = "") -> None:
        self.say(f"PROBLEM: {what}" + (f": {details[:400]}" if details else ""))
        self.data["problems"].append({"what": what, "details": details})

    def _dir(self, name: str) -> str:
        self._serial += 1
        path = os.path.join(self.work, f"{self._serial:02d}-{name}")
        os.makedirs(path, exist_ok=True)
        return path

    def _cluster(self, system: str, phase: str) -> Cluster:
        if system == "raft3d":
            return self._raft3d(phase)
        assert self.tools.etcd is not None
        return EtcdCluster(self.sup, self._dir(phase), self.say, self.tools.etcd)

    def _raft3d(self, phase: str) -> Raft3DCluster:
        assert self.tools.twistd is not None
        return Raft3DCluster(self.sup, self._dir(phase), self.say, self.tools.twistd)

    def _finish_cluster(self, cluster: Cluster, phase: str) -> None:
        """
        Stop a cluster, scan its logs for trouble and keep a copy of them.
        """
        died = cluster.check_alive()
        cluster.stop()
        if died:
            self.problem(
                f"{cluster.system} {phase}: member(s) {', '.join(died)} had exited before the end"
            )
        logs_dir = os.path.join(self.out, "logs", phase)
        os.makedirs(logs_dir, exist_ok=True)
        scans = {}
        for m in cluster.members:
            try:
                with open(m.log_path, encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            scan = scan_raft3d(text) if cluster.system == "raft3d" else scan_etcd(text)
            scans[m.name] = scan.to_json()
            if scan.errors or scan.tracebacks:
                examples = "; ".join(f"{n}× {line}" for line, n in scan.examples[:3])
                self.problem(
                    f"{cluster.system} {phase}: {m.name} logged {scan.errors} error(s),"
                    f" {scan.tracebacks} traceback(s)",
                    examples,
                )
            if len(text) > LOG_COPY_LIMIT:
                text = f"[first {len(text) - LOG_COPY_LIMIT} bytes cut]\n" + text[-LOG_COPY_LIMIT:]
            with gzip.open(os.path.join(logs_dir, f"{m.name}.log.gz"), "wt") as f:
                f.write(text)
        self.data["logs"][phase] = scans

    def _run_row(
        self,
        row: dict[str, Any],
        targets: Sequence[Target],
        writers: Sequence[Target] = (),
        **kw: Any,
    ) -> None:
        """
        Run one row's wrk group, recording how busy the machine was and how
        much of that came from outside the benchmark.  C{writers} (if any)
        create objects for the same time, in a wrk group of their own whose
        result is the row's C{writes}.
        """
        pids = [c.pid for c in self.sup.children if c.running]
        before = sample(pids)
        result, parts, writes = self.runner.run_beside(
            targets, writers, duration=self.args.duration, **kw
        )
        if writes is not None:
            row["writes"] = writes.to_json()
            self.say(
                f"  {'':8} writes meanwhile: {writes.throughput:9.1f} req/s"
                f"  p50 {writes.latency_ms(50) or 0:8.2f} ms  non-2xx {writes.non2xx}"
            )
        row["cpu"] = usage_between(before, sample(pids), os.cpu_count() or 1)
        self._record(row, result, parts)
        foreign = row["cpu"]["foreign_busy_pct"]
        if foreign > FOREIGN_LIMIT:
            self.data.setdefault("caveats", []).append(
                f"{row['system']} {row['workload']} {row['mode']} c={row['connections']}:"
                f" {foreign}% of the machine was busy with processes outside the benchmark"
            )

    def _record(self, row: dict[str, Any], result: Any, parts: Sequence[Any]) -> None:
        row["result"] = result.to_json()
        if len(parts) > 1:
            row["parts"] = [p.to_json() for p in parts]
        self.say(
            f"  {row['system']:8} {row['workload']:7} {row['mode']:7} c={row['connections']:<4}"
            f" {result.throughput:9.1f} req/s  p50 {result.latency_ms(50) or 0:8.2f} ms"
            f"  p99 {result.latency_ms(99) or 0:8.2f} ms  non-2xx {result.non2xx}"
            f"  sock {result.socket_errors}"
        )
        if result.non2xx or result.socket_errors:
            self.problem(
                f"{row['system']} {row['workload']} {row['mode']} c={row['connections']}:"
                f" {result.non2xx} non-2xx, {result.socket_errors} socket errors/timeouts"
                f" {dict(result.socket_error_kinds)}",
                "; ".join(result.first_errors[:3]) + f" codes={dict(result.codes)}",
            )

    # -- reference rows -------------------------------------------------------

    def reference(self) -> None:
        self.say("== reference: fdatasync of 4 KiB appends")
        self.data["fdatasync"] = fdatasync_reference(self._dir("fdatasync"), self.args.duration)
        self.say(f"  {self.data['fdatasync']['ops_per_s']:.0f} fdatasyncs/s")
        for kind in ("resource", "klein"):
            name = f"twisted-{kind}"
            self.say(f"== reference: one Twisted process, {name}")
            port = free_ports(1)[0]
            addr = f"{HOST}:{port}"
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT, env.get("PYTHONPATH", "")]).rstrip(
                os.pathsep
            )
            log = os.path.join(self._dir(name), "server.log")
            child = self.sup.spawn(
                name,
                [sys.executable, "-m", "bench._refserver", kind, str(port)],
                env=env,
                log_path=log,
            )
            try:
                wait_for(f"the {name} server", partial(_created, addr), 30)
                for conns in self.args.connections:
                    row: dict[str, Any] = {
                        "system": name,
                        "workload": "create",
                        "mode": "single process",
                        "connections": conns,
                    }
                    self.data["reference_rows"].append(row)
                    self._run_row(
                        row,
                        [Target(addr, conns)],
                        system="raft3d",
                        workload="create",
                        tag=f"ref-{kind}-c{conns}",
                    )
            finally:
                self.sup.stop(child)

    # -- comparison rows ------------------------------------------------------

    def compare(self, systems: Sequence[str], workload: str) -> None:
        """
        Run C{workload}'s rows on a fresh cluster of each of C{systems}.

        The clusters run side by side and take turns row by row, in
        alternating order (etcd then Raft3D, then Raft3D then etcd, ...), so
        that the two halves of a ratio are measured seconds apart and the
        machine's drift falls on both alike; the idle cluster only sends
        heartbeats meanwhile.
        """
        running: list[_Contender] = []
        try:
            for system in systems:
                phase = f"{system}-{workload}"
                self.say(f"== {system}: {workload} (fresh cluster)")
                cluster = self._cluster(system, phase)
                try:
                    cluster.start()
                    leader = cluster.wait_ready()
                    fixture = row_fixture(cluster, leader, workload)
                except (RuntimeError, OSError) as e:
                    self.problem(f"{phase} aborted", f"{type(e).__name__}: {e}")
                    self._finish_cluster(cluster, phase)
                    continue
                running.append(_Contender(system, phase, cluster, fixture, leader))
            for c in running:
                if self.args.warmup:
                    self.runner.run(
                        [Target(c.cluster.http_addrs[c.leader], 16)],
                        system=c.system,
                        workload=workload,
                        tag=f"warm-{workload}",
                        duration=self.args.warmup,
                        fixture=c.fixture,
                    )
            specs = [(m, n) for m in self.args.modes for n in self.args.connections]
            for turn, (mode, conns) in enumerate(specs):
                for c in list(running if turn % 2 == 0 else running[::-1]):
                    try:
                        c.leader = self._row(c, workload, mode, conns)
                    except (WrkFailed, RuntimeError, OSError) as e:
                        self.problem(f"{c.phase} aborted", f"{type(e).__name__}: {e}")
                        running.remove(c)
                        self._finish_cluster(c.cluster, c.phase)
        finally:
            for c in running:
                self._finish_cluster(c.cluster, c.phase)

    def _row(self, c: _Contender, workload: str, mode: str, conns: int) -> int:
        """
        Run one row on C{c}'s cluster; return its leader (checked first).
        """
        cluster, system, fixture, leader = c.cluster, c.system, c.fixture, c.leader
        row: dict[str, Any] = {
            "system": system,
            "workload": workload,
            "mode": mode,
            "connections": conns,
        }
        self.data["rows"].append(row)
        now = cluster.wait_ready()
        if now != leader:
            self.problem(
                f"{system} {workload}: leader changed from {cluster.members[leader].name}"
                f" to {cluster.members[now].name} before the {mode} c={conns} row"
            )
            leader = now
        targets = row_targets(cluster.http_addrs, leader, mode, conns)
        if targets is None:
            row["skipped"] = (
                f"{conns} connection(s) cannot be spread over {len(cluster.members)} members"
            )
            return leader
        writers = row_writers(cluster.http_addrs, leader, workload)
        try:
            self._run_row(
                row,
                targets,
                writers,
                system=system,
                workload=workload,
                tag=f"{system[0]}{workload}-{mode[0]}{conns}",
                fixture=fixture,
            )
        except WrkFailed as e:
            row["error"] = str(e)
            self.problem(f"{system} {workload} {mode} c={conns}: wrk failed", str(e))
            return leader
        dead = cluster.check_alive()
        if dead:
            raise RuntimeError(f"member(s) {', '.join(dead)} died during the row")
        return leader

    # -- profile and scale ----------------------------------------------------

    def profile(self) -> None:
        if not self.tools.py_spy:
            self.data["profile"] = {"error": "py-spy not available (pip install py-spy)"}
            return
        self.say(
            f"== profile: py-spy on the Raft3D leader, {self.args.profile_connections} connections"
        )
        cluster = self._raft3d("profile")
        try:
            cluster.start()
            self.data["profile"] = run_profile(
                self.sup,
                self.runner,
                cluster,
                self.tools.py_spy,
                self.out,
                seconds=self.args.profile_seconds,
                connections=self.args.profile_connections,
                say=self.say,
            )
        except (WrkFailed, RuntimeError, OSError) as e:
            self.data["profile"] = {"error": f"{type(e).__name__}: {e}"}
            self.problem("profile failed", str(e))
        finally:
            self._finish_cluster(cluster, "profile")

    def scale(self) -> None:
        n = self.args.scale
        self.say(f"== scale: {n} objects")
        cluster = self._raft3d("scale")
        try:
            cluster.start()
            run = ScaleRun(
                cluster,
                self.runner,
                self.say,
                page_seconds=max(2, self.args.duration // 2),
                catch_up_timeout=120.0 if self.args.quick else 600.0,
                stuck_wait=5.0 if self.args.quick else 15.0,
            )
            self.data["scale"] = run.run(n)
            scale = self.data["scale"]
            for what in ("restart", "rebuild"):
                if not scale.get(what, {}).get("ok"):
                    self.problem(
                        f"scale: {what} did not catch up", json.dumps(scale.get(what))[:1500]
                    )
            stuck = scale.get("rebuild", {}).get("stuck_without_leader_change")
            if stuck:
                self.problem(
                    "scale: a follower restarted with an empty data directory is never repaired"
                    " by the current leader",
                    f"it joined, knew the leader, and stayed at index 0 for {stuck['waited_s']} s"
                    " although a write was committed meanwhile; it caught up only after the leader"
                    " was restarted (the leader keeps its old match index and drops the rejections"
                    " as stale)",
                )
        except (WrkFailed, RuntimeError, OSError) as e:
            self.data["scale"] = {"error": f"{type(e).__name__}: {e}", "objects_requested": n}
            self.problem("scale run failed", str(e))
        finally:
            self._finish_cluster(cluster, "scale")

    # -- all ------------------------------------------------------------------

    def run(self) -> None:
        phases = self.args.phases
        if "raft3d" in phases or "profile" in phases or "scale" in phases:
            if not self.tools.twistd or not twistd_has_raft3d(self.tools.twistd):
                self.problem(
                    "twistd does not list the raft3d plugin: Raft3D phases skipped",
                    "install Raft3D with `pip install .` (not -e) into this Python's environment",
                )
                phases = [p for p in phases if p not in ("raft3d", "profile", "scale")]
        if "etcd" in phases and not self.tools.etcd:
            self.problem("etcd is not installed: etcd rows skipped", "apt-get install etcd-server")
            phases = [p for p in phases if p != "etcd"]
        if not self.tools.wrk:
            raise SystemExit("wrk is not installed (apt-get install wrk)")
        if "reference" in phases:
            self.reference()
        systems = [system for system in ("etcd", "raft3d") if system in phases]
        for workload in self.args.workloads:
            if systems:
                self.compare(systems, workload)
        if "profile" in phases:
            self.profile()
        if "scale" in phases:
            self.scale()


def fdatasync_reference(directory: str, seconds: float) -> dict[str, Any]:
    """
    Append 4 KiB and C{fdatasync} in a loop for C{seconds}: what one
    durable log write costs on this disk, the floor of a write's latency.
    """
    path = os.path.join(directory, "fdatasync.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    block = b"\xa5" * 4096
    samples: list[float] = []
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            t0 = time.perf_counter()
            os.write(fd, block)
            os.fdatasync(fd)
            samples.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
        os.remove(path)
    elapsed = time.monotonic() - started
    points = latency_summary(samples)
    from ._stats import quantile

    def ms(p: float) -> float | None:
        v = quantile(points, p)
        return None if v is None else round(v / 1000.0, 3)

    return {
        "ops": len(samples),
        "ops_per_s": len(samples) / elapsed if elapsed > 0 else 0.0,
        "latency_ms": {"p50": ms(50), "p99": ms(99), "p99.9": ms(99.9), "max": ms(100)},
    }


def _created(addr: str) -> bool | None:
    try:
        status, _, _ = request(
            "POST", addr, "/api/v1/printers", {"company": "a", "model": "b"}, timeout=2
        )
    except OSError:
        return None
    return True if status == 201 else None


def write_results(data: dict[str, Any], out_dir: str, results_dir: str) -> str:
    """
    Write C{results.json}, C{results.md}, C{chart.png} and
    C{results_dir/latest.md}; returns the Markdown.
    """
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(data, f, indent=1, sort_keys=False, default=str)
    text = markdown(data)
    if chart(data, os.path.join(out_dir, "chart.png")):
        text += f"\n![Raft3D vs etcd]({os.path.basename(out_dir)}/chart.png)\n"
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text.replace(f"]({os.path.basename(out_dir)}/chart.png)", "](chart.png)"))
    with open(os.path.join(results_dir, "latest.md"), "w") as f:
        f.write(text)
    return text


def render(out_dir: str, results_dir: str) -> str:
    """
    Re-summarise the profile (from its raw stacks) and rewrite the reports
    of an earlier run from its C{results.json}.
    """
    with open(os.path.join(out_dir, "results.json")) as f:
        data = json.load(f)
    raw = os.path.join(out_dir, "profile-raw.txt")
    profile = data.get("profile") or {}
    if os.path.exists(raw) and profile.get("load"):
        with open(raw) as f:
            stacks = parse_collapsed(f.read())
        fresh = summarise(
            stacks,
            profile["sample_rate_hz"],
            profile["requests_in_window"],
            seconds=profile["load"].get("profiled_seconds"),
        )
        data["profile"] = {**profile, **fresh}
    return write_results(data, out_dir, results_dir)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.render:
        render(args.render, os.path.dirname(os.path.abspath(args.render)))
        print(os.path.join(args.render, "results.md"))
        return 0
    install_signal_handlers()
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:7.1f}s] {text}", flush=True)

    tools = ensure_tools(args, say)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = os.path.join(args.results_dir, stamp)
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="raft3d-bench-", dir=args.work_dir)
    say(f"data in {work}; results in {out_dir}")
    status = 0
    with Supervisor(say) as supervisor:
        bench = Bench(args, tools, supervisor, work, out_dir, say)
        bench.data.update(
            timestamp=stamp,
            started=_now(),
            command="python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
            options={k: v for k, v in vars(args).items()},
            machine=describe(work, tools.etcd, tools.wrk),
            raft3d=raft3d_under_test(REPO_ROOT),
        )
        try:
            bench.run()
        except (KeyboardInterrupt, Interrupted) as e:
            bench.data["interrupted"] = type(e).__name__
            say("interrupted: stopping every process and writing what was measured")
            status = 130
        except Exception as e:
            bench.problem("the benchmark failed", traceback.format_exc())
            say(f"failed: {e}")
            status = 1
        finally:
            supervisor.stop_all()
            bench.data["finished"] = _now()
            bench.data["elapsed_s"] = round(time.monotonic() - started, 1)
            write_results(bench.data, out_dir, args.results_dir)
            if not args.keep_data:
                shutil.rmtree(work, ignore_errors=True)
            say(f"results: {os.path.join(out_dir, 'results.md')}")
    return status
