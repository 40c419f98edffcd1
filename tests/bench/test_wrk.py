"""
Tests for L{bench._wrk}.
"""

from __future__ import annotations

import json
import os
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bench._wrk import SCRIPT, WRITERS, Runner, Target, row_targets, row_writers, wrk_argv


class ArgvTests(SynchronousTestCase):
    """
    The wrk command line.
    """

    def test_argv(self) -> None:
        """
        Threads never exceed connections; the Lua arguments follow C{--}.
        """
        argv = wrk_argv(
            "wrk",
            Target("127.0.0.1:8000", 1),
            system="raft3d",
            workload="read",
            tag="t",
            duration=10,
            threads=4,
            timeout=10,
            fixture=["abc"],
        )
        self.assertEqual(
            argv,
            [
                "wrk",
                "-t",
                "1",
                "-c",
                "1",
                "-d",
                "10s",
                "--timeout",
                "10s",
                "-s",
                SCRIPT,
                "http://127.0.0.1:8000/",
                "--",
                "raft3d",
                "read",
                "t",
                "0",
                "abc",
            ],
        )

    def test_loopback_only(self) -> None:
        """
        Any host but the loopback is refused.
        """
        self.assertRaises(
            ValueError,
            wrk_argv,
            "wrk",
            Target("10.0.0.1:80", 1),
            system="etcd",
            workload="create",
            tag="t",
            duration=1,
            threads=1,
            timeout=1,
        )

    def test_script_exists(self) -> None:
        """
        The Lua script ships next to the module.
        """
        self.assertTrue(os.path.isfile(SCRIPT))


class RowTargetsTests(SynchronousTestCase):
    def test_modes(self) -> None:
        """
        A leader row puts every connection on the leader; a spread row
        splits them over the members, or cannot be run with fewer
        connections than members.
        """
        addrs = ["a:1", "b:2", "c:3"]
        self.assertEqual(row_targets(addrs, 1, "leader", 16), [Target("b:2", 16)])
        self.assertEqual(
            row_targets(addrs, 1, "spread", 16),
            [Target("a:1", 6), Target("b:2", 5), Target("c:3", 5)],
        )
        self.assertIsNone(row_targets(addrs, 0, "spread", 1))


class RowWritersTests(SynchronousTestCase):
    def test_writers(self) -> None:
        """
        Only a C{stale_writes} row has writers: L{WRITERS} connections on
        the leader.
        """
        addrs = ["a:1", "b:2", "c:3"]
        self.assertEqual(row_writers(addrs, 2, "stale_writes"), [Target("c:3", WRITERS)])
        self.assertEqual(row_writers(addrs, 2, "stale"), [])


class _FakeSupervisor:
    """
    Spawns nothing: each "wrk" reports as many requests as its
    connection count, so the results say whose they are.
    """

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def spawn(self, name: str, argv: list[str]) -> list[str]:
        self.argvs.append(argv)
        return argv

    def wait_output(self, child: list[str], timeout: float) -> tuple[int, str]:
        raw = {
            "duration_us": 1_000_000,
            "requests": int(child[child.index("-c") + 1]),
            "percentiles_us": [[50, 10]],
        }
        return 0, "BENCH_JSON " + json.dumps(raw) + "\n"


class RunBesideTests(SynchronousTestCase):
    def test_beside(self) -> None:
        """
        The writers start first, run the create workload for the same time
        and come back as the third result; without writers it is L{None}.
        """
        supervisor = _FakeSupervisor()
        runner = Runner(supervisor)  # type: ignore[arg-type]
        kw: dict[str, Any] = {"system": "raft3d", "tag": "t", "duration": 3, "fixture": ["p"]}
        result, parts, writes = runner.run_beside(
            [Target("127.0.0.1:1", 16)],
            [Target("127.0.0.1:2", 4)],
            workload="stale_writes",
            **kw,
        )
        self.assertEqual((result.requests, len(parts)), (16, 1))
        assert writes is not None
        self.assertEqual(writes.requests, 4)
        writer, reader = supervisor.argvs
        self.assertEqual(writer[writer.index("--") + 1 :], ["raft3d", "create", "t-w-p0", "0"])
        self.assertEqual(
            reader[reader.index("--") + 1 :], ["raft3d", "stale_writes", "t-p0", "0", "p"]
        )
        self.assertEqual(writer[writer.index("-d") + 1], "3s")
        _, _, none = runner.run_beside([Target("127.0.0.1:1", 1)], [], workload="stale", **kw)
        self.assertIsNone(none)
