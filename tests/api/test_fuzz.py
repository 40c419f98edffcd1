"""
Property-based fuzzing of the HTTP API: whatever a client sends, the node
answers with JSON, never a 5xx, an HTML page or a traceback, and a request
it refuses changes nothing.

Requests go in process through the real stack a node serves: the Klein
resource of L{FarmAPI} behind an L{APISite} (with its L{BoundedRequest}s and
L{GuardedHTTPChannel}s), driven by C{treq.testing.StubTreq} for requests a
client library can build, and by raw bytes on a L{StringTransport} for the
ones it cannot (broken framing, duplicated C{Content-Length}, chunking,
dribbled bytes).  Every example starts from the same small farm (a
printer, a filament and a queued job), and the farm's snapshot bytes before
and after a refused request must be equal.

Every test is derandomized, without an example database, so CI runs the
same examples every time.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from raft3d.service import APISite, HTTPLimits

from ..service._rawhttp import RawClient, RawResponse, Unparsable, parse_responses
from ._fakes import Node, Response

FUZZ = settings(
    max_examples=100,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

PRINTER, FILAMENT, JOB = "n1-id-1", "n1-id-2", "n1-id-3"

ROUTES = (
    "/api/v1/printers",
    "/api/v1/printers/{id}",
    "/api/v1/filaments",
    "/api/v1/filaments/{id}",
    "/api/v1/print_jobs",
    "/api/v1/print_jobs/{id}",
    "/api/v1/print_jobs/{id}/status",
    "/status",
    "/",
    "/api",
    "/api/v1",
)

FIELDS = (
    "company",
    "model",
    "type",
    "color",
    "total_weight_in_grams",
    "remaining_weight_in_grams",
    "printer_id",
    "filament_id",
    "filepath",
    "print_weight_in_grams",
    "status",
)

PARAMS = ("limit", "cursor", "consistency", "status", "printer_id", "filament_id")
CURSOR = "cHJpbnRlcjox"  # after the first printer


class FuzzServer:
    """
    A node under fuzzing: the fake Raft node and farm of L{tests.api._fakes},
    served by a real L{APISite} on the in-memory connection of C{StubTreq},
    seeded with a printer, a filament and a queued job.  L{reset} puts the
    seeded state back, so that examples do not depend on each other.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.case = case
        self.node = Node()
        agent = self.node.stub._agent
        # StubTreq serves through a plain Site; serve through the node's
        # own, so that its channel and request classes are under test too.
        self.site = APISite(self.node.api.resource(), reactor=agent._memoryReactor)
        agent._serverFactory = self.site
        for path, body in (
            ("/api/v1/printers", {"company": "Prusa", "model": "MK4"}),
            ("/api/v1/filaments", {"type": "PLA", "color": "red", "total_weight_in_grams": 1000}),
            (
                "/api/v1/print_jobs",
                {
                    "printer_id": PRINTER,
                    "filament_id": FILAMENT,
                    "filepath": "a.gcode",
                    "print_weight_in_grams": 100,
                },
            ),
        ):
            response = self.node.request(case, "POST", path, body)
            case.assertEqual(response.code, 201, response)
        self._seed = self.snapshot()

    def reset(self) -> FuzzServer:
        """
        Back to the seeded farm, with no idempotency sessions.
        """
        self.node.farm.restore(self._seed)
        self.node.node.sessions.clear()
        return self

    def snapshot(self) -> bytes:
        return self.node.farm.snapshot()

    def request(
        self, method: str, url: bytes, body: bytes | None, headers: dict[bytes, list[bytes]]
    ) -> Response:
        d = self.node.stub.request(method, url, data=body, headers=headers)
        return self.node.finish(self.case, d)


