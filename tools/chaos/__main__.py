# -*- test-case-name: tests.chaos.test_runner -*-
"""
Run the nemesis suite against a real local cluster::

    python -m tools.chaos run --nodes 3 --duration 60 --seed 1 \\
        --nemesis kill,pause,restart,partition --out chaos-out

Exit status 0 when the checker passed and no node crashed, 1 otherwise, 2
for bad arguments.  C{python -m tools.chaos.check} re-checks a history.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred

from ._nemesis import KINDS, plan
from ._runner import RunConfig, parse_nemesis, run


def parse(argv: list[str]) -> RunConfig:
    parser = argparse.ArgumentParser(prog="python -m tools.chaos")
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run clients and a nemesis against a real cluster")
    r.add_argument("--nodes", type=int, choices=(3, 5), default=3)
    r.add_argument("--duration", type=float, default=60.0, help="seconds of nemesis")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--nemesis", default=",".join(KINDS), help="comma-separated: " + ",".join(KINDS))
    r.add_argument("--clients", type=int, default=6)
    r.add_argument("--snapshot-threshold", type=int, default=200)
    r.add_argument("--out", default="chaos-out")
    args = parser.parse_args(argv)
    nemesis = parse_nemesis(args.nemesis)
    try:
        plan(args.seed, nemesis, 1.0)
    except ValueError as e:
        parser.error(str(e))
    return RunConfig(
        nodes=args.nodes,
        duration=args.duration,
        seed=args.seed,
        nemesis=nemesis,
        out=args.out,
        clients=args.clients,
        snapshot_threshold=args.snapshot_threshold,
    )


def main(argv: list[str] | None = None) -> None:
    """
    Parse C{argv}, run, and exit with the run's status.
    """
    config = parse(sys.argv[1:] if argv is None else argv)

    def say(text: str) -> None:
        print(text, flush=True)

    async def go(reactor: Any) -> None:
        result = await run(reactor, config, say)
        say(result.report)
        verdict = "PASS" if result.ok else "FAIL"
        say(
            f"{verdict}: {result.operations} operations, {result.faults} faults; "
            f"output in {config.out}"
        )
        if not result.ok:
            raise SystemExit(result.exit_code())

    task.react(lambda reactor: Deferred.fromCoroutine(go(reactor)))


if __name__ == "__main__":
    main()
