"""
Tests for L{raft3d.api._paging}: cursors, limits and Link headers.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.api import MAX_PAGE_SIZE, APIError
from raft3d.api._paging import decode_cursor, encode_cursor, next_link, parse_limit


class CursorTests(SynchronousTestCase):
    """
    Cursors are opaque, URL-safe and bound to their collection.
    """

    def test_round_trip(self) -> None:
        """
        A cursor decodes to the position it was made for.
        """
        for seq in (0, 1, 999, 10**12):
            cursor = encode_cursor("print_job", seq)
            self.assertNotIn("=", cursor)
            self.assertEqual(decode_cursor("print_job", cursor), seq)

    def test_refused(self) -> None:
        """
        Garbage, negative or huge positions and other collections' cursors
        are 400s.
        """
        bad = [
            "",
            "!!!",
            "cHJpbnRlcjo",  # "printer:" without digits
            encode_cursor("printer", 3),
            encode_cursor("print_job", -1),
            encode_cursor("print_job", 10**20),
        ]
        for cursor in bad:
            with self.assertRaises(APIError) as caught:
                decode_cursor("print_job", cursor)
            self.assertEqual(caught.exception.status, 400)


class LimitTests(SynchronousTestCase):
    """
    Page sizes are 1..1000.
    """

    def test_bounds(self) -> None:
        """
        1 and L{MAX_PAGE_SIZE} are accepted; 0, 1001, negatives and
        non-numbers are refused.
        """
        self.assertEqual((parse_limit("1"), parse_limit("1000")), (1, MAX_PAGE_SIZE))
        for value in ("0", "1001", "-1", "1.5", "", "ten", "0001001", "99999999"):
            self.assertRaises(APIError, parse_limit, value)

    def test_ascii_digits_only(self) -> None:
        """
        Only ASCII digits make a limit: a superscript two, which
        C{str.isdigit} accepts but C{int} refuses (found by the fuzzer as
        a 500), and other scripts' digits are a 400.
        """
        for value in ("\u00b2", "\u0661\u0662", "\uff11"):
            with self.assertRaises(APIError) as caught:
                parse_limit(value)
            self.assertEqual(caught.exception.status, 400)


class LinkTests(SynchronousTestCase):
    """
    The next link keeps the query and replaces the cursor.
    """

    def test_link(self) -> None:
        """
        Other parameters are kept (encoded) and the cursor replaced.
        """
        link = next_link(
            "/api/v1/print_jobs", {"status": "Queued", "cursor": "old", "printer_id": "a b"}, "new"
        )
        self.assertEqual(
            link, '</api/v1/print_jobs?status=Queued&printer_id=a+b&cursor=new>; rel="next"'
        )