def check_answer(
    case: SynchronousTestCase,
    status: int,
    content_type: str | None,
    body: bytes,
    before: bytes,
    after: bytes,
    *,
    head: bool = False,
) -> None:
    """
    The properties every answer has: no 5xx, JSON, no traceback, and for an
    error the error shape and an unchanged farm.
    """
    case.assertLess(status, 500, body[:300])
    case.assertGreaterEqual(status, 200, body[:300])
    case.assertEqual(content_type, "application/json", body[:300])
    case.assertNotIn(b"Traceback", body)
    case.assertNotIn(b"<html", body.lower())
    if head:
        case.assertEqual(body, b"")
        return
    value = json.loads(body)
    if status >= 400:
        case.assertEqual(set(value), {"error"}, value)
        case.assertEqual(set(value["error"]), {"code", "message"}, value)
        case.assertIsInstance(value["error"]["code"], str)
        case.assertIsInstance(value["error"]["message"], str)
        case.assertEqual(after, before, f"a {status} changed the farm: {value}")


# -- strategies ---------------------------------------------------------------

# Any code point, lone surrogates included (which UTF-8 cannot carry).
_chars = st.characters() | st.characters(categories=["Cs"])
_text = st.text(_chars, max_size=40)

# Things numeric parsers trip on: every script's digits, superscripts,
# fractions, signs, points and spaces.
_numbers = st.text(
    st.characters(categories=["Nd", "Nl", "No"])
    | st.sampled_from("0123456789+-._ e")
    | st.sampled_from("\u00b2\u00b9\u2460\u2074\u2085\u0663\uff15\u0966"),
    min_size=1,
    max_size=4,
)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | _text
    | st.sampled_from(["PLA", "petg", "Running", "done", PRINTER, FILAMENT, JOB, "", " "]),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(FIELDS) | _text, children, max_size=5)
    ),
    max_leaves=25,
)

# Objects shaped like the API's bodies: some real fields, some others.
field_objects = st.builds(
    lambda known, other: {**other, **known},
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=len(FIELDS)),
    st.dictionaries(_text, json_values, max_size=3),
)


VALID_BODIES: dict[str, dict[str, Any]] = {
    "/api/v1/printers": {"company": "Creality", "model": "Ender 3"},
    "/api/v1/filaments": {
        "type": "petg",
        "color": "blue",
        "total_weight_in_grams": 500,
        "remaining_weight_in_grams": 400,
    },
    "/api/v1/print_jobs": {
        "printer_id": PRINTER,
        "filament_id": FILAMENT,
        "filepath": "b.gcode",
        "print_weight_in_grams": 901,  # 1 g more than is available: 422
    },
}


@st.composite
def near_valid(draw: st.DrawFn, path: str) -> dict[str, Any]:
    """
    A valid body for C{path} with a few fields removed, replaced by any
    value, or added: these get past the JSON parser to the field checks
    and to the state machine's rules.
    """
    body = dict(VALID_BODIES[path])
    for _ in range(draw(st.integers(0, 3))):
        present = st.sampled_from(sorted(body)) if body else st.nothing()
        key = draw(present | st.sampled_from(FIELDS) | _text)
        if key in body and draw(st.booleans()):
            del body[key]
        else:
            body[key] = draw(json_values)
    return body


def _encode(value: Any, ascii_only: bool) -> bytes:
    # allow_nan: NaN/Infinity must be refused by the server, not the client.
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8


json_bodies = st.builds(_encode, json_values | field_objects, st.booleans())

bodies: st.SearchStrategy[bytes | None] = st.one_of(
    st.none(),
    json_bodies,
    json_bodies.flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),  # truncated
    st.builds(lambda b, junk: b + junk, json_bodies, st.binary(min_size=1, max_size=8)),
    st.binary(max_size=200),
    st.integers(1, 200_000).map(lambda n: b"[" * n),  # nesting bombs
    st.integers(1, 2000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.sampled_from([b"", b" ", b"null", b"NaN", b"[]", b'"x"', b"\xef\xbb\xbf{}", b"{}" * 2]),
)

