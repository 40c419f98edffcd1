"""
Tests for L{bench._logs}.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from bench._logs import scan_etcd, scan_raft3d

RAFT3D = """\
2026-11-28T22:23:51+0000 [raft3d.raft._node.RaftNode#info] node1: became Leader in term 2
2026-11-28T22:23:52+0000 [raft3d.transport#warn] Cannot reach node2 at 127.0.0.1:4001: refused; retrying
2026-11-28T22:23:53+0000 [raft3d.transport#warn] Cannot reach node2 at 127.0.0.1:4001: refused; retrying
2026-11-28T22:24:06+0000 [_GenericHTTPChannelProtocol,26,127.0.0.1] Unhandled Error Processing Request.
\tTraceback (most recent call last):
\t  File "x.py", line 1, in f
\traft3d.api._errors.APIError: the leader node1 cannot be reached
2026-11-28T22:24:07+0000 [raft3d.raft._node.RaftNode#error] node1: snapshot failed: disk
"""


class ScanTests(SynchronousTestCase):
    """
    Logs are scanned for errors, warnings, tracebacks and elections.
    """

    def test_raft3d(self) -> None:
        """
        Error-level and "Unhandled" lines are errors, tracebacks are
        counted once, warnings grouped with their numbers masked.
        """
        scan = scan_raft3d(RAFT3D)
        self.assertEqual(
            (scan.lines, scan.errors, scan.warnings, scan.tracebacks, scan.leader_changes),
            (5, 2, 2, 1, 1),
        )
        self.assertIn(("[warn] Cannot reach nodeN at N:N: refused; retrying", 2), scan.examples)
        self.assertIn(("raft3d.transport", 2), scan.noisiest)
        self.assertEqual(scan.to_json()["tracebacks"], 1)

    def test_etcd(self) -> None:
        """
        zap JSON lines are read by level; other lines are skipped.
        """
        lines = [
            json.dumps(
                {"level": "warn", "caller": "etcdserver/raft.go:1", "msg": "slow fdatasync"}
            ),
            json.dumps({"level": "error", "caller": "rafthttp/x.go:2", "msg": "lost peer 7"}),
            "not json",
        ]
        scan = scan_etcd("\n".join(lines))
        self.assertEqual((scan.lines, scan.errors, scan.warnings), (3, 1, 1))
        self.assertIn(("[error] lost peer N", 1), scan.examples)
