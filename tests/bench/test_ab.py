"""
Tests for L{bench.ab}: the rotation and the summary (running clusters is
what C{python -m bench.ab} itself does).
"""

from __future__ import annotations

from collections import Counter

from twisted.trial.unittest import SynchronousTestCase

from bench.ab import Sample, parse_args, rotation, summarise


class RotationTests(SynchronousTestCase):
    def test_fair(self) -> None:
        """
        Over twice as many rounds as builds, every build runs in every
        position, and right after every other build, equally often.
        """
        names = ["a", "b", "c"]
        orders = [rotation(names, r) for r in range(2 * len(names))]
        for order in orders:
            self.assertEqual(sorted(order), names)
        positions = Counter((name, order.index(name)) for order in orders for name in names)
        self.assertEqual(set(positions.values()), {2})
        follows = Counter((o[i], o[i + 1]) for o in orders for i in range(len(o) - 1))
        self.assertEqual(set(follows), {(x, y) for x in names for y in names if x != y})

    def test_two(self) -> None:
        """
        With two builds the order simply alternates.
        """
        self.assertEqual([rotation(["a", "b"], r) for r in range(4)], [["a", "b"]] * 4)


class SummaryTests(SynchronousTestCase):
    def test_ratios_and_wins(self) -> None:
        """
        Each build's line gives its medians and, per round, its ratio to
        the first build: the median ratio and the rounds it was faster in.
        """
        lines = summarise(
            {
                "base": [Sample(100, 2.0, 5.0), Sample(200, 1.0, 4.0), Sample(100, 2.0, 6.0)],
                "new": [Sample(110, 1.8, 5.0), Sample(180, 1.1, 4.0), Sample(120, 1.6, 5.0)],
            }
        )
        self.assertEqual(len(lines), 2)
        self.assertIn("throughput x1.000", lines[0])
        self.assertIn("faster in 0 of 3 rounds", lines[0])
        self.assertIn("throughput x1.100", lines[1])
        self.assertIn("p50 x0.900", lines[1])
        self.assertIn("faster in 2 of 3 rounds", lines[1])
        self.assertIn(" 120 req/s", lines[1])


class ArgumentTests(SynchronousTestCase):
    def test_needs_two_builds(self) -> None:
        """
        One build is nothing to compare; a spread needs a connection per
        member.
        """
        self.assertRaises(SystemExit, parse_args, ["twistd"])
        self.assertEqual(parse_args(["twistd", "--etcd", "/usr/bin/etcd"]).etcd, "/usr/bin/etcd")
        self.assertRaises(SystemExit, parse_args, ["a", "b", "--mode", "spread"])
        args = parse_args(["a", "b", "--connections", "16", "--mode", "spread"])
        self.assertEqual((args.twistd, args.connections, args.workload), (["a", "b"], 16, "create"))
        self.assertEqual(
            parse_args(["a", "b", "--workload", "stale_writes"]).workload, "stale_writes"
        )
        self.assertRaises(SystemExit, parse_args, ["a", "b", "--workload", "page"])
