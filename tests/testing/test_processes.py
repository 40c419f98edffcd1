# -*- test-case-name: tests.testing.test_processes -*-
"""
Tests for L{raft3d.testing._processes}, the real-process harness, without
real processes: a L{MemoryReactorClock} that records C{spawnProcess} stands
in for the reactor the harness is handed, and the tests end the "processes"
themselves.  The integration tests and the nemesis runner exercise it with
real C{twistd} nodes.
"""

from __future__ import annotations

import os
import shutil
from typing import Any, Callable, NoReturn

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from raft3d.devcluster import ProcessEnd, child_environment
from raft3d.testing import (
    POLL,
    TAIL_LINES,
    ProcessCluster,
    ProcessOutput,
    free_ports,
)


class FakeProcess:
    """
    What C{spawnProcess} returns: records signals; KILL ends it (with the
    protocol told, as the reactor would) unless it has ended already.
    """

    def __init__(self, protocol: ProcessOutput) -> None:
        self.protocol = protocol
        self.signals: list[str | int] = []

    def signalProcess(self, signal: str | int) -> None:
        if self.protocol.end is not None:
            raise ProcessExitedAlready()
        self.signals.append(signal)
        if signal == "KILL":
            self.protocol.processEnded(Failure(ProcessTerminated(signal=9)))


class ProcessReactor(MemoryReactorClock):
    """
    A memory reactor that also "spawns" processes, recording each call.
    """

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []

    def spawnProcess(  # type: ignore[override]
        self,
        processProtocol: ProcessOutput,
        executable: str,
        args: list[str],
        env: dict[str, str] | None = None,
        path: str | None = None,
    ) -> FakeProcess:
        process = FakeProcess(processProtocol)
        self.spawned.append(
            {"executable": executable, "args": args, "env": env, "path": path, "process": process}
        )
        return process


class Host:
    """
    The test case the harness expects: keeps the cleanups to run them when
    the test says, and raises on failure.
    """

    def __init__(self) -> None:
        self.cleanups: list[Callable[[], object]] = []

    def addCleanup(self, f: Callable[[], object], /) -> None:
        self.cleanups.append(f)

    def fail(self, message: str, /) -> NoReturn:
        raise AssertionError(message)


class ProcessOutputTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.path = self.mktemp()

    def test_lines_file_and_tail(self) -> None:
        """
        Output is kept whole in the file and as lines (a line split across
        reads is joined), the tail keeps only the last L{TAIL_LINES}, and an
        unterminated last line is kept when the process ends.
        """
        output = ProcessOutput(self.path)
        output.childDataReceived(1, b"one\ntw")
        output.childDataReceived(2, b"o\n")
        self.assertEqual(output.lines, ["one", "two"])
        output.childDataReceived(1, b"".join(b"x%d\n" % i for i in range(TAIL_LINES)) + b"last")
        output.processEnded(Failure(ProcessDone(0)))
        self.assertEqual(len(output.tail), TAIL_LINES)
        self.assertEqual(output.tail[-1], "last")
        self.assertEqual(output.lines[-1], "last")
        self.assertEqual(len(output.lines), TAIL_LINES + 3)
        with open(self.path, "rb") as f:
            self.assertTrue(f.read().startswith(b"one\ntwo\nx0\n"))

    def test_when_ended(self) -> None:
        """
        L{ProcessOutput.when_ended} fires with how the process ended, for
        waiters from before and after the end.
        """
        output = ProcessOutput(self.path)
        before = output.when_ended()
        self.assertNoResult(before)
        output.processEnded(Failure(ProcessTerminated(exitCode=3)))
        self.assertEqual(self.successResultOf(before), ProcessEnd(3, None))
        self.assertEqual(self.successResultOf(output.when_ended()), ProcessEnd(3, None))


class FreePortsTests(SynchronousTestCase):
    def test_distinct(self) -> None:
        """
        L{free_ports} gives as many distinct ports as asked for.
        """
        ports = free_ports(6)
        self.assertEqual(len(set(ports)), 6)
        self.assertTrue(all(0 < p < 65536 for p in ports))


