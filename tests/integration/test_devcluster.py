"""
The quick-start runner for real: C{python -m raft3d.devcluster} starts
three C{twistd} nodes, reports the leader, and stops them all on SIGTERM.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import sys
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from raft3d.devcluster import child_environment
from raft3d.testing import DEADLINE, POLL, ProcessOutput


def free_run(length: int) -> int:
    """
    The first of C{length} consecutive ports that are free on 127.0.0.1.
    """
    for _ in range(100):
        base = random.randrange(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + length):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no run of free ports found")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class DevClusterTests(TestCase):
    timeout = 120

    def test_quick_start_cluster(self) -> Deferred[None]:
        """
        The runner starts three nodes that elect a leader, prints the
        leader and the URLs, prefixes the nodes' lines with
        their names, and on SIGTERM stops every node cleanly and exits with
        status 0, leaving no node process behind.
        """
        return Deferred.fromCoroutine(self.quick_start())

    async def quick_start(self) -> None:
        directory = tempfile.mkdtemp(prefix="raft3d-devcluster-")
        base = free_run(6)
        output = ProcessOutput(os.path.join(directory, "devcluster.log"))
        argv = [
            sys.executable,
            "-P",
            "-m",
            "raft3d.devcluster",
            "--host",
            "127.0.0.1",
            "--raft-port",
            str(base),
            "--http-port",
            str(base + 3),
            "--base-dir",
            os.path.join(directory, "data"),
        ]
        process = reactor.spawnProcess(
            output, sys.executable, argv, env=child_environment(), path=directory
        )
        kept = False

        def kill_all() -> Deferred[object] | None:
            for pid in self.pids(output.lines):
                if alive(pid):
                    os.kill(pid, 9)
            if output.end is None:
                process.signalProcess("KILL")
            if not kept:
                shutil.rmtree(directory, ignore_errors=True)
            return None if output.end is not None else output.when_ended()  # type: ignore[return-value]

        self.addCleanup(kill_all)

        async def wait_for(pattern: str) -> None:
            give_up = reactor.seconds() + DEADLINE
            while not any(re.search(pattern, line) for line in output.lines):
                if reactor.seconds() > give_up or output.end is not None:
                    nonlocal kept
                    kept = True
                    self.fail(
                        f"no line matching {pattern!r} (kept {directory}):\n"
                        + "\n".join(output.tail)
                    )
                await deferLater(reactor, POLL, lambda: None)

        await wait_for(r"^devcluster\| Leader: node\d in term \d+ \(http://127\.0\.0\.1:")
        await wait_for(r"^devcluster\| Nodes: node1 http://127\.0\.0\.1:\d+  node2 ")
        await wait_for(r"^node2     \| .*node2: leader is node\d")
        pids = self.pids(output.lines)
        self.assertEqual(len(pids), 3)
        process.signalProcess("TERM")
        end = await output.when_ended()
        self.assertEqual(end.describe(), "exited with status 0", "\n".join(output.tail))
        text = "\n".join(output.lines)
        for name in ("node1", "node2", "node3"):
            self.assertIn(f"devcluster| {name} ended by SIGTERM", text)
            self.assertRegex(text, rf"(?m)^{name} +\| .*Main loop terminated")
        self.assertEqual([pid for pid in pids if alive(pid)], [])

    @staticmethod
    def pids(lines: list[str]) -> set[int]:
        return {
            int(m.group(1)) for line in lines if (m := re.search(r"started \(pid (\d+)\)", line))
        }
