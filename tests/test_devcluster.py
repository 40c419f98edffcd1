"""
Tests for L{raft3d.devcluster}, the local cluster runner, with fake
processes and a fake C{/status} on a L{Clock}.  The real thing is run by
C{tests/integration/test_devcluster.py}.
"""

from __future__ import annotations

import io
import os
import signal
import sys
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from raft3d import devcluster
from raft3d.devcluster import (
    Console,
    DevCluster,
    LeaderWatcher,
    NodeOutput,
    Options,
    ProcessEnd,
    child_environment,
    cluster_specs,
    source_root,
)


class SpecTests(SynchronousTestCase):
    def test_seed_layout(self) -> None:
        """
        Three nodes get the seed README's ports, data directories, peers
        and bootstrap flag, and the README's command line.
        """
        specs = cluster_specs()
        self.assertEqual([s.name for s in specs], ["node1", "node2", "node3"])
        self.assertEqual(
            specs[1].shell_command(),
            "twistd -n raft3d --id node2 --raft-addr localhost:7001 --raft-dir data/node2"
            " --http-addr localhost:8001 --peers localhost:7000,localhost:7001,localhost:7002",
        )
        self.assertIn("--bootstrap", specs[0].raft3d_args())
        self.assertNotIn("--bootstrap", specs[2].raft3d_args())
        self.assertEqual(specs[2].url, "http://localhost:8002")

    def test_options(self) -> None:
        """
        Node count, base directory, host and base ports are honoured.
        """
        specs = cluster_specs(5, host="127.0.0.1", raft_port=9000, http_port=9100, base_dir="d")
        self.assertEqual(specs[4].raft_addr, "127.0.0.1:9004")
        self.assertEqual(specs[4].http_addr, "127.0.0.1:9104")
        self.assertEqual(specs[4].raft_dir, os.path.join("d", "node5"))
        self.assertEqual(len(specs[4].peers), 5)

    def test_argv(self) -> None:
        """
        A node runs C{twistd --nodaemon --pidfile= raft3d ...} with this
        interpreter, C{-P} (no current directory on the path), in its own
        process group when asked.
        """
        spec = cluster_specs()[0]
        argv = spec.argv()
        self.assertEqual(argv[:3], [sys.executable, "-P", "-c"])
        self.assertIn("twisted.scripts.twistd", argv[3])
        self.assertNotIn("setpgrp", argv[3])
        self.assertEqual(argv[4:7], ["--nodaemon", "--pidfile=", "raft3d"])
        self.assertEqual(argv[7:], spec.raft3d_args())
        self.assertIn("os.setpgrp()", spec.argv(own_group=True)[3])

    def test_environment(self) -> None:
        """
        Children import the same C{raft3d} as this process, and write
        unbuffered.
        """
        env = child_environment({"PYTHONPATH": "/elsewhere", "HOME": "/h"})
        self.assertEqual(env["PYTHONPATH"], os.pathsep.join([source_root(), "/elsewhere"]))
        self.assertEqual(env["PYTHONUNBUFFERED"], "1")
        self.assertEqual(env["HOME"], "/h")
        self.assertTrue(os.path.isdir(os.path.join(source_root(), "raft3d")))


class OutputTests(SynchronousTestCase):
    def test_lines(self) -> None:
        """
        Output is passed on line by line, whatever the chunking, from both
        stdout and stderr; an unfinished last line is passed at the end.
        """
        lines: list[str] = []
        out = NodeOutput(lines.append)
        out.childDataReceived(1, b"one\ntw")
        out.childDataReceived(2, b"err\r\n")
        out.childDataReceived(1, b"o\nthr")
        ended = out.when_ended()
        self.assertNoResult(ended)
        out.processEnded(Failure(ProcessDone(0)))
        self.assertEqual(lines, ["one", "err", "two", "thr"])
        self.assertEqual(self.successResultOf(ended), ProcessEnd(0, None))
        self.assertEqual(self.successResultOf(out.when_ended()), ProcessEnd(0, None))

    def test_process_end(self) -> None:
        """
        Exit statuses and signals are described for people.
        """
        killed = ProcessEnd.from_reason(Failure(ProcessTerminated(signal=signal.SIGKILL)))
        self.assertEqual(killed.describe(), "ended by SIGKILL")
        failed = ProcessEnd.from_reason(Failure(ProcessTerminated(exitCode=78)))
        self.assertEqual(failed.describe(), "exited with status 78")
        self.assertEqual(ProcessEnd(0, None).describe(), "exited with status 0")

    def test_console(self) -> None:
        """
        Lines are prefixed with their source, padded; colours only when
        asked for.
        """
        plain = io.StringIO()
        Console(plain, colour=False).line("node1", 0, "hello")
        self.assertEqual(plain.getvalue(), "node1     | hello\n")
        coloured = io.StringIO()
        console = Console(coloured, colour=True)
        console.line("node2", 1, "x")
        console.say("a\nb")
        self.assertEqual(
            coloured.getvalue(),
            "\x1b[35mnode2     |\x1b[0m x\n"
            "\x1b[1mdevcluster|\x1b[0m a\n"
            "\x1b[1mdevcluster|\x1b[0m b\n",
        )


class WatcherTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.answers: dict[str, dict[str, Any] | None] = {}
        self.changes: list[tuple[str | None, int]] = []
        self.watcher = LeaderWatcher(
            self.clock,
            lambda url: succeed(self.answers.get(url)),
            ["http://a", "http://b"],
            lambda leader, term: self.changes.append((leader, term)),
        )

    def test_reports_changes(self) -> None:
        """
        Nothing is reported until a leader is known; then each change of
        leader, and its loss, is reported once.
        """
        self.watcher.start()
        self.clock.advance(0.5)
        self.assertEqual(self.changes, [])
        self.answers["http://a/status"] = {"id": "a", "is_leader": True, "term": 2}
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.changes, [("a", 2)])
        self.answers["http://a/status"] = None
        self.clock.advance(0.5)
        self.answers["http://b/status"] = {"id": "b", "is_leader": True, "term": 3}
        self.clock.advance(0.5)
        self.assertEqual(self.changes, [("a", 2), (None, -1), ("b", 3)])

    def test_highest_term_wins(self) -> None:
        """
        If two nodes claim to lead (an old leader that has not heard of the
        new term yet), the one with the higher term is the leader.
        """
        self.answers["http://a/status"] = {"id": "a", "is_leader": True, "term": 2}
        self.answers["http://b/status"] = {"id": "b", "is_leader": True, "term": 3}
        self.watcher.start()
        self.assertEqual(self.changes, [("b", 3)])

    def test_stop(self) -> None:
        """
        A stopped watcher polls no more.
        """
        self.watcher.start()
        self.watcher.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _FakeProcess:
    def __init__(self, protocol: NodeOutput, pid: int) -> None:
        self.protocol = protocol
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        if self.protocol.ended:
            raise ProcessExitedAlready()
        self.signals.append(name)

    def end(self, reason: Failure) -> None:
        self.protocol.processEnded(reason)


class _FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[list[str], dict[str, str], _FakeProcess]] = []

    def spawnProcess(self, protocol: NodeOutput, executable: str, args: list[str], env: Any) -> Any:
        process = _FakeProcess(protocol, 100 + len(self.spawned))
        self.spawned.append((args, env, process))
        protocol.makeConnection(process)  # type: ignore[arg-type]
        return process


class DevClusterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _FakeReactor()
        self.out = io.StringIO()
        self.cluster = DevCluster(
            self.reactor,
            cluster_specs(),
            Console(self.out, colour=False),
            lambda url: succeed(None),
            grace=5,
        )
        self.cluster.start()

    def process(self, index: int) -> _FakeProcess:
        return self.reactor.spawned[index][2]

    def test_start(self) -> None:
        """
        Every node is spawned with its command line in its own process
        group, and the commands are printed first.
        """
        self.assertEqual(len(self.reactor.spawned), 3)
        for (args, env, _), spec in zip(self.reactor.spawned, cluster_specs(), strict=True):
            self.assertEqual(args, spec.argv(own_group=True))
            self.assertEqual(env["PYTHONUNBUFFERED"], "1")
        text = self.out.getvalue()
        self.assertIn(cluster_specs()[0].shell_command(), text)
        self.assertIn("node3 started (pid 102)", text)

    def test_output_prefixed(self) -> None:
        """
        A node's lines appear prefixed with its name.
        """
        self.process(1).protocol.childDataReceived(1, b"hello\n")
        self.assertIn("node2     | hello\n", self.out.getvalue())

    def test_leader_announced(self) -> None:
        """
        The first leader is printed with every node's URL and curl
        examples; later changes with the new leader only.
        """
        self.cluster._leader("node2", 4)
        text = self.out.getvalue()
        self.assertIn("Leader: node2 in term 4 (http://localhost:8001)", text)
        self.assertIn("node3 http://localhost:8002", text)
        self.assertIn("curl -X POST http://localhost:8000/api/v1/printers", text)
        self.cluster._leader(None, -1)
        self.cluster._leader("node3", 5)
        text = self.out.getvalue()
        self.assertIn("No leader right now", text)
        self.assertIn("Leader: node3 in term 5", text)
        self.assertEqual(text.count("Try: curl"), 1)

    def test_commands(self) -> None:
        """
        C{kill} sends SIGKILL, C{stop} SIGTERM, C{start} respawns a node
        that has ended with its same command line; mistakes are explained.
        """
        self.cluster.command("kill node1")
        self.assertEqual(self.process(0).signals, ["KILL"])
        self.cluster.command("stop node2")
        self.assertEqual(self.process(1).signals, ["TERM"])
        self.cluster.command("start node3")
        self.assertIn("node3 is already running", self.out.getvalue())
        self.process(0).end(Failure(ProcessTerminated(signal=9)))
        self.assertIn("node1 ended by SIGKILL", self.out.getvalue())
        self.cluster.command("kill node1")
        self.assertIn("node1 is not running", self.out.getvalue())
        self.cluster.command("start node1")
        self.assertEqual(len(self.reactor.spawned), 4)
        self.assertEqual(self.reactor.spawned[3][0], cluster_specs()[0].argv(own_group=True))
        self.cluster.command("kill node9")
        self.assertIn("No node node9; nodes: node1, node2, node3", self.out.getvalue())
        self.cluster.command("dance")
        self.assertIn("Unknown command 'dance'", self.out.getvalue())
        self.cluster.command("")
        self.cluster.command("help")
        self.assertIn("start NODE", self.out.getvalue())
        self.cluster.command("status")
        self.assertIn("node1: running, pid 103, http://localhost:8000", self.out.getvalue())
        self.assertIn("Leader: none known", self.out.getvalue())
        self.assertNoResult(self.cluster.done)

    def test_stop_terminates_then_kills(self) -> None:
        """
        Stopping the cluster sends SIGTERM to every node, SIGKILL to those
        still running after the grace period, and finishes once all have
        ended.
        """
        d = self.cluster.stop()
        for i in range(3):
            self.assertEqual(self.process(i).signals, ["TERM"])
        self.process(0).end(Failure(ProcessTerminated(signal=15)))
        self.process(1).end(Failure(ProcessTerminated(signal=15)))
        self.reactor.advance(5)
        self.assertEqual(self.process(2).signals, ["TERM", "KILL"])
        self.assertEqual(self.process(0).signals, ["TERM"])
        self.assertNoResult(d)
        self.process(2).end(Failure(ProcessTerminated(signal=9)))
        self.successResultOf(d)
        self.assertIsNone(self.successResultOf(self.cluster.done))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_every_node_died(self) -> None:
        """
        If every node exits on its own (say, ports in use), the cluster
        gives up with exit status 1.
        """
        for i in range(3):
            self.process(i).end(Failure(ProcessTerminated(exitCode=1)))
        failure = self.failureResultOf(self.cluster.done, SystemExit)
        self.assertEqual(failure.value.code, 1)
        self.assertIn("Every node has exited", self.out.getvalue())

    def test_killed_nodes_do_not_end_cluster(self) -> None:
        """
        Nodes killed on purpose with a command do not end the cluster.
        """
        for i in range(3):
            self.cluster.command(f"kill node{i + 1}")
            self.process(i).end(Failure(ProcessTerminated(signal=9)))
        self.assertNoResult(self.cluster.done)


class OptionsTests(SynchronousTestCase):
    def test_defaults_and_limits(self) -> None:
        """
        Three nodes in C{data} by default; between 1 and 9 nodes allowed.
        """
        options = Options()
        options.parseOptions([])
        self.assertEqual((options["nodes"], options["base-dir"], options["fresh"]), (3, "data", 0))
        self.assertRaises(UsageError, Options().parseOptions, ["--nodes", "0"])
        self.assertRaises(UsageError, Options().parseOptions, ["--nodes", "10"])

    def test_bad_options_exit(self) -> None:
        """
        Bad options print the usage and exit with status 2.
        """
        self.patch(sys, "stderr", io.StringIO())
        e = self.assertRaises(SystemExit, devcluster.run, _FakeReactor(), ["--nodes", "x"])
        self.assertEqual(e.code, 2)
