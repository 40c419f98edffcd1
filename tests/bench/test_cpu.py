"""
Tests for L{bench._cpu}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from bench._cpu import TICKS, Sample, parse_pid_stat, parse_proc_stat, usage_between


class ParseTests(SynchronousTestCase):
    """
    C{/proc} counters are read in seconds.
    """

    def test_proc_stat(self) -> None:
        """
        Busy is everything but idle and iowait, over the first eight
        columns.
        """
        text = f"cpu  {TICKS * 3} 0 {TICKS} {TICKS * 5} {TICKS} 0 0 0 0 0\ncpu0 1 2 3 4\n"
        self.assertEqual(parse_proc_stat(text), (4.0, 10.0))
        self.assertRaises(ValueError, parse_proc_stat, "intr 1\n")

    def test_pid_stat(self) -> None:
        """
        utime plus stime, with a command name holding spaces and ")".
        """
        fields = ["S"] + ["0"] * 10 + [str(TICKS * 2), str(TICKS)] + ["0"] * 5
        text = "42 (twistd (x) y) " + " ".join(fields)
        self.assertEqual(parse_pid_stat(text), 3.0)


class UsageTests(SynchronousTestCase):
    """
    The machine's busy share and the share from outside the benchmark.
    """

    def test_usage(self) -> None:
        """
        On 2 cores over 10 s (20 CPU seconds), 15 busy of which 12 ours:
        75% busy, 15% foreign.
        """
        before = Sample(busy=100.0, total=1000.0, ours=50.0)
        after = Sample(busy=115.0, total=1020.0, ours=62.0)
        self.assertEqual(
            usage_between(before, after, 2), {"machine_busy_pct": 75.0, "foreign_busy_pct": 15.0}
        )

    def test_never_negative(self) -> None:
        """
        More counted as ours than was busy (clock granularity) is no
        foreign load; no elapsed time gives zeros.
        """
        before = Sample(busy=0.0, total=0.0, ours=0.0)
        self.assertEqual(usage_between(before, Sample(1.0, 10.0, 2.0), 1)["foreign_busy_pct"], 0.0)
        self.assertEqual(
            usage_between(before, before, 2), {"machine_busy_pct": 0.0, "foreign_busy_pct": 0.0}
        )
