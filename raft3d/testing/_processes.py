# -*- test-case-name: tests.testing.test_processes -*-
"""
Real C{twistd raft3d} processes on 127.0.0.1, for the integration tests and
the nemesis runner (C{tools.chaos}).

L{ProcessCluster} starts each node exactly as an operator would
(C{python -c "...twistd.run()" --nodaemon --pidfile= raft3d --id ...}, with
this checkout first on C{PYTHONPATH}), keeps every line a node prints in a
file of its temporary directory and the last lines in memory for failure
messages, and kills every node it started with SIGKILL in cleanup, whatever
happened.  Time is only ever spent waiting for conditions, polled every
L{POLL} seconds, with generous deadlines: the machines running this are slow
and shared.

It lives in the package rather than in the test suite so that tools (the
nemesis runner) start nodes the same way as the tests without importing the
test suite.  Like everything outside C{raft3d/tap.py}, it is handed its
reactor (L{ProcessCluster}'s C{reactor}) and never imports the global one.

Its C{host} is the test case (or anything with C{addCleanup} and C{fail}):
cleanup is registered there, and a condition that does not come in time
fails it with the nodes' last lines.  The crash and disk fault tests add
flags to every node's command line (C{extra_args}: a small
C{--snapshot-threshold}...), restart nodes with the very same command line,
and need clients of their own (L{ProcessCluster.new_client}) and a
converged cluster to compare the nodes' copies
(L{ProcessCluster.converged}).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from collections import deque
from typing import Any, Awaitable, Callable, Mapping, NoReturn, Protocol, Sequence

from treq.client import HTTPClient
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool

from ..devcluster import NodeSpec, ProcessEnd, child_environment

POLL = 0.1
"""
Seconds between two looks at a condition being waited for.
"""

DEADLINE = 60.0
"""
Seconds a condition gets by default before the wait fails.
"""

TAIL_LINES = 40
"""
How many of a node run's last lines a failure message shows.
"""


class Host(Protocol):
    """
    What L{ProcessCluster} needs of whoever runs it: a test case, or the
    nemesis runner's stand-in for one.
    """

    def addCleanup(self, f: Callable[[], object], /) -> None:
        """
        Call C{f} (which may return a L{Deferred}) when done.
        """

    def fail(self, message: str, /) -> NoReturn:
        """
        Give up with C{message}, by raising.
        """


def free_ports(count: int) -> list[int]:
    """
    C{count} distinct TCP ports that were free on 127.0.0.1 a moment ago
    (all held open together, so they are distinct).
    """
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class ProcessOutput(ProcessProtocol):
    """
    Writes a node's output to a file, keeps its last lines, and tells
    waiters how it ended.
    """

    def __init__(self, path: str) -> None:
        """
        @param path: the file every byte the process prints is appended to.
        """
        self._file = open(path, "ab")  # noqa: SIM115 (closed in processEnded)
        self.tail: deque[str] = deque(maxlen=TAIL_LINES)
        self.lines: list[str] = []
        self._partial = b""
        self.end: ProcessEnd | None = None
        self._waiters: list[Deferred[ProcessEnd]] = []

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self._file.write(data)
        self._file.flush()
        *raw, self._partial = (self._partial + data).split(b"\n")
        lines = [line.decode("utf-8", "replace") for line in raw]
        self.tail.extend(lines)
        self.lines.extend(lines)

    def processEnded(self, reason: Failure) -> None:
        if self._partial:
            self.tail.append(self._partial.decode("utf-8", "replace"))
            self.lines.append(self.tail[-1])
        self._file.close()
        self.end = ProcessEnd.from_reason(reason)
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(self.end)

    def when_ended(self) -> Deferred[ProcessEnd]:
        """
        Fires with how the process ended (at once if it already has).
        """
        if self.end is not None:
            return succeed(self.end)
        d: Deferred[ProcessEnd] = Deferred()
        self._waiters.append(d)
        return d


class ProcessCluster:
    """
    A cluster of real nodes, like the seed README's: node1 bootstraps, and
    every node gets the same address-only C{--peers}.

    @ivar specs: every node's L{NodeSpec}, by name (C{node1}...).
    @ivar directory: the nodes' data and output, removed in cleanup unless
        L{failed}.
    @ivar failed: set by L{fail}; keeps L{directory} for a post-mortem.
    """

    def __init__(
        self,
        host: Host,
        reactor: Any,
        nodes: int = 3,
        extra_args: Sequence[str] = (),
    ) -> None:
        """
        @param host: gets the cleanup (SIGKILL every node still running,
            close the HTTP connections, remove L{directory}) and the
            failures.
        @param reactor: spawns the nodes, connects the HTTP clients and
            times the waits: it must provide C{IReactorProcess},
            C{IReactorTCP} and C{IReactorTime}.
        @param extra_args: added to every node's command line.
        """
        self._host = host
        self._reactor = reactor
        self.extra_args = tuple(extra_args)
        self.directory = tempfile.mkdtemp(prefix="raft3d-integration-")
        ports = free_ports(2 * nodes)
        raft = [f"127.0.0.1:{p}" for p in ports[:nodes]]
        self.specs = {
            f"node{i + 1}": NodeSpec(
                name=f"node{i + 1}",
                raft_addr=raft[i],
                http_addr=f"127.0.0.1:{ports[nodes + i]}",
                raft_dir=os.path.join(self.directory, f"node{i + 1}"),
                bootstrap=i == 0,
                peers=tuple(raft),
            )
            for i in range(nodes)
        }
        self._outputs: dict[str, list[ProcessOutput]] = {name: [] for name in self.specs}
        self._processes: dict[str, IProcessTransport] = {}
        self.failed = False
        self._pools: list[HTTPConnectionPool] = []
        self.http = self.new_client()
        host.addCleanup(self._cleanup)

    def new_client(self) -> HTTPClient:
        """
        Another HTTP client with a connection pool of its own (closed in
        cleanup), for a concurrent writer.
        """
        pool = HTTPConnectionPool(self._reactor)  # type: ignore[no-untyped-call]
        pool.retryAutomatically = False
        self._pools.append(pool)
        agent = Agent(self._reactor, pool=pool, connectTimeout=2)  # type: ignore[no-untyped-call]
        return HTTPClient(agent)

    # -- processes ------------------------------------------------------

    def add(self, spec: NodeSpec) -> None:
        """
        Add a node with its own spec (it is not in the others' peers).
        """
        self.specs[spec.name] = spec
        self._outputs[spec.name] = []

    def output(self, name: str, run: int = -1) -> ProcessOutput:
        """
        The output of node C{name}'s latest (or C{run}th, from 0) run.
        """
        return self._outputs[name][run]

    def start(self, name: str) -> None:
        """
        Start (or restart, with the very same command line) node C{name}.
        """
        argv = self.argv(name)
        outputs = self._outputs[name]
        output = ProcessOutput(os.path.join(self.directory, f"{name}.{len(outputs) + 1}.log"))
        outputs.append(output)
        self._processes[name] = self._reactor.spawnProcess(
            output, argv[0], argv, env=child_environment(), path=self.directory
        )

    def argv(self, name: str) -> list[str]:
        """
        Node C{name}'s whole command line: its spec's, then L{extra_args}.
        """
        return [*self.specs[name].argv(), *self.extra_args]

    def start_all(self) -> None:
        """
        Start every node of L{specs}.
        """
        for name in self.specs:
            self.start(name)

    def running(self, name: str) -> bool:
        """
        Whether node C{name}'s latest run is still going.
        """
        outputs = self._outputs[name]
        return bool(outputs) and outputs[-1].end is None

    def runs(self, name: str) -> int:
        """
        How many times node C{name} was started.
        """
        return len(self._outputs[name])

    def signal(self, name: str, signal: str | int) -> None:
        """
        Send C{signal} to node C{name}'s latest run: a name Twisted knows
        ("TERM", "KILL", "INT", "HUP", "STOP") or any signal number
        (C{signal.SIGCONT}...).
        """
        self._processes[name].signalProcess(signal)

    async def kill(self, name: str) -> ProcessEnd:
        """
        SIGKILL node C{name} and wait until it is gone.
        """
        output = self._outputs[name][-1]
        try:
            self._processes[name].signalProcess("KILL")
        except ProcessExitedAlready:
            pass
        return await output.when_ended()

    def _cleanup(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._stop_all())

    async def _stop_all(self) -> None:
        """
        SIGKILL every node still running and wait until they are gone,
        close every HTTP connection, and remove L{directory} unless
        L{failed}.
        """
        waits: list[Deferred[ProcessEnd]] = []
        for name, outputs in self._outputs.items():
            if outputs and outputs[-1].end is None:
                try:
                    self._processes[name].signalProcess("KILL")
                except ProcessExitedAlready:
                    pass
                waits.append(outputs[-1].when_ended())
        await DeferredList(waits)
        closing: list[Deferred[None]] = [
            pool.closeCachedConnections()  # type: ignore[no-untyped-call]
            for pool in self._pools
        ]
        await DeferredList(closing)
        if not self.failed:
            shutil.rmtree(self.directory, ignore_errors=True)

    def count_lines(self, text: str) -> int:
        """
        How many lines containing C{text} all the nodes' runs printed.
        """
        return sum(
            text in line
            for outputs in self._outputs.values()
            for output in outputs
            for line in output.lines
        )

    def tails(self) -> str:
        """
        The last lines of every node's output, for failure messages.
        """
        parts = [f"(the nodes' whole output and data are kept in {self.directory})"]
        for name, outputs in self._outputs.items():
            for run, output in enumerate(outputs, 1):
                state = output.end.describe() if output.end else "running"
                parts.append(f"--- {name} run {run} ({state}), last lines:")
                parts.extend(output.tail)
        return "\n".join(parts)

    # -- HTTP -----------------------------------------------------------

    def url(self, name: str, path: str) -> str:
        """
        The URL of C{path} on node C{name}'s HTTP address.
        """
        return f"http://{self.specs[name].http_addr}{path}"

    async def call(
        self,
        method: str,
        name: str,
        path: str,
        body: object | None = None,
        *,
        headers: Mapping[bytes, bytes] | None = None,
        http: HTTPClient | None = None,
        timeout: float = 15,
    ) -> tuple[int, Any, Any]:
        """
        One request to node C{name}: C{(status, decoded JSON body, headers)}.
        Connection errors and timeouts raise.

        @param headers: extra request headers (C{Idempotency-Key}...).
        @param http: the client to use (L{new_client}), by default the
            cluster's own.
        """
        data = json.dumps(body).encode() if body is not None else None
        sent: dict[bytes | str, list[bytes | str]] = {k: [v] for k, v in (headers or {}).items()}
        if data is not None:
            sent[b"Content-Type"] = [b"application/json"]
        response = await (http or self.http).request(
            method, self.url(name, path), data=data, headers=sent or None, timeout=timeout
        )
        content = await response.content()
        return response.code, json.loads(content) if content else None, response.headers

    async def ok(
        self, method: str, name: str, path: str, body: object | None = None, code: int = 200
    ) -> Any:
        """
        Like L{call}, failing the test with the node output unless the
        status is C{code}; returns the decoded body.
        """
        status, value, _ = await self.call(method, name, path, body)
        if status != code:
            self.fail(f"{method} {path} on {name}: expected {code}, got {status} {value}")
        return value

    async def status(self, name: str) -> dict[str, Any] | None:
        """
        Node C{name}'s C{/status}, or L{None} if it does not answer (yet).
        """
        try:
            code, value, _ = await self.call("GET", name, "/status")
        except Exception:
            return None
        return value if code == 200 and isinstance(value, dict) else None

    async def stale_list(self, name: str, kind: str) -> list[dict[str, Any]]:
        """
        Every object of C{kind} (C{printers}, C{filaments}, C{print_jobs})
        in node C{name}'s local copy (C{?consistency=stale}).
        """
        value: list[dict[str, Any]] = await self.ok(
            "GET", name, f"/api/v1/{kind}?consistency=stale"
        )
        return value

    # -- waiting --------------------------------------------------------

    async def wait_for(
        self, what: str, probe: Callable[[], Awaitable[Any]], deadline: float = DEADLINE
    ) -> Any:
        """
        Poll C{probe} every L{POLL} seconds until it returns something
        true, and return that; fail with the node output after C{deadline}
        seconds.
        """
        give_up = self._reactor.seconds() + deadline
        while True:
            value = await probe()
            if value:
                return value
            if self._reactor.seconds() > give_up:
                self.fail(f"timed out after {deadline:.0f} s waiting for {what}")
            await deferLater(self._reactor, POLL, lambda: None)

    async def leader(self, among: list[str] | None = None, other_than: str | None = None) -> str:
        """
        Wait until one of C{among} (default: every running node) says it
        leads, and every other running node of C{among} agrees.
        """

        async def probe() -> str | None:
            names = [n for n in (among or list(self.specs)) if self.running(n)]
            views = [await self.status(n) for n in names]
            if any(v is None for v in views):
                return None
            leaders = {v["leader_id"] for v in views if v is not None}
            led = [v["id"] for v in views if v is not None and v["is_leader"]]
            if len(leaders) == 1 and len(led) == 1 and led[0] != other_than:
                return str(led[0])
            return None

        result: str = await self.wait_for("a leader that every running node agrees on", probe)
        return result

    async def wait_up(self, name: str, deadline: float = DEADLINE) -> dict[str, Any]:
        """
        Wait until node C{name} answers C{/status}; fail at once, with its
        output, if its process ends first.  Returns its status.
        """
        output = self._outputs[name][-1]

        async def probe() -> dict[str, Any] | None:
            if output.end is not None:
                self.fail(f"{name} ended ({output.end.describe()}) instead of starting")
            return await self.status(name)

        result: dict[str, Any] = await self.wait_for(f"{name} to answer /status", probe, deadline)
        return result

    async def converged(self, deadline: float = DEADLINE) -> str:
        """
        Wait until every node is running, agrees on one leader, and has
        applied everything the leader has committed; return the leader.
        """

        async def probe() -> str | None:
            views = [await self.status(n) for n in self.specs]
            if any(v is None for v in views) or not all(self.running(n) for n in self.specs):
                return None
            led = [v for v in views if v is not None and v["is_leader"]]
            if len(led) != 1 or {v["leader_id"] for v in views if v is not None} != {led[0]["id"]}:
                return None
            commit = led[0]["commit_index"]
            if all(v is not None and v["applied_index"] == commit for v in views):
                return str(led[0]["id"])
            return None

        result: str = await self.wait_for(
            "every node to follow one leader and apply all it committed", probe, deadline
        )
        return result

    def fail(self, message: str) -> NoReturn:
        """
        Fail the test with the nodes' last lines, keeping their directory.
        """
        self.failed = True
        self._host.fail(f"{message}\n{self.tails()}")
