# -*- test-case-name: tests.farm.test_fields -*-
"""
Field rules shared by the state machine and the API.

The API checks a request with these functions before it proposes anything, so
that a client gets a precise 400 without a trip through the log; the state
machine checks every command again with the same functions, because a command
may come from an older or buggy node and must never corrupt the state.  One
set of rules in one place keeps both checks the same.
"""

from __future__ import annotations

from typing import Final

from ._errors import MalformedCommand

MAX_ID_LENGTH: Final = 64
"""
Longest object id; the API makes uuid4 strings (36 characters).
"""

MAX_NAME_LENGTH: Final = 256
"""
Longest company, model or colour.
"""

MAX_FILEPATH_LENGTH: Final = 1024
"""
Longest print-job file path.
"""

MAX_TIMESTAMP_LENGTH: Final = 40
"""
Longest ISO-8601 timestamp carried in a command.
"""

MAX_WEIGHT_IN_GRAMS: Final = 1_000_000_000
"""
Largest weight accepted anywhere (a thousand tonnes): keeps integers small
enough for every encoder and for sums of reservations.
"""

FILAMENT_TYPES: Final = frozenset({"PLA", "PETG", "ABS", "TPU"})
"""
Known materials, stored in upper case.
"""


def check_text(value: object, field: str, max_length: int) -> str:
    """
    A non-blank string of at most C{max_length} characters that UTF-8 can
    encode.

    @raise MalformedCommand: otherwise.
    """
    if not isinstance(value, str):
        raise MalformedCommand(f"{field} must be a string")
    if not value or value.isspace():
        raise MalformedCommand(f"{field} must not be empty")
    if len(value) > max_length:
        raise MalformedCommand(f"{field} must be at most {max_length} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate (JSON allows "\ud800") cannot go through CBOR.
        raise MalformedCommand(f"{field} must be valid Unicode text")
    return value


def check_id(value: object, field: str = "id") -> str:
    """
    An object id: a non-blank string of at most L{MAX_ID_LENGTH} characters.
    """
    return check_text(value, field, MAX_ID_LENGTH)


def check_weight(value: object, field: str, minimum: int = 1) -> int:
    """
    An integer weight in grams between C{minimum} and L{MAX_WEIGHT_IN_GRAMS}.
    Booleans and floats are refused: C{True} is not one gram.

    @raise MalformedCommand: otherwise.
    """
    if type(value) is not int:
        raise MalformedCommand(f"{field} must be an integer")
    if not minimum <= value <= MAX_WEIGHT_IN_GRAMS:
        raise MalformedCommand(f"{field} must be between {minimum} and {MAX_WEIGHT_IN_GRAMS}")
    return value


def check_filament_type(value: object) -> str:
    """
    A filament material in any letter case, returned in upper case.

    @raise MalformedCommand: for anything but PLA, PETG, ABS or TPU.
    """
    if isinstance(value, str):
        upper = value.upper()
        if upper in FILAMENT_TYPES:
            return upper
    raise MalformedCommand(
        f"type must be one of {', '.join(sorted(FILAMENT_TYPES))}; got {value!r:.80}"
    )
