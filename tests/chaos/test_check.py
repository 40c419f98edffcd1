"""
Tests for L{tools.chaos.check}: re-checking a saved history from the
command line.
"""

from __future__ import annotations

import io
import json

from twisted.trial.unittest import SynchronousTestCase

from tools.chaos import write_history
from tools.chaos.check import main

from ._builders import Builder


class CommandLineTests(SynchronousTestCase):
    """
    C{python -m tools.chaos.check FILE} prints the report and exits with
    the verdict.
    """

    def run_main(self, b: Builder, *extra: str) -> tuple[int, str]:
        path = self.mktemp()
        write_history(b.history(), path)
        out = io.StringIO()
        return main([path, *extra], out), out.getvalue()

    def passing(self) -> Builder:
        b = Builder()
        b.create_printer((0, 1), "P1", "p1")
        b.read_printer((2, 3), "p1")
        b.set_final("n1", ["p1"])
        return b

    def test_pass(self) -> None:
        """
        A good history exits 0 with the text report.
        """
        code, text = self.run_main(self.passing())
        self.assertEqual(code, 0)
        self.assertIn("VERDICT: PASS", text)

    def test_fail(self) -> None:
        """
        A bad one exits 1 and shows the offending operations.
        """
        b = Builder()
        b.create_printer((0, 1), "P1", "p1")
        b.read_printer((2, 3), "p1", found=False)
        code, text = self.run_main(b)
        self.assertEqual(code, 1)
        self.assertIn("#1 p0 read_printer(id='p1') linearizable -> fail 404", text)

    def test_unknown(self) -> None:
        """
        An undecided one exits 2: here the final state is missing.
        """
        b = Builder()
        b.create_printer((0, 1), "P1", "p1")
        self.assertEqual(self.run_main(b)[0], 2)

    def test_json(self) -> None:
        """
        C{--json} prints the report as JSON; C{--bound} reaches the search.
        """
        code, text = self.run_main(self.passing(), "--json", "--bound", "1")
        report = json.loads(text)
        self.assertEqual(code, 2)
        self.assertEqual(report["verdict"], "unknown")
        self.assertEqual(report["checks"][1]["stats"]["undecided"], 1)

    def test_unreadable(self) -> None:
        """
        A missing or malformed file exits 3 with the reason.
        """
        out = io.StringIO()
        self.assertEqual(main([self.mktemp()], out), 3)
        self.assertIn("cannot read", out.getvalue())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("{}\n")
        out = io.StringIO()
        self.assertEqual(main([path], out), 3)
        self.assertIn("line 1", out.getvalue())
