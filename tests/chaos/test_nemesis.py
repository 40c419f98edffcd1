# -*- test-case-name: tests.chaos.test_nemesis -*-
"""
Tests for L{tools.chaos._nemesis}: the seeded schedule and what each fault
does to a cluster (a fake one here; C{test_runner} uses real processes).
"""

from __future__ import annotations

import random
import signal
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from raft3d.devcluster import ProcessEnd
from tools.chaos._nemesis import (
    HOLD,
    KINDS,
    NETEM_DELAY_MS,
    NETEM_LOSS_PERCENT,
    Fault,
    Nemesis,
    Network,
    NetworkError,
    plan,
    probe_netem,
)


class FakeOutput:
    def __init__(self) -> None:
        self.end: ProcessEnd | None = None
        self.waiters: list[Deferred[ProcessEnd]] = []

    def when_ended(self) -> Deferred[ProcessEnd]:
        if self.end is not None:
            return succeed(self.end)
        d: Deferred[ProcessEnd] = Deferred()
        self.waiters.append(d)
        return d

    def finish(self, end: ProcessEnd | None = None) -> None:
        self.end = end or ProcessEnd(0, None)
        for d in self.waiters:
            d.callback(self.end)


class FakeCluster:
    """
    Records what the nemesis does; processes end at once when signalled.
    """

    def __init__(self, names: list[str], leader: str) -> None:
        self.specs = {n: None for n in names}
        self.outputs: dict[str, list[FakeOutput]] = {n: [FakeOutput()] for n in names}
        self.the_leader = leader
        self.actions: list[tuple[str, ...]] = []
        self.term_end = ProcessEnd(None, signal.SIGTERM)

    def start(self, name: str) -> None:
        self.actions.append(("start", name))
        self.outputs[name].append(FakeOutput())

    def signal(self, name: str, signal: str) -> None:
        self.actions.append(("signal", name, signal))
        self.outputs[name][-1].finish(self.term_end)

    def send(self, name: str, signum: int) -> None:
        self.actions.append(("send", name, signal.Signals(signum).name))

    def running(self, name: str) -> bool:
        return self.outputs[name][-1].end is None

    def output(self, name: str, run: int = -1) -> FakeOutput:
        return self.outputs[name][run]

    def runs(self, name: str) -> int:
        return len(self.outputs[name])

    async def kill(self, name: str) -> ProcessEnd:
        self.actions.append(("kill", name))
        self.outputs[name][-1].finish()
        end = self.outputs[name][-1].end
        assert end is not None
        return end

    async def wait_up(self, name: str, deadline: float = 60.0) -> dict[str, Any]:
        self.actions.append(("wait_up", name))
        return {}

    async def leader(self, among: list[str] | None = None, other_than: str | None = None) -> str:
        return self.the_leader


def inflict(
    fault: Fault,
    cluster: FakeCluster,
    seed: int = 0,
    network: Any = None,
    no_netem: str | None = None,
    logs: list[str] | None = None,
) -> Nemesis:
    """
    Run one fault to completion with a clock that never needs advancing.
    """
    clock = Clock()
    nemesis = Nemesis(
        cluster,
        [fault],
        random.Random(seed),
        clock.seconds,
        lambda seconds: succeed(None),
        (logs if logs is not None else []).append,
        clock,
        network,
        "not root",
        no_netem,
    )
    d = Deferred.fromCoroutine(nemesis.inflict(fault))
    SynchronousTestCase().successResultOf(d)
    return nemesis


