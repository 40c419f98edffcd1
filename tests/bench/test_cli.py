"""
Tests for the pure parts of L{bench._cli}.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from bench._cli import fdatasync_reference, parse_args, write_results


class ArgsTests(SynchronousTestCase):
    """
    The command line.
    """

    def test_defaults(self) -> None:
        """
        The full run: four connection counts, 10 s rows, 50,000 objects.
        """
        args = parse_args([])
        self.assertEqual(args.connections, [1, 16, 64, 256])
        self.assertEqual((args.duration, args.scale, args.profile_seconds), (10, 50_000, 20))
        self.assertEqual(args.workloads, ["create", "read", "stale", "stale_writes", "mixed"])

    def test_quick(self) -> None:
        """
        C{--quick} shortens everything; explicit values still win.
        """
        args = parse_args(["--quick", "--duration", "3"])
        self.assertEqual(args.connections, [1, 16])
        self.assertEqual((args.duration, args.scale, args.warmup), (3, 2000, 1))

    def test_lists(self) -> None:
        """
        Comma-separated lists are parsed; unknown names are refused.
        """
        args = parse_args(["--connections", "2, 8", "--phases", "etcd,raft3d", "--modes", "leader"])
        self.assertEqual(
            (args.connections, args.phases, args.modes), ([2, 8], ["etcd", "raft3d"], ["leader"])
        )
        self.assertRaises(SystemExit, parse_args, ["--workloads", "create,nope"])
        self.assertRaises(SystemExit, parse_args, ["--connections", "0"])


class OutputTests(SynchronousTestCase):
    """
    Results on disk.
    """

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, self.dir)

    def test_write_results(self) -> None:
        """
        JSON and Markdown go to the run's directory and the Markdown also to
        C{latest.md}.
        """
        out = os.path.join(self.dir, "20260101-000000")
        text = write_results({"timestamp": "20260101-000000", "rows": []}, out, self.dir)
        self.assertIn("# Raft3D benchmark 20260101-000000", text)
        self.assertEqual(sorted(os.listdir(out)), ["results.json", "results.md"])
        with open(os.path.join(self.dir, "latest.md")) as f:
            self.assertEqual(f.read(), text)

    def test_fdatasync_reference(self) -> None:
        """
        The fdatasync loop reports its rate and latencies and leaves no
        file behind.
        """
        result = fdatasync_reference(self.dir, 0.05)
        self.assertGreater(result["ops"], 0)
        self.assertGreater(result["latency_ms"]["p50"], 0)
        self.assertEqual(os.listdir(self.dir), [])
