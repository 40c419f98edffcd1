# -*- test-case-name: tests.bench.test_cli -*-
"""
C{python -m bench}: see L{bench._cli} and C{docs/performance.md}.
"""

from __future__ import annotations

import sys

from ._cli import main

if __name__ == "__main__":
    sys.exit(main())
