# -*- test-case-name: tests.test_devcluster -*-
"""
A local Raft3D cluster in one terminal: C{python -m raft3d.devcluster}.

It starts N C{twistd -n raft3d} processes with the seed README's flags
(node I listens for peers on 7000+I-1 and for HTTP on 8000+I-1, keeps its
data in C{data/nodeI}; node1 bootstraps), prefixes every line they print
with the node's name, polls C{GET /status} until a leader is known and
prints it with the nodes' URLs and a C{curl} to try, then keeps reporting
leader changes.  Ctrl-C (SIGINT) or SIGTERM stops every node (SIGTERM, then
SIGKILL after a grace period) before exiting.

When run in a terminal it also reads commands, so that the README's
failover walk-through needs only this terminal and another for C{curl}:
C{kill node1} (SIGKILL), C{stop node1} (SIGTERM), C{start node1} (the same
command line again), C{status}, C{help}.

The children run C{twistd} with this very interpreter
(C{sys.executable -c "...twistd.run()"}, the C{twistd} script without
needing it on C{PATH}), so a virtualenv is used without activating it, and
with this copy of C{raft3d} first on C{PYTHONPATH}, so a checkout works
without installing.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import attrs
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python import usage
from twisted.python.failure import Failure

import raft3d

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"
"""
What C{python -c} runs to be C{twistd}.
"""

TWISTD_OWN_GROUP = "import os; os.setpgrp(); " + TWISTD
"""
The same in a process group of its own, out of reach of the terminal's
Ctrl-C: the cluster stops its nodes itself, one signal each.
"""

GRACE = 10.0
"""
Seconds a node gets to stop after SIGTERM before it is killed.
"""

_COLOURS = ("36", "35", "33", "32", "34", "31")


def twistd_argv(
    args: Sequence[str], python: str | None = None, *, own_group: bool = False
) -> list[str]:
    """
    The command line that runs C{twistd *args} with C{python} (this
    interpreter by default), in a process group of its own if asked.

    C{-P} keeps the current directory off C{sys.path}, so the child
    imports the C{raft3d} that L{child_environment} puts on C{PYTHONPATH}
    (the parent's), not whatever copy happens to be in its directory.
    """
    code = TWISTD_OWN_GROUP if own_group else TWISTD
    return [python or sys.executable, "-P", "-c", code, *args]


def source_root() -> str:
    """
    The directory holding the C{raft3d} package in use (a checkout or
    C{site-packages}); it also holds the C{twisted/plugins} with our plugin.
    """
    return str(Path(raft3d.__file__).resolve().parent.parent)


def child_environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """
    The environment for a node: C{base} (this process's by default) with
    L{source_root} first on C{PYTHONPATH} and unbuffered output, so that
    lines arrive as they are written.
    """
    env = dict(os.environ if base is None else base)
    parts = [source_root()] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(parts)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@attrs.frozen
class NodeSpec:
    """
    One node of the local cluster and its flags.
    """

    name: str
    raft_addr: str
    http_addr: str
    raft_dir: str
    bootstrap: bool
    peers: tuple[str, ...]

    def raft3d_args(self) -> list[str]:
        """
        The flags after C{twistd -n raft3d}.
        """
        args = [
            "--id",
            self.name,
            "--raft-addr",
            self.raft_addr,
            "--raft-dir",
            self.raft_dir,
            "--http-addr",
            self.http_addr,
        ]
        if self.bootstrap:
            args.append("--bootstrap")
        return [*args, "--peers", ",".join(self.peers)]

    def argv(self, python: str | None = None, *, own_group: bool = False) -> list[str]:
        """
        The whole command line of this node.
        """
        args = ["--nodaemon", "--pidfile=", "raft3d", *self.raft3d_args()]
        return twistd_argv(args, python, own_group=own_group)

    def shell_command(self) -> str:
        """
        The equivalent command for a person to type.
        """
        return " ".join(["twistd -n raft3d", *self.raft3d_args()])

    @property
    def url(self) -> str:
        return f"http://{self.http_addr}"


def cluster_specs(
    nodes: int = 3,
    *,
    host: str = "localhost",
    raft_port: int = 7000,
    http_port: int = 8000,
    base_dir: str = "data",
) -> list[NodeSpec]:
    """
    The seed README's cluster, generalised to C{nodes} nodes.
    """
    peers = tuple(f"{host}:{raft_port + i}" for i in range(nodes))
    return [
        NodeSpec(
            name=f"node{i + 1}",
            raft_addr=peers[i],
            http_addr=f"{host}:{http_port + i}",
            raft_dir=os.path.join(base_dir, f"node{i + 1}"),
            bootstrap=i == 0,
            peers=peers,
        )
        for i in range(nodes)
    ]


class Console:
    """
    Where the cluster's output goes: every line prefixed with its source,
    coloured when writing to a terminal.
    """

    def __init__(self, out: TextIO, colour: bool | None = None) -> None:
        self._out = out
        if colour is None:
            colour = out.isatty() and "NO_COLOR" not in os.environ
        self._colour = colour
        self._width = 10

    def prefix(self, source: str, index: int | None) -> str:
        """
        C{source} padded, coloured by C{index} (bold for L{None}).
        """
        label = source.ljust(self._width)
        if not self._colour:
            return f"{label}| "
        colour = "1" if index is None else _COLOURS[index % len(_COLOURS)]
        return f"\x1b[{colour}m{label}|\x1b[0m "

    def line(self, source: str, index: int | None, text: str) -> None:
        self._out.write(self.prefix(source, index) + text + "\n")
        self._out.flush()

    def say(self, text: str) -> None:
        """
        Print devcluster's own message (possibly several lines).
        """
        for line in text.splitlines() or [""]:
            self.line("devcluster", None, line)


@attrs.frozen
class ProcessEnd:
    """
    How a process ended: its exit status, or the signal that killed it.
    """

    status: int | None
    signal: int | None

    @classmethod
    def from_reason(cls, reason: Failure) -> ProcessEnd:
        value = reason.value
        if isinstance(value, ProcessDone):
            return cls(0, None)
        return cls(getattr(value, "exitCode", None), getattr(value, "signal", None))

    def describe(self) -> str:
        """
        "exited with status N" or "ended by SIGNAME".
        """
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"ended by {name}"
        return f"exited with status {self.status}"


class NodeOutput(ProcessProtocol):
    """
    Passes a node's output, line by line, to C{emit}, and tells
    L{when_ended} waiters how the process ended.
    """

    def __init__(self, emit: Callable[[str], None]) -> None:
        self._emit = emit
        self._partial: dict[int, bytes] = {}
        self.end: ProcessEnd | None = None
        self._waiters: list[Deferred[ProcessEnd]] = []

    @property
    def ended(self) -> bool:
        return self.end is not None

    def when_ended(self) -> Deferred[ProcessEnd]:
        """
        A Deferred that fires with the process's end (at once if over).
        """
        if self.end is not None:
            return succeed(self.end)
        d: Deferred[ProcessEnd] = Deferred()
        self._waiters.append(d)
        return d

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        buffer = self._partial.get(childFD, b"") + data
        *lines, rest = buffer.split(b"\n")
        self._partial[childFD] = rest
        for raw in lines:
            self._emit(raw.rstrip(b"\r").decode("utf-8", "replace"))

    def processEnded(self, reason: Failure) -> None:
        for rest in self._partial.values():
            if rest:
                self._emit(rest.decode("utf-8", "replace"))
        self._partial.clear()
        end = self.end = ProcessEnd.from_reason(reason)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(end)


class Node:
    """
    One child process of the cluster.
    """

    def __init__(self, spec: NodeSpec, index: int, console: Console) -> None:
        self.spec = spec
        self.index = index
        self._console = console
        self.transport: Any = None
        self.protocol: NodeOutput | None = None
        self.expected_exit = False

    @property
    def running(self) -> bool:
        return self.protocol is not None and not self.protocol.ended

    @property
    def pid(self) -> int | None:
        return getattr(self.transport, "pid", None) if self.running else None

    def start(self, reactor: IReactorProcess) -> Deferred[ProcessEnd]:
        """
        Start the node; the result fires when it ends.
        """
        self.expected_exit = False
        protocol = NodeOutput(lambda text: self._console.line(self.spec.name, self.index, text))
        self.protocol = protocol
        self.transport = reactor.spawnProcess(
            protocol, sys.executable, self.spec.argv(own_group=True), env=child_environment()
        )
        return protocol.when_ended()

    def signal(self, name: str) -> bool:
        """
        Send signal C{name} ("TERM", "KILL"...); false if not running.
        """
        if not self.running:
            return False
        try:
            self.transport.signalProcess(name)
        except ProcessExitedAlready:
            return False
        return True

    def stop(self, clock: IReactorTime, grace: float = GRACE) -> Deferred[Any]:
        """
        SIGTERM, then SIGKILL if the node is still running after C{grace}
        seconds; fires once it has ended.
        """
        if self.protocol is None or not self.running:
            return succeed(None)
        self.expected_exit = True
        ended = self.protocol.when_ended()
        self.signal("TERM")
        killer = clock.callLater(grace, self.signal, "KILL")

        def done(end: ProcessEnd) -> None:
            if killer.active():
                killer.cancel()

        return ended.addCallback(done)


StatusGetter = Callable[[str], "Deferred[dict[str, Any] | None]"]
"""
C{get(url)} fires with the decoded C{/status} of a node, or L{None} if it
did not answer.
"""


class LeaderWatcher:
    """
    Polls every node's C{/status} and reports the leader when it changes:
    C{on_change(leader_id or None, term)}.  A leader is the node that says
    it leads (the one with the highest term if, briefly, two do).
    """

    def __init__(
        self,
        clock: IReactorTime,
        get: StatusGetter,
        urls: Sequence[str],
        on_change: Callable[[str | None, int], None],
        interval: float = 0.5,
    ) -> None:
        self._clock = clock
        self._get = get
        self._urls = list(urls)
        self._on_change = on_change
        self._interval = interval
        self._call: IDelayedCall | None = None
        self._stopped = False
        self.leader: str | None = None
        self.seen = False

    def start(self) -> None:
        self._poll()

    def stop(self) -> None:
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()

    def _poll(self) -> None:
        self._call = None
        if self._stopped:
            return
        results = DeferredList(
            [self._get(f"{url}/status") for url in self._urls], consumeErrors=True
        )
        results.addCallback(self._polled)

    def _polled(self, results: list[tuple[bool, Any]]) -> None:
        if self._stopped:
            return
        leader: str | None = None
        term = -1
        for ok, status in results:
            if ok and isinstance(status, dict) and status.get("is_leader"):
                node_term = status.get("term")
                if isinstance(node_term, int) and node_term > term:
                    leader, term = str(status.get("id")), node_term
        if leader != self.leader or not self.seen:
            if leader is not None or self.seen:
                self.seen = True
                self.leader = leader
                self._on_change(leader, term)
        self._call = self._clock.callLater(self._interval, self._poll)


HELP = """Commands:
  kill NODE    SIGKILL the node (a crash)
  stop NODE    SIGTERM the node (a clean shutdown, like Ctrl-C)
  start NODE   start the node again with the same command line
  status       show every node and the leader
  help         this text
Ctrl-C stops the whole cluster."""


class DevCluster:
    """
    The nodes, the leader watcher and the console, tied together.
    """

    def __init__(
        self,
        reactor: Any,
        specs: Sequence[NodeSpec],
        console: Console,
        get: StatusGetter,
        *,
        grace: float = GRACE,
    ) -> None:
        self._reactor = reactor
        self._console = console
        self._grace = grace
        self.nodes = [Node(spec, i, console) for i, spec in enumerate(specs)]
        self._by_name = {n.spec.name: n for n in self.nodes}
        self.watcher = LeaderWatcher(reactor, get, [n.spec.url for n in self.nodes], self._leader)
        self.done: Deferred[None] = Deferred()
        self._stopping = False
        self._announced = False

    def start(self) -> None:
        self._console.say(f"Starting {len(self.nodes)} nodes:")
        for node in self.nodes:
            self._console.say(f"  {node.spec.shell_command()}")
        for node in self.nodes:
            self._spawn(node)
        self.watcher.start()

    def _spawn(self, node: Node) -> None:
        node.start(self._reactor).addCallback(self._ended, node)
        self._console.say(f"{node.spec.name} started (pid {node.pid})")

    def _ended(self, end: ProcessEnd, node: Node) -> None:
        self._console.say(f"{node.spec.name} {end.describe()}")
        if self._stopping:
            return
        if not node.expected_exit and not any(n.running for n in self.nodes):
            self._console.say("Every node has exited; stopping.")
            self._finish(1)

    def _leader(self, leader: str | None, term: int) -> None:
        if leader is None:
            self._console.say("No leader right now (an election is under way)")
            return
        node = self._by_name.get(leader)
        url = node.spec.url if node is not None else "?"
        first = not self._announced
        self._announced = True
        self._console.say(f"Leader: {leader} in term {term} ({url})")
        if first:
            urls = "  ".join(f"{n.spec.name} {n.spec.url}" for n in self.nodes)
            self._console.say(f"Nodes: {urls}")
            self._console.say(
                "Try: curl -X POST "
                f"{self.nodes[0].spec.url}/api/v1/printers"
                """ -H "Content-Type: application/json" -d '{"company": "Creality","""
                """ "model": "Ender 3"}'"""
            )
            self._console.say(f"     curl {self.nodes[-1].spec.url}/api/v1/printers")

    def command(self, line: str) -> None:
        """
        Run one console command.
        """
        words = line.split()
        if not words:
            return
        verb, args = words[0].lower(), words[1:]
        if verb == "help":
            self._console.say(HELP)
        elif verb == "status":
            for each in self.nodes:
                state = f"running, pid {each.pid}" if each.running else "not running"
                self._console.say(f"{each.spec.name}: {state}, {each.spec.url}")
            self._console.say(f"Leader: {self.watcher.leader or 'none known'}")
        elif verb in ("kill", "stop", "start") and len(args) == 1:
            node = self._by_name.get(args[0])
            if node is None:
                self._console.say(f"No node {args[0]}; nodes: {', '.join(self._by_name)}")
            elif verb == "start":
                if node.running:
                    self._console.say(f"{node.spec.name} is already running")
                else:
                    self._spawn(node)
            elif not node.running:
                self._console.say(f"{node.spec.name} is not running")
            else:
                node.expected_exit = True
                node.signal("KILL" if verb == "kill" else "TERM")
        else:
            self._console.say(f"Unknown command {line.strip()!r}; type help")

    def stop(self) -> Deferred[Any]:
        """
        Stop every node (SIGTERM, then SIGKILL after the grace period).
        """
        self._stopping = True
        self.watcher.stop()
        running = [n for n in self.nodes if n.running]
        if running:
            self._console.say(f"Stopping {', '.join(n.spec.name for n in running)}...")
        stopped = DeferredList([n.stop(self._reactor, self._grace) for n in running])
        stopped.addCallback(lambda _: self._finish(0))
        return stopped

    def _finish(self, status: int) -> None:
        """
        Fire L{done}: with L{None} for success, else with C{SystemExit}
        (which C{react} turns into the exit status).
        """
        if self.done.called:
            return
        if status:
            self.done.errback(SystemExit(status))
        else:
            self.done.callback(None)


class StdinCommands:
    """
    Reads console commands from file descriptor 0 when readable, without
    making it non-blocking (on a terminal, stdin and stdout share that
    flag, and our output must stay blocking).
    """

    def __init__(self, handle: Callable[[str], None]) -> None:
        self._handle = handle
        self._buffer = b""

    def fileno(self) -> int:
        return 0

    def logPrefix(self) -> str:
        return "stdin"

    def doRead(self) -> Failure | None:
        data = os.read(0, 4096)
        if not data:
            return Failure(EOFError("stdin closed"))  # type: ignore[no-untyped-call]
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._handle(line.decode("utf-8", "replace"))
        return None

    def connectionLost(self, reason: Failure) -> None:
        pass


def interactive() -> bool:
    """
    Whether to read commands: stdin is a terminal and we are in its
    foreground (reading from the background would stop the process).
    """
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


class Options(usage.Options):
    """
    C{python -m raft3d.devcluster} options.
    """

    synopsis = "[--nodes 3] [--base-dir data] [--fresh]"
    optFlags = [["fresh", None, "Delete the nodes' data directories first."]]
    optParameters: list[list[Any]] = [
        ["nodes", "n", 3, "How many nodes to run.", int],
        ["base-dir", None, "data", "Directory holding each node's data (BASE/nodeN)."],
        ["host", None, "localhost", "Host name the nodes listen on and advertise."],
        ["raft-port", None, 7000, "Raft port of node1; node N uses this + N - 1.", int],
        ["http-port", None, 8000, "HTTP port of node1; node N uses this + N - 1.", int],
    ]

    def postOptions(self) -> None:
        if not 1 <= self["nodes"] <= 9:
            raise usage.UsageError("--nodes must be between 1 and 9")


def run(reactor: Any, argv: Sequence[str]) -> Deferred[None]:
    """
    Run the cluster until Ctrl-C, SIGTERM or the death of every node.
    """
    from treq import json_content
    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    options = Options()  # type: ignore[no-untyped-call]
    try:
        options.parseOptions(list(argv))  # type: ignore[no-untyped-call]
    except usage.UsageError as e:
        sys.stderr.write(f"{options}\nerror: {e}\n")
        raise SystemExit(2)
    specs = cluster_specs(
        options["nodes"],
        host=options["host"],
        raft_port=options["raft-port"],
        http_port=options["http-port"],
        base_dir=options["base-dir"],
    )
    if options["fresh"]:
        for spec in specs:
            shutil.rmtree(spec.raft_dir, ignore_errors=True)
    console = Console(sys.stdout)
    pool = HTTPConnectionPool(reactor, persistent=False)  # type: ignore[no-untyped-call]
    agent = Agent(reactor, pool=pool, connectTimeout=1)  # type: ignore[no-untyped-call]
    client = HTTPClient(agent)

    async def fetch(url: str) -> dict[str, Any] | None:
        try:
            response = await client.get(url, timeout=2)
            value = await json_content(response)
        except Exception:
            return None
        return value if isinstance(value, dict) else None

    def get_status(url: str) -> Deferred[dict[str, Any] | None]:
        return Deferred.fromCoroutine(fetch(url))

    cluster = DevCluster(reactor, specs, console, get_status)
    reactor.addSystemEventTrigger("before", "shutdown", cluster.stop)
    cluster.start()
    if interactive():
        reader = StdinCommands(cluster.command)
        reactor.addReader(reader)
        console.say("Type 'help' for commands (kill/stop/start a node). Ctrl-C stops everything.")
    return cluster.done


def main(argv: Sequence[str] | None = None) -> None:
    """
    The command-line entry point.
    """
    from twisted.internet.task import react

    args = list(sys.argv[1:] if argv is None else argv)
    react(lambda reactor: run(reactor, args))


if __name__ == "__main__":
    main()
