# -*- test-case-name: tests.testing.test_simulation -*-
"""
Run simulated fault schedules from the command line::

    python -m raft3d.testing --seed 1234          # replay one schedule
    python -m raft3d.testing --first 0 --count 2000   # a longer soak
"""

from __future__ import annotations

import argparse
import sys
import time

from ._schedule import run_schedule


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m raft3d.testing")
    parser.add_argument("--seed", type=int, help="replay exactly this schedule")
    parser.add_argument("--first", type=int, default=0, help="first seed of a range")
    parser.add_argument("--count", type=int, default=100, help="number of seeds")
    parser.add_argument("--size", type=int, default=None, help="nodes (default: 3 or 5 by seed)")
    parser.add_argument("--duration", type=float, default=12.0, help="simulated seconds of faults")
    parser.add_argument("--verbose", action="store_true", help="print each schedule's faults")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.first, args.first + args.count)
    failures = 0
    started = time.monotonic()
    for seed in seeds:
        try:
            report = run_schedule(seed, args.size, args.duration)
        except AssertionError as e:
            failures += 1
            print(f"FAIL {e}", flush=True)
            continue
        if args.verbose or args.seed is not None:
            print(
                f"ok seed={seed} size={report.size} acked={report.acked} "
                f"reads={report.reads_checked} faults={report.faults}",
                flush=True,
            )
    elapsed = time.monotonic() - started
    print(f"{len(seeds) - failures} passed, {failures} failed in {elapsed:.1f}s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
