# -*- test-case-name: tests.api.test_dispatch -*-
"""
Cheap per-request plumbing for the API: a fast path past Klein's routing for
the routes every client uses, and one timer for all request deadlines.

A profile of a loaded leader found werkzeug's route matching and Klein's
per-request machinery (a L{MapAdapter}, nested C{maybeDeferred}s, two
C{notifyFinish} Deferreds, the chain of error handlers) costing more CPU than
the consensus core, and a C{callLater} plus an extra Deferred per deadline.

L{FastKleinResource} compiles the Klein app's own rules, the simple ones
(static segments and plain C{<string:name>} segments), into dictionaries
keyed by the method and the C{twisted.web} path segments.  A request one of
them matches calls the same endpoint through the same app and is answered
exactly as Klein would answer it; anything else (unknown paths, 404, 405,
redirects, C{HEAD}, odd methods, odd hosts, empty or undecodable segments)
goes to Klein, unchanged.  So there is one route table, Klein's, and one
implementation of each handler.

L{Deadlines} times out answers from the engine with one timer for all of
them, to a tenth of a second.
"""

from __future__ import annotations

import re
from collections import deque
from typing import Any, Callable, Final, Protocol, TypeAlias, TypeVar, cast

import attrs
from klein import Klein
from klein.resource import KleinResource
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import NOT_DONE_YET
from werkzeug.routing import Map, Rule, UnicodeConverter

from ._request import HTTPRequest

_T = TypeVar("_T")

Answer: TypeAlias = "bytes | Deferred[bytes]"
"""
What a handler returns: the body, or a Deferred that fires with it.  Either
way the handler has set the status and headers by then.
"""

ErrorAnswer: TypeAlias = "Callable[[HTTPRequest, Failure], bytes]"
"""
The one mapping from a failure to an error answer (status and headers set on
the request, body returned).
"""

_VARIABLE: Final = re.compile(r"<(?:string:)?([A-Za-z_][A-Za-z0-9_]*)>")
_KNOWN_HOSTS_MAX: Final = 64


class _WebRequest(HTTPRequest, Protocol):
    """
    The part of C{twisted.web}'s request that answering needs.
    """

    prepath: list[bytes]

    def write(self, data: bytes) -> None: ...

    def finish(self) -> None: ...

    def notifyFinish(self) -> Deferred[None]: ...

    def processingFailed(self, reason: Failure) -> object: ...


@attrs.frozen
class _Route:
    """
    A compiled rule.

    @ivar variables: the position in the path and the name of each
        C{<string:name>} segment.
    """

    endpoint: str
    variables: tuple[tuple[int, str], ...]


_Pattern: TypeAlias = "tuple[bytes | None, ...]"
"""
A rule's path segments, C{None} where a variable goes.
"""


def _compile(rule: Rule) -> tuple[_Pattern, tuple[tuple[int, str], ...]] | None:
    """
    The segments and the variables of C{rule}, or C{None} if it is not a
    simple rule that werkzeug matches exactly as L{FastRoutes} does.
    """
    if (
        rule.methods is None
        or rule.defaults
        or rule.redirect_to is not None
        or rule.build_only
        or rule.websocket
        or rule.alias
        or rule.host is not None
        or rule.subdomain
        or not rule.rule.startswith("/")
    ):
        return None
    pattern: list[bytes | None] = []
    variables: list[tuple[int, str]] = []
    for i, segment in enumerate(rule.rule[1:].split("/")):
        variable = _VARIABLE.fullmatch(segment)
        if variable is not None:
            pattern.append(None)
            variables.append((i, variable.group(1)))
        elif "<" in segment or ">" in segment:
            return None
        else:
            pattern.append(segment.encode("utf-8"))
    return tuple(pattern), tuple(variables)


def _static_prefix(rule: Rule) -> _Pattern:
    """
    The segments of C{rule} before its first variable: any path that a rule
    L{_compile} refuses may match starts with them.
    """
    prefix: list[bytes | None] = []
    for segment in rule.rule.lstrip("/").split("/"):
        if "<" in segment:
            break
        prefix.append(segment.encode("utf-8"))
    return tuple(prefix)


def _overlap(a: _Pattern, b: _Pattern) -> bool:
    """
    Whether some path matches both C{a} and C{b} on their common length.
    """
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=False))


def _shapes(pattern: _Pattern) -> tuple[_Pattern, ...]:
    """
    The paths a rule bears on: its own, and without the trailing slash if it
    has one (werkzeug redirects there, or matches there without
    C{strict_slashes}).
    """
    if len(pattern) > 1 and pattern[-1] == b"":
        return pattern, pattern[:-1]
    return (pattern,)


def _clash(a: tuple[Rule, _Pattern], b: tuple[Rule, _Pattern]) -> bool:
    """
    Whether werkzeug might have to choose between two compiled rules for
    one request (and so by its order of preference, which L{FastRoutes}
    does not follow).
    """
    (rule_a, pattern_a), (rule_b, pattern_b) = a, b
    if not (rule_a.methods or set()) & (rule_b.methods or set()):
        return False
    return any(
        len(x) == len(y) and _overlap(x, y) for x in _shapes(pattern_a) for y in _shapes(pattern_b)
    )


