"""
Tests for L{bench._report}.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bench._report import (
    comparison_table,
    markdown,
    pair_rows,
    ratio,
    reference_table,
    scale_section,
    writes_table,
)


def result(rps: float, p50: float, p99: float, non2xx: int = 0) -> dict[str, Any]:
    return {
        "throughput_rps": rps,
        "non2xx": non2xx,
        "socket_errors": 0,
        "latency_ms": {"p50": p50, "p90": p99, "p99": p99, "p99.9": p99 * 2, "max": p99 * 3},
    }


ROWS: list[dict[str, Any]] = [
    {
        "system": "etcd",
        "workload": "create",
        "mode": "leader",
        "connections": 16,
        "result": result(2000.0, 7.0, 20.0),
    },
    {
        "system": "raft3d",
        "workload": "create",
        "mode": "leader",
        "connections": 16,
        "result": result(500.0, 20.0, 80.0, 3),
        "cpu": {"machine_busy_pct": 90.0, "foreign_busy_pct": 12.4},
    },
    {
        "system": "etcd",
        "workload": "create",
        "mode": "spread",
        "connections": 1,
        "skipped": "too few",
    },
    {
        "system": "raft3d",
        "workload": "create",
        "mode": "spread",
        "connections": 1,
        "skipped": "too few",
    },
    {
        "system": "raft3d",
        "workload": "read",
        "mode": "leader",
        "connections": 1,
        "error": "wrk failed",
    },
]


class TableTests(SynchronousTestCase):
    """
    The Markdown tables.
    """

    def test_pairs(self) -> None:
        """
        Rows pair up by (workload, mode, connections) in first-run order,
        with a missing side as L{None}.
        """
        pairs = pair_rows(ROWS)
        self.assertEqual(
            [k for k, _, _ in pairs],
            [("create", "leader", 16), ("create", "spread", 1), ("read", "leader", 1)],
        )
        self.assertIsNone(pairs[2][2])

    def test_ratio(self) -> None:
        """
        Missing values or a zero denominator give no ratio.
        """
        self.assertEqual(ratio(1.0, 4.0), 0.25)
        self.assertIsNone(ratio(1.0, 0.0))
        self.assertIsNone(ratio(None, 1.0))

    def test_comparison(self) -> None:
        """
        Raft3D then etcd per row with the ratios; skipped, failed and
        missing cells say so.
        """
        table = comparison_table(ROWS)
        lines = table.splitlines()
        self.assertEqual(len(lines), 5)
        self.assertEqual(
            lines[2],
            "| create | leader | 16 | 500 | 20.0 | 80.0 | 160.0 | 3 | 2,000 | 7.00 | 20.0 | 40.0 | 0 | 0.25 | 4.0× | 12/– |",
        )
        self.assertIn("| create | spread | 1 | skipped |", lines[3])
        self.assertIn("| read | leader | 1 | failed |", lines[4])
        self.assertIn("not run", lines[4])

    def test_writes(self) -> None:
        """
        The writes beside a row, Raft3D then etcd; no table when no row
        has any.
        """
        self.assertEqual(writes_table(ROWS), "")
        rows = [
            {
                "system": system,
                "workload": "stale_writes",
                "mode": "leader",
                "connections": 64,
                "result": result(9000.0, 1.0, 3.0),
                "writes": result(rps, p50, p50 * 3),
            }
            for system, rps, p50 in (("raft3d", 800.0, 4.5), ("etcd", 700.0, 5.25))
        ]
        lines = writes_table(rows).splitlines()
        self.assertEqual(
            lines[-1], "| stale_writes | leader | 64 | 800 | 4.50 | 0 | 700 | 5.25 | 0 |"
        )
        self.assertIn("Raft3D writes/s", lines[2])

    def test_reference(self) -> None:
        """
        One line per reference row and one for fdatasync.
        """
        rows = [{"system": "twisted-klein", "connections": 1, "result": result(900.0, 1.0, 2.0)}]
        fsync = {"ops_per_s": 2500.0, "latency_ms": {"p50": 0.4, "p99": 0.6, "p99.9": 1.9}}
        table = reference_table(rows, fsync)
        self.assertIn("| twisted-klein | 1 | 900 | 1.00 | 2.00 | 4.00 | 0 | – |", table)
        self.assertIn(
            "| fdatasync of a 4 KiB append (one thread) | 1 | 2,500 | 0.40 | 0.60 | 1.90 | – | – |",
            table,
        )

    def test_scale(self) -> None:
        """
        The scale section tells the load, the restart, the stuck rebuild
        and a row per node.
        """
        scale = {
            "objects_requested": 100,
            "load": {"objects_created": 101, "seconds": 2.0, "objects_per_s": 50.5},
            "settle_s": 0.1,
            "restart": {"node": "node2", "http_up_s": 0.8, "caught_up_s": 0.9, "target_index": 120},
            "rebuild": {
                "node": "node2",
                "http_up_s": 0.8,
                "caught_up_s": 1.0,
                "stuck_without_leader_change": {"waited_s": 15.0},
                "installed_snapshot_indexes": [96],
            },
            "memory_kib": {"node1": {"VmRSS": 2048, "VmHWM": 4096}},
            "snapshots": {
                "node1": {
                    "count": 1,
                    "last": {"index": 96, "size": 2_000_000, "seconds": 0.5},
                    "data_dir_bytes": {
                        "snapshots": 2_000_000,
                        "snapshot_files": 1,
                        "segments": 1_000_000,
                    },
                }
            },
            "pages": {"printers?limit=100": result(500.0, 2.0, 4.0)},
        }
        text = scale_section(scale)
        self.assertIn("created: 101 in 2.0 s (50.5 objects/s", text)
        self.assertIn("still at index 0 after 15.0 s", text)
        self.assertIn("installed snapshot(s) at [96]", text)
        self.assertIn(
            "| node1 | 2 MiB | 4 MiB | 1 | 96, 2.0 MB, 0.5 s | 2.0 MB (1 files) | 1.0 MB |", text
        )
        self.assertIn("| `printers?limit=100` | 500 | 2.00 | 4.00 | 8.00 | 0 |", text)
        self.assertEqual(scale_section({}), "_not run_\n")

    def test_markdown(self) -> None:
        """
        The whole report has every section, and says when it was
        interrupted.
        """
        text = markdown(
            {
                "timestamp": "T",
                "command": "python -m bench",
                "rows": ROWS,
                "interrupted": "KeyboardInterrupt",
            }
        )
        for title in (
            "## Machine",
            "## Raft3D vs etcd",
            "## Reference rows",
            "## Scale run",
            "## Profile",
            "## Problems seen",
        ):
            self.assertIn(title, text)
        self.assertIn("(**interrupted**)", text)
