# -*- test-case-name: tests.bench.test_report -*-
"""
Turning the collected results into C{results.json}, C{results.md} and
C{chart.png}.

Everything except L{chart} is pure (a dict in, text out), so the tables are
tested without running anything.  The JSON holds every number; the
Markdown is what C{docs/performance.md} quotes.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence


def key(row: Mapping[str, Any]) -> tuple[str, str, int]:
    return (str(row["workload"]), str(row["mode"]), int(row["connections"]))


def _num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _ms(result: Mapping[str, Any] | None, name: str) -> str:
    if not result:
        return "–"
    value = result.get("latency_ms", {}).get(name)
    if value is None:
        return "–"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _errors(result: Mapping[str, Any] | None) -> str:
    if not result:
        return "–"
    non2xx = int(result.get("non2xx", 0))
    socket = int(result.get("socket_errors", 0))
    if not socket:
        return f"{non2xx}"
    kinds = result.get("socket_error_kinds") or {}
    detail = ", ".join(f"{n} {k}" for k, n in kinds.items()) or f"{socket} sock"
    return f"{non2xx} / {detail}"


def ratio(a: float | None, b: float | None) -> float | None:
    """
    C{a / b}, or L{None} when either is missing or C{b} is zero.
    """
    if a is None or b is None or b == 0:
        return None
    return a / b


def pair_rows(
    rows: Iterable[Mapping[str, Any]], left: str = "raft3d", right: str = "etcd"
) -> list[tuple[tuple[str, str, int], Mapping[str, Any] | None, Mapping[str, Any] | None]]:
    """
    The comparison rows side by side, in the order they were first run.
    """
    order: list[tuple[str, str, int]] = []
    by: dict[tuple[str, str, int], dict[str, Mapping[str, Any]]] = {}
    for row in rows:
        k = key(row)
        if k not in by:
            by[k] = {}
            order.append(k)
        by[k][str(row["system"])] = row
    return [(k, by[k].get(left), by[k].get(right)) for k in order]


def _result(row: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    if row is None:
        return None
    result = row.get("result")
    return result if isinstance(result, Mapping) else None


def _cell_note(row: Mapping[str, Any] | None) -> str | None:
    if row is None:
        return "not run"
    if row.get("skipped"):
        return "skipped"
    if row.get("error"):
        return "failed"
    return None


def _foreign(row: Mapping[str, Any] | None) -> str:
    """
    The share of the machine busy outside the benchmark during a row.
    """
    cpu = row.get("cpu") if row else None
    if not isinstance(cpu, Mapping):
        return "–"
    return f"{float(cpu.get('foreign_busy_pct', 0)):.0f}"


def comparison_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """
    The main table: Raft3D and etcd per (workload, mode, connections),
    throughput, p50/p99/p99.9 latency (ms), non-2xx answers, the
    Raft3D/etcd ratios of throughput and p99, and how busy the machine was
    with other processes during each side's row.
    """
    head = (
        "| workload | load on | conns | Raft3D req/s | p50 | p99 | p99.9 | non-2xx |"
        " etcd req/s | p50 | p99 | p99.9 | non-2xx | req/s R/E | p99 R/E | other CPU % R/E |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    lines = []
    for (workload, mode, conns), left, right in pair_rows(rows):
        cells = [workload, mode, str(conns)]
        for row in (left, right):
            note = _cell_note(row)
            result = _result(row)
            if note or result is None:
                cells += [note or "–", "", "", "", ""]
                continue
            cells += [
                _num(float(result["throughput_rps"]), 0),
                _ms(result, "p50"),
                _ms(result, "p99"),
                _ms(result, "p99.9"),
                _errors(result),
            ]
        lr, rr = _result(left), _result(right)
        rps = ratio(lr["throughput_rps"] if lr else None, rr["throughput_rps"] if rr else None)
        p99 = ratio(
            lr["latency_ms"].get("p99") if lr else None, rr["latency_ms"].get("p99") if rr else None
        )
        cells.append("–" if rps is None else f"{rps:.2f}")
        cells.append("–" if p99 is None else f"{p99:.1f}×" if p99 >= 0.95 else f"{p99:.2f}×")
        cells.append(f"{_foreign(left)}/{_foreign(right)}")
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def writes_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """
    The writes that ran beside the rows that have them (C{stale_writes}):
    their throughput and p50 latency, Raft3D next to etcd; empty if no
    row has any.
    """
    lines = []
    for (workload, mode, conns), left, right in pair_rows(rows):
        sides = [row.get("writes") if row else None for row in (left, right)]
        if not any(sides):
            continue
        cells = [workload, mode, str(conns)]
        for writes in sides:
            if not isinstance(writes, Mapping):
                cells += ["–", "", ""]
                continue
            cells += [
                _num(float(writes["throughput_rps"]), 0),
                _ms(writes, "p50"),
                _errors(writes),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return ""
    return (
        "Writes (creates on the leader) running beside the rows above that have them:\n\n"
        "| workload | load on | reader conns | Raft3D writes/s | p50 | non-2xx |"
        " etcd writes/s | p50 | non-2xx |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|\n" + "\n".join(lines) + "\n"
    )


def reference_table(rows: Sequence[Mapping[str, Any]], fdatasync: Mapping[str, Any] | None) -> str:
    """
    The reference rows: the one-process Twisted handlers per connection
    count, and the disk's fdatasync.
    """
    out = (
        "| reference | conns | req/s | p50 | p99 | p99.9 | non-2xx | other CPU % |\n"
        "|---|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    for row in rows:
        result = _result(row)
        name = str(row["system"])
        if result is None:
            out += f"| {name} | {row['connections']} | {_cell_note(row) or '–'} | | | | |\n"
            continue
        out += (
            f"| {name} | {row['connections']} | {_num(float(result['throughput_rps']), 0)}"
            f" | {_ms(result, 'p50')} | {_ms(result, 'p99')} | {_ms(result, 'p99.9')}"
            f" | {_errors(result)} | {_foreign(row)} |\n"
        )
    if fdatasync:
        out += (
            f"| fdatasync of a 4 KiB append (one thread) | 1 | {_num(float(fdatasync['ops_per_s']), 0)}"
            f" | {_ms(fdatasync, 'p50')} | {_ms(fdatasync, 'p99')} | {_ms(fdatasync, 'p99.9')} | – | – |\n"
        )
    return out


def _kib(value: Any) -> str:
    return "–" if value is None else f"{int(value) / 1024:,.0f} MiB"


def scale_section(scale: Mapping[str, Any]) -> str:
    """
    The scale run in a few lines and a table per node.
    """
    if not scale:
        return "_not run_\n"
    if scale.get("error"):
        return f"**failed:** {scale['error']}\n"
    load = scale.get("load", {})
    out = [
        f"- objects requested: {_num(scale.get('objects_requested'))}, created:"
        f" {_num(load.get('objects_created'))} in {_num(load.get('seconds'))} s"
        f" ({_num(load.get('objects_per_s'))} objects/s through the leader);"
        f" followers applied everything {_num(scale.get('settle_s'))} s later",
    ]
    costs = scale.get("snapshot_costs") or {}
    if costs.get("file_bytes"):
        out.append(
            f"- newest snapshot on the leader: index {costs.get('index')},"
            f" {int(costs['file_bytes']) / 1e6:.1f} MB; decoding and restoring it takes"
            f" {costs.get('decode_and_restore_s')} s, encoding it again"
            f" {costs.get('encode_s')} s (measured in the harness process; a node encodes"
            " in a forked child after a freeze of a few ms on its reactor thread)"
        )
    restart = scale.get("restart") or {}
    if restart:
        out.append(
            f"- restart of {restart.get('node')} after SIGKILL: HTTP up after"
            f" {_num(restart.get('http_up_s'), 2)} s, caught up (index"
            f" {restart.get('target_index')}) after {_num(restart.get('caught_up_s'), 2)} s"
        )
    rebuild = scale.get("rebuild") or {}
    if rebuild:
        installed = rebuild.get("installed_snapshot_indexes") or []
        how = f"installed snapshot(s) at {installed}" if installed else "no snapshot installed"
        stuck = rebuild.get("stuck_without_leader_change")
        if stuck:
            out.append(
                f"- {rebuild.get('node')} restarted with an empty data directory: HTTP up after"
                f" {_num(rebuild.get('http_up_s'), 2)} s, but still at index 0 after"
                f" {stuck.get('waited_s')} s (the leader does not repair it); after a restart of"
                f" the leader it caught up in {_num(rebuild.get('caught_up_s'), 2)} s ({how})"
                + (f"; {rebuild['note'][:300]}" if rebuild.get("note") else "")
            )
        else:
            out.append(
                f"- {rebuild.get('node')} rebuilt from an empty data directory: HTTP up after"
                f" {_num(rebuild.get('http_up_s'), 2)} s, caught up after"
                f" {_num(rebuild.get('caught_up_s'), 2)} s ({how})"
                + (f"; {rebuild['note'][:300]}" if rebuild.get("note") else "")
            )
    table = [
        "",
        "| node | VmRSS | VmHWM (peak) | snapshots written | last snapshot (index, size, write time)"
        " | snapshot files on disk | log segments on disk |",
        "|---|--:|--:|--:|---|--:|--:|",
    ]
    memory = scale.get("memory_kib", {})
    snaps = scale.get("snapshots", {})
    for node in sorted(memory):
        mem = memory.get(node) or {}
        snap = snaps.get(node) or {}
        last = snap.get("last") or {}
        disk = snap.get("data_dir_bytes") or {}
        last_text = (
            f"{last.get('index')}, {int(last.get('size', 0)) / 1e6:.1f} MB, {last.get('seconds')} s"
            if last
            else "–"
        )
        table.append(
            f"| {node} | {_kib(mem.get('VmRSS'))} | {_kib(mem.get('VmHWM'))} | {snap.get('count', 0)}"
            f" | {last_text} | {int(disk.get('snapshots', 0)) / 1e6:.1f} MB"
            f" ({disk.get('snapshot_files', 0)} files) | {int(disk.get('segments', 0)) / 1e6:.1f} MB |"
        )
    pages = scale.get("pages", {})
    if pages:
        table += [
            "",
            "| list page (1 connection, on the leader) | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx |",
            "|---|--:|--:|--:|--:|--:|",
        ]
        for name, result in pages.items():
            table.append(
                f"| `{name}` | {_num(float(result['throughput_rps']), 0)} | {_ms(result, 'p50')}"
                f" | {_ms(result, 'p99')} | {_ms(result, 'p99.9')} | {_errors(result)} |"
            )
    return "\n".join(out + table) + "\n"


def profile_section(profile: Mapping[str, Any], n: int = 15) -> str:
    """
    Threads, time per layer and the top functions of the leader's reactor.
    """
    if not profile:
        return "_not run_\n"
    if profile.get("error"):
        return f"**failed:** {profile['error']}\n"
    load = profile.get("load", {})
    out = [
        f"Leader {load.get('leader')} under {load.get('connections')}-connection creates,"
        f" {load.get('throughput_rps')} req/s, {load.get('profiled_seconds')} s at"
        f" {profile.get('sample_rate_hz')} Hz achieved ({profile.get('requests_in_window')}"
        " requests in the window).",
        "",
        "| thread | samples | busy | busy µs per request |",
        "|---|--:|--:|--:|",
    ]
    for t in profile.get("threads", []):
        out.append(
            f"| {t['label']} ({t['thread'][:40]}) | {t['samples']} | {t['busy_pct']}% |"
            f" {t['busy_us_per_request']} |"
        )

    def table(title: str, rows: Sequence[Mapping[str, Any]]) -> None:
        out.extend(["", f"| {title} | % of busy reactor | µs per request |", "|---|--:|--:|"])
        for r in rows[:n]:
            out.append(f"| `{r['function']}` | {r['pct_of_busy']} | {r['us_per_request']} |")

    table("layer (self time)", profile.get("reactor_layers_self", []))
    table("layer (inclusive)", profile.get("reactor_layers_inclusive", []))
    table("function (self time)", profile.get("reactor_self", []))
    table("Raft3D function (inclusive)", profile.get("reactor_raft3d_inclusive", []))
    table("function (inclusive, below the reactor loop)", profile.get("reactor_inclusive", []))
    return "\n".join(out) + "\n"


def problems_section(problems: Sequence[Mapping[str, Any]]) -> str:
    if not problems:
        return "None seen.\n"
    lines = []
    for p in problems:
        detail = str(p.get("details", "")).strip().replace("\n", " ")
        lines.append(f"- **{p.get('what')}**" + (f": {detail[:600]}" if detail else ""))
    return "\n".join(lines) + "\n"


def machine_section(machine: Mapping[str, Any]) -> str:
    mount = machine.get("work_dir_mount", {})
    return (
        f"- CPU: {machine.get('cpu')}, {machine.get('cores')} cores;"
        f" memory {machine.get('memory_gib')} GiB\n"
        f"- {machine.get('os')}, kernel {machine.get('kernel')}\n"
        f"- Python {machine.get('python')}, Twisted {machine.get('twisted')};"
        f" {machine.get('etcd')}; {machine.get('wrk')}\n"
        f"- data directories in {machine.get('work_dir')} on {mount.get('device')}"
        f" ({mount.get('type')}, mounted at {mount.get('mount_point')})\n"
    )


def markdown(data: Mapping[str, Any]) -> str:
    """
    The whole report.
    """
    options = data.get("options", {})
    parts = [
        f"# Raft3D benchmark {data.get('timestamp')}\n",
        f"Command: `{data.get('command')}`"
        + (" (**interrupted**)" if data.get("interrupted") else "")
        + "\n",
        f"Each row: wrk (Lua, keep-alive) for {options.get('duration')} s; latencies in ms;"
        " `non-2xx` counts answers that were not 2xx (`sock`: socket errors and timeouts)."
        " `load on leader`: one wrk on the leader; `spread`: one wrk per member at the same time,"
        " connections split, results merged. R/E = Raft3D / etcd.\n",
        "## Machine\n",
        machine_section(data.get("machine", {})),
        "Raft3D under test: "
        + (
            ", ".join(f"{k} `{v}`" for k, v in data["raft3d"].items())
            if data.get("raft3d")
            else "not recorded"
        )
        + "\n",
        "## Raft3D vs etcd\n",
        comparison_table(data.get("rows", [])),
        writes_table(data.get("rows", [])),
        "## Reference rows\n",
        reference_table(data.get("reference_rows", []), data.get("fdatasync")),
        "## Scale run\n",
        scale_section(data.get("scale", {})),
        "## Profile of the leader (py-spy)\n",
        profile_section(data.get("profile", {})),
        "## Problems seen\n",
        problems_section(data.get("problems", [])),
        "## Measurement caveats\n",
        "\n".join(f"- {c}" for c in data.get("caveats", [])) + "\n"
        if data.get("caveats")
        else "None: no row was disturbed by other processes.\n",
    ]
    return "\n".join(parts)


def chart(data: Mapping[str, Any], path: str) -> bool:
    """
    Draw throughput and p99 latency per row, Raft3D next to etcd, to
    C{path}; false if matplotlib is missing.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    pairs = pair_rows(data.get("rows", []))
    if not pairs:
        return False
    labels = [f"{w}\n{m}\nc={c}" for (w, m, c), _, _ in pairs]

    def values(index: int, metric: str) -> list[float]:
        out = []
        for pair in pairs:
            result = _result(pair[index])  # type: ignore[arg-type]
            if result is None:
                out.append(0.0)
            elif metric == "rps":
                out.append(float(result["throughput_rps"]))
            else:
                out.append(float(result["latency_ms"].get("p99") or 0.0))
        return out

    xs = list(range(len(pairs)))
    width = 0.4
    fig, axes = plt.subplots(2, 1, figsize=(max(10, 0.55 * len(pairs) + 2), 9), sharex=True)
    for ax, metric, title in (
        (axes[0], "rps", "throughput (requests/s, log scale)"),
        (axes[1], "p99", "p99 latency (ms, log scale)"),
    ):
        ax.bar(
            [x - width / 2 for x in xs], values(1, metric), width, label="Raft3D", color="#2a7fa8"
        )
        ax.bar([x + width / 2 for x in xs], values(2, metric), width, label="etcd", color="#e07b39")
        ax.set_yscale("log")
        ax.set_title(title)
        ax.grid(axis="y", alpha=0.3)
        ax.legend()
    axes[1].set_xticks(xs)
    axes[1].set_xticklabels(labels, fontsize=7)
    fig.suptitle(f"Raft3D vs etcd, {data.get('timestamp')}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
