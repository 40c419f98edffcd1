# -*- test-case-name: tests.bench.test_refserver -*-
"""
The reference rows' server: one Twisted process answering
C{POST /api/v1/printers} like Raft3D does (decode and check the JSON body,
give the object an id and timestamps, answer 201 with compact JSON and a
C{Location}), but with no Raft, no disk and no forwarding.  It is what a
single-process C{twisted.web} handler costs on this machine, the ceiling
any Raft3D write row could reach.

Two flavours, both on the same handler: a plain C{Resource} and a Klein
route (Raft3D's API is Klein).  Run as
C{python -m bench._refserver resource|klein PORT}.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any, Sequence

from klein import Klein
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


class Handler:
    """
    The work of one create, shared by both flavours.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock

    def create(self, request: Any) -> bytes:
        """
        Answer one C{POST}: 201 with the new printer, or 400.
        """
        body = request.content.read()
        try:
            fields = json.loads(body)
            company, model = fields["company"], fields["model"]
            if not isinstance(company, str) or not isinstance(model, str):
                raise ValueError("not text")
        except (ValueError, KeyError, TypeError):
            request.setResponseCode(400)
            request.setHeader(b"content-type", b"application/json")
            return b'{"error":{"code":"invalid_request","message":"bad body"}}'
        now = (
            datetime.fromtimestamp(self._clock.seconds(), tz=UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z")
        )
        obj = {
            "id": str(uuid.uuid4()),
            "company": company,
            "model": model,
            "created_at": now,
            "updated_at": now,
        }
        request.setResponseCode(201)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"location", f"/api/v1/printers/{obj['id']}".encode())
        return _encoder.encode(obj).encode("utf-8")


class PlainResource(Resource):
    """
    The plain C{twisted.web} flavour: one leaf resource for every path.
    """

    isLeaf = True

    def __init__(self, handler: Handler) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._handler = handler

    def render_POST(self, request: Any) -> bytes:
        return self._handler.create(request)


class KleinFlavour:
    """
    The Klein flavour: one route, as Raft3D's C{FarmAPI} declares them.
    """

    app = Klein()

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    @app.route("/api/v1/printers", methods=["POST"])
    def create(self, request: Any) -> bytes:
        return self._handler.create(request)


def build(kind: str, clock: IReactorTime) -> IResource:
    """
    The root resource of flavour C{kind} (C{resource} or C{klein}).
    """
    handler = Handler(clock)
    if kind == "resource":
        return PlainResource(handler)
    if kind == "klein":
        resource: IResource = KleinFlavour(handler).app.resource()
        return resource
    raise ValueError(f"unknown flavour {kind!r}")


class QuietSite(Site):
    """
    A site without an access log, as Raft3D runs by default.
    """

    def log(self, request: Any) -> None:
        pass


def listen(reactor: IReactorTCP, kind: str, port: int, clock: IReactorTime) -> None:
    """
    Serve flavour C{kind} on 127.0.0.1:C{port}.
    """
    site = QuietSite(build(kind, clock))  # type: ignore[no-untyped-call]
    site.noisy = False
    reactor.listenTCP(port, site, interface="127.0.0.1")  # type: ignore[arg-type]


def main(argv: Sequence[str]) -> None:
    from twisted.internet import reactor

    kind, port = argv[0], int(argv[1])
    listen(reactor, kind, port, reactor)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
