# -*- test-case-name: tests.chaos.test_runner -*-
"""
The nemesis runner: start a real cluster of C{twistd raft3d} processes, run
concurrent clients against every node while the nemesis kills, pauses and
restarts nodes, heal, wait for convergence, read every node's final state,
then write the history and judge it with L{check_history}.

The nodes are started and watched with the process harness the integration
tests use (L{raft3d.testing.ProcessCluster}), so the runner and those tests
start nodes the same way an operator does.  Besides the
checker's verdict, the run fails when a node ended without the nemesis
ending it, or printed a traceback or an unhandled error: a crash is a bug
even when the cluster survived it.

Everything lands in the output directory: C{history.jsonl} (re-check with
C{python -m tools.chaos.check}), C{report.txt}, C{summary.json} (figures,
faults with times, crashes) and C{logs/} (every run of every node).

Partitions and netem faults need every node in a network namespace of its
own; when asked for, the runner makes them and, for netem, probes whether
the kernel has C{sch_netem}.  Whatever cannot be injected is announced in
one C{WARNING} line at the start, again in the report, and recorded in
C{summary.json} (C{partitions}, C{netem}, C{warnings}).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from typing import Any, Callable, NoReturn, Sequence

import attrs
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import deferLater

from raft3d.testing import ProcessCluster

from ._checker import check_history, render_report
from ._clients import Client, Known, Stats
from ._history import HistoryRecorder, write_history
from ._model import Verdict
from ._nemesis import (
    KINDS,
    Nemesis,
    Network,
    NetworkError,
    netem_skipped,
    partition_skipped,
    plan,
)

CRASH_MARKERS = ("Traceback", "Unhandled")
"""
Text that must never appear in a node's output.
"""

CONVERGENCE_DEADLINE = 180.0
"""
Seconds the healed cluster gets to elect a leader and apply everything.
"""


class RunnerError(Exception):
    """
    The cluster did not do what the runner waited for (a node did not come
    up, no convergence in time).
    """


@attrs.frozen
class RunConfig:
    """
    One run's parameters (the command line's).
    """

    nodes: int = 3
    duration: float = 60.0
    seed: int = 0
    nemesis: tuple[str, ...] = KINDS
    out: str = "chaos-out"
    clients: int = 6
    snapshot_threshold: int = 200
    trailing_logs: int = 50


@attrs.frozen
class RunResult:
    """
    What a run found.

    @ivar verdict: the checker's.
    @ivar crashes: node runs that ended unasked or printed a traceback.
    @ivar errors: what the runner itself could not get done.
    @ivar warnings: asked-for fault kinds this run could not inject, and
        why (partitions without namespaces, netem without C{sch_netem}).
    """

    verdict: Verdict | None
    operations: int
    faults: int
    faults_by_kind: dict[str, int]
    crashes: tuple[str, ...]
    errors: tuple[str, ...]
    skipped: tuple[str, ...]
    report: str
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.PASS and not self.crashes and not self.errors

    def exit_code(self) -> int:
        return 0 if self.ok else 1


class MonotonicClock:
    """
    The history's clock: C{time.monotonic}, one for the whole run.
    """

    def seconds(self) -> float:
        return time.monotonic()


class _Host:
    """
    Stands in for the test case that C{ProcessCluster} expects: collects
    its cleanups and turns its failures into L{RunnerError}.
    """

    def __init__(self) -> None:
        self.cleanups: list[Callable[[], Any]] = []

    def addCleanup(self, f: Callable[[], Any], /) -> None:
        self.cleanups.append(f)

    def fail(self, message: str, /) -> NoReturn:
        raise RunnerError(message)


class ChaosCluster(ProcessCluster):
    """
    L{ProcessCluster} with the count of each node's runs, signals by
    number, and optionally every node in its own network namespace.
    """

    network: Network | None = None

    def use_network(self, network: Network) -> None:
        """
        Put every node in its namespace of C{network}, at its address there
        (raft port 7000, HTTP port 8000: each namespace has its own ports).
        Call before starting anything.
        """
        self.network = network
        raft = tuple(f"{network.address[n]}:7000" for n in self.specs)
        self.specs = {
            name: attrs.evolve(
                spec,
                raft_addr=f"{network.address[name]}:7000",
                http_addr=f"{network.address[name]}:8000",
                peers=raft,
            )
            for name, spec in self.specs.items()
        }

    def argv(self, name: str) -> list[str]:
        argv = super().argv(name)
        return argv if self.network is None else [*self.network.prefix(name), *argv]

    def send(self, name: str, signum: int) -> None:
        """
        Send signal number C{signum} (SIGSTOP, SIGCONT...: Twisted only
        knows a few signals by name) to node C{name}'s current run.
        """
        self.signal(name, signum)


def find_crashes(cluster: ChaosCluster, expected: set[tuple[str, int]]) -> list[str]:
    """
    Every run of every node that ended although the nemesis did not end
    it, or that printed one of L{CRASH_MARKERS}.  Runs still going are
    fine.
    """
    found = []
    for name in sorted(cluster.specs):
        for run in range(cluster.runs(name)):
            output = cluster.output(name, run)
            if output.end is not None and (name, run) not in expected:
                found.append(f"{name} run {run + 1} ended by itself: {output.end.describe()}")
            marked = [line for line in output.lines if any(m in line for m in CRASH_MARKERS)]
            if marked:
                found.append(
                    f"{name} run {run + 1} printed {len(marked)} crash line(s), first: {marked[0]}"
                )
    return found


async def run(reactor: Any, config: RunConfig, log: Callable[[str], None]) -> RunResult:
    """
    One whole run (see the module docstring); cleans up every process it
    started, whatever happens.
    """
    os.makedirs(config.out, exist_ok=True)
    host = _Host()
    extra = [
        "--snapshot-threshold",
        str(config.snapshot_threshold),
        "--trailing-logs",
        str(config.trailing_logs),
    ]
    cluster = ChaosCluster(host, reactor, nodes=config.nodes, extra_args=extra)
    cluster.failed = True  # keep the node directory until the logs are copied
    try:
        faults = network_faults(config, cluster, log)
        return await _run(reactor, config, log, cluster, faults)
    finally:
        logs = os.path.join(config.out, "logs")
        shutil.rmtree(logs, ignore_errors=True)
        for cleanup in host.cleanups:
            await cleanup()
        shutil.copytree(cluster.directory, logs, ignore=_data_directories)
        shutil.rmtree(cluster.directory, ignore_errors=True)
        if cluster.network is not None:
            cluster.network.teardown()


@attrs.frozen
class NetworkFaults:
    """
    What a run can do to the network.

    @ivar no_network: why there are no namespaces (C{""} when there are,
        or when neither partitions nor netem were asked for).
    @ivar no_netem: why C{tc netem} cannot be used, or L{None} when it can
        (or was not asked for).
    @ivar warnings: the lines said at the start, one per asked-for kind
        that will be skipped.
    """

    no_network: str = ""
    no_netem: str | None = None
    warnings: tuple[str, ...] = ()

    def describe(self, config: RunConfig) -> dict[str, str]:
        """
        The C{partitions} and C{netem} entries of the summary: how they are
        injected, C{"skipped: REASON"}, or C{"not asked for"}.
        """
        partitions = "blackhole routes between network namespaces"
        if self.no_network:
            partitions = f"skipped: {self.no_network}"
        netem = "tc netem on the nodes' links"
        if self.no_netem is not None:
            netem = f"skipped: {self.no_netem}"
        return {
            "partitions": partitions if "partition" in config.nemesis else "not asked for",
            "netem": netem if "netem" in config.nemesis else "not asked for",
        }


def network_faults(
    config: RunConfig,
    cluster: ChaosCluster,
    log: Callable[[str], None],
    make_network: Callable[[list[str]], Network] = Network,
) -> NetworkFaults:
    """
    Put the nodes in namespaces when partitions or netem faults are asked
    for, probe netem, and say (once each) what will be skipped and why.

    @param make_network: makes the L{Network} for the node names (tests
        pass a fake).
    """
    asked = {"partition", "netem"} & set(config.nemesis)
    if not asked:
        return NetworkFaults()
    network = make_network(sorted(cluster.specs))
    warnings = []
    try:
        network.setup()
    except NetworkError as e:
        if "partition" in asked:
            warnings.append(partition_skipped(str(e)))
        if "netem" in asked:
            warnings.append(netem_skipped(str(e)))
        faults = NetworkFaults(no_network=str(e), no_netem=str(e), warnings=tuple(warnings))
    else:
        cluster.use_network(network)
        log(f"network namespaces: {network.address}")
        no_netem = network.probe_netem() if "netem" in asked else None
        if no_netem is not None:
            warnings.append(netem_skipped(no_netem))
        elif "netem" in asked:
            log("netem: tc netem works on the nodes' links; delay/loss faults are on")
        faults = NetworkFaults(no_netem=no_netem, warnings=tuple(warnings))
    for warning in warnings:
        log(f"WARNING: {warning}")
    return faults


def _data_directories(directory: str, names: list[str]) -> list[str]:
    return [n for n in names if os.path.isdir(os.path.join(directory, n))]


async def _run(
    reactor: Any,
    config: RunConfig,
    log: Callable[[str], None],
    cluster: ChaosCluster,
    net: NetworkFaults,
) -> RunResult:
    def sleep(seconds: float) -> Deferred[None]:
        return deferLater(reactor, seconds, lambda: None)

    clock = MonotonicClock()
    rng = random.Random(config.seed)
    faults = plan(config.seed, config.nemesis, config.duration)
    errors: list[str] = []
    log(f"seed {config.seed}: {config.nodes} nodes, {len(faults)} faults planned")

    cluster.start_all()
    for name in sorted(cluster.specs):
        await cluster.wait_up(name, 120.0)
    leader = await cluster.leader()
    log(f"cluster up, leader {leader}; node files in {cluster.directory}")

    recorder = HistoryRecorder(clock)
    known = Known()
    stats = Stats()
    counter = iter(range(10**9))
    run_id = f"s{config.seed}"

    def tag() -> str:
        return f"t-{run_id}-{next(counter)}"

    nodes = {name: f"http://{spec.http_addr}" for name, spec in cluster.specs.items()}
    clients = [
        Client(
            p,
            cluster.new_client(),
            nodes,
            recorder,
            known,
            random.Random(rng.random()),
            tag,
            stats,
            sleep,
            reactor,
        )
        for p in range(config.clients)
    ]
    nemesis = Nemesis(
        cluster,
        faults,
        random.Random(rng.random()),
        clock.seconds,
        sleep,
        log,
        reactor,
        cluster.network,
        net.no_network,
        net.no_netem,
    )
    t0 = clock.seconds()
    running = [Deferred.fromCoroutine(c.run()) for c in clients]
    nemesis_done = Deferred.fromCoroutine(nemesis.run())

    await sleep(config.duration)
    log(f"duration over after {clock.seconds() - t0:.1f} s: stopping nemesis and clients")
    nemesis.stop()
    try:
        await nemesis_done
    except Exception as e:  # noqa: BLE001 (reported, the run goes on to heal)
        errors.append(f"nemesis: {e}")
        log(f"ERROR nemesis: {e}")
    for c in clients:
        c.stop()
    for ok, value in await DeferredList(running, consumeErrors=True):
        if not ok:
            errors.append(f"client: {value!r}")

    await nemesis.heal()
    final_ok = False
    try:
        for name in sorted(cluster.specs):
            await cluster.wait_up(name, 120.0)
        leader = await cluster.converged(CONVERGENCE_DEADLINE)
        log(f"converged, leader {leader}; reading final states")
        for name in sorted(cluster.specs):
            state = {}
            for kind in ("printers", "filaments", "print_jobs"):
                state[kind] = await cluster.stale_list(name, kind)
            recorder.set_final(name, state)
        final_ok = True
    except RunnerError as e:
        errors.append(f"healing: {str(e).splitlines()[0]}")
        log(f"ERROR healing: {e}")

    crashes = find_crashes(cluster, nemesis.expected_ends) + nemesis.unclean_stops
    by_kind: dict[str, int] = {}
    for r in nemesis.records:
        by_kind[r.kind] = by_kind.get(r.kind, 0) + 1
    meta = {
        "seed": config.seed,
        "nodes": config.nodes,
        "duration": config.duration,
        "nemesis": list(config.nemesis),
        "clients": config.clients,
        "faults": [r.to_json() for r in nemesis.records],
        "skipped": nemesis.skipped,
        **net.describe(config),
        "warnings": list(net.warnings),
        "start": t0,
    }
    history = recorder.history(meta=meta)
    write_history(history, os.path.join(config.out, "history.jsonl"))
    report = check_history(history)
    text = render_report(report, history)
    lines = [text, "", f"faults injected: {len(nemesis.records)} {by_kind}"]
    lines += [
        f"  {r.start - t0:7.2f}-{r.end - t0:7.2f} s {r.kind} {r.target}: {r.detail}"
        for r in nemesis.records
    ]
    lines += [f"WARNING {w}" for w in net.warnings]
    lines += [f"SKIPPED {s}" for s in nemesis.skipped]
    lines += [f"CRASH {c}" for c in crashes]
    lines += [f"ERROR {e}" for e in errors]
    if not final_ok:
        lines.append("no final state: the checker could not judge lost writes or convergence")
    full = "\n".join(lines)
    with open(os.path.join(config.out, "report.txt"), "w", encoding="utf-8") as f:
        f.write(full + "\n")
    result = RunResult(
        verdict=report.verdict,
        operations=len(history.operations),
        faults=len(nemesis.records),
        faults_by_kind=by_kind,
        crashes=tuple(crashes),
        errors=tuple(errors),
        skipped=tuple(nemesis.skipped),
        report=full,
        warnings=net.warnings,
    )
    summary = {
        "ok": result.ok,
        "verdict": report.verdict.value,
        "operations": result.operations,
        "requests": attrs.asdict(stats),
        "faults": result.faults,
        "faults_by_kind": by_kind,
        "crashes": crashes,
        "errors": errors,
        "skipped": nemesis.skipped,
        **net.describe(config),
        "warnings": list(net.warnings),
        "checks": report.to_json(),
        "config": attrs.asdict(config),
    }
    with open(os.path.join(config.out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=2, sort_keys=True, default=str)
    return result


def parse_nemesis(text: str) -> tuple[str, ...]:
    """
    C{"kill,pause"} -> C{("kill", "pause")}.
    """
    return tuple(k.strip() for k in text.split(",") if k.strip())


__all__: Sequence[str] = ()