class ProcessClusterTests(SynchronousTestCase):
    def cluster(self, nodes: int = 3, extra: tuple[str, ...] = ()) -> ProcessCluster:
        self.reactor = ProcessReactor()
        self.host = Host()
        cluster = ProcessCluster(self.host, self.reactor, nodes=nodes, extra_args=extra)
        self.addCleanup(shutil.rmtree, cluster.directory, True)
        return cluster

    def cleanup(self) -> None:
        for f in self.host.cleanups:
            result = f()
            if isinstance(result, Deferred):
                self.successResultOf(result)

    def test_specs(self) -> None:
        """
        Like the seed README's cluster: node1 bootstraps, every node knows
        every raft address, each has its own ports and directory.
        """
        c = self.cluster(nodes=3)
        self.assertEqual(sorted(c.specs), ["node1", "node2", "node3"])
        self.assertEqual([s.bootstrap for s in c.specs.values()], [True, False, False])
        raft = tuple(s.raft_addr for s in c.specs.values())
        self.assertEqual({s.peers for s in c.specs.values()}, {raft})
        addresses = [s.raft_addr for s in c.specs.values()] + [
            s.http_addr for s in c.specs.values()
        ]
        self.assertEqual(len(set(addresses)), 6)
        self.assertTrue(all(a.startswith("127.0.0.1:") for a in addresses))
        self.assertEqual(c.specs["node2"].raft_dir, os.path.join(c.directory, "node2"))

    def test_start_with_injected_reactor(self) -> None:
        """
        Starting a node spawns, on the reactor the cluster was handed, its
        spec's command line followed by the extra flags, in the cluster's
        directory with the child environment; a restart uses the very same
        command line and a new output file.
        """
        c = self.cluster(nodes=1, extra=("--snapshot-threshold", "5"))
        c.start("node1")
        (spawned,) = self.reactor.spawned
        argv = [*c.specs["node1"].argv(), "--snapshot-threshold", "5"]
        self.assertEqual(spawned["args"], argv)
        self.assertEqual(spawned["executable"], argv[0])
        self.assertEqual(spawned["path"], c.directory)
        self.assertEqual(spawned["env"], child_environment())
        self.assertTrue(c.running("node1"))
        self.assertEqual(c.runs("node1"), 1)
        self.assertEqual(self.successResultOf(Deferred.fromCoroutine(c.kill("node1"))).signal, 9)
        self.assertFalse(c.running("node1"))
        c.start("node1")
        self.assertEqual(self.reactor.spawned[1]["args"], argv)
        self.assertEqual(c.runs("node1"), 2)
        self.assertTrue(os.path.exists(os.path.join(c.directory, "node1.2.log")))

    def test_signal_by_name_or_number(self) -> None:
        """
        Signals go to the node's latest run, by name or by number.
        """
        c = self.cluster(nodes=1)
        c.start("node1")
        c.signal("node1", "TERM")
        c.signal("node1", 19)
        self.assertEqual(self.reactor.spawned[0]["process"].signals, ["TERM", 19])

    def test_cleanup(self) -> None:
        """
        Cleanup SIGKILLs every node still running (not those that ended),
        waits for them, and removes the directory.
        """
        c = self.cluster(nodes=2)
        c.start_all()
        c.output("node2").processEnded(Failure(ProcessDone(0)))
        self.cleanup()
        first, second = (s["process"] for s in self.reactor.spawned)
        self.assertEqual((first.signals, second.signals), (["KILL"], []))
        self.assertFalse(os.path.exists(c.directory))

    def test_wait_for(self) -> None:
        """
        L{ProcessCluster.wait_for} polls every L{POLL} seconds of the
        injected reactor's time and returns the first true value.
        """
        c = self.cluster(nodes=1)
        answers = [None, 0, "yes"]

        async def probe() -> object:
            return answers.pop(0)

        d = Deferred.fromCoroutine(c.wait_for("an answer", probe))
        self.assertNoResult(d)
        self.reactor.advance(POLL)
        self.assertNoResult(d)
        self.reactor.advance(POLL)
        self.assertEqual(self.successResultOf(d), "yes")

    def test_wait_for_fails_with_tails(self) -> None:
        """
        A condition not met by the deadline fails through the host with the
        nodes' last lines, and the directory is kept for a post-mortem.
        """
        c = self.cluster(nodes=1)
        c.start("node1")
        c.output("node1").childDataReceived(1, b"something odd\n")

        async def probe() -> object:
            return None

        d = Deferred.fromCoroutine(c.wait_for("never", probe, deadline=1.0))
        for _ in range(12):
            self.reactor.advance(POLL)
        failure = self.failureResultOf(d, AssertionError)
        message = str(failure.value)
        self.assertIn("timed out after 1 s waiting for never", message)
        self.assertIn("--- node1 run 1 (running), last lines:\nsomething odd", message)
        self.assertTrue(c.failed)
        self.cleanup()
        self.assertTrue(os.path.isdir(c.directory))
