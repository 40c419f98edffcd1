# -*- test-case-name: tests.bench.test_ab -*-
"""
C{python -m bench.ab}: two or more builds of Raft3D, side by side.

Each build gets its own three-node cluster; all of them run at once, and
short rows of one workload (creates unless told) take turns in an order that rotates every round and
reverses every other round, so that the machine's drift (+-25% here within
minutes) falls on every build alike.  What counts is each round's ratio to
the first build, summarised by its median and by how many rounds it won:
a change that wins 15 rounds of 16 is real even when the drift between
rounds is larger than the change.

A build is a C{twistd} that loads it, for example a five-line wrapper that
puts a source tree first on C{sys.path} and calls
C{twisted.scripts.twistd.run()}.  With C{--etcd PATH}, an etcd cluster
takes part too, as the baseline: the rounds then measure Raft3D against
etcd the same way, for rows whose ratio is closer than the machine's drift
between two rows of one full benchmark run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from typing import Callable, Sequence

import attrs

from ._clusters import Cluster, EtcdCluster, Raft3DCluster, row_fixture
from ._procs import Supervisor, install_signal_handlers
from ._stats import split_connections
from ._wrk import Runner, Target, row_targets, row_writers


@attrs.frozen
class Sample:
    """
    One row of one build: requests per second and latency percentiles (ms).
    """

    throughput: float
    p50: float
    p99: float


def rotation(names: Sequence[str], round_number: int) -> list[str]:
    """
    The order in which the builds run in round C{round_number}: rotated
    by the round number, and reversed in odd rounds, so that each build
    runs in each position and after each other build equally often.
    """
    k = round_number % len(names)
    order = list(names[k:]) + list(names[:k])
    return order[::-1] if round_number % 2 else order


def summarise(samples: dict[str, list[Sample]]) -> list[str]:
    """
    One line per build: medians of its rows, and the median of its
    per-round ratios to the first build with the rounds it won.
    """
    names = list(samples)
    base = samples[names[0]]
    lines = []
    for name in names:
        rows = samples[name]
        speed = [r.throughput / b.throughput for r, b in zip(rows, base, strict=True)]
        latency = [r.p50 / b.p50 for r, b in zip(rows, base, strict=True)]
        wins = sum(1 for s in speed if s > 1)
        lines.append(
            f"{name:12} {statistics.median(r.throughput for r in rows):8.0f} req/s"
            f"  p50 {statistics.median(r.p50 for r in rows):7.2f} ms"
            f"  p99 {statistics.median(r.p99 for r in rows):7.2f} ms"
            f"  | vs {names[0]}: throughput x{statistics.median(speed):.3f},"
            f" p50 x{statistics.median(latency):.3f}, faster in {wins} of {len(rows)} rounds"
        )
    return lines


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.ab",
        description="Two or more Raft3D builds side by side (docs/performance.md).",
    )
    p.add_argument(
        "twistd", nargs="+", help="a twistd per build; the first is the baseline unless --etcd"
    )
    p.add_argument("--etcd", default=None, help="an etcd binary: etcd takes part, as the baseline")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seconds", type=int, default=5, help="length of one row")
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--mode", choices=("leader", "spread"), default="leader")
    p.add_argument(
        "--workload",
        choices=("create", "read", "stale", "stale_writes", "mixed"),
        default="create",
        help="the rows' workload, as in python -m bench (default create)",
    )
    p.add_argument("--warmup", type=int, default=3, help="seconds of load per cluster first")
    p.add_argument("--wrk", default="wrk")
    p.add_argument("--work-dir", default=None)
    args = p.parse_args(argv)
    if len(args.twistd) + (args.etcd is not None) < 2:
        p.error("give at least two builds, or one and --etcd")
    if args.mode == "spread" and not split_connections(args.connections, 3):
        p.error(f"{args.connections} connection(s) cannot be spread over 3 members")
    return args


def run(args: argparse.Namespace, say: Callable[[str], None]) -> dict[str, list[Sample]]:
    systems = ([("etcd", args.etcd)] if args.etcd else []) + [("raft3d", t) for t in args.twistd]
    names = [f"{i}:{os.path.basename(path)}" for i, (_, path) in enumerate(systems)]
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    system_of = {name: system for name, (system, _) in zip(names, systems, strict=True)}
    work = tempfile.mkdtemp(prefix="raft3d-ab-", dir=args.work_dir)
    try:
        with Supervisor(say) as supervisor:
            runner = Runner(supervisor, wrk=args.wrk, threads=1, timeout=10, say=say)
            clusters: dict[str, Cluster] = {}
            fixtures: dict[str, list[str]] = {}
            for name, (system, path) in zip(names, systems, strict=True):
                base_dir = os.path.join(work, name.replace(":", "-"))
                os.makedirs(base_dir)
                cluster: Cluster
                if system == "etcd":
                    cluster = EtcdCluster(supervisor, base_dir, say, path)
                else:
                    cluster = Raft3DCluster(supervisor, base_dir, say, path)
                clusters[name] = cluster
                cluster.start()
                fixtures[name] = row_fixture(cluster, cluster.wait_ready(), args.workload)
            for name, cluster in clusters.items():
                if args.warmup:
                    target = Target(cluster.http_addrs[cluster.wait_ready()], 16)
                    runner.run(
                        [target],
                        system=system_of[name],
                        workload="create",
                        tag="warm",
                        duration=args.warmup,
                    )
            for round_number in range(args.rounds):
                for name in rotation(names, round_number):
                    cluster = clusters[name]
                    leader = cluster.wait_ready()
                    targets = row_targets(cluster.http_addrs, leader, args.mode, args.connections)
                    assert targets is not None  # parse_args refused such a spread
                    result, _, _ = runner.run_beside(
                        targets,
                        row_writers(cluster.http_addrs, leader, args.workload),
                        system=system_of[name],
                        workload=args.workload,
                        tag=f"ab{round_number}",
                        duration=args.seconds,
                        fixture=fixtures[name],
                    )
                    samples[name].append(
                        Sample(
                            result.throughput,
                            result.latency_ms(50) or 0.0,
                            result.latency_ms(99) or 0.0,
                        )
                    )
                print(
                    f"round {round_number + 1}: "
                    + "  ".join(
                        f"{n} {s[-1].throughput:.0f}/s p50 {s[-1].p50:.2f}"
                        for n, s in samples.items()
                    ),
                    flush=True,
                )
            for cluster in clusters.values():
                cluster.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return samples


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    install_signal_handlers()
    samples = run(args, lambda text: print(text, flush=True) if "PROBLEM" in text else None)
    where = "on the leader" if args.mode == "leader" else "spread over the members"
    print(
        f"== {args.workload}, {args.connections} connection(s) {where},"
        f" {args.rounds} rounds of {args.seconds} s"
    )
    for line in summarise(samples):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
