# -*- test-case-name: tests.raft.test_sessions -*-
"""
Client sessions (thesis 6.3): each client numbers its proposals, and the
replicated state remembers the last result per client, so a proposal that
is retried after a leader crash is applied at most once.

Expiry must be deterministic on every replica, so it is driven by the
timestamps that leaders write into entries, never by a local clock.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class SessionTable:
    """
    The last sequence number and result of every live client session.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._sessions: OrderedDict[str, tuple[int, Any, float]] = OrderedDict()
        self._now = 0.0

    def __len__(self) -> int:
        return len(self._sessions)

    def advance(self, timestamp: float) -> None:
        """
        Move log time to C{timestamp} (never backwards: leaders' clocks
        differ) and expire sessions idle for longer than the TTL.
        """
        if timestamp > self._now:
            self._now = timestamp
        limit = self._now - self._ttl
        while self._sessions:
            client, (_, _, last) = next(iter(self._sessions.items()))
            if last >= limit:
                break
            del self._sessions[client]

    def lookup(self, client: str, seq: int) -> tuple[bool, Any]:
        """
        Return C{(True, result)} if C{(client, seq)} was already applied.
        An older sequence number than the last is answered with an error
        result: its own result is no longer kept.
        """
        found = self._sessions.get(client)
        if found is None or seq > found[0]:
            return False, None
        if seq == found[0]:
            return True, found[1]
        return True, {"error": {"code": "stale_session", "message": "request superseded"}}

    def record(self, client: str, seq: int, result: Any) -> None:
        self._sessions[client] = (seq, result, self._now)
        self._sessions.move_to_end(client)

    def to_wire(self) -> list[Any]:
        return [self._now, [[c, s, r, t] for c, (s, r, t) in self._sessions.items()]]

    def restore(self, wire: list[Any]) -> None:
        self._now = float(wire[0])
        self._sessions = OrderedDict((c, (s, r, t)) for c, s, r, t in wire[1])