class FastRoutes:
    """
    The simple rules of a Klein app, as dictionaries.

    A compiled rule is only used if no other rule of the app can match any
    path it matches: then werkzeug's order of preference between rules never
    matters, and a match here is the match werkzeug would make.
    """

    def __init__(self, url_map: Map) -> None:
        default = url_map.converters.get("default")
        string = url_map.converters.get("string")
        compiled: list[tuple[Rule, _Pattern, tuple[tuple[int, str], ...]]] = []
        others: list[Rule] = []
        simple = (
            not url_map.host_matching and default is UnicodeConverter and string is UnicodeConverter
        )
        for rule in url_map.iter_rules():
            parsed = _compile(rule) if simple else None
            if parsed is None:
                others.append(rule)
            else:
                compiled.append((rule, *parsed))
        self._routes: dict[tuple[bytes, _Pattern], _Route] = {}
        shapes: dict[int, set[tuple[int, ...]]] = {}
        for rule, pattern, variables in compiled:
            if (
                any(
                    other is not rule and _clash((rule, pattern), (other, p))
                    for other, p, _ in compiled
                )
                # Rules not compiled may match anything under their static
                # prefix, or redirect to or from this rule's endpoint.
                or any(
                    _overlap(_static_prefix(other), pattern) or other.endpoint == rule.endpoint
                    for other in others
                )
            ):
                continue
            route = _Route(cast(str, rule.endpoint), variables)
            for method in rule.methods or ():
                if method != "HEAD":
                    self._routes[(method.encode("ascii"), pattern)] = route
            shapes.setdefault(len(pattern), set()).add(tuple(i for i, _ in variables))
        self._shapes = {n: sorted(s) for n, s in shapes.items()}
        self._known_hosts: set[bytes] = set()

    def routes(self) -> dict[tuple[bytes, _Pattern], str]:
        """
        The method and pattern of every route taken here, to its endpoint.
        """
        return {key: route.endpoint for key, route in self._routes.items()}

    def match(self, request: HTTPRequest) -> tuple[str, dict[str, str]] | None:
        """
        The endpoint and arguments Klein would route C{request} to, or
        C{None} when Klein should decide.
        """
        path = request.postpath
        method = request.method
        for variables in self._shapes.get(len(path), ()):
            key: list[bytes | None] = list(path)
            for i in variables:
                key[i] = None
            route = self._routes.get((method, tuple(key)))
            if route is not None:
                break
        else:
            return None
        kwargs = {}
        for i, name in route.variables:
            raw = path[i]
            # Empty: werkzeug wants one character at least.  A slash (from
            # %2F) makes one more segment for werkzeug.
            if not raw or b"/" in raw:
                return None
            try:
                kwargs[name] = raw.decode("utf-8")
            except UnicodeDecodeError:
                return None
        if not self._host_ok(request.getRequestHostname()):
            return None
        return route.endpoint, kwargs

    def _host_ok(self, host: bytes) -> bool:
        """
        Whether Klein accepts C{host}: it must be UTF-8 and werkzeug must be
        able to IDNA-encode it (or Klein fails before routing).
        """
        if host in self._known_hosts:
            return True
        try:
            host.decode("utf-8").partition(":")[0].encode("idna")
        except UnicodeError:
            return False
        if len(self._known_hosts) < _KNOWN_HOSTS_MAX:
            self._known_hosts.add(host)
        return True


class FastPath(Protocol):
    """
    What a server needs to answer the hot routes without C{twisted.web}'s
    resource machinery: L{route} says whether a request is taken, and
    L{serve} answers it (through the request's C{write} and C{finish}).
    """

    def route(self, request: Any) -> Route | None:
        """
        Where C{request} goes, or C{None} if this fast path does not take it.
        """

    def serve(self, request: Any, found: Route) -> None:
        """
        Answer C{request}, which L{route} took.
        """


Route: TypeAlias = "tuple[str, dict[str, str]]"
"""
An endpoint and the arguments to call it with.
"""


class FastKleinResource(KleinResource):
    """
    A L{KleinResource} that serves what L{FastRoutes} matches itself and
    passes everything else to Klein (L{render_slow}).  It is also a
    L{FastPath}, for servers that do not go through C{twisted.web}.

    A handler reached by the fast path finds no URL mapper on the request
    (C{IKleinRequest(request).url_for}); the API's handlers use none.

    @param on_error: the app's error mapping; its only Klein error handler
        must do the same, so that both paths answer alike.
    @param fast: whether to take the fast path at all.
    """

    def __init__(self, app: Klein, on_error: ErrorAnswer, fast: bool = True) -> None:
        super().__init__(app)
        self._on_error = on_error
        self._routes = FastRoutes(app.url_map) if fast else None

    def render(self, request: IRequest) -> Any:
        typed = cast(_WebRequest, request)
        found = self.route(typed)
        if found is None:
            return self.render_slow(request)
        self.serve(typed, found)
        return NOT_DONE_YET

    def route(self, request: Any) -> Route | None:
        routes = self._routes
        return routes.match(request) if routes is not None else None

    def serve(self, request: Any, found: Route) -> None:
        typed = cast(_WebRequest, request)
        endpoint, kwargs = found
        # What Klein does to the path before calling the endpoint.
        typed.prepath.extend(typed.postpath)
        typed.postpath = []
        try:
            answer = cast(Answer, self._app.execute_endpoint(endpoint, request, **kwargs))
        except Exception:
            _answer_error(typed, self._on_error, _caught())
            return
        if isinstance(answer, Deferred):
            _Pending(typed, self._on_error).follow(answer)
        else:
            _write(typed, answer)

    def render_slow(self, request: IRequest) -> Any:
        """
        Serve C{request} through Klein.
        """
        return super().render(request)