_segment_text = st.one_of(
    st.sampled_from([PRINTER, FILAMENT, JOB, "..", ".", "", "%2e%2e", "%2F", "%00", "%", "%zz"]),
    _text.map(lambda t: quote(t.encode("utf-8", "surrogatepass"), safe="")),
    st.binary(max_size=12).map(lambda b: quote(b, safe="")),
    st.integers(200, 6000).map(lambda n: "x" * n),
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    """
    A route with its id filled in (or not), maybe more segments, and a
    query string of known and unknown parameters.
    """
    route = draw(st.sampled_from(ROUTES))
    if "{id}" in route:
        route = route.replace("{id}", draw(_segment_text))
    if draw(st.integers(0, 4)) == 0:
        extra = draw(st.lists(_segment_text, min_size=1, max_size=3))
        route = route + "/" + "/".join(extra)
    if draw(st.booleans()):
        pairs = draw(
            st.lists(
                st.tuples(st.sampled_from(PARAMS) | _segment_text, _segment_text | _text),
                max_size=5,
            )
        )
        query = "&".join(
            f"{quote(k, safe='%')}={quote(v.encode('utf-8', 'surrogatepass'), safe='%')}"
            for k, v in pairs
        )
        route += "?" + draw(st.sampled_from([query, query + "&", "&&=&", "=", query + "#x"]))
    return route


_param_values = st.one_of(
    st.sampled_from(["stale", "linearizable", "1", "1000", "0", "queued", CURSOR, PRINTER]),
    _numbers,
    st.text(max_size=6),
    _segment_text,
    _text,
)


def _pair(key: str, value: str) -> str:
    return f"{quote(key, safe='%')}={quote(value.encode('utf-8', 'surrogatepass'), safe='%')}"


@st.composite
def queries(draw: st.DrawFn) -> str:
    """
    A query string: known parameters (maybe repeated) with any value, and
    sometimes an unknown one.
    """
    pairs = [
        _pair(k, draw(_param_values)) for k in draw(st.lists(st.sampled_from(PARAMS), max_size=3))
    ]
    if draw(st.integers(0, 3)) == 0:
        pairs.insert(
            draw(st.integers(0, len(pairs))), _pair(draw(_segment_text), draw(_param_values))
        )
    return "&".join(pairs)


_token = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~",
    min_size=1,
    max_size=12,
)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]) | _token

_header_values = st.one_of(
    st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.integers(1, 9000).map(lambda n: b"k" * n),
    st.sampled_from(
        [
            b"application/json",
            b"application/json; charset=latin-1",
            b"text/html",
            b"multipart/form-data; boundary=zz",
            b"multipart/form-data",
            b"application/x-www-form-urlencoded",
            b"",
            b"\xff\xfe",
        ]
    ),
)


@st.composite
def headers(draw: st.DrawFn) -> dict[bytes, list[bytes]]:
    """
    Content types, idempotency keys (good, bad, repeated), the forwarding
    marker and arbitrary others, some huge.
    """
    out: dict[bytes, list[bytes]] = {}
    if draw(st.booleans()):
        out[b"Content-Type"] = draw(st.lists(_header_values, min_size=1, max_size=2))
    if draw(st.booleans()):
        key = _header_values | _token.map(str.encode)
        out[b"Idempotency-Key"] = draw(st.lists(key, min_size=1, max_size=2))
    if draw(st.integers(0, 5)) == 0:
        out[b"X-Raft3D-Forwarded"] = [b"1"]
    for name in draw(st.lists(_token, max_size=3)):
        if name.lower() not in ("content-length", "transfer-encoding", "host", "connection"):
            out[name.encode()] = [draw(_header_values)]
    return out


