# -*- test-case-name: tests.bench.test_wrk -*-
"""
Running Debian's C{wrk} with C{bench/lua/workload.lua}.

A row that spreads its load over every member runs one wrk per member at
the same time (one wrk can only talk to one host) with the connections
split between them, and merges their reports (L{merge}).
"""

from __future__ import annotations

import os
import time
from typing import Callable, Sequence

import attrs

from ._net import check_loopback
from ._procs import Child, Supervisor
from ._stats import NoResult, WrkResult, merge, parse_wrk_output, split_connections

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lua", "workload.lua")

SLACK = 30.0
"""
Seconds a wrk process may run past its duration before it is stopped.
"""


class WrkFailed(Exception):
    """
    A wrk process exited without a report.
    """


@attrs.frozen
class Target:
    """
    One wrk process: the C{host:port} it loads and its connection count.
    """

    addr: str
    connections: int


def row_targets(
    http_addrs: Sequence[str], leader: int, mode: str, connections: int
) -> list[Target] | None:
    """
    The wrk processes of one row: all C{connections} on the leader, or
    (C{mode} "spread") split over the members; L{None} when there are
    fewer connections than members to spread them over.
    """
    if mode == "leader":
        return [Target(http_addrs[leader], connections)]
    split = split_connections(connections, len(http_addrs))
    if not split:
        return None
    return [Target(a, n) for a, n in zip(http_addrs, split, strict=True)]


WRITERS = 4
"""
Connections creating objects on the leader throughout a C{stale_writes}
row, beside its stale readers: reads of one object while others change.
"""


def row_writers(http_addrs: Sequence[str], leader: int, workload: str) -> list[Target]:
    """
    The wrk processes that create objects beside a row of C{workload}:
    L{WRITERS} connections on the leader for C{stale_writes}, else none.
    """
    return [Target(http_addrs[leader], WRITERS)] if workload == "stale_writes" else []


def wrk_argv(
    wrk: str,
    target: Target,
    *,
    system: str,
    workload: str,
    tag: str,
    duration: int,
    threads: int,
    timeout: int,
    quota: int = 0,
    fixture: Sequence[str] = (),
    script: str = SCRIPT,
) -> list[str]:
    """
    The command line of one wrk process.
    """
    host = target.addr.rpartition(":")[0]
    check_loopback(host)
    threads = max(1, min(threads, target.connections))
    return [
        wrk,
        "-t",
        str(threads),
        "-c",
        str(target.connections),
        "-d",
        f"{max(1, int(duration))}s",
        "--timeout",
        f"{max(1, int(timeout))}s",
        "-s",
        script,
        f"http://{target.addr}/",
        "--",
        system,
        workload,
        tag,
        str(quota),
        *fixture,
    ]


@attrs.frozen
class Runner:
    """
    Runs wrk groups through a L{Supervisor}.
    """

    supervisor: Supervisor
    wrk: str = "wrk"
    threads: int = 1
    timeout: int = 10
    say: Callable[[str], None] = print

    def run(
        self,
        targets: Sequence[Target],
        *,
        system: str,
        workload: str,
        tag: str,
        duration: int,
        quota: int = 0,
        fixture: Sequence[str] = (),
    ) -> tuple[WrkResult, list[WrkResult]]:
        """
        Run one wrk per target at the same time; the merged result and each
        process's own.
        """
        group = self.start(
            targets,
            system=system,
            workload=workload,
            tag=tag,
            duration=duration,
            quota=quota,
            fixture=fixture,
        )
        return self.collect(group)

    def run_beside(
        self,
        targets: Sequence[Target],
        writers: Sequence[Target],
        *,
        system: str,
        workload: str,
        tag: str,
        duration: int,
        fixture: Sequence[str] = (),
    ) -> tuple[WrkResult, list[WrkResult], WrkResult | None]:
        """
        L{run}, with C{writers} (if any) creating objects for the same
        time in a group of their own; the third result is theirs.
        """
        background = None
        if writers:
            background = self.start(
                writers, system=system, workload="create", tag=f"{tag}-w", duration=duration
            )
        result, parts = self.run(
            targets, system=system, workload=workload, tag=tag, duration=duration, fixture=fixture
        )
        writes = self.collect(background)[0] if background is not None else None
        return result, parts, writes

    def start(
        self,
        targets: Sequence[Target],
        *,
        system: str,
        workload: str,
        tag: str,
        duration: int,
        quota: int = 0,
        fixture: Sequence[str] = (),
    ) -> Group:
        """
        Start one wrk per target and return at once (see L{collect}).
        """
        children = []
        for i, target in enumerate(targets):
            argv = wrk_argv(
                self.wrk,
                target,
                system=system,
                workload=workload,
                tag=f"{tag}-p{i}",
                duration=duration,
                threads=self.threads,
                timeout=self.timeout,
                quota=quota,
                fixture=fixture,
            )
            children.append(self.supervisor.spawn(f"wrk:{target.addr}", argv))
        return Group(tuple(targets), tuple(children), duration, time.monotonic())

    def collect(self, group: Group) -> tuple[WrkResult, list[WrkResult]]:
        """
        Wait for a started group (stopping any wrk that overruns) and parse
        its reports.

        @raise WrkFailed: if any wrk printed no report.
        """
        parts: list[WrkResult] = []
        problems: list[str] = []
        for child, target in zip(group.children, group.targets, strict=True):
            elapsed = time.monotonic() - group.started
            remaining = group.duration + self.timeout + SLACK - elapsed
            status, output = self.supervisor.wait_output(child, max(1.0, remaining))
            try:
                parts.append(parse_wrk_output(output))
            except NoResult:
                problems.append(f"wrk on {target.addr} exited {status}:\n{output[-1500:]}")
        if problems:
            raise WrkFailed("\n".join(problems))
        return merge(parts), parts


@attrs.frozen
class Group:
    """
    wrk processes started together by L{Runner.start}.
    """

    targets: tuple[Target, ...]
    children: tuple[Child, ...]
    duration: int
    started: float
