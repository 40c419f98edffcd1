"""
Tests for L{bench._refserver}.
"""

from __future__ import annotations

import io
import json

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from bench._refserver import Handler, build


class HandlerTests(SynchronousTestCase):
    """
    The reference handler answers like Raft3D's create.
    """

    def test_create(self) -> None:
        """
        201 with the printer, an id, timestamps from the clock and a
        Location.
        """
        clock = Clock()
        clock.advance(86400)
        request = DummyRequest([b"api", b"v1", b"printers"])
        request.method = b"POST"
        request.content = io.BytesIO(b'{"company": "a", "model": "b"}')
        body = json.loads(Handler(clock).create(request))
        self.assertEqual(request.responseCode, 201)
        self.assertEqual((body["company"], body["model"]), ("a", "b"))
        self.assertEqual(body["created_at"], "1970-01-02T00:00:00.000Z")
        location = request.responseHeaders.getRawHeaders(b"location")
        self.assertEqual(location, [f"/api/v1/printers/{body['id']}".encode()])

    def test_bad_body(self) -> None:
        """
        A body that is not a printer is a 400.
        """
        request = DummyRequest([b""])
        request.content = io.BytesIO(b'{"company": 1}')
        Handler(Clock()).create(request)
        self.assertEqual(request.responseCode, 400)

    def test_flavours(self) -> None:
        """
        Both flavours answer a POST with 201; an unknown flavour is refused.
        """
        for kind in ("resource", "klein"):
            treq = StubTreq(build(kind, Clock()))
            d = treq.post("http://127.0.0.1/api/v1/printers", b'{"company": "a", "model": "b"}')
            response = self.successResultOf(d)
            self.assertEqual(response.code, 201, kind)
        self.assertRaises(ValueError, build, "nope", Clock())
