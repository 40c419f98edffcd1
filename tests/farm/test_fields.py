"""
Tests for L{raft3d.farm._fields}: the field rules shared with the API.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm import (
    MAX_ID_LENGTH,
    MAX_WEIGHT_IN_GRAMS,
    MalformedCommand,
    check_filament_type,
    check_id,
    check_text,
    check_weight,
)


class CheckTextTests(SynchronousTestCase):
    """
    Text fields are non-blank, bounded, encodable strings.
    """

    def test_accepts(self) -> None:
        """
        A short non-blank string is returned unchanged, non-ASCII included.
        """
        self.assertEqual(check_text("Prusa MK4 ✓", "model", 20), "Prusa MK4 ✓")

    def test_refuses(self) -> None:
        """
        Non-strings, empty or blank strings, over-long strings and lone
        surrogates are refused, naming the field.
        """
        for value in (None, 3, b"bytes", ["a"], "", "   ", "x" * 21, "a\ud800b"):
            with self.assertRaises(MalformedCommand) as caught:
                check_text(value, "model", 20)
            self.assertIn("model", caught.exception.message)

    def test_id_length(self) -> None:
        """
        Ids are limited to L{MAX_ID_LENGTH} characters.
        """
        self.assertEqual(check_id("a" * MAX_ID_LENGTH), "a" * MAX_ID_LENGTH)
        self.assertRaises(MalformedCommand, check_id, "a" * (MAX_ID_LENGTH + 1))


class CheckWeightTests(SynchronousTestCase):
    """
    Weights are plain integers within bounds.
    """

    def test_accepts(self) -> None:
        """
        Integers between the minimum and L{MAX_WEIGHT_IN_GRAMS} are accepted.
        """
        self.assertEqual(check_weight(1, "w"), 1)
        self.assertEqual(check_weight(0, "w", minimum=0), 0)
        self.assertEqual(check_weight(MAX_WEIGHT_IN_GRAMS, "w"), MAX_WEIGHT_IN_GRAMS)

    def test_refuses(self) -> None:
        """
        Booleans, floats, strings, zero (by default), negatives and huge
        values are refused.
        """
        for value in (True, False, 1.0, 2.5, "10", None, 0, -1, MAX_WEIGHT_IN_GRAMS + 1):
            self.assertRaises(MalformedCommand, check_weight, value, "w")


class CheckFilamentTypeTests(SynchronousTestCase):
    """
    Filament types are accepted in any case and stored upper case.
    """

    def test_any_case(self) -> None:
        """
        C{pla}, C{Petg}, C{ABS} and C{tpu} are normalised to upper case.
        """
        self.assertEqual(
            [check_filament_type(t) for t in ("pla", "Petg", "ABS", "tpu")],
            ["PLA", "PETG", "ABS", "TPU"],
        )

    def test_unknown(self) -> None:
        """
        Other materials and non-strings are refused.
        """
        for value in ("nylon", "", None, 1, ["PLA"]):
            self.assertRaises(MalformedCommand, check_filament_type, value)
