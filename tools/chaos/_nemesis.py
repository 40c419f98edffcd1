# -*- test-case-name: tests.chaos.test_nemesis -*-
"""
The nemesis: a seeded schedule of faults and the code that inflicts them on
a real cluster of C{twistd raft3d} processes.

The schedule (L{plan}) is a pure function of the seed, the fault kinds and
the duration, so a failing run is rerun with the same seed and gets the same
faults at the same offsets; which node a fault hits is drawn from the same
seeded generator when it starts (the leader of the moment is only known
then).  Every fault is logged with its start and end time on the runner's
clock (L{FaultRecord}) and goes into the report.

Faults:

  - C{kill}: SIGKILL a random node, restart it with the very same command
    line after C{hold} seconds, wait until it answers.
  - C{pause}: SIGSTOP the current leader for C{hold} seconds (several
    election timeouts), then SIGCONT.  A deposed leader that wakes up must
    neither serve a stale linearizable read nor commit anything on its own;
    the checker looks for exactly that.
  - C{restart}: a rolling restart: every node in turn gets SIGTERM, is
    started again with its command line and must answer before the next.
  - C{partition}: with every node in a network namespace of its own
    (L{Network}), cut the links between the leader and the others, between
    a random minority and the majority, or only from the leader to the
    others (one-way), for C{hold} seconds, then heal.  Where namespaces
    cannot be made (not root...), the runner says so and skips partitions,
    never silently.
  - C{netem}: with the same namespaces, C{tc netem} delay, loss or both on
    the links of a random node or of every node, both ways, for C{hold}
    seconds, then heal.  It needs the kernel's C{sch_netem} qdisc:
    L{probe_netem} finds out before the run, and where it is missing the
    runner says why and skips these faults, never silently.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
from typing import Any, Awaitable, Callable, Protocol, Sequence

import attrs
from twisted.internet.defer import TimeoutError
from twisted.internet.interfaces import IReactorTime

TERM_GRACE = 30.0
"""
Seconds a node gets to exit after SIGTERM in a rolling restart.
"""

KINDS = ("kill", "pause", "restart", "partition", "netem")

#: Seconds between the end of one fault and the start of the next, drawn
#: uniformly: the clients need calm periods too, to make progress.
QUIET = (2.0, 5.0)

#: How long a fault is held, per kind.
HOLD = {
    "kill": (1.0, 5.0),
    "pause": (3.0, 6.0),
    "restart": (0.0, 0.0),
    "partition": (3.0, 8.0),
    "netem": (3.0, 8.0),
}

#: One-way delay added on each shaped link, in milliseconds (a node-to-node
#: packet crosses two links: the sender's and the receiver's); the jitter
#: is a quarter of it.  Election timeouts are 0.5-1 s, so even two shaped
#: links leave a leader able to keep its followers.
NETEM_DELAY_MS = (10, 100)

#: Packet loss on each shaped link, in percent.
NETEM_LOSS_PERCENT = (1.0, 10.0)

Run = Callable[[Sequence[str]], tuple[int, str]]
"""
Runs a command line and returns its exit status and what it printed on
stderr (L{run_command}; tests pass fakes).
"""


def run_command(argv: Sequence[str]) -> tuple[int, str]:
    """
    Run C{argv} (no shell), wait, and return its status and its stderr.
    """
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    return result.returncode, result.stderr.strip()


@attrs.frozen
class Fault:
    """
    One planned fault: C{kind} starts C{at} seconds after the nemesis
    starts (or as soon as the previous fault has ended) and is held for
    C{hold} seconds.
    """

    at: float
    kind: str
    hold: float


@attrs.frozen
class FaultRecord:
    """
    One fault as it happened.
    """

    kind: str
    target: str
    start: float
    end: float
    detail: str

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def plan(seed: int, kinds: Sequence[str], duration: float) -> list[Fault]:
    """
    The faults of a run of C{duration} seconds: quiet gaps and faults drawn
    from C{random.Random(seed)}, kinds in random order, never past the end.

    @raise ValueError: for an unknown or missing kind.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ValueError(f"unknown nemesis {unknown}; choose among {', '.join(KINDS)}")
    rng = random.Random(seed)
    faults = []
    t = rng.uniform(*QUIET)
    while t < duration:
        kind = rng.choice(list(kinds))
        hold = round(rng.uniform(*HOLD[kind]), 3)
        faults.append(Fault(round(t, 3), kind, hold))
        t += hold + rng.uniform(*QUIET)
    return faults


