# -*- test-case-name: tests.chaos.test_check -*-
"""
Re-check a saved chaos run::

    python -m tools.chaos.check history.jsonl [--bound N] [--json]

Exit status: 0 when every check passed, 1 when one failed, 2 when some could
not decide (a search bound was exceeded, or the final state is missing), 3
when the file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TextIO

from ._checker import DEFAULT_BOUND, check_history, render_report
from ._history import read_history
from ._model import Verdict

EXIT_CODES = {Verdict.PASS: 0, Verdict.FAIL: 1, Verdict.UNKNOWN: 2}


def main(argv: list[str] | None = None, out: TextIO | None = None) -> int:
    """
    Check the history named in C{argv} and print the report on C{out}.
    """
    out = sys.stdout if out is None else out
    parser = argparse.ArgumentParser(prog="python -m tools.chaos.check")
    parser.add_argument("history", help="a JSON-lines history written by the runner")
    parser.add_argument(
        "--bound",
        type=int,
        default=DEFAULT_BOUND,
        help="configurations the search may explore per object (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--max-violations", type=int, default=20, help="violations printed in full")
    args = parser.parse_args(argv)
    try:
        history = read_history(args.history)
    except (OSError, ValueError) as e:
        out.write(f"cannot read {args.history}: {e}\n")
        return 3
    report = check_history(history, bound=args.bound)
    if args.json:
        out.write(json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
    else:
        out.write(render_report(report, history, args.max_violations) + "\n")
    return EXIT_CODES[report.verdict]


if __name__ == "__main__":
    sys.exit(main())