class PlanTests(SynchronousTestCase):
    def test_deterministic(self) -> None:
        """
        The same seed, kinds and duration give the same schedule, so a
        failing seed can be rerun; another seed gives another one.
        """
        a = plan(7, KINDS, 120)
        self.assertEqual(a, plan(7, KINDS, 120))
        self.assertNotEqual(a, plan(8, KINDS, 120))

    def test_bounds(self) -> None:
        """
        Faults start in order, inside the duration, only of the asked
        kinds, with a hold inside that kind's range.
        """
        faults = plan(3, ("kill", "pause"), 300)
        self.assertGreater(len(faults), 20)
        starts = [f.at for f in faults]
        self.assertEqual(starts, sorted(starts))
        for f in faults:
            self.assertLess(f.at, 300)
            self.assertIn(f.kind, ("kill", "pause"))
            low, high = HOLD[f.kind]
            self.assertTrue(low <= f.hold <= high, f)
        self.assertEqual({f.kind for f in faults}, {"kill", "pause"})

    def test_unknown_kind(self) -> None:
        """
        An unknown or empty nemesis list is refused, naming the choices.
        """
        e = self.assertRaises(ValueError, plan, 1, ("kill", "flood"), 10)
        self.assertIn("flood", str(e))
        self.assertRaises(ValueError, plan, 1, (), 10)


class FaultTests(SynchronousTestCase):
    def test_kill(self) -> None:
        """
        A kill SIGKILLs one node, starts it again and waits until it
        answers; that run's end is expected, and the fault is recorded.
        """
        cluster = FakeCluster(["n1", "n2", "n3"], "n1")
        nemesis = inflict(Fault(1.0, "kill", 2.0), cluster)
        (record,) = nemesis.records
        target = record.target
        self.assertEqual(
            cluster.actions, [("kill", target), ("start", target), ("wait_up", target)]
        )
        self.assertEqual(nemesis.expected_ends, {(target, 0)})
        self.assertEqual(record.kind, "kill")

    def test_pause_leader(self) -> None:
        """
        A pause SIGSTOPs the leader, then SIGCONTs it; nothing ends.
        """
        cluster = FakeCluster(["n1", "n2", "n3"], "n2")
        nemesis = inflict(Fault(1.0, "pause", 4.0), cluster)
        self.assertEqual(cluster.actions, [("send", "n2", "SIGSTOP"), ("send", "n2", "SIGCONT")])
        self.assertEqual(nemesis.expected_ends, set())
        self.assertEqual(nemesis.paused, set())
        self.assertEqual([r.target for r in nemesis.records], ["n2"])

    def test_rolling_restart(self) -> None:
        """
        A rolling restart SIGTERMs, restarts and waits for every node in
        turn.
        """
        cluster = FakeCluster(["n1", "n2"], "n1")
        nemesis = inflict(Fault(1.0, "restart", 0.0), cluster)
        self.assertEqual(
            cluster.actions,
            [
                ("signal", "n1", "TERM"),
                ("start", "n1"),
                ("wait_up", "n1"),
                ("signal", "n2", "TERM"),
                ("start", "n2"),
                ("wait_up", "n2"),
            ],
        )
        self.assertEqual(nemesis.expected_ends, {("n1", 0), ("n2", 0)})
        self.assertEqual(nemesis.unclean_stops, [])

    def test_unclean_stop(self) -> None:
        """
        A node that exits with an error status after SIGTERM is reported
        (twistd's normal way out, ending by SIGTERM itself, is not).
        """
        cluster = FakeCluster(["n1"], "n1")
        cluster.term_end = ProcessEnd(1, None)
        nemesis = inflict(Fault(1.0, "restart", 0.0), cluster)
        self.assertEqual(nemesis.unclean_stops, ["n1: SIGTERM, then exited with status 1"])

    def test_partition_skipped_loudly(self) -> None:
        """
        A partition without a network (no root...) is skipped with its reason recorded
        and logged, and counts as no fault.
        """
        cluster = FakeCluster(["n1", "n2", "n3"], "n1")
        nemesis = inflict(Fault(1.0, "partition", 4.0), cluster)
        self.assertEqual(cluster.actions, [])
        self.assertEqual(nemesis.records, [])
        (skipped,) = nemesis.skipped
        self.assertIn("SKIPPED", skipped)

    def test_heal(self) -> None:
        """
        Healing continues paused nodes and starts stopped ones.
        """
        cluster = FakeCluster(["n1", "n2"], "n1")
        clock = Clock()
        nemesis = Nemesis(
            cluster,
            [],
            random.Random(0),
            clock.seconds,
            lambda s: succeed(None),
            lambda text: None,
            clock,
        )
        nemesis.paused.add("n1")
        cluster.outputs["n2"][-1].finish()
        self.successResultOf(Deferred.fromCoroutine(nemesis.heal()))
        self.assertEqual(cluster.actions, [("send", "n1", "SIGCONT"), ("start", "n2")])


