"""
Tests for the parsers of L{bench._scale}.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import cbor2
from twisted.trial.unittest import SynchronousTestCase

from bench._scale import (
    SnapshotEvent,
    dir_sizes,
    installed_snapshots,
    parse_proc_status,
    parse_snapshot_lines,
    snapshot_costs,
    split_objects,
)
from raft3d.farm import FarmState
from raft3d.raft import Configuration, SnapshotMeta
from raft3d.storage._snapshots import encode_snapshot, snapshot_name

LOG = """\
2026-11-28T22:23:49+0000 [raft3d.raft._node.RaftNode#info] node1: became Leader in term 2
2026-11-28T22:24:49+0000 [raft3d.raft._node.RaftNode#info] node1: snapshot at index 8192 (1048576 bytes, 0.250s)
2026-11-28T22:25:49+0000 [raft3d.raft._node.RaftNode#info] node1: snapshot at index 16384 (2097152 bytes, 1.500s)
2026-11-28T22:26:49+0000 [raft3d.raft._node.RaftNode#info] node2: installed snapshot at index 16384 from the leader
"""


class ParserTests(SynchronousTestCase):
    """
    Node logs and C{/proc} are read.
    """

    def test_snapshot_lines(self) -> None:
        """
        Every "snapshot at index" line becomes an event with its size and
        write time.
        """
        self.assertEqual(
            parse_snapshot_lines(LOG),
            [
                SnapshotEvent("node1", 8192, 1048576, 0.25),
                SnapshotEvent("node1", 16384, 2097152, 1.5),
            ],
        )

    def test_installed(self) -> None:
        """
        Snapshots installed from the leader are found by index.
        """
        self.assertEqual(installed_snapshots(LOG), [16384])

    def test_proc_status(self) -> None:
        """
        The C{Vm*} lines are read in KiB; others are ignored.
        """
        text = "Name:\tpython\nVmPeak:\t  200 kB\nVmRSS:\t  123 kB\nThreads:\t3\n"
        self.assertEqual(parse_proc_status(text), {"VmPeak": 200, "VmRSS": 123})

    def test_split_objects(self) -> None:
        """
        20% printers, 20% filaments, the rest jobs; never no printer or
        filament.
        """
        self.assertEqual(split_objects(1_000_000), (200_000, 200_000, 600_000))
        self.assertEqual(split_objects(2), (1, 1, 0))

    def test_dir_sizes(self) -> None:
        """
        Snapshot files, log segments and the rest are added up separately.
        """
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        for name, size in (("a.snap", 3), ("b.snap", 4), ("log-1.seg", 10), ("metadata.cbor", 1)):
            with open(os.path.join(d, name), "wb") as f:
                f.write(b"x" * size)
        self.assertEqual(
            dir_sizes(d), {"snapshots": 7, "segments": 10, "other": 1, "snapshot_files": 2}
        )
        self.assertEqual(dir_sizes(os.path.join(d, "missing"))["snapshots"], 0)


class SnapshotCostTests(SynchronousTestCase):
    """
    The newest snapshot file of a node is restored and encoded again.
    """

    def test_costs(self) -> None:
        """
        The newest file is found and timed; a directory without snapshots
        gives nothing.
        """
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        self.assertEqual(snapshot_costs(d), {})
        data = cbor2.dumps({"v": 1, "sm": FarmState().snapshot(), "sessions": []})
        for index in (5, 9):
            meta = SnapshotMeta(index, 1, Configuration())
            with open(os.path.join(d, snapshot_name(meta)), "wb") as f:
                f.write(encode_snapshot(meta, data))
        costs = snapshot_costs(d)
        self.assertEqual(costs["index"], 9)
        self.assertEqual(
            costs["file_bytes"], len(encode_snapshot(SnapshotMeta(9, 1, Configuration()), data))
        )
        self.assertGreaterEqual(costs["encode_s"], 0)
