"""
Tests for L{bench._wrk}.
"""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from bench._wrk import SCRIPT, Target, row_targets, wrk_argv


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