def partition_skipped(reason: str) -> str:
    """
    The message for a run whose partitions cannot be injected.
    """
    return f"partition nemesis unavailable ({reason}): partitions are SKIPPED in this run"


def netem_skipped(reason: str) -> str:
    """
    The message for a run whose delay and loss faults cannot be injected.
    """
    return f"netem nemesis unavailable ({reason}): delay/loss faults are SKIPPED in this run"


def probe_netem(
    run: Run,
    device: str,
    *,
    euid: int,
    which: Callable[[str], str | None],
) -> str | None:
    """
    Find out whether C{tc netem} works on C{device} by adding a 1 ms delay
    there and removing it again.

    @param run: runs the C{tc} commands (L{run_command}).
    @param euid: the effective user id (C{os.geteuid()}).
    @param which: finds a command (C{shutil.which}).
    @return: L{None} when it works, or why it cannot be used, in words an
        operator can act on.
    """
    if euid != 0:
        return "tc netem needs root"
    if which("tc") is None:
        return "iproute2's tc command is missing (apt-get install iproute2)"
    code, err = run(["tc", "qdisc", "add", "dev", device, "root", "netem", "delay", "1ms"])
    if code != 0:
        # A kernel without sch_netem: "Error: Specified qdisc kind is
        # unknown." from recent iproute2, "RTNETLINK answers: No such file
        # or directory" from older ones.
        if "kind is unknown" in err or "No such file or directory" in err:
            return (
                f"this kernel has no sch_netem qdisc and it cannot be loaded here: tc said {err!r}"
            )
        return f"tc qdisc add dev {device} root netem failed: {err!r}"
    code, err = run(["tc", "qdisc", "del", "dev", device, "root"])
    if code != 0:
        return f"a netem qdisc was added on {device} but could not be removed: {err!r}"
    return None


class Cluster(Protocol):
    """
    What the nemesis needs of the process cluster
    (L{raft3d.testing.ProcessCluster}).
    """

    specs: Any

    def start(self, name: str) -> None: ...

    def signal(self, name: str, signal: str) -> None: ...

    def running(self, name: str) -> bool: ...

    def output(self, name: str, run: int = -1) -> Any: ...

    def runs(self, name: str) -> int: ...

    def send(self, name: str, signum: int) -> None: ...

    async def kill(self, name: str) -> Any: ...

    async def wait_up(self, name: str, deadline: float = ...) -> dict[str, Any]: ...

    async def leader(
        self, among: list[str] | None = None, other_than: str | None = None
    ) -> str: ...