class FakeNetwork:
    """
    Records cuts, netem qdiscs and heals instead of changing routes.
    """

    def __init__(self) -> None:
        self.cuts: set[tuple[str, str]] = set()
        self.shaped: dict[str, tuple[str, ...]] = {}
        self.log: list[frozenset[tuple[str, str]]] = []
        self.shape_log: list[dict[str, tuple[str, ...]]] = []

    def cut(self, source: str, target: str) -> None:
        self.cuts.add((source, target))

    def shape(self, name: str, netem: list[str]) -> None:
        self.shaped[name] = tuple(netem)

    def heal(self) -> None:
        self.log.append(frozenset(self.cuts))
        self.shape_log.append(dict(self.shaped))
        self.cuts.clear()
        self.shaped.clear()


class PartitionTests(SynchronousTestCase):
    def partition(self, seed: int) -> tuple[Nemesis, FakeNetwork]:
        cluster = FakeCluster(["n1", "n2", "n3", "n4", "n5"], "n2")
        network = FakeNetwork()
        clock = Clock()
        nemesis = Nemesis(
            cluster,
            [],
            random.Random(seed),
            clock.seconds,
            lambda s: succeed(None),
            lambda text: None,
            clock,
            network,  # type: ignore[arg-type]
        )
        fault = Fault(1.0, "partition", 3.0)
        self.successResultOf(Deferred.fromCoroutine(nemesis.inflict(fault)))
        self.assertEqual(cluster.actions, [])
        return nemesis, network

    def test_partitions(self) -> None:
        """
        Every partition cuts one side from the other (both ways, or only
        from the leader in a one-way cut), never within a side, keeps a
        majority on one side, and is healed before the fault ends; over a
        few seeds every mode is used.
        """
        modes = set()
        for seed in range(30):
            nemesis, network = self.partition(seed)
            (record,) = nemesis.records
            mode, sides = record.target.split(" ", 1)
            modes.add(mode)
            side, rest = (set(s.split(",")) for s in sides.split(" | "))
            self.assertLessEqual(len(side), 2)
            self.assertEqual(side | rest, {"n1", "n2", "n3", "n4", "n5"})
            expected = {(a, b) for a in side for b in rest}
            if mode == "one-way":
                self.assertEqual(side, {"n2"})
            else:
                expected |= {(b, a) for a, b in expected}
            if mode == "isolate-leader":
                self.assertEqual(side, {"n2"})
            self.assertEqual(network.log, [frozenset(expected)])
            self.assertEqual(network.cuts, set())
        self.assertEqual(modes, {"isolate-leader", "minority", "one-way"})


