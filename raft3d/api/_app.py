# -*- test-case-name: tests.api.test_app -*-
"""
L{FarmAPI}: the Klein REST API of a Raft3D node.

Routes only decode, delegate and encode.  A write is validated here (so a bad
request costs no trip through the log), turned into a command carrying the
ids and timestamps this node chose, and proposed to the engine; the state
machine's result is the answer.  When this node is not the leader the request
is forwarded to the leader and its answer relayed.  A read waits for the
engine's read index, so that it is linearizable on every node, then reads the
local L{FarmState}; C{?consistency=stale} skips the wait.

Every failure is raised and mapped in one place, L{FarmAPI._error_answer} at
the end of the class, to a JSON body C{{"error": {"code", "message"}}}; see
C{docs/farm.md} for the table.

Handlers return their body, or a Deferred of it when they must wait for the
engine, rather than being coroutines: driving a coroutine costs more than the
few callbacks they need.  The hot routes skip Klein's routing (see
L{raft3d.api._dispatch}) but reach the same handlers and the same error
mapping.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import Any, Callable, ClassVar, Final, cast
from urllib.parse import parse_qsl, quote

from klein import Klein
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from ..farm import (
    MAX_FILEPATH_LENGTH,
    MAX_ID_LENGTH,
    MAX_NAME_LENGTH,
    FarmError,
    FarmState,
    MalformedCommand,
    Page,
    check_filament_type,
    check_id,
    check_text,
    check_weight,
    create_filament,
    create_print_job,
    create_printer,
    parse_status,
    set_print_job_status,
    unwrap,
)
from ..raft import IRaftNode, Member, NotLeader, RaftError, StorageFull
from ._dispatch import Answer, Deadlines, FastKleinResource
from ._errors import (
    APIError,
    bad_request,
    farm_error_status,
    raft_error_to_api,
    storage_full_to_api,
    unavailable,
)
from ._forward import FORWARDED_HEADER, HTTPClient, forward
from ._json import parse_json_object, to_json_bytes
from ._paging import decode_cursor, encode_cursor, next_link, parse_limit
from ._request import MAX_BODY_BYTES, HTTPRequest, mark_reusable, read_body

API_PREFIX: Final = "/api/v1"
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 200
MAX_QUERY_FIELDS: Final = 16

_JSON: Final = b"application/json"
_GET_PARAMS: Final = frozenset({"consistency"})
_LIST_PARAMS: Final = frozenset({"consistency", "limit", "cursor"})
_JOB_LIST_PARAMS: Final = _LIST_PARAMS | {"status", "printer_id", "filament_id"}
_NO_PARAMS: Final = frozenset[str]()


def _uuid4() -> str:
    return str(uuid.uuid4())


def iso_now(clock: IReactorTime) -> str:
    """
    The clock's time as an ISO-8601 UTC string with milliseconds.
    """
    return _iso(clock.seconds())


def _iso(seconds: float) -> str:
    return (
        datetime.fromtimestamp(seconds, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


class _ISONow:
    """
    L{iso_now} of one clock, formatted once per millisecond: a loaded node
    stamps many writes within the same millisecond.
    """

    __slots__ = ("_clock", "_millisecond", "_text")

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._millisecond = -1
        self._text = ""

    def __call__(self) -> str:
        seconds = self._clock.seconds()
        # The millisecond datetime shows: it rounds the fraction to
        # microseconds (half to even) before it truncates to milliseconds.
        fraction, whole = math.modf(seconds)
        millisecond = int(whole) * 1000 + round(fraction * 1_000_000) // 1000
        if millisecond != self._millisecond:
            self._millisecond = millisecond
            self._text = _iso(seconds)
        return self._text


def _query(request: HTTPRequest, allowed: frozenset[str]) -> dict[str, str]:
    """
    The query parameters, each at most once and all in C{allowed}.  Parsed
    from the raw URI rather than C{request.args}, which C{twisted.web} mixes
    with form-encoded bodies.
    """
    raw = request.uri.partition(b"?")[2]
    if not raw:
        return {}
    try:
        pairs = parse_query(raw.decode("ascii"))
    except ValueError:
        raise bad_request("malformed query string")
    params: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            raise bad_request(f"unknown query parameter {key!r:.80}")
        if key in params:
            raise bad_request(f"query parameter {key} given more than once")
        params[key] = value
    return params


parse_qsl_strictly: Final = partial(
    parse_qsl,
    keep_blank_values=True,
    encoding="utf-8",
    errors="strict",
    max_num_fields=MAX_QUERY_FIELDS,
)
"""
How the API reads a query string: blank values kept, escapes that are not
UTF-8 and more than L{MAX_QUERY_FIELDS} fields refused (C{ValueError}).
"""


def parse_query(text: str) -> list[tuple[str, str]]:
    """
    L{parse_qsl_strictly}, without its cost for the plain queries clients
    send (no escapes, no C{+}).

    @raise ValueError: as L{parse_qsl_strictly} does.
    """
    if "%" in text or "+" in text or text.count("&") >= MAX_QUERY_FIELDS:
        return parse_qsl_strictly(text)
    pairs = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((name, value))
    return pairs


def _check_fields(
    body: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> None:
    """
    Refuse a body with unknown or missing fields (a typo must not silently
    fall back to a default).
    """
    unknown = sorted(k for k in body if k not in required and k not in optional)
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(unknown)}"[:300])
    missing = [k for k in required if k not in body]
    if missing:
        raise bad_request(f"missing field(s): {', '.join(missing)}")


def _idempotency_key(request: HTTPRequest) -> str | None:
    values = request.requestHeaders.getRawHeaders(b"idempotency-key")
    if not values:
        return None
    if len(values) > 1:
        raise bad_request("Idempotency-Key given more than once")
    raw = values[0]
    if 0 < len(raw) <= MAX_IDEMPOTENCY_KEY_LENGTH and raw.isascii():
        key: str = raw.decode("ascii")
        if key.isprintable() and not key.isspace():
            return key
    raise bad_request(
        f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters"
    )


_NOT_FOUND: Final = {
    "printer": ("printer_not_found", "printer"),
    "filament": ("filament_not_found", "filament"),
    "print_job": ("job_not_found", "print job"),
}
"""
The error code and the noun of a GET of an object that does not exist, by
kind (L{FarmState.stamp_reader}'s names).
"""


def _json(request: HTTPRequest, status: int, value: Any) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", _JSON)
    return to_json_bytes(value)


def _error(
    request: HTTPRequest, status: int, code: str, message: str, headers: Any = None
) -> bytes:
    if headers:
        for name, value in headers.items():
            request.setHeader(name, value)
    return _json(request, status, {"error": {"code": code, "message": message}})


class _JSONKleinResource(FastKleinResource):
    """
    Klein's resource with the fast path, except that a path that is not
    UTF-8 gets a JSON 400 (Klein answers it with plain text before any error
    handler runs).  The fast path never takes such a request.
    """

    def render_slow(self, request: IRequest) -> Any:
        typed = cast(HTTPRequest, request)
        try:
            b"/".join(typed.postpath).decode("utf-8")
            typed.getRequestHostname().decode("utf-8")
        except UnicodeDecodeError:
            return _error(typed, 400, "invalid_request", "the URL is not valid UTF-8")
        try:
            return super().render_slow(request)
        except HTTPException as e:
            # werkzeug refuses to bind some Host names (C{a..b} cannot be
            # IDNA-encoded) before Klein routes or handles anything.
            return _error(
                typed, e.code or 400, "invalid_request", "the Host header is not a valid name"
            )


class FarmAPI:
    """
    The REST API of one node.

    @param node: the local Raft node.
    @param farm: the state machine that C{node} applies to.
    @param clock: for timestamps and timeouts.
    @param id_factory: makes the id of each new object (uuid4 strings).
    @param now: the current time as an ISO-8601 UTC string (from C{clock}).
    @param http_client: forwards writes to the leader (the C{treq} module by
        default; give it a C{treq.HTTPClient} on the service's reactor).
    @param forward_timeout: seconds to wait for the leader's full answer.
    @param request_timeout: seconds to wait for a commit or a read index.
    @param max_body_bytes: largest accepted request body.
    """

    app: ClassVar[Klein] = Klein()
    _log: ClassVar[Logger] = Logger()

    def __init__(
        self,
        node: IRaftNode,
        farm: FarmState,
        clock: IReactorTime,
        id_factory: Callable[[], str] = _uuid4,
        now: Callable[[], str] | None = None,
        http_client: HTTPClient | None = None,
        *,
        forward_timeout: float = 5.0,
        request_timeout: float = 10.0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not IRaftNode.providedBy(node):
            raise TypeError(f"{node!r} does not provide IRaftNode")
        if not isinstance(farm, FarmState):
            raise TypeError(f"{farm!r} is not a FarmState")
        self._node = node
        self._farm = farm
        self._clock = clock
        self._new_id = id_factory
        self._now: Callable[[], str] = now if now is not None else _ISONow(clock)
        if http_client is None:
            import treq

            http_client = cast(HTTPClient, treq)
        self._http: HTTPClient = http_client
        self._forward_timeout = forward_timeout
        self._max_body = max_body_bytes
        self._deadlines = Deadlines(
            clock,
            request_timeout,
            lambda: unavailable(
                "timeout",
                f"no answer within {request_timeout:g} s; the request may still take effect:"
                " retry with the same Idempotency-Key",
            ),
        )

    def resource(self, fast: bool = True) -> FastKleinResource:
        """
        The C{twisted.web} resource serving this API (give the C{Site}
        L{BoundedRequest} as its request factory).

        @param fast: take the hot routes past Klein's routing; they answer
            the same either way.
        """
        return _JSONKleinResource(self.app, self._error_answer, fast)

    # -- printers -------------------------------------------------------------

    @app.route(f"{API_PREFIX}/printers", methods=["POST"])
    def create_printer(self, request: HTTPRequest) -> Answer:
        _query(request, _NO_PARAMS)
        body = read_body(request, self._max_body)
        fields = parse_json_object(body)
        _check_fields(fields, ("company", "model"))
        command = create_printer(
            id=self._new_id(),
            company=check_text(fields["company"], "company", MAX_NAME_LENGTH),
            model=check_text(fields["model"], "model", MAX_NAME_LENGTH),
            at=self._now(),
        )
        return self._write(request, body, command, "printer", "printers")

    @app.route(f"{API_PREFIX}/printers", methods=["GET"])
    def list_printers(self, request: HTTPRequest) -> Answer:
        params = _query(request, _LIST_PARAMS)
        after, limit = _paging(params, "printer")

        def answer() -> bytes:
            return _page(request, params, "printer", self._farm.printers(after, limit))

        return self._read(request, params, answer, "printer")

    @app.route(f"{API_PREFIX}/printers/<string:printer_id>", methods=["GET"])
    def get_printer(self, request: HTTPRequest, printer_id: str) -> Answer:
        return self._get_one(request, "printer", printer_id)

    # -- filaments ------------------------------------------------------------

    @app.route(f"{API_PREFIX}/filaments", methods=["POST"])
    def create_filament(self, request: HTTPRequest) -> Answer:
        _query(request, _NO_PARAMS)
        body = read_body(request, self._max_body)
        fields = parse_json_object(body)
        _check_fields(
            fields,
            ("type", "color", "total_weight_in_grams"),
            ("remaining_weight_in_grams",),
        )
        total = check_weight(fields["total_weight_in_grams"], "total_weight_in_grams")
        remaining = check_weight(
            fields.get("remaining_weight_in_grams", total), "remaining_weight_in_grams", 0
        )
        if remaining > total:
            raise bad_request("remaining_weight_in_grams must not exceed total_weight_in_grams")
        command = create_filament(
            id=self._new_id(),
            type=check_filament_type(fields["type"]),
            color=check_text(fields["color"], "color", MAX_NAME_LENGTH),
            total_weight_in_grams=total,
            remaining_weight_in_grams=remaining,
            at=self._now(),
        )
        return self._write(request, body, command, "filament", "filaments")

    @app.route(f"{API_PREFIX}/filaments", methods=["GET"])
    def list_filaments(self, request: HTTPRequest) -> Answer:
        params = _query(request, _LIST_PARAMS)
        after, limit = _paging(params, "filament")

        def answer() -> bytes:
            return _page(request, params, "filament", self._farm.filaments(after, limit))

        return self._read(request, params, answer, "filament")

    @app.route(f"{API_PREFIX}/filaments/<string:filament_id>", methods=["GET"])
    def get_filament(self, request: HTTPRequest, filament_id: str) -> Answer:
        return self._get_one(request, "filament", filament_id)

    # -- print jobs -----------------------------------------------------------

    @app.route(f"{API_PREFIX}/print_jobs", methods=["POST"])
    def create_print_job(self, request: HTTPRequest) -> Answer:
        _query(request, _NO_PARAMS)
        body = read_body(request, self._max_body)
        fields = parse_json_object(body)
        _check_fields(fields, ("printer_id", "filament_id", "filepath", "print_weight_in_grams"))
        command = create_print_job(
            id=self._new_id(),
            printer_id=check_id(fields["printer_id"], "printer_id"),
            filament_id=check_id(fields["filament_id"], "filament_id"),
            filepath=check_text(fields["filepath"], "filepath", MAX_FILEPATH_LENGTH),
            print_weight_in_grams=check_weight(
                fields["print_weight_in_grams"], "print_weight_in_grams"
            ),
            at=self._now(),
        )
        return self._write(request, body, command, "print_job", "print_jobs")

    @app.route(f"{API_PREFIX}/print_jobs", methods=["GET"])
    def list_print_jobs(self, request: HTTPRequest) -> Answer:
        params = _query(request, _JOB_LIST_PARAMS)
        after, limit = _paging(params, "print_job")
        status = parse_status(params["status"]) if "status" in params else None

        def answer() -> bytes:
            page = self._farm.jobs(
                status=status,
                printer_id=params.get("printer_id"),
                filament_id=params.get("filament_id"),
                after=after,
                limit=limit,
            )
            return _page(request, params, "print_job", page)

        return self._read(request, params, answer, "print_job")

    @app.route(f"{API_PREFIX}/print_jobs/<string:job_id>", methods=["GET"])
    def get_print_job(self, request: HTTPRequest, job_id: str) -> Answer:
        return self._get_one(request, "print_job", job_id)

    @app.route(f"{API_PREFIX}/print_jobs/<string:job_id>/status", methods=["POST"])
    def set_print_job_status(self, request: HTTPRequest, job_id: str) -> Answer:
        params = _query(request, frozenset({"status"}))
        body = read_body(request, self._max_body)
        requested = params.get("status")
        if body.strip():
            fields = parse_json_object(body)
            _check_fields(fields, (), ("status",))
            if "status" in fields:
                in_body = parse_status(fields["status"])
                if requested is not None and parse_status(requested) is not in_body:
                    raise bad_request("the query and the body ask for different statuses")
                requested = in_body.value
        if requested is None:
            raise bad_request('missing status (use ?status=Running or a body {"status": ...})')
        target = parse_status(requested)
        if len(job_id) > MAX_ID_LENGTH:
            raise APIError(404, "job_not_found", f"print job {job_id:.80} does not exist")
        command = set_print_job_status(id=job_id, status=target.value, at=self._now())
        return self._write(request, body, command, "print_job", None)

    # -- node status ----------------------------------------------------------

    @app.route("/status", methods=["GET"])
    def status(self, request: HTTPRequest) -> bytes:
        st = self._node.status()
        leader = st.leader
        return _json(
            request,
            200,
            {
                "id": st.node_id,
                "state": st.role,
                "is_leader": st.is_leader,
                "term": st.term,
                "leader_id": st.leader_id,
                "leader_raft_addr": leader.raft_addr if leader is not None else None,
                "leader_http_addr": (leader.http_addr or None) if leader is not None else None,
                "commit_index": st.commit_index,
                "applied_index": st.applied_index,
                "last_log_index": st.last_log_index,
                "snapshot_index": st.snapshot_index,
                "members": [
                    {
                        "id": m.node_id,
                        "raft_addr": m.raft_addr,
                        "http_addr": m.http_addr,
                        "voter": m.voter,
                    }
                    for m in st.members
                ],
            },
        )

    # -- plumbing -------------------------------------------------------------

    def _write(
        self,
        request: HTTPRequest,
        body: bytes,
        command: dict[str, Any],
        kind: str,
        collection: str | None,
    ) -> Deferred[bytes]:
        """
        Propose C{command} and answer with the C{kind} object of its result:
        201 with a C{Location} when C{collection} names where it was created,
        200 otherwise.  With an C{Idempotency-Key} the command runs in the
        session C{idem:<key>}, so a retry gets the first result.
        """
        key = _idempotency_key(request)
        session = (f"idem:{key}", 1) if key is not None else None
        try:
            proposed = self._node.propose(command, session=session)
        except Exception:
            # The contract says errback; a node raising NotLeader must
            # still get the write forwarded.
            proposed = fail()
        return self._deadlines.follow(proposed).addCallbacks(
            self._written,
            self._not_written,
            callbackArgs=(request, kind, collection),
            errbackArgs=(request, body),
        )

    def _written(
        self, result: object, request: HTTPRequest, kind: str, collection: str | None
    ) -> bytes:
        obj = unwrap(result).get(kind)
        if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
            raise APIError(
                422,
                "idempotency_key_reused",
                "this Idempotency-Key was first used for a different kind of request",
            )
        if collection is None:
            return _json(request, 200, obj)
        request.setHeader(
            b"location", f"{API_PREFIX}/{collection}/{quote(obj['id'], safe='')}".encode()
        )
        return _json(request, 201, obj)

    def _not_written(
        self, failure: Failure, request: HTTPRequest, body: bytes
    ) -> Deferred[bytes] | Failure:
        if isinstance(failure.value, NotLeader):
            return Deferred.fromCoroutine(self._forward(request, body, failure.value.leader))
        return failure

    async def _forward(self, request: HTTPRequest, body: bytes, leader: Member | None) -> bytes:
        """
        Relay the request to C{leader}, once.
        """
        if request.getHeader(FORWARDED_HEADER) is not None:
            raise unavailable("no_leader", "this node is not the leader; retry later")
        if leader is None or not leader.http_addr or leader.node_id == self._node.node_id:
            raise unavailable("no_leader", "no leader is known; retry later")
        try:
            answer = await forward(
                self._http, self._clock, self._forward_timeout, request, leader.http_addr, body
            )
        except Exception as e:
            if getattr(request, "_disconnected", False):
                # Our client hung up and we were cancelled: nobody to
                # answer, and an APIError now would be logged as unhandled.
                raise CancelledError() from e
            self._log.info(
                "forwarding to leader {leader} failed: {error!r}", leader=leader.node_id, error=e
            )
            raise unavailable("no_leader", f"the leader {leader.node_id} cannot be reached")
        request.setResponseCode(answer.code)
        for name, value in answer.headers.items():
            request.setHeader(name, value)
        return answer.body

    def _get_one(self, request: HTTPRequest, kind: str, object_id: str) -> Answer:
        """
        Answer a GET of the C{kind} object C{object_id}, after the read
        barrier the query asks for.
        """
        not_found, noun = _NOT_FOUND[kind]

        def answer() -> bytes:
            found = self._farm.get(kind, object_id)
            if found is None:
                raise APIError(404, not_found, f"{noun} {object_id} does not exist")
            return _json(request, 200, found.to_json())

        return self._read(request, _query(request, _GET_PARAMS), answer, kind, object_id)

    def _read(
        self,
        request: HTTPRequest,
        params: dict[str, str],
        answer: Callable[[], bytes],
        kind: str,
        object_id: str | None = None,
    ) -> Answer:
        """
        Call C{answer} once a linearizable read may be served locally, or at
        once if the client asked for C{consistency=stale}.  A stale answer
        about the C{kind} object C{object_id} (a listing of that kind if
        L{None}) depends on the request and on that part of the applied
        state alone, so the server may send it again while the part's
        change stamp stays (L{mark_reusable}, L{FarmState.stamp_reader}).
        """
        mode = params.get("consistency", "linearizable").lower()
        if mode == "stale":
            mark_reusable(request, self._farm.stamp_reader(kind, object_id))
            return answer()
        if mode != "linearizable":
            raise bad_request("consistency must be linearizable or stale")
        return self._deadlines.follow(self._node.read_index()).addCallback(lambda _: answer())

    # -- error mapping --------------------------------------------------------

    def _error_answer(self, request: HTTPRequest, failure: Failure) -> bytes:
        """
        Answer a failure of a handler, or of Klein's routing, with a JSON
        error.  This is Klein's only error handler, and the fast path's.
        """
        e = failure.value
        if isinstance(e, APIError):
            api = e
        elif isinstance(e, FarmError):
            code = "invalid_request" if isinstance(e, MalformedCommand) else e.code
            api = APIError(farm_error_status(e), code, e.message)
        elif isinstance(e, StorageFull):
            # Before RaftError: the engine's refusal is both.
            api = storage_full_to_api(e)
        elif isinstance(e, RaftError):
            api = raft_error_to_api(e)
        elif isinstance(e, HTTPException):
            api = _routing_error(request, e)
        else:
            self._log.failure(
                "unhandled error serving {method} {uri}",
                failure,
                method=request.method,
                uri=request.uri,
            )
            api = APIError(500, "internal_error", "internal server error")
        return _error(request, api.status, api.code, api.message, api.headers)

    app.handle_errors(Exception)(_error_answer)


def _routing_error(request: HTTPRequest, e: HTTPException) -> APIError:
    """
    The answer to werkzeug's refusal to route C{request}.
    """
    if isinstance(e, NotFound):
        return APIError(404, "not_found", "no such resource")
    if isinstance(e, MethodNotAllowed):
        return APIError(
            405,
            "method_not_allowed",
            f"method {request.method.decode('ascii', 'replace')} is not allowed here",
            {"Allow": ", ".join(sorted(e.valid_methods or ()))},
        )
    if isinstance(e, RequestRedirect):
        return APIError(e.code, "redirect", "see Location", {"Location": e.new_url})
    return APIError(e.code or 500, "http_error", str(e.description)[:300])


def _paging(params: dict[str, str], kind: str) -> tuple[int, int | None]:
    after = decode_cursor(kind, params["cursor"]) if "cursor" in params else -1
    limit = parse_limit(params["limit"]) if "limit" in params else None
    return after, limit


def _page(request: HTTPRequest, params: dict[str, str], kind: str, page: Page[Any]) -> bytes:
    """
    Answer with a page of a listing, and a C{Link} to the next one if any.
    """
    if page.next_after is not None:
        path = f"{API_PREFIX}/{kind}s"
        link = next_link(path, params, encode_cursor(kind, page.next_after))
        request.setHeader(b"link", link.encode("utf-8"))
    return _json(request, 200, [item.to_json() for item in page.items])
