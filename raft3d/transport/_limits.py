# -*- test-case-name: tests.transport.test_limits -*-
"""
Admission control for a listening port: how many connections it holds, how
many of them are still I{pending}, and how many come from one host.

Twisted accepts every connection the kernel hands a listener and keeps it
until somebody closes it, so a client that opens connections and then says
nothing, or says it one byte at a time, holds a file descriptor and some
memory per connection for as long as it likes.  A L{ConnectionLimiter} sits
in a factory's C{buildProtocol}:

  - over the total cap, or the per-host cap, a new connection is refused:
    C{buildProtocol} returns L{None} and Twisted closes the socket at once,
    before reading a byte;
  - a connection is I{pending} until it has proved it is worth keeping (an
    HTTP request fully received, a peer's hello accepted as a cluster
    member).  When too many are pending, the one that has been pending the
    longest is closed to make room for the newcomer.  Pending connections
    are what a slow or silent client creates; closing the oldest means it
    can delay newcomers but never lock them out, while an honest client,
    which finishes its request or hello within a round trip, is never the
    oldest.

Refusals and evictions are logged, but at most once per interval with a
count of what was not logged: a flood of them is exactly when a line per
event would hurt.

The same class serves the Raft port (L{raft3d.transport.TCPPeerTransport})
and the HTTP API (L{raft3d.service.APISite}).
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger


def _at_least(minimum: int) -> Callable[[Any, attrs.Attribute[int], int], None]:
    def check(instance: Any, attribute: attrs.Attribute[int], value: int) -> None:
        if value < minimum:
            raise ValueError(f"{attribute.name} must be at least {minimum}, not {value}")

    return check


@attrs.frozen
class ConnectionLimits:
    """
    The caps of one listener.

    @ivar max_connections: connections open at once; more are refused.
    @ivar max_pending: connections still pending at once; a new one closes
        the oldest pending one.
    @ivar max_per_host: connections open at once from one remote address,
        or L{None} for no such cap.
    """

    max_connections: int = attrs.field(validator=_at_least(1))
    max_pending: int = attrs.field(validator=_at_least(1))
    max_per_host: int | None = attrs.field(default=None)

    @max_per_host.validator
    def _check_per_host(self, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None and value < 1:
            raise ValueError(f"max_per_host must be at least 1, not {value}")


DEFAULT_RAFT_LIMITS = ConnectionLimits(max_connections=128, max_pending=32, max_per_host=32)
"""
The Raft port's default caps.  A node has one inbound connection per peer,
plus short-lived probes while a cluster bootstraps; 32 per host leaves room
for a whole development cluster on one machine.
"""


def remote_host(address: IAddress | None) -> str:
    """
    The host part of a TCP address (what per-host caps count), or the
    C{repr} of anything else.
    """
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else repr(address)


class ThrottledLog:
    """
    Log lines of one kind at most once per C{interval} seconds; the next
    line that is logged says how many were left out.

    @ivar suppressed: events not logged since the last line.
    """

    def __init__(self, clock: IReactorTime, log: Logger, interval: float = 10.0) -> None:
        self._clock = clock
        self._log = log
        self._interval = interval
        self._last: float | None = None
        self.suppressed = 0

    def warn(self, format: str, **kwargs: object) -> bool:
        """
        Log C{format} with C{kwargs} at warning level unless a line was
        logged less than the interval ago; return whether it was logged.
        The line gets C{" ({suppressed} more since the last such line)"}
        appended when events were left out.
        """
        now = self._clock.seconds()
        if self._last is not None and now - self._last < self._interval:
            self.suppressed += 1
            return False
        if self.suppressed:
            format += " ({suppressed} more since the last such line)"
            kwargs["suppressed"] = self.suppressed
        self._last = now
        self.suppressed = 0
        self._log.warn(format, **kwargs)
        return True


class Admission:
    """
    One admitted connection's place in its L{ConnectionLimiter}.

    The connection's protocol sets L{on_evict} once it is connected, calls
    L{established} once the client has proved itself, L{pending} if it goes
    back to waiting for the client (an HTTP connection kept alive between
    requests), and L{release} when the connection is lost.

    @ivar host: the remote host, as counted by the per-host cap.
    @ivar on_evict: closes the connection; called at most once, by the
        limiter, when it needs the room.  While it is L{None} the
        connection cannot be evicted.
    """

    def __init__(self, limiter: ConnectionLimiter, host: str) -> None:
        self._limiter = limiter
        self.host = host
        self.on_evict: Callable[[], object] | None = None
        self.evicted = False
        self.released = False

    def pending(self) -> None:
        """
        The connection waits for its client again: it may be evicted, after
        every connection that has been pending longer.
        """
        self._limiter._set_pending(self, True)

    def established(self) -> None:
        """
        The client proved itself: no longer pending, never evicted.
        """
        self._limiter._set_pending(self, False)

    def release(self) -> None:
        """
        The connection is gone; its place is free.  Idempotent.
        """
        self._limiter._release(self)


class ConnectionLimiter:
    """
    Admission control for one listener; see the module docstring.

    @param name: names the listener in log lines ("HTTP API").
    """

    def __init__(
        self,
        name: str,
        limits: ConnectionLimits,
        clock: IReactorTime,
        log: Logger,
        log_interval: float = 10.0,
    ) -> None:
        self.name = name
        self.limits = limits
        self._open: set[Admission] = set()
        # Insertion-ordered: the first key has been pending the longest.
        self._pending: dict[Admission, None] = {}
        self._per_host: dict[str, int] = {}
        self._refusals = ThrottledLog(clock, log, log_interval)
        self._evictions = ThrottledLog(clock, log, log_interval)

    @property
    def open_count(self) -> int:
        """
        Connections admitted and not yet released.
        """
        return len(self._open)

    @property
    def pending_count(self) -> int:
        """
        Admitted connections that are still pending.
        """
        return len(self._pending)

    def host_count(self, host: str) -> int:
        """
        Open connections from C{host}.
        """
        return self._per_host.get(host, 0)

    def admit(self, address: IAddress | None) -> Admission | None:
        """
        Admit a new connection from C{address} as pending, evicting the
        oldest pending connection if there are too many; or refuse it
        (L{None}) if the listener or its host is at its cap, or no pending
        connection can make room.
        """
        host = remote_host(address)
        limits = self.limits
        reason: str | None = None
        if len(self._open) >= limits.max_connections:
            reason = (
                f"{len(self._open)} connections are open (the limit is {limits.max_connections})"
            )
        elif limits.max_per_host is not None and self.host_count(host) >= limits.max_per_host:
            reason = (
                f"{self.host_count(host)} connections from that host are open"
                f" (the limit is {limits.max_per_host})"
            )
        elif len(self._pending) >= limits.max_pending and not self._evict_oldest(host):
            reason = f"{len(self._pending)} connections are pending and none can be closed"
        if reason is not None:
            self._refusals.warn(
                "{listener}: refused a connection from {host}: {reason}",
                listener=self.name,
                host=host,
                reason=reason,
            )
            return None
        admission = Admission(self, host)
        self._open.add(admission)
        self._per_host[host] = self._per_host.get(host, 0) + 1
        self._pending[admission] = None
        return admission

    def _evict_oldest(self, newcomer: str) -> bool:
        for victim in self._pending:
            if victim.on_evict is None:
                continue
            del self._pending[victim]
            victim.evicted = True
            self._evictions.warn(
                "{listener}: {limit} connections are pending (the limit);"
                " closed the oldest, from {host}, to admit one from {newcomer}",
                listener=self.name,
                limit=self.limits.max_pending,
                host=victim.host,
                newcomer=newcomer,
            )
            victim.on_evict()
            return True
        return False

    def _set_pending(self, admission: Admission, pending: bool) -> None:
        if admission.released or admission.evicted:
            return
        self._pending.pop(admission, None)
        if pending:
            self._pending[admission] = None

    def _release(self, admission: Admission) -> None:
        if admission.released:
            return
        admission.released = True
        self._pending.pop(admission, None)
        self._open.discard(admission)
        left = self._per_host[admission.host] - 1
        if left:
            self._per_host[admission.host] = left
        else:
            del self._per_host[admission.host]
