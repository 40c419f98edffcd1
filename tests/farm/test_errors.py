"""
Tests for L{raft3d.farm._errors}: rejections as results and back.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm import (
    ERRORS_BY_CODE,
    FarmError,
    InsufficientFilament,
    PrinterNotFound,
    UnexpectedResult,
    unwrap,
)


class UnwrapTests(SynchronousTestCase):
    """
    L{unwrap} returns the ok payload or raises the typed error.
    """

    def test_ok(self) -> None:
        """
        The C{ok} payload is returned as is.
        """
        self.assertEqual(unwrap({"ok": {"printer": {"id": "p"}}}), {"printer": {"id": "p"}})

    def test_round_trip(self) -> None:
        """
        Every known error turns into its result and back into its class,
        message intact.
        """
        for code, cls in ERRORS_BY_CODE.items():
            result = cls("why").to_result()
            self.assertEqual(result, {"error": {"code": code, "message": "why"}})
            with self.assertRaises(cls) as caught:
                unwrap(result)
            self.assertEqual(caught.exception.message, "why")

    def test_specific_classes(self) -> None:
        """
        Codes map to the documented classes.
        """
        self.assertIs(ERRORS_BY_CODE["printer_not_found"], PrinterNotFound)
        self.assertIs(ERRORS_BY_CODE["insufficient_filament"], InsufficientFilament)

    def test_unknown_code(self) -> None:
        """
        An error code this version does not know still raises a
        L{FarmError} carrying that code.
        """
        with self.assertRaises(FarmError) as caught:
            unwrap({"error": {"code": "from_the_future", "message": "m"}})
        self.assertEqual(caught.exception.code, "from_the_future")

    def test_not_a_result(self) -> None:
        """
        Anything else raises L{UnexpectedResult}.
        """
        for value in (None, {}, {"ok": 1}, {"error": {"code": 1}}, {"ok": {}, "x": 1}, [1]):
            self.assertRaises(UnexpectedResult, unwrap, value)