class APIFuzzTests(SynchronousTestCase):
    """
    Well-formed HTTP with arbitrary contents, through C{StubTreq}.
    """

    _server: FuzzServer | None = None

    def server(self) -> FuzzServer:
        """
        This test's node, back in its seeded state.
        """
        if self._server is None:
            self._server = FuzzServer(self)
        return self._server.reset()

    def send(
        self,
        server: FuzzServer,
        method: str,
        path: str,
        body: bytes | None,
        hdrs: dict[bytes, list[bytes]],
    ) -> None:
        before = server.snapshot()
        response = server.request(method, b"http://127.0.0.1:8001" + path.encode(), body, hdrs)
        check_answer(
            self,
            response.code,
            response.header("content-type"),
            response.body,
            before,
            server.snapshot(),
            head=method == "HEAD",
        )
        self.assertEqual(self.flushLoggedErrors(), [])

    @FUZZ
    @given(
        st.sampled_from(["/api/v1/printers", "/api/v1/filaments", "/api/v1/print_jobs"]),
        bodies,
    )
    def test_json_bodies(self, path: str, body: bytes | None) -> None:
        """
        Any body posted to a collection (any JSON value or object of any
        fields and types, invalid UTF-8, lone surrogates, NaN, truncated
        or trailing garbage, nesting bombs) is created or refused with a
        JSON 4xx that leaves the farm unchanged.
        """
        self.send(self.server(), "POST", path, body, {})

    @FUZZ
    @given(
        st.sampled_from(sorted(VALID_BODIES)).flatmap(
            lambda p: st.tuples(st.just(p), near_valid(p), st.booleans())
        )
    )
    def test_near_valid_bodies(self, case: tuple[str, dict[str, Any], bool]) -> None:
        """
        Valid bodies with fields missing, retyped or added are created
        (201) or refused by the field checks or the farm's rules (too heavy
        a job, unknown printer...) with a JSON 4xx that changes nothing.
        """
        path, body, ascii_only = case
        self.send(self.server(), "POST", path, _encode(body, ascii_only), {})

    @FUZZ
    @given(st.sampled_from([JOB, "nope", "x" * 300]), bodies, st.booleans())
    def test_status_bodies(self, job: str, body: bytes | None, with_query: bool) -> None:
        """
        Status changes with any body, with or without C{?status=}, are
        applied or refused with a JSON 4xx that changes nothing.
        """
        query = "?status=Running" if with_query else ""
        self.send(self.server(), "POST", f"/api/v1/print_jobs/{job}/status{query}", body, {})

    @settings(FUZZ, max_examples=200)
    @given(
        st.sampled_from(["/api/v1/printers", "/api/v1/filaments", "/api/v1/print_jobs"])
        | st.sampled_from([PRINTER, FILAMENT, JOB]).map(lambda i: f"/api/v1/printers/{i}"),
        queries(),
    )
    def test_query_strings(self, path: str, query: str) -> None:
        """
        Reads with any query string (known parameters with any value,
        unknown and repeated ones, undecodable bytes) answer JSON, never a
        5xx.
        """
        self.send(self.server(), "GET", f"{path}?{query}", None, {})

    @FUZZ
    @given(methods, paths())
    def test_paths_and_methods(self, method: str, path: str) -> None:
        """
        Any method on any path (percent-encoded bytes and text, dot
        segments, very long segments, unknown and repeated query
        parameters) answers JSON, never a 5xx.
        """
        self.send(self.server(), method, path, None, {})

    @FUZZ
    @given(st.sampled_from(["POST", "GET"]), paths(), bodies, headers())
    def test_everything(
        self, method: str, path: str, body: bytes | None, hdrs: dict[bytes, list[bytes]]
    ) -> None:
        """
        Methods, paths, bodies and headers (content types, idempotency keys
        good, bad or repeated, huge values, the forwarding marker) together.
        """
        self.send(self.server(), method, path, body, hdrs)

    def test_found_superscript_limit(self) -> None:
        """
        Regression found by L{test_paths_and_methods}: C{?limit=²} passed
        C{str.isdigit} and crashed C{int()}, a 500.
        """
        response = self.server().request(
            "GET", b"http://127.0.0.1:8001/api/v1/printers?limit=%C2%B2", None, {}
        )
        self.assertEqual(response.code, 400)
        self.assertEqual(response.json["error"]["code"], "invalid_request")