def _write(request: _WebRequest, body: bytes, gone: bool = False) -> None:
    """
    Send C{body} and end the response, as Klein does.
    """
    request.write(body)
    if not gone:
        request.finish()


def _answer_error(request: _WebRequest, on_error: ErrorAnswer, failure: Failure) -> None:
    """
    Answer C{failure} with C{on_error}; if even that fails, let
    C{twisted.web} answer its 500, as Klein does when no handler is left.
    """
    try:
        body = on_error(request, failure)
    except Exception:
        request.processingFailed(_caught())
        return
    _write(request, body)


def _caught() -> Failure:
    """
    The exception being handled.
    """
    return Failure()  # type: ignore[no-untyped-call]


class _Pending:
    """
    A request waiting for its handler's Deferred.  When the client goes
    away the Deferred is cancelled and whatever it ends with is dropped, as
    Klein does.
    """

    _log: Final = Logger()
    __slots__ = ("_request", "_on_error", "_gone")

    def __init__(self, request: _WebRequest, on_error: ErrorAnswer) -> None:
        self._request = request
        self._on_error = on_error
        self._gone = False

    def follow(self, answer: Deferred[bytes]) -> None:
        answer.addCallbacks(self._answered, self._failed).addErrback(self._unwritten)
        if not answer.called or answer.paused:
            self._request.notifyFinish().addErrback(self._lost, answer)

    def _lost(self, reason: Failure, answer: Deferred[bytes]) -> None:
        self._gone = True
        answer.cancel()

    def _unwritten(self, failure: Failure) -> None:
        self._log.failure("Unhandled error writing response", failure)

    def _answered(self, body: bytes) -> None:
        _write(self._request, body, self._gone)

    def _failed(self, failure: Failure) -> None:
        if self._gone:
            if not isinstance(failure.value, CancelledError):
                self._log.failure("Unhandled error processing request", failure)
            return
        _answer_error(self._request, self._on_error, failure)


class Deadlines:
    """
    Time limits of one length on many Deferreds, kept with one timer.

    L{follow} gives a Deferred that fires like the one it is given, or fails
    with C{expired()} if that one has not fired C{timeout} seconds later.
    The given Deferred (the engine's) is never cancelled, and cancelling
    the one returned does not cancel it either: the command may still be
    applied, and its result is then dropped.

    Deadlines expire in the order they are set (one length, one clock), so
    they wait in a FIFO; those that fired meanwhile are dropped from its head
    as it is passed.  The timer is due at the deadline at the head, and at
    least C{resolution} seconds after its previous run, so a deadline may
    expire up to C{resolution} late.  It is left to run out once everything
    fired (at most C{timeout} later) rather than set and cancelled for every
    request.
    """

    def __init__(
        self,
        clock: IReactorTime,
        timeout: float,
        expired: Callable[[], Exception],
        resolution: float = 0.1,
    ) -> None:
        self._clock = clock
        self._timeout = timeout
        self._expired = expired
        self._resolution = resolution
        self._waiting: deque[tuple[float, Deferred[Any]]] = deque()
        self._call: IDelayedCall | None = None

    def follow(self, d: Deferred[_T]) -> Deferred[_T]:
        if d.called and not d.paused:
            # Already answered: nothing to wait for, nothing to expire.
            return d
        out: Deferred[_T] = Deferred()
        waiting = self._waiting
        while waiting and waiting[0][1].called:
            waiting.popleft()
        waiting.append((self._clock.seconds() + self._timeout, out))
        d.addBoth(_relay, out)
        if self._call is None:
            self._call = self._clock.callLater(self._timeout, self._expire)
        return out

    def _expire(self) -> None:
        self._call = None
        now = self._clock.seconds()
        waiting = self._waiting
        while waiting:
            deadline, out = waiting[0]
            if not out.called and deadline > now:
                break
            waiting.popleft()
            if not out.called:
                out.errback(self._expired())
        if waiting and self._call is None:
            delay = max(waiting[0][0] - now, self._resolution)
            self._call = self._clock.callLater(delay, self._expire)


def _relay(result: object, out: Deferred[Any]) -> None:
    """
    Pass C{result} on to C{out} unless it has expired or been cancelled.
    """
    if not out.called:
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(result)
