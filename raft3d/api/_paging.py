# -*- test-case-name: tests.api.test_paging -*-
"""
Opaque list cursors and the C{Link} header that carries the next one.

A cursor names a position in creation order (the sequence number of the last
object of the previous page) and the kind of object it belongs to.  Creation
order never changes and nothing is deleted, so a cursor stays valid forever,
on every node, whatever was created since.  Clients must treat it as opaque:
it is base64url so that its form can change later.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final
from urllib.parse import quote, urlencode

from ._errors import bad_request

MAX_PAGE_SIZE: Final = 1000


def encode_cursor(kind: str, seq: int) -> str:
    """
    The cursor for "after position C{seq} of C{kind}".
    """
    return base64.urlsafe_b64encode(f"{kind}:{seq}".encode("ascii")).decode("ascii").rstrip("=")


def decode_cursor(kind: str, cursor: str) -> int:
    """
    The position a cursor made by L{encode_cursor} for C{kind} names.

    @raise APIError: 400 if C{cursor} is not such a cursor.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        cursor_kind, _, digits = raw.partition(":")
        if cursor_kind == kind and digits.isdigit() and len(digits) <= 18:
            return int(digits)
    except (binascii.Error, ValueError):
        pass
    raise bad_request("invalid cursor")


def parse_limit(value: str) -> int:
    """
    A page size between 1 and L{MAX_PAGE_SIZE}.

    @raise APIError: 400 otherwise.
    """
    # isdigit() alone accepts other scripts' digits and superscripts ("²"),
    # some of which int() refuses.
    if value.isascii() and value.isdigit() and len(value) <= 5:
        limit = int(value)
        if 1 <= limit <= MAX_PAGE_SIZE:
            return limit
    raise bad_request(f"limit must be an integer between 1 and {MAX_PAGE_SIZE}")


def next_link(path: str, params: dict[str, str], cursor: str) -> str:
    """
    The C{Link} header value pointing at the next page: the same path and
    query with C{cursor} replaced.
    """
    query = {k: v for k, v in params.items() if k != "cursor"}
    query["cursor"] = cursor
    return f'<{quote(path)}?{urlencode(query)}>; rel="next"'