# -- raw HTTP -----------------------------------------------------------------

_raw_methods = st.sampled_from(
    [b"GET", b"POST", b"PUT", b"OPTIONS", b"CONNECT", b"\x00", b""]
) | st.binary(min_size=1, max_size=8).filter(lambda m: m.upper() != b"HEAD")
_targets = st.one_of(
    paths().map(lambda p: p.encode()),
    st.sampled_from([b"*", b"http://other/api/v1/printers", b"//", b"/status?", b""]),
    st.binary(max_size=30),
)
_versions = st.sampled_from(
    [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1.1 extra", b"", b"http/1.1"]
)
_lengths = st.one_of(
    st.integers(0, 2**70).map(lambda n: b"%d" % n),
    st.sampled_from([b"-1", b"+5", b"0x10", b"1e3", b" 5", b"5,5", b"", b"\xff"]),
)
_raw_headers = st.one_of(
    st.tuples(st.just(b"Content-Length"), _lengths),
    st.tuples(
        st.just(b"Transfer-Encoding"),
        st.sampled_from([b"chunked", b"gzip", b"chunked, chunked", b"identity", b"CHUNKED"]),
    ),
    st.tuples(
        st.sampled_from([b"Content-Type", b"Idempotency-Key", b"Expect", b"Connection", b"Host"]),
        _header_values,
    ),
    st.tuples(_token.map(str.encode), _header_values),
    st.tuples(st.binary(max_size=10), st.binary(max_size=20)),
)


@st.composite
def chunked(draw: st.DrawFn) -> bytes:
    """
    A chunked body: good or bad sizes, extensions, missing terminators.
    """
    out = b""
    for data in draw(st.lists(st.binary(max_size=30), max_size=4)):
        size = draw(
            st.sampled_from(
                [b"%x" % len(data), b"%X;ext=1" % len(data), b"zz", b"-1", b"%x" % (len(data) + 1)]
            )
        )
        out += size + b"\r\n" + data + draw(st.sampled_from([b"\r\n", b"", b"\n"]))
    return out + draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nTrailer: x\r\n\r\n", b"", b"0\r\n"]))


@st.composite
def raw_requests(draw: st.DrawFn) -> bytes:
    """
    Bytes that look more or less like an HTTP/1.1 request: mostly a good
    request line, so that the headers and body get fuzzed too.
    """
    shape = draw(st.integers(0, 3))
    if shape < 3:
        method = draw(st.sampled_from([b"GET", b"POST"]))
        path = draw(st.sampled_from([b"/api/v1/printers", b"/api/v1/filaments", b"/status"]))
        version = b"HTTP/1.1" if shape < 2 else draw(_versions)
        line = method + b" " + path + b" " + version
    else:
        line = b" ".join([draw(_raw_methods), draw(_targets), draw(_versions)])
    fields = draw(st.lists(_raw_headers, max_size=6))
    head = line + b"\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in fields)
    body = draw(
        st.one_of(
            json_bodies,
            near_valid("/api/v1/printers").map(lambda b: _encode(b, True)),
            chunked(),
            st.binary(max_size=50),
            st.just(b""),
        )
    )
    ending = draw(st.sampled_from([b"\r\n", b"\n", b""]))
    return head + ending + body


class RawHTTPFuzzTests(SynchronousTestCase):
    """
    Arbitrary bytes on a connection to the node's site.
    """

    _server: FuzzServer | None = None

    def serve(self, data: list[bytes]) -> tuple[FuzzServer, RawClient, Clock, bytes]:
        """
        Send C{data} piece by piece on a new connection to the seeded node,
        then let every deadline pass.
        """
        if self._server is None:
            self._server = FuzzServer(self)
        server = self._server.reset()
        clock = Clock()
        site = APISite(server.node.api.resource(), reactor=clock, limits=HTTPLimits())
        before = server.snapshot()
        client = RawClient(site)
        for chunk in data:
            client.send(chunk)
        # Let every deadline expire: a partial request must be answered.
        clock.advance(31)
        return server, client, clock, before

    def check_output(
        self, server: FuzzServer, client: RawClient, before: bytes
    ) -> list[RawResponse]:
        """
        What the server wrote is a sequence of whole responses, each with
        the properties of L{check_answer}; after them the connection is
        either closed or idle with nothing half-written.
        """
        try:
            responses, rest = parse_responses(client.transport.value())
        except Unparsable as e:
            self.fail(f"the server wrote something that is not HTTP: {e}")
        self.assertEqual(rest, b"")
        after = server.snapshot()
        # With several requests on the connection, a refused one must not
        # change the farm unless another one was accepted.
        accepted = any(r.status < 400 for r in responses)
        for response in responses:
            check_answer(
                self,
                response.status,
                response.header("content-type"),
                response.body,
                after if accepted else before,
                after,
            )
        self.assertEqual(self.flushLoggedErrors(), [])
        return responses

    @FUZZ
    @given(st.lists(raw_requests(), min_size=1, max_size=3), st.integers(1, 64))
    def test_raw_requests(self, requests: list[bytes], chunk: int) -> None:
        """
        Requests with bad or missing versions, methods and targets,
        duplicated, huge, signed or non-numeric C{Content-Length}s, bad
        transfer codings and chunking, bare LF line ends, sent in small
        pieces: each is answered JSON or refused with a JSON 4xx that
        closes the connection; nothing is left half-answered.
        """
        data = b"".join(requests)
        pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        server, client, _, before = self.serve(pieces)
        responses = self.check_output(server, client, before)
        if not client.closing:
            # Still open: every request it got was answered.
            self.assertTrue(responses or not data.strip(b"\r\n"))

    @FUZZ
    @given(st.binary(max_size=300))
    def test_random_bytes(self, data: bytes) -> None:
        """
        Random bytes are answered with JSON errors or nothing, never a 5xx
        or something that is not HTTP.
        """
        server, client, _, before = self.serve([data])
        self.check_output(server, client, before)

    def test_found_http10_and_asterisk(self) -> None:
        """
        Regressions found by L{test_raw_requests}: bytes arriving after an
        HTTP/1.0 response (which ends the connection) started a request
        deadline whose 408 was written after that response; and C{GET *}
        got Twisted's own empty, untyped answer.
        """
        server, client, _, before = self.serve([b"GET /status HTTP/1.0\r\n\r\n", b"null"])
        [response] = self.check_output(server, client, before)
        self.assertEqual(response.status, 200)
        server, client, _, before = self.serve([b"GET * HTTP/1.1\r\n\r\n"])
        [response] = self.check_output(server, client, before)
        self.assertEqual(response.json["error"]["code"], "not_found")

    def test_rejected_requests_keep_state(self) -> None:
        """
        A sample of refused writes through raw HTTP leave the farm's
        snapshot bytes as they were, and the connection is closed.
        """
        body = b'{"company":"a","model":"b"}'
        for data in (
            b"POST /api/v1/printers HTTP/1.1\r\nContent-Length: 27\r\nContent-Length: 28\r\n\r\n"
            + body,
            b"POST /api/v1/printers HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n" + body,
            b"POST /api/v1/printers HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1b\r\n" + body,
        ):
            server, client, _, before = self.serve([data])
            [response] = self.check_output(server, client, before)
            self.assertGreaterEqual(response.status, 400)
            self.assertTrue(client.closing)
            self.assertEqual(server.snapshot(), before)
