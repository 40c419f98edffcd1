# -*- test-case-name: tests.bench.test_flame -*-
"""
Reading py-spy's collapsed stacks (C{--format raw --threads}) and turning
them into the profile summary and a flame graph SVG.

py-spy writes either a flame graph or raw stacks per run, not both; one
recording in raw form gives the numbers and the picture, so the picture is
drawn here.  Everything in this module is pure.
"""

from __future__ import annotations

import hashlib
import re
from html import escape
from typing import Iterable, Mapping, Sequence

import attrs

Stack = tuple[str, ...]

_THREAD = re.compile(r"^thread \((?P<id>[^)]+)\)(?::\s*(?P<name>.*))?$")
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

IDLE_LEAVES = ("doPoll", "poll", "select", "epoll_wait", "wait", "_wait", "acquire")
"""
Leaf functions meaning "waiting": the reactor blocked in epoll, a worker
blocked on its queue.
"""


def parse_collapsed(text: str) -> dict[Stack, int]:
    """
    Collapsed stacks (C{frame;frame;... COUNT} per line, root first) as a
    mapping from stack to samples.
    """
    stacks: dict[Stack, int] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        frames, _, count = line.rpartition(" ")
        if not frames or not count.isdigit():
            continue
        key = tuple(frames.split(";"))
        stacks[key] = stacks.get(key, 0) + int(count)
    return stacks


def function_name(frame: str) -> str:
    """
    C{func (file:line)} without the line: C{func (file)}.
    """
    m = _FRAME.match(frame)
    if m is None:
        return frame
    return f"{m.group('func')} ({m.group('file')})"


def frame_file(frame: str) -> str:
    """
    The file part of a frame, or the frame itself.
    """
    m = _FRAME.match(frame)
    return m.group("file") if m is not None else frame


def is_idle(stack: Stack) -> bool:
    """
    Whether a sample shows its thread waiting rather than working.
    """
    if not stack:
        return True
    leaf = stack[-1]
    m = _FRAME.match(leaf)
    func = m.group("func") if m is not None else leaf
    return func.rpartition(".")[2] in IDLE_LEAVES


@attrs.frozen
class ThreadProfile:
    """
    The samples of one thread.
    """

    thread: str
    label: str
    samples: int
    busy: int


def split_threads(stacks: Mapping[Stack, int]) -> dict[str, dict[Stack, int]]:
    """
    Group stacks by their C{thread (ID): NAME} root frame (removed); the
    key is C{ID NAME}.
    """
    out: dict[str, dict[Stack, int]] = {}
    for stack, n in stacks.items():
        m = _THREAD.match(stack[0]) if stack else None
        if m is not None:
            thread = f"{m.group('id')} {m.group('name') or ''}".strip()
            rest = stack[1:]
        else:
            thread, rest = "?", stack
        bucket = out.setdefault(thread, {})
        bucket[rest] = bucket.get(rest, 0) + n
    return out


def label_thread(stacks: Mapping[Stack, int], thread: str = "") -> str:
    """
    A name for a thread from its name and what it runs: the reactor, the
    storage writer, or another pool thread.
    """
    if "raft3d-storage" in thread:
        return "storage writer"
    frames = {f for stack in stacks for f in stack}
    if thread.endswith("MainThread") or any(".mainLoop (" in f for f in frames):
        return "reactor"
    if any("storage/_disk" in f for f in frames):
        return "storage writer"
    if any("threadpool" in f for f in frames):
        return "thread pool"
    return "other"


def threads_summary(stacks: Mapping[Stack, int]) -> list[ThreadProfile]:
    """
    Every thread with its sample and busy-sample counts, busiest first.
    """
    out = []
    for thread, own in split_threads(stacks).items():
        total = sum(own.values())
        busy = sum(n for s, n in own.items() if not is_idle(s))
        out.append(ThreadProfile(thread, label_thread(own, thread), total, busy))
    return sorted(out, key=lambda t: -t.busy)


def busy_only(stacks: Mapping[Stack, int]) -> dict[Stack, int]:
    return {s: n for s, n in stacks.items() if not is_idle(s)}


def self_time(stacks: Mapping[Stack, int]) -> dict[str, int]:
    """
    Samples per function as the leaf (where the time is actually spent).
    """
    out: dict[str, int] = {}
    for stack, n in stacks.items():
        if stack:
            name = function_name(stack[-1])
            out[name] = out.get(name, 0) + n
    return out


