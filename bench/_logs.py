# -*- test-case-name: tests.bench.test_logs -*-
"""
Reading the members' logs after a phase for what went wrong: tracebacks,
errors and warnings (Raft3D's C{twistd} format, etcd's zap JSON lines),
leader changes, and the noisiest log sources.

A benchmark that only reports throughput hides a node that logged a
traceback per request; these counts go into the report's problems.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import attrs

_TWISTD = re.compile(r"^\S+ \[(?P<source>[^\]#]*)(?:#(?P<level>\w+))?\] (?P<text>.*)$")
_NUMBERS = re.compile(r"0x[0-9a-f]+|\d+(?:\.\d+)*")


@attrs.frozen
class LogScan:
    """
    What one member's log says.

    @ivar errors: lines at error/critical level, "Unhandled" lines and
        tracebacks.
    @ivar warnings: lines at warn level.
    @ivar leader_changes: "became Leader" (Raft3D) or "elected leader" (etcd).
    @ivar examples: a few distinct error and warning lines (numbers masked
        when grouping).
    @ivar noisiest: the log sources with the most lines.
    """

    lines: int
    errors: int
    warnings: int
    tracebacks: int
    leader_changes: int
    examples: tuple[tuple[str, int], ...]
    noisiest: tuple[tuple[str, int], ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "lines": self.lines,
            "errors": self.errors,
            "warnings": self.warnings,
            "tracebacks": self.tracebacks,
            "leader_changes": self.leader_changes,
            "examples": [{"line": text, "count": n} for text, n in self.examples],
            "noisiest_sources": [{"source": s, "lines": n} for s, n in self.noisiest],
        }


def _shape(text: str) -> str:
    """
    A line with numbers and addresses masked, to group repeats.
    """
    return _NUMBERS.sub("N", text)[:240]


def scan_raft3d(text: str) -> LogScan:
    """
    Scan a C{twistd -n raft3d} log.
    """
    errors = warnings = tracebacks = leaders = lines = 0
    shapes: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("\t") or line.startswith(" "):
            if "Traceback (most recent call last)" in line:
                tracebacks += 1
            continue
        lines += 1
        m = _TWISTD.match(line)
        if m is None:
            continue
        source, level, body = m.group("source"), m.group("level") or "", m.group("text")
        sources[source] += 1
        if level in ("error", "critical") or body.startswith("Unhandled"):
            errors += 1
            shapes[f"[{level or 'legacy'}] {_shape(body)}"] += 1
        elif level == "warn":
            warnings += 1
            shapes[f"[warn] {_shape(body)}"] += 1
        if "became Leader" in body:
            leaders += 1
    return LogScan(
        lines,
        errors,
        warnings,
        tracebacks,
        leaders,
        tuple(shapes.most_common(6)),
        tuple(sources.most_common(4)),
    )


def scan_etcd(text: str) -> LogScan:
    """
    Scan an etcd zap (JSON lines) log.
    """
    errors = warnings = leaders = lines = 0
    shapes: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    for line in text.splitlines():
        lines += 1
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        level = str(record.get("level", ""))
        msg = str(record.get("msg", ""))
        sources[str(record.get("caller", "?")).partition(":")[0]] += 1
        if level in ("error", "fatal", "panic", "dpanic"):
            errors += 1
            shapes[f"[{level}] {_shape(msg)}"] += 1
        elif level == "warn":
            warnings += 1
            shapes[f"[warn] {_shape(msg)}"] += 1
        if "elected leader" in msg or "became leader" in msg:
            leaders += 1
    return LogScan(
        lines,
        errors,
        warnings,
        0,
        leaders,
        tuple(shapes.most_common(6)),
        tuple(sources.most_common(4)),
    )
