# -*- test-case-name: tests.bench.test_stats -*-
"""
What one wrk run measured, and how the runs of several concurrent wrk
processes (one per cluster member) are merged into one row.

wrk keeps a full latency histogram but can only hand a Lua C{done()} hook
percentiles, one O(range) call each, so C{bench/lua/workload.lua} prints them
on a fixed grid (every percent, then every tenth, hundredth and thousandth
of a percent above 99).  Merging concurrent runs treats each run's grid as
a step CDF and inverts the request-weighted mixture of those CDFs: exact at
grid points for one run, and close to the true merged quantile otherwise.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import attrs

MARKER = "BENCH_JSON "
"""
The prefix of the line that C{done()} prints.
"""


class NoResult(Exception):
    """
    wrk printed no C{BENCH_JSON} line (it failed before its C{done()} hook).
    """


@attrs.frozen
class WrkResult:
    """
    One wrk process's (or a merged group's) measurements.

    @ivar duration: seconds the load ran.
    @ivar requests: completed requests (any status).
    @ivar ok: 2xx answers.
    @ivar non2xx: answers with any other status.
    @ivar socket_errors: connect, read, write and timeout errors.
    @ivar codes: answers per HTTP status.
    @ivar ops: requests sent per operation kind (C{create}, C{read}...).
    @ivar percentiles: C{(percent, microseconds)} pairs, ascending; the
        first is the minimum (0) and the last the maximum (100).
    @ivar first_errors: the first non-2xx answer of each wrk thread.
    @ivar parts: how many wrk processes were merged into this result.
    """

    duration: float
    requests: int
    ok: int
    non2xx: int
    socket_errors: int
    codes: tuple[tuple[int, int], ...] = ()
    ops: tuple[tuple[str, int], ...] = ()
    percentiles: tuple[tuple[float, float], ...] = ()
    first_errors: tuple[str, ...] = ()
    rate: float = -1.0
    parts: int = 1
    socket_error_kinds: tuple[tuple[str, int], ...] = ()

    @property
    def throughput(self) -> float:
        """
        Completed requests per second (the sum over merged processes).
        """
        if self.rate >= 0:
            return self.rate
        return self.requests / self.duration if self.duration > 0 else 0.0

    def latency_ms(self, percent: float) -> float | None:
        """
        The latency at C{percent}, in milliseconds, or L{None} without data.
        """
        value = quantile(self.percentiles, percent)
        return None if value is None else value / 1000.0

    def to_json(self) -> dict[str, Any]:
        return {
            "duration_s": round(self.duration, 3),
            "requests": self.requests,
            "throughput_rps": round(self.throughput, 1),
            "ok": self.ok,
            "non2xx": self.non2xx,
            "socket_errors": self.socket_errors,
            "socket_error_kinds": dict(self.socket_error_kinds),
            "latency_ms": {
                name: _round(self.latency_ms(p))
                for name, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9))
            }
            | {"max": _round(self.latency_ms(100))},
            "codes": {str(code): n for code, n in self.codes},
            "ops": dict(self.ops),
            "first_errors": list(self.first_errors),
            "wrk_processes": self.parts,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def parse_wrk_output(text: str) -> WrkResult:
    """
    Find the C{BENCH_JSON} line in wrk's standard output and decode it.

    @raise NoResult: if there is none.
    """
    for line in text.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER) :])
            return from_done_json(raw)
    raise NoResult(text[-2000:])


def from_done_json(raw: dict[str, Any]) -> WrkResult:
    """
    The L{WrkResult} of one decoded C{done()} report.
    """
    errors = raw.get("errors", {})
    kinds = tuple((k, int(errors.get(k, 0))) for k in ("connect", "read", "write", "timeout"))
    socket_errors = sum(n for _, n in kinds)
    codes = tuple(sorted((int(k), int(v)) for k, v in raw.get("codes", {}).items()))
    ops = tuple(sorted((str(k), int(v)) for k, v in raw.get("ops", {}).items()))
    points = tuple((float(p), float(v)) for p, v in raw.get("percentiles_us", []))
    return WrkResult(
        duration=int(raw["duration_us"]) / 1e6,
        requests=int(raw["requests"]),
        ok=int(raw.get("ok", 0)),
        non2xx=int(raw.get("non2xx", 0)),
        socket_errors=socket_errors,
        socket_error_kinds=tuple((k, n) for k, n in kinds if n),
        codes=codes,
        ops=ops,
        percentiles=points,
        first_errors=tuple(str(e) for e in raw.get("first_errors", [])),
    )


def quantile(points: Sequence[tuple[float, float]], percent: float) -> float | None:
    """
    The value at C{percent} of a percentile grid: the value of the first
    grid point at or above C{percent} (L{None} for an empty grid).
    """
    for p, v in points:
        if p >= percent - 1e-9:
            return v
    return points[-1][1] if points else None


def _cdf(points: Sequence[tuple[float, float]], value: float) -> float:
    """
    The fraction (0 to 1) of a run's requests at or below C{value}, read
    from its percentile grid as a step function.
    """
    best = 0.0
    for p, v in points:
        if v <= value:
            best = p
        else:
            break
    return best / 100.0


def merge_percentiles(
    parts: Sequence[tuple[int, Sequence[tuple[float, float]]]], grid: Sequence[float]
) -> tuple[tuple[float, float], ...]:
    """
    The percentiles, at each of C{grid}, of the union of runs given as
    C{(request count, percentile grid)} pairs.
    """
    parts = [(n, pts) for n, pts in parts if n > 0 and pts]
    total = sum(n for n, _ in parts)
    if not total:
        return ()
    candidates = sorted({v for _, pts in parts for _, v in pts})
    out: list[tuple[float, float]] = []
    start = 0
    for percent in grid:
        target = percent / 100.0 - 1e-12
        chosen = candidates[-1]
        for i in range(start, len(candidates)):
            value = candidates[i]
            mixed = sum(n * _cdf(pts, value) for n, pts in parts) / total
            if mixed >= target:
                chosen = value
                start = i
                break
        out.append((percent, chosen))
    return tuple(out)


def merge(results: Sequence[WrkResult]) -> WrkResult:
    """
    One result for wrk processes that ran at the same time: counts add up,
    throughput is the sum of each process's rate, latency percentiles are
    those of the mixture.
    """
    if not results:
        raise ValueError("nothing to merge")
    if len(results) == 1:
        return results[0]
    grid = sorted({p for r in results for p, _ in r.percentiles})
    codes: dict[int, int] = {}
    ops: dict[str, int] = {}
    kinds: dict[str, int] = {}
    for r in results:
        for kind, n in r.socket_error_kinds:
            kinds[kind] = kinds.get(kind, 0) + n
        for code, n in r.codes:
            codes[code] = codes.get(code, 0) + n
        for op, n in r.ops:
            ops[op] = ops.get(op, 0) + n
    return WrkResult(
        duration=max(r.duration for r in results),
        requests=sum(r.requests for r in results),
        ok=sum(r.ok for r in results),
        non2xx=sum(r.non2xx for r in results),
        socket_errors=sum(r.socket_errors for r in results),
        codes=tuple(sorted(codes.items())),
        ops=tuple(sorted(ops.items())),
        percentiles=merge_percentiles([(r.requests, r.percentiles) for r in results], grid),
        first_errors=tuple(e for r in results for e in r.first_errors),
        rate=sum(r.throughput for r in results),
        parts=sum(r.parts for r in results),
        socket_error_kinds=tuple(sorted(kinds.items())),
    )


def split_connections(total: int, members: int) -> list[int]:
    """
    Spread C{total} connections over C{members} as evenly as possible
    (earlier members get the remainder); empty when there are fewer
    connections than members, since a member would get none.
    """
    if members <= 0 or total < members:
        return []
    base, extra = divmod(total, members)
    return [base + (1 if i < extra else 0) for i in range(members)]


def latency_summary(samples_s: Sequence[float]) -> tuple[tuple[float, float], ...]:
    """
    A percentile grid (in microseconds) for latencies measured in-process
    (the fdatasync reference), on the same grid as the Lua script's.
    """
    if not samples_s:
        return ()
    ordered = sorted(samples_s)
    n = len(ordered)
    grid = [float(p) for p in range(1, 100)]
    grid += [99 + i / 10 for i in range(1, 10)]
    grid += [99.9 + i / 100 for i in range(1, 10)]
    out = [(0.0, ordered[0] * 1e6)]
    for p in grid:
        rank = max(1, min(n, int(p / 100.0 * n + 0.5)))
        out.append((p, ordered[rank - 1] * 1e6))
    out.append((100.0, ordered[-1] * 1e6))
    return tuple(out)