def inclusive_time(stacks: Mapping[Stack, int]) -> dict[str, int]:
    """
    Samples per function anywhere on the stack (counted once per sample).
    """
    out: dict[str, int] = {}
    for stack, n in stacks.items():
        for name in {function_name(f) for f in stack}:
            out[name] = out.get(name, 0) + n
    return out


LAYERS: tuple[tuple[str, str], ...] = (
    ("raft3d/api/", "Raft3D API (raft3d.api)"),
    ("raft3d/raft/", "Raft engine (raft3d.raft)"),
    ("raft3d/farm/", "farm state machine (raft3d.farm)"),
    ("raft3d/storage/", "storage (raft3d.storage)"),
    ("raft3d/transport/", "peer transport (raft3d.transport)"),
    ("raft3d/service/", "service wiring (raft3d.service: StartupGate, APISite)"),
    ("klein/", "Klein"),
    ("werkzeug/", "werkzeug routing"),
    ("twisted/web/", "twisted.web HTTP"),
    ("twisted/internet/", "Twisted reactor/Deferreds"),
    ("twisted/logger/", "Twisted logging"),
    ("twisted/python/log.py", "Twisted reactor/Deferreds"),
    ("twisted/python/context.py", "Twisted reactor/Deferreds"),
    ("twisted/application/", "Twisted process start-up"),
    ("twisted/scripts/", "Twisted process start-up"),
    ("twisted/python/", "twisted.python (Failure, log)"),
    ("cbor2", "cbor2"),
    ("attr/", "attrs"),
    ("json/", "json"),
    ("email/", "email header parsing (twisted.web Content-Type)"),
    ("zope/", "zope.interface"),
)


OTHER = "other (stdlib, C)"


def layer_of(frame: str) -> str:
    """
    The layer a frame's file belongs to (system calls made through
    C{untilConcludes} count as such).
    """
    if frame.startswith("untilConcludes "):
        return "socket/pipe system calls"
    if frame.startswith("<module> (twistd"):
        return "Twisted process start-up"
    path = frame_file(frame)
    for marker, name in LAYERS:
        if marker in path:
            return name
    return OTHER if not path.startswith("raft3d") else "Raft3D (other)"


def self_time_by_layer(stacks: Mapping[Stack, int]) -> dict[str, int]:
    """
    Leaf samples grouped by the layer of the leaf frame.
    """
    out: dict[str, int] = {}
    for stack, n in stacks.items():
        if stack:
            layer = layer_of(stack[-1])
            out[layer] = out.get(layer, 0) + n
    return out


def inclusive_by_layer(stacks: Mapping[Stack, int]) -> dict[str, int]:
    """
    Samples per layer anywhere on the stack (once per sample): how much
    time is spent inside a layer, callees included.
    """
    out: dict[str, int] = {}
    for stack, n in stacks.items():
        for layer in {layer_of(f) for f in stack}:
            out[layer] = out.get(layer, 0) + n
    return out


TRUNK = (
    "(twistd)",
    "(twisted/application/",
    "(twisted/scripts/",
    "ReactorBase.run (",
    "ReactorBase.mainLoop (",
    "Twisted process start-up",
)
"""
Frames of the reactor's own call chain: on every stack, saying nothing.
"""


def without_trunk(counts: Mapping[str, int], total: int, share: float = 0.97) -> dict[str, int]:
    """
    Drop the reactor's call chain (L{TRUNK}) and anything present in
    (nearly) every sample.
    """
    return {
        k: v
        for k, v in counts.items()
        if v < share * total and not any(marker in k for marker in TRUNK)
    }


def top(counts: Mapping[str, int], n: int) -> list[tuple[str, int]]:
    """
    The C{n} largest entries, largest first (ties by name).
    """
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


# -- flame graph ---------------------------------------------------------------


@attrs.define
class _Node:
    name: str
    count: int = 0
    children: dict[str, _Node] = attrs.Factory(dict)


def _tree(stacks: Iterable[tuple[Stack, int]]) -> _Node:
    root = _Node("all")
    for stack, n in stacks:
        root.count += n
        node = root
        for frame in stack:
            node = node.children.setdefault(frame, _Node(frame))
            node.count += n
    return root


def _depth(node: _Node) -> int:
    return 1 + max((_depth(c) for c in node.children.values()), default=0)


def _colour(name: str) -> str:
    """
    A stable warm colour per function; Raft3D's own frames in blue-green
    so they stand out.
    """
    h = int(hashlib.md5(name.encode()).hexdigest()[:6], 16)
    if "raft3d/" in name:
        return f"rgb({40 + h % 50},{140 + (h >> 8) % 80},{170 + (h >> 16) % 70})"
    return f"rgb({205 + h % 50},{80 + (h >> 8) % 130},{(h >> 16) % 60})"


