# -*- test-case-name: tests.bench.test_flame -*-
"""
Profiling the Raft3D leader with py-spy under the write load.

The load runs alone first for a few seconds (so the profile sees the
steady state), then py-spy samples the leader's process, every thread,
idle samples included (so the storage writer's C{fdatasync} waits and the
reactor's idle time show), without pausing it (C{--nonblocking}), while the
same wrk keeps going.  The raw stacks are kept, summarised by
L{bench._flame.summarise} and drawn as a flame graph.
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

from ._clusters import Raft3DCluster
from ._flame import busy_only, flamegraph_svg, parse_collapsed, split_threads, summarise
from ._procs import Supervisor
from ._wrk import Runner, Target

RATE = 100


def run_profile(
    supervisor: Supervisor,
    runner: Runner,
    cluster: Raft3DCluster,
    py_spy: str,
    out_dir: str,
    *,
    seconds: int,
    connections: int,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """
    Profile the leader for C{seconds} under C{connections} creates; write
    C{profile-raw.txt}, C{flamegraph.svg} and C{flamegraph-reactor-busy.svg}
    to C{out_dir}; return the summary.
    """
    leader = cluster.wait_ready()
    pid = cluster.pid(leader)
    if pid is None:
        raise RuntimeError("the leader has no process")
    warmup = 3
    group = runner.start(
        [Target(cluster.http_addrs[leader], connections)],
        system="raft3d",
        workload="create",
        tag="profile",
        duration=seconds + warmup + 2,
    )
    time.sleep(warmup)
    raw_path = os.path.join(out_dir, "profile-raw.txt")
    argv = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds)]
    argv += ["--rate", str(RATE), "--format", "raw", "--output", raw_path]
    argv += ["--threads", "--idle", "--nonblocking", "--function"]
    say(f"py-spy on the leader ({cluster.members[leader].name}, pid {pid}) for {seconds} s")
    spy = supervisor.spawn("py-spy", argv)
    status, output = supervisor.wait_output(spy, seconds + 60)
    merged, _ = runner.collect(group)
    if status != 0 or not os.path.exists(raw_path):
        raise RuntimeError(f"py-spy failed ({status}): {output[-1000:]}")
    with open(raw_path) as f:
        stacks = parse_collapsed(f.read())
    requests = merged.throughput * seconds
    summary = summarise(stacks, RATE, requests, seconds=seconds)
    summary["load"] = {
        "connections": connections,
        "leader": cluster.members[leader].name,
        "throughput_rps": round(merged.throughput, 1),
        "non2xx": merged.non2xx,
        "profiled_seconds": seconds,
    }
    title = (
        f"Raft3D leader under {connections}-connection creates"
        f" ({merged.throughput:.0f} req/s), all threads, idle included"
    )
    with open(os.path.join(out_dir, "flamegraph.svg"), "w") as f:
        f.write(flamegraph_svg(stacks, title))
    reactor = [t for t in summary["threads"] if t["label"] == "reactor"]  # type: ignore[attr-defined]
    if reactor:
        busy = busy_only(split_threads(stacks)[reactor[0]["thread"]])
        with open(os.path.join(out_dir, "flamegraph-reactor-busy.svg"), "w") as f:
            f.write(
                flamegraph_svg(
                    busy,
                    title.replace(
                        "all threads, idle included", "reactor thread, busy samples only"
                    ),
                )
            )
    summary["files"] = ["profile-raw.txt", "flamegraph.svg", "flamegraph-reactor-busy.svg"]
    return summary