class Nemesis:
    """
    Play a L{plan} against C{cluster}.

    @param seconds: the runner's clock.
    @param sleep: C{sleep(seconds)} -> awaitable (reactor time).
    @ivar expected_ends: C{(node, run)} of every process run the nemesis
        ended on purpose; any other end is a crash.
    @ivar records: the faults inflicted so far.
    @ivar skipped: faults that could not be inflicted, with the reason.
    @ivar unclean_stops: nodes that did not exit with status 0 soon after
        SIGTERM in a rolling restart.
    """

    def __init__(
        self,
        cluster: Cluster,
        faults: Sequence[Fault],
        rng: random.Random,
        seconds: Callable[[], float],
        sleep: Callable[[float], Awaitable[Any]],
        log: Callable[[str], None],
        clock: IReactorTime,
        network: Network | None = None,
        no_network: str = "no network namespaces",
        no_netem: str | None = None,
    ) -> None:
        """
        @param network: the nodes' namespaces, for partitions and netem
            faults; L{None} skips those faults.
        @param no_network: why there is no C{network}.
        @param no_netem: why C{tc netem} cannot be used on C{network}
            (L{probe_netem}), or L{None} when it can.
        """
        self._clock = clock
        self._network = network
        self._no_network = no_network
        self._no_netem = no_netem
        self._cluster = cluster
        self._faults = list(faults)
        self._rng = rng
        self._seconds = seconds
        self._sleep = sleep
        self._log = log
        self._stopped = False
        self.expected_ends: set[tuple[str, int]] = set()
        self.paused: set[str] = set()
        self.records: list[FaultRecord] = []
        self.skipped: list[str] = []
        self.unclean_stops: list[str] = []

    def stop(self) -> None:
        """
        Start no new fault; the current one still ends (heals) normally.
        """
        self._stopped = True

    async def run(self) -> None:
        """
        Inflict every fault of the plan at its time (or as soon as the
        previous one has healed), until L{stop}.
        """
        start = self._seconds()
        for fault in self._faults:
            wait = start + fault.at - self._seconds()
            while wait > 0 and not self._stopped:
                await self._sleep(min(wait, 0.5))
                wait = start + fault.at - self._seconds()
            if self._stopped:
                return
            await self.inflict(fault)

    async def inflict(self, fault: Fault) -> None:
        """
        One fault, healed before returning.
        """
        began = self._seconds()
        names = sorted(self._cluster.specs)
        if fault.kind == "kill":
            target = self._rng.choice(names)
            self._log(f"nemesis: SIGKILL {target} for {fault.hold:.1f} s")
            self.expected_ends.add((target, self._cluster.runs(target) - 1))
            end = await self._cluster.kill(target)
            await self._sleep(fault.hold)
            self._cluster.start(target)
            await self._cluster.wait_up(target, 120.0)
            detail = f"killed ({end.describe()}), restarted after {fault.hold:.1f} s"
        elif fault.kind == "pause":
            target = await self._cluster.leader()
            self._log(f"nemesis: SIGSTOP leader {target} for {fault.hold:.1f} s")
            self.paused.add(target)
            self._cluster.send(target, signal.SIGSTOP)
            await self._sleep(fault.hold)
            self._cluster.send(target, signal.SIGCONT)
            self.paused.discard(target)
            detail = f"leader paused {fault.hold:.1f} s, then continued"
        elif fault.kind == "restart":
            target = "all"
            self._log("nemesis: rolling restart of every node")
            for name in names:
                self.expected_ends.add((name, self._cluster.runs(name) - 1))
                output = self._cluster.output(name)
                self._cluster.signal(name, "TERM")
                ended = output.when_ended()
                ended.addTimeout(TERM_GRACE, self._clock)
                try:
                    end = await ended
                    # twistd stops cleanly, then ends itself with the signal
                    # it got (so that its parent knows why it stopped).
                    if end.status != 0 and end.signal != signal.SIGTERM:
                        self.unclean_stops.append(f"{name}: SIGTERM, then {end.describe()}")
                except TimeoutError:
                    self._log(f"nemesis: {name} ignored SIGTERM for {TERM_GRACE} s; SIGKILL")
                    self.unclean_stops.append(f"{name}: still running {TERM_GRACE} s after SIGTERM")
                    await self._cluster.kill(name)
                self._cluster.start(name)
                await self._cluster.wait_up(name, 120.0)
                await self._cluster.leader()
            detail = "SIGTERM and restart of " + ", ".join(names)
        elif fault.kind == "partition":
            if self._network is None:
                self._skip(fault, partition_skipped(self._no_network))
                return
            target, detail = await self._partition(self._network, names, fault.hold)
        else:
            if self._network is None:
                self._skip(fault, netem_skipped(self._no_network))
                return
            if self._no_netem is not None:
                self._skip(fault, netem_skipped(self._no_netem))
                return
            target, detail = await self._netem(self._network, names, fault.hold)
        self.records.append(FaultRecord(fault.kind, target, began, self._seconds(), detail))
        self._log(f"nemesis: healed {fault.kind} on {target}")

    def _skip(self, fault: Fault, reason: str) -> None:
        self.skipped.append(f"{fault.kind} at {fault.at:.1f} s: {reason}")
        self._log(f"nemesis: {reason}")

    async def _netem(self, network: Network, names: list[str], hold: float) -> tuple[str, str]:
        mode = self._rng.choice(("delay", "loss", "delay+loss"))
        victims = names if self._rng.random() < 0.5 else [self._rng.choice(names)]
        args: list[str] = []
        if "delay" in mode:
            ms = self._rng.randint(*NETEM_DELAY_MS)
            args += ["delay", f"{ms}ms", f"{ms // 4}ms"]
        if "loss" in mode:
            args += ["loss", f"{self._rng.uniform(*NETEM_LOSS_PERCENT):.1f}%"]
        target = f"{mode} {','.join(victims)}"
        self._log(f"nemesis: netem {' '.join(args)} on {','.join(victims)} for {hold:.1f} s")
        for name in victims:
            network.shape(name, args)
        await self._sleep(hold)
        network.heal()
        return target, f"netem {' '.join(args)} on each link, both ways, for {hold:.1f} s, healed"

    async def _partition(self, network: Network, names: list[str], hold: float) -> tuple[str, str]:
        leader = await self._cluster.leader()
        others = [n for n in names if n != leader]
        mode = self._rng.choice(("isolate-leader", "minority", "one-way"))
        pairs: list[tuple[str, str]]
        if mode == "isolate-leader":
            side, rest = [leader], others
        elif mode == "minority":
            size = self._rng.randint(1, (len(names) - 1) // 2)
            side = sorted(self._rng.sample(names, size))
            rest = [n for n in names if n not in side]
        else:
            side, rest = [leader], others
        pairs = [(a, b) for a in side for b in rest]
        if mode != "one-way":
            pairs += [(b, a) for a, b in pairs]
        target = f"{mode} {','.join(side)} | {','.join(rest)}"
        self._log(f"nemesis: partition {target} for {hold:.1f} s (leader was {leader})")
        for a, b in pairs:
            network.cut(a, b)
        await self._sleep(hold)
        network.heal()
        arrow = "-/->" if mode == "one-way" else "<-/->"
        return target, f"{','.join(side)} {arrow} {','.join(rest)} for {hold:.1f} s, healed"

    async def heal(self) -> None:
        """
        Remove network cuts and netem qdiscs, continue paused nodes and
        start every node that is not running.
        """
        if self._network is not None:
            self._network.heal()
        for name in sorted(self.paused):
            self._cluster.send(name, signal.SIGCONT)
        self.paused.clear()
        for name in sorted(self._cluster.specs):
            if not self._cluster.running(name):
                self._log(f"heal: starting {name}")
                self._cluster.start(name)


class NetworkError(Exception):
    """
    The namespaces could not be set up (not root, no C{ip}, no bridge...),
    or a command changing them failed.
    """


class Network:
    """
    One Linux network namespace per node, each with a veth pair onto a
    bridge in the runner's namespace, so the runner reaches every node at
    its own address while the nemesis cuts node-to-node traffic.

    A cut from node A to node B is a C{blackhole} route to B's address in
    A's namespace: A can no longer send B anything (a new connection fails
    at once, an established one errors on its next send), while both keep
    talking to the runner's clients.  A symmetric cut is two such routes;
    a one-way cut is one (with TCP, A's replies to B are lost too, so B's
    connections to A stall rather than fail).

    Delay and loss (L{shape}) are C{tc netem} qdiscs on both ends of a
    node's veth pair, so they hit everything the node sends and receives,
    the clients' requests included.  They need the kernel's C{sch_netem},
    which hosts like CI containers and microVMs often lack: L{probe_netem}
    says whether it is there.

    Needs root (C{CAP_NET_ADMIN} and C{CAP_SYS_ADMIN}) and iproute2.
    """

    def __init__(self, names: Sequence[str], run: Run = run_command) -> None:
        """
        @param run: runs the C{ip} and C{tc} commands (tests pass a fake).
        """
        self._run = run
        tag = f"{os.getpid() % 0xFFFF:04x}"
        subnet = os.getpid() % 250 + 1
        self.names = list(names)
        self.bridge = f"r3b{tag}"
        self.namespace = {n: f"r3d{tag}-{i}" for i, n in enumerate(names)}
        self._veth = {n: f"r3v{tag}{i}" for i, n in enumerate(names)}
        self.address = {n: f"10.77.{subnet}.{i + 1}" for i, n in enumerate(names)}
        self._gateway = f"10.77.{subnet}.254"
        self.cuts: set[tuple[str, str]] = set()
        self.shaped: set[tuple[str, str]] = set()
        self._made: list[tuple[str, ...]] = []

    def _ip(self, *args: str) -> None:
        self._check(["ip", *args])

    def _check(self, argv: Sequence[str]) -> None:
        code, err = self._run(argv)
        if code != 0:
            raise NetworkError(f"{' '.join(argv)}: {err}")

    def setup(self) -> None:
        """
        Create the bridge, the namespaces and the veth pairs.

        @raise NetworkError: naming the command that failed (whatever was
            made is torn down first).
        """
        if os.geteuid() != 0:
            raise NetworkError("network namespaces need root")
        if shutil.which("ip") is None:
            raise NetworkError("iproute2's ip command is missing")
        try:
            self._ip("link", "add", self.bridge, "type", "bridge")
            self._made.append(("link", "del", self.bridge))
            self._ip("addr", "add", f"{self._gateway}/24", "dev", self.bridge)
            self._ip("link", "set", self.bridge, "up")
            for name in self.names:
                ns, veth = self.namespace[name], self._veth[name]
                self._ip("netns", "add", ns)
                self._made.append(("netns", "del", ns))
                self._ip("-n", ns, "link", "set", "lo", "up")
                self._ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                self._made.append(("link", "del", veth))
                self._ip("link", "set", veth, "master", self.bridge)
                self._ip("link", "set", veth, "up")
                self._ip("-n", ns, "addr", "add", f"{self.address[name]}/24", "dev", "eth0")
                self._ip("-n", ns, "link", "set", "eth0", "up")
        except NetworkError:
            self.teardown()
            raise

    def prefix(self, name: str) -> list[str]:
        """
        What runs a command in node C{name}'s namespace (C{ip netns exec}
        execs it, so the process id and signals are the command's own).
        """
        return ["ip", "netns", "exec", self.namespace[name]]

    def cut(self, source: str, target: str) -> None:
        """
        Drop everything C{source} sends to C{target}.
        """
        if (source, target) not in self.cuts:
            self._ip(
                "-n",
                self.namespace[source],
                "route",
                "add",
                "blackhole",
                f"{self.address[target]}/32",
            )
            self.cuts.add((source, target))

    def probe_netem(self) -> str | None:
        """
        L{probe_netem} on the first node's link: L{None} when C{tc netem}
        works there, else why not.  Call after L{setup}.
        """
        return probe_netem(
            self._run, self._veth[self.names[0]], euid=os.geteuid(), which=shutil.which
        )

    def _qdisc(self, name: str, end: str, verb: str) -> list[str]:
        """
        C{tc qdisc VERB} on the root of one end of node C{name}'s link:
        C{"host"} (the runner's side: what the node receives) or C{"node"}
        (inside its namespace: what it sends).
        """
        if end == "host":
            return ["tc", "qdisc", verb, "dev", self._veth[name], "root"]
        return ["tc", "-n", self.namespace[name], "qdisc", verb, "dev", "eth0", "root"]

    def shape(self, name: str, netem: Sequence[str]) -> None:
        """
        Put C{tc netem} with C{netem} (C{["delay", "50ms", "12ms"]},
        C{["loss", "5.0%"]}...) on both ends of node C{name}'s link:
        what it sends and what it receives.
        """
        for end in ("host", "node"):
            self._check([*self._qdisc(name, end, "replace"), "netem", *netem])
            self.shaped.add((name, end))

    def heal(self) -> None:
        """
        Remove every netem qdisc and every cut.
        """
        for name, end in sorted(self.shaped):
            self._check(self._qdisc(name, end, "del"))
            self.shaped.discard((name, end))
        for source, target in sorted(self.cuts):
            self._ip(
                "-n",
                self.namespace[source],
                "route",
                "del",
                "blackhole",
                f"{self.address[target]}/32",
            )
        self.cuts.clear()

    def teardown(self) -> None:
        """
        Remove whatever L{setup} made (best effort: it also runs after
        failures).
        """
        for args in reversed(self._made):
            self._run(["ip", *args])
        self._made.clear()
        self.cuts.clear()
        self.shaped.clear()