class NetemTests(SynchronousTestCase):
    def test_netem_faults(self) -> None:
        """
        A netem fault puts delay (with a quarter of it as jitter), loss or
        both, within their ranges, on one node's link or on every node's,
        and heals them before the fault ends; over a few seeds every mode
        and both scopes are used.
        """
        modes = set()
        scopes = set()
        for seed in range(30):
            cluster = FakeCluster(["n1", "n2", "n3"], "n1")
            network = FakeNetwork()
            nemesis = inflict(Fault(1.0, "netem", 4.0), cluster, seed, network)
            self.assertEqual(cluster.actions, [])
            (record,) = nemesis.records
            mode, victims = record.target.split(" ")
            modes.add(mode)
            scopes.add(len(victims.split(",")))
            (shaped,) = network.shape_log
            self.assertEqual(sorted(shaped), victims.split(","))
            (args,) = set(shaped.values())
            words = dict(zip(args, args[1:], strict=False))
            if "delay" in mode:
                ms = int(words["delay"].removesuffix("ms"))
                self.assertTrue(NETEM_DELAY_MS[0] <= ms <= NETEM_DELAY_MS[1], args)
                self.assertEqual(args[args.index("delay") + 2], f"{ms // 4}ms")
            else:
                self.assertNotIn("delay", args)
            if "loss" in mode:
                loss = float(words["loss"].removesuffix("%"))
                self.assertTrue(NETEM_LOSS_PERCENT[0] <= loss <= NETEM_LOSS_PERCENT[1], args)
            else:
                self.assertNotIn("loss", args)
            self.assertEqual(network.shaped, {})
            self.assertEqual(nemesis.skipped, [])
        self.assertEqual(modes, {"delay", "loss", "delay+loss"})
        self.assertEqual(scopes, {1, 3})

    def test_netem_skipped_without_netem(self) -> None:
        """
        Where the probe found netem unusable, a netem fault touches
        nothing, counts as no fault, and is logged and recorded as SKIPPED
        with the probe's reason.
        """
        cluster = FakeCluster(["n1", "n2", "n3"], "n1")
        network = FakeNetwork()
        logs: list[str] = []
        nemesis = inflict(Fault(1.0, "netem", 4.0), cluster, 0, network, "no sch_netem here", logs)
        self.assertEqual((cluster.actions, network.shape_log, nemesis.records), ([], [], []))
        (skipped,) = nemesis.skipped
        self.assertIn("SKIPPED", skipped)
        self.assertIn("no sch_netem here", skipped)
        self.assertEqual(logs, [f"nemesis: {skipped.split(': ', 1)[1]}"])

    def test_netem_skipped_without_network(self) -> None:
        """
        Without namespaces, a netem fault is skipped with the reason there
        are none.
        """
        nemesis = inflict(Fault(1.0, "netem", 4.0), FakeCluster(["n1"], "n1"))
        (skipped,) = nemesis.skipped
        self.assertIn("netem nemesis unavailable (not root)", skipped)
        self.assertEqual(nemesis.records, [])


class FakeCommands:
    """
    Stands in for L{run_command}: records every command line and answers
    with the first canned result whose key starts it, else success.
    """

    def __init__(self, answers: dict[tuple[str, ...], tuple[int, str]] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv: Any) -> tuple[int, str]:
        self.calls.append(list(argv))
        for prefix, answer in self.answers.items():
            if tuple(argv[: len(prefix)]) == prefix:
                return answer
        return 0, ""


def which_all(command: str) -> str | None:
    return f"/usr/sbin/{command}"


