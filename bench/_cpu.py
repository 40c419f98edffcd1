# -*- test-case-name: tests.bench.test_cpu -*-
"""
Who used the CPU during a row: the benchmark's own processes, or others.

The machine may be shared (other test suites, builds).  A row measured
while something else burnt half the cores is not comparable, so each row
records the machine's busy CPU time and how much of it came from outside
the benchmark: everything busy in C{/proc/stat} minus the harness, its
reaped children (wrk) and its running children (the nodes).
"""

from __future__ import annotations

import os
import resource
from typing import Iterable

import attrs

TICKS = os.sysconf("SC_CLK_TCK")


def parse_proc_stat(text: str) -> tuple[float, float]:
    """
    The machine's (busy, total) CPU seconds from the C{cpu} line of
    C{/proc/stat}; idle and iowait are not busy.
    """
    for line in text.splitlines():
        if line.startswith("cpu "):
            values = [int(v) for v in line.split()[1:]]
            total = sum(values[:8])
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            return (total - idle) / TICKS, total / TICKS
    raise ValueError("no cpu line")


def parse_pid_stat(text: str) -> float:
    """
    The user plus system CPU seconds of one process from
    C{/proc/PID/stat} (the command may contain spaces and parentheses).
    """
    fields = text.rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


@attrs.frozen
class Sample:
    busy: float
    total: float
    ours: float


def sample(pids: Iterable[int]) -> Sample:
    """
    The machine's CPU counters and the benchmark's share so far.
    """
    with open("/proc/stat") as f:
        busy, total = parse_proc_stat(f.read())
    ours = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        ours += usage.ru_utime + usage.ru_stime
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                ours += parse_pid_stat(f.read())
        except (OSError, IndexError, ValueError):
            continue
    return Sample(busy, total, ours)


def usage_between(before: Sample, after: Sample, cores: int) -> dict[str, float]:
    """
    Percent of the machine (all cores) that was busy, and that was busy
    outside the benchmark, between two samples.

    Running children are counted from C{/proc}, so one that ends between
    the samples drops out of the second: take both samples while the same
    long-lived children run (short-lived ones, reaped, are in
    C{RUSAGE_CHILDREN}).
    """
    elapsed = (after.total - before.total) / max(cores, 1)
    if elapsed <= 0:
        return {"machine_busy_pct": 0.0, "foreign_busy_pct": 0.0}
    busy = after.busy - before.busy
    foreign = max(0.0, busy - (after.ours - before.ours))
    capacity = elapsed * cores
    return {
        "machine_busy_pct": round(100.0 * busy / capacity, 1),
        "foreign_busy_pct": round(100.0 * foreign / capacity, 1),
    }