def flamegraph_svg(
    stacks: Mapping[Stack, int],
    title: str,
    width: int = 1400,
    row: int = 17,
    min_width: float = 0.3,
) -> str:
    """
    A static flame graph (root at the bottom) with a tooltip per frame.
    """
    root = _tree(sorted(stacks.items()))
    total = max(root.count, 1)
    depth = _depth(root)
    top_margin = 36
    height = top_margin + depth * row + 8
    scale = (width - 20) / total
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="monospace" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="#fdfdf6"/>',
        f'<text x="10" y="22" font-size="15">{escape(title)}</text>',
    ]

    def draw(node: _Node, x: float, level: int) -> None:
        w = node.count * scale
        if w < min_width:
            return
        y = height - 8 - (level + 1) * row
        pct = 100.0 * node.count / total
        label = escape(node.name)
        parts.append(
            f"<g><title>{label} ({node.count} samples, {pct:.2f}%)</title>"
            f'<rect x="{x:.2f}" y="{y}" width="{w:.2f}" height="{row - 1}"'
            f' fill="{_colour(node.name)}" rx="2"/>'
        )
        chars = int((w - 4) / 6.6)
        if chars >= 3:
            text = node.name if len(node.name) <= chars else node.name[: chars - 2] + ".."
            parts.append(f'<text x="{x + 2:.2f}" y="{y + row - 5}">{escape(text)}</text>')
        parts.append("</g>")
        child_x = x
        for child in sorted(node.children.values(), key=lambda c: c.name):
            draw(child, child_x, level + 1)
            child_x += child.count * scale

    draw(root, 10.0, 0)
    parts.append("</svg>")
    return "\n".join(parts)


def per_request_us(samples: int, rate: float, requests: float) -> float:
    """
    Microseconds per request that C{samples} stand for, at C{rate}
    samples per second, over C{requests} requests.
    """
    if rate <= 0 or requests <= 0:
        return 0.0
    return samples / rate / requests * 1e6


def summarise(
    stacks: Mapping[Stack, int],
    rate: float,
    requests: float,
    n: int = 25,
    seconds: float | None = None,
) -> dict[str, object]:
    """
    The profile summary: threads, and for the reactor thread the top
    functions by self and inclusive time and the time per layer, each in
    samples, percent of its busy samples and microseconds per request.

    @param seconds: how long the sampling ran.  py-spy samples every
        thread at each tick, idle ones included, but falls behind C{rate}
        on a busy machine; with C{seconds} the rate it achieved (the most
        samples of one thread over C{seconds}) converts samples to time,
        if it is lower.
    """
    threads = threads_summary(stacks)
    by_thread = split_threads(stacks)
    if seconds and threads:
        rate = min(rate, max(t.samples for t in threads) / seconds)
    out: dict[str, object] = {
        "sample_rate_hz": round(rate, 1),
        "requests_in_window": round(requests),
        "threads": [
            {
                "thread": t.thread,
                "label": t.label,
                "samples": t.samples,
                "busy_samples": t.busy,
                "busy_pct": round(100.0 * t.busy / t.samples, 1) if t.samples else 0.0,
                "busy_us_per_request": round(per_request_us(t.busy, rate, requests), 1),
            }
            for t in threads
        ],
    }
    reactor = next((t for t in threads if t.label == "reactor"), None)
    if reactor is None:
        return out
    busy = busy_only(by_thread[reactor.thread])
    total = max(sum(busy.values()), 1)

    def rows(counts: Sequence[tuple[str, int]]) -> list[dict[str, object]]:
        return [
            {
                "function": name,
                "samples": c,
                "pct_of_busy": round(100.0 * c / total, 1),
                "us_per_request": round(per_request_us(c, rate, requests), 1),
            }
            for name, c in counts
        ]

    out["reactor_self"] = rows(top(self_time(busy), n))
    out["reactor_inclusive"] = rows(top(without_trunk(inclusive_time(busy), total), n))
    own = {k: v for k, v in inclusive_time(busy).items() if "(raft3d/" in k}
    out["reactor_raft3d_inclusive"] = rows(top(own, n))
    out["reactor_layers_self"] = rows(top(self_time_by_layer(busy), len(LAYERS) + 3))
    layers = without_trunk(inclusive_by_layer(busy), total)
    layers.pop(OTHER, None)
    out["reactor_layers_inclusive"] = rows(top(layers, len(LAYERS) + 3))
    return out
