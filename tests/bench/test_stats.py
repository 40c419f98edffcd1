"""
Tests for L{bench._stats}.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from bench._stats import (
    NoResult,
    WrkResult,
    latency_summary,
    merge,
    merge_percentiles,
    parse_wrk_output,
    quantile,
    split_connections,
)

GRID = [float(p) for p in range(1, 100)] + [99.9, 100.0]


def flat(value_us: float) -> tuple[tuple[float, float], ...]:
    """
    A percentile grid where every request took C{value_us}.
    """
    return tuple([(0.0, value_us)] + [(p, value_us) for p in GRID])


def ramp(start_us: float) -> tuple[tuple[float, float], ...]:
    """
    A grid whose value at percentile p is C{start_us + p}.
    """
    return tuple([(0.0, start_us)] + [(p, start_us + p) for p in GRID])


def result(requests: int, points: tuple[tuple[float, float], ...], **kw: object) -> WrkResult:
    return WrkResult(
        duration=2.0,
        requests=requests,
        ok=requests,
        non2xx=0,
        socket_errors=0,
        percentiles=points,
        **kw,  # type: ignore[arg-type]
    )


class ParseTests(SynchronousTestCase):
    """
    The C{BENCH_JSON} line printed by the Lua C{done()} hook is decoded.
    """

    def test_parse(self) -> None:
        """
        Counts, codes, operations and percentiles come out of the line
        among wrk's own output; socket errors add up.
        """
        raw = {
            "duration_us": 2_000_000,
            "requests": 100,
            "bytes": 1000,
            "errors": {"connect": 1, "read": 2, "write": 0, "status": 3, "timeout": 4},
            "ok": 97,
            "non2xx": 3,
            "codes": {"201": 97, "503": 3},
            "ops": {"create": 101},
            "first_errors": ["503 {}"],
            "latency_mean_us": 10.0,
            "latency_stdev_us": 1.0,
            "percentiles_us": [[0, 5], [50, 10], [100, 20]],
        }
        text = (
            "Running 2s test\n  1 threads\nBENCH_JSON " + json.dumps(raw) + "\nRequests/sec: 50\n"
        )
        r = parse_wrk_output(text)
        self.assertEqual((r.requests, r.ok, r.non2xx, r.socket_errors), (100, 97, 3, 7))
        self.assertEqual(r.socket_error_kinds, (("connect", 1), ("read", 2), ("timeout", 4)))
        self.assertEqual(r.codes, ((201, 97), (503, 3)))
        self.assertEqual(r.ops, (("create", 101),))
        self.assertEqual(r.throughput, 50.0)
        self.assertEqual(r.latency_ms(50), 0.01)
        self.assertEqual(r.first_errors, ("503 {}",))

    def test_no_line(self) -> None:
        """
        Output without the line (wrk failed early) raises L{NoResult}.
        """
        self.assertRaises(NoResult, parse_wrk_output, "unable to connect\n")


class QuantileTests(SynchronousTestCase):
    """
    Reading a percentile grid.
    """

    def test_first_point_at_or_above(self) -> None:
        """
        The value of the first grid point at or above the percentile.
        """
        points = ((0.0, 1.0), (50.0, 2.0), (99.0, 3.0), (100.0, 4.0))
        self.assertEqual(quantile(points, 50), 2.0)
        self.assertEqual(quantile(points, 60), 3.0)
        self.assertEqual(quantile(points, 99.9), 4.0)
        self.assertIsNone(quantile((), 50))


class MergeTests(SynchronousTestCase):
    """
    Concurrent wrk processes are merged into one row.
    """

    def test_single_run_exact(self) -> None:
        """
        Merging one run alone gives its own percentiles back.
        """
        points = ramp(1000.0)
        merged = merge_percentiles([(10, points)], GRID)
        self.assertEqual(merged, tuple((p, 1000.0 + p) for p in GRID))

    def test_identical_runs(self) -> None:
        """
        Two runs with the same distribution merge to that distribution.
        """
        points = ramp(500.0)
        self.assertEqual(
            merge_percentiles([(10, points), (30, points)], GRID),
            merge_percentiles([(10, points)], GRID),
        )

    def test_disjoint_runs(self) -> None:
        """
        Half the requests at 1 ms and half at 10 ms: the median is 1 ms and
        the p99 is 10 ms; with 1% slow requests the p50 stays fast.
        """
        even = merge_percentiles([(100, flat(1000.0)), (100, flat(10000.0))], [50.0, 51.0, 99.0])
        self.assertEqual(even, ((50.0, 1000.0), (51.0, 10000.0), (99.0, 10000.0)))
        skewed = merge_percentiles([(99, flat(1000.0)), (1, flat(10000.0))], [50.0, 99.0, 99.9])
        self.assertEqual(skewed, ((50.0, 1000.0), (99.0, 1000.0), (99.9, 10000.0)))

    def test_empty_runs_ignored(self) -> None:
        """
        A run with no requests does not count.
        """
        self.assertEqual(
            merge_percentiles([(0, flat(1.0)), (5, flat(2.0))], [50.0]), ((50.0, 2.0),)
        )
        self.assertEqual(merge_percentiles([(0, flat(1.0))], [50.0]), ())

    def test_merge_counts(self) -> None:
        """
        Requests, codes and operations add up; throughput is the sum of the
        rates; the parts are counted.
        """
        a = result(100, flat(1000.0), codes=((200, 100),), ops=(("read", 100),))
        b = result(
            300,
            flat(3000.0),
            codes=((200, 290), (503, 10)),
            ops=(("read", 300),),
            socket_error_kinds=(("timeout", 2),),
        )
        m = merge([a, b])
        self.assertEqual(m.socket_error_kinds, (("timeout", 2),))
        self.assertEqual(m.requests, 400)
        self.assertEqual(m.codes, ((200, 390), (503, 10)))
        self.assertEqual(m.ops, (("read", 400),))
        self.assertEqual(m.throughput, 200.0)
        self.assertEqual(m.parts, 2)
        self.assertEqual(m.latency_ms(50), 3.0)
        self.assertIs(merge([a]), a)
        self.assertRaises(ValueError, merge, [])

    def test_to_json(self) -> None:
        """
        The JSON form carries throughput and millisecond percentiles.
        """
        j = result(100, flat(2500.0)).to_json()
        self.assertEqual(j["throughput_rps"], 50.0)
        self.assertEqual(j["latency_ms"]["p99.9"], 2.5)
        self.assertEqual(j["latency_ms"]["max"], 2.5)


class SplitTests(SynchronousTestCase):
    """
    Connections are spread over members.
    """

    def test_split(self) -> None:
        """
        Evenly, the first members taking the remainder; nothing when some
        member would get no connection.
        """
        self.assertEqual(split_connections(16, 3), [6, 5, 5])
        self.assertEqual(split_connections(3, 3), [1, 1, 1])
        self.assertEqual(split_connections(256, 3), [86, 85, 85])
        self.assertEqual(split_connections(1, 3), [])
        self.assertEqual(split_connections(5, 0), [])


class LatencySummaryTests(SynchronousTestCase):
    """
    In-process latencies become a grid like wrk's.
    """

    def test_summary(self) -> None:
        """
        Minimum first, maximum last, nearest-rank percentiles in between,
        in microseconds.
        """
        samples = [i / 1000.0 for i in range(1, 101)]  # 1..100 ms
        points = latency_summary(samples)
        self.assertEqual(points[0], (0.0, 1000.0))
        self.assertEqual(points[-1], (100.0, 100000.0))
        self.assertAlmostEqual(quantile(points, 50) or 0, 50000.0)
        self.assertAlmostEqual(quantile(points, 99) or 0, 99000.0)
        self.assertEqual(latency_summary([]), ())
