# -*- test-case-name: tests.api.test_json -*-
"""
JSON in and out: one compact encoding, and a strict decoder for bodies.

Decoding refuses what a lenient C{json.loads} would let through and the
state machine could not carry: C{NaN}/C{Infinity}, non-objects, lone
surrogates, absurd nesting.  Every refusal is an L{APIError}, so a bad body
is a 400 and never a 500.
"""

from __future__ import annotations

import json
from typing import Any, NoReturn

from ._errors import APIError

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def to_json_bytes(value: Any) -> bytes:
    """
    Encode C{value} as compact UTF-8 JSON.
    """
    return _encoder.encode(value).encode("utf-8")


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(data: bytes) -> dict[str, Any]:
    """
    Decode a request body that must be one JSON object.

    @raise APIError: 400 C{malformed_json} when it is not JSON (or not
        UTF-8), 400 C{invalid_request} when it is JSON but not an object.
    """
    try:
        text = data.decode("utf-8")
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as e:
        raise APIError(400, "malformed_json", f"the body is not valid JSON: {e}"[:300])
    if not isinstance(value, dict):
        raise APIError(400, "invalid_request", "the body must be a JSON object")
    return value