class ProbeTests(SynchronousTestCase):
    ADD = ("tc", "qdisc", "add")
    DEL = ("tc", "qdisc", "del")

    def test_works(self) -> None:
        """
        When a netem qdisc can be added and removed, the probe says
        nothing is wrong, and leaves nothing behind.
        """
        run = FakeCommands()
        self.assertIsNone(probe_netem(run, "veth0", euid=0, which=which_all))
        self.assertEqual(
            run.calls,
            [
                ["tc", "qdisc", "add", "dev", "veth0", "root", "netem", "delay", "1ms"],
                ["tc", "qdisc", "del", "dev", "veth0", "root"],
            ],
        )

    def test_not_root(self) -> None:
        """
        Without root, the probe says so and runs nothing.
        """
        run = FakeCommands()
        self.assertEqual(
            probe_netem(run, "veth0", euid=1000, which=which_all), "tc netem needs root"
        )
        self.assertEqual(run.calls, [])

    def test_no_tc(self) -> None:
        """
        Without C{tc}, the probe names the package to install.
        """
        run = FakeCommands()
        reason = probe_netem(run, "veth0", euid=0, which=lambda command: None)
        self.assertEqual(reason, "iproute2's tc command is missing (apt-get install iproute2)")
        self.assertEqual(run.calls, [])

    def test_kernel_without_netem(self) -> None:
        """
        A kernel without C{sch_netem} (what new and old C{tc} say then) is
        named as such, with C{tc}'s own words, and nothing is removed.
        """
        for said in (
            "Error: Specified qdisc kind is unknown.",
            "RTNETLINK answers: No such file or directory",
        ):
            run = FakeCommands({self.ADD: (2, said)})
            reason = probe_netem(run, "veth0", euid=0, which=which_all)
            assert reason is not None
            self.assertIn("this kernel has no sch_netem qdisc", reason)
            self.assertIn(said, reason)
            self.assertEqual(len(run.calls), 1)

    def test_other_failure(self) -> None:
        """
        Any other failure to add the qdisc is reported with the command
        and C{tc}'s words.
        """
        run = FakeCommands({self.ADD: (2, 'Cannot find device "veth0"')})
        reason = probe_netem(run, "veth0", euid=0, which=which_all)
        self.assertEqual(
            reason, "tc qdisc add dev veth0 root netem failed: 'Cannot find device \"veth0\"'"
        )

    def test_cannot_remove(self) -> None:
        """
        A qdisc that was added but cannot be removed makes netem unusable
        (healing would fail), and says so.
        """
        run = FakeCommands({self.DEL: (2, "busy")})
        reason = probe_netem(run, "veth0", euid=0, which=which_all)
        self.assertEqual(
            reason, "a netem qdisc was added on veth0 but could not be removed: 'busy'"
        )


class NetworkCommandTests(SynchronousTestCase):
    def network(self, run: FakeCommands) -> Network:
        network = Network(["n1", "n2"], run=run)
        run.calls.clear()
        return network

    def test_shape_and_heal(self) -> None:
        """
        Shaping a node puts the same netem qdisc on both ends of its veth
        pair (the host's end and C{eth0} in its namespace); healing removes
        both qdiscs and every cut.
        """
        run = FakeCommands()
        network = self.network(run)
        veth, ns = network._veth["n2"], network.namespace["n2"]
        network.shape("n2", ["delay", "40ms", "10ms", "loss", "2.0%"])
        network.cut("n1", "n2")
        self.assertEqual(
            run.calls,
            [
                ["tc", "qdisc", "replace", "dev", veth, "root", "netem"]
                + ["delay", "40ms", "10ms", "loss", "2.0%"],
                ["tc", "-n", ns, "qdisc", "replace", "dev", "eth0", "root", "netem"]
                + ["delay", "40ms", "10ms", "loss", "2.0%"],
                ["ip", "-n", network.namespace["n1"], "route", "add", "blackhole"]
                + [f"{network.address['n2']}/32"],
            ],
        )
        run.calls.clear()
        network.heal()
        self.assertEqual(
            sorted(run.calls),
            sorted(
                [
                    ["tc", "qdisc", "del", "dev", veth, "root"],
                    ["tc", "-n", ns, "qdisc", "del", "dev", "eth0", "root"],
                    ["ip", "-n", network.namespace["n1"], "route", "del", "blackhole"]
                    + [f"{network.address['n2']}/32"],
                ]
            ),
        )
        self.assertEqual((network.shaped, network.cuts), (set(), set()))

    def test_failed_shape(self) -> None:
        """
        A C{tc} failure while shaping raises L{NetworkError} with the
        command and C{tc}'s words, and healing removes only what was added.
        """
        run = FakeCommands({("tc", "-n"): (2, "Error: boom")})
        network = self.network(run)
        e = self.assertRaises(NetworkError, network.shape, "n1", ["loss", "5.0%"])
        self.assertIn("Error: boom", str(e))
        self.assertIn("qdisc replace dev eth0", str(e))
        run.calls.clear()
        network.heal()
        self.assertEqual(run.calls, [["tc", "qdisc", "del", "dev", network._veth["n1"], "root"]])
