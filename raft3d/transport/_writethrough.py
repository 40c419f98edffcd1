# -*- test-case-name: tests.transport.test_writethrough -*-
"""
Send at once what would otherwise wait for the next reactor turn.

Twisted's TCP transport never sends from C{write}: it buffers the bytes,
registers the socket for writability and sends when the next poll says it
may.  Every Raft message and every API answer thus costs one more reactor
turn and two C{epoll_ctl} calls before it leaves, and a write goes through
several such hops (client to leader, leader to follower and back, leader
to client).  L{write_now} sends straight away when nothing is buffered
ahead, which is the common case, and hands whatever the socket did not
take to C{writeSequence}, so ordering, flow control (producers) and error
handling stay Twisted's.

It only takes the short cut on Twisted's plain TCP connections; on
anything else (TLS, a test transport) it is C{writeSequence}.
"""

from __future__ import annotations

import socket
from typing import Any, Final, Sequence

from twisted.internet import tcp

_PLAIN_TCP: Final = (tcp.Server, tcp.Client)


def write_now(transport: Any, parts: Sequence[bytes]) -> None:
    """
    Write C{parts}, in order, to C{transport}: at once if the socket takes
    them and nothing is waiting in the transport's buffer, otherwise (and
    for whatever is left) through C{writeSequence}.
    """
    if (
        type(transport) in _PLAIN_TCP
        and transport.connected
        and not transport.disconnecting
        and not transport._tempDataBuffer
        and transport.offset == len(transport.dataBuffer)
        and not getattr(transport, "TLS", False)
    ):
        sock: socket.socket = transport.socket
        try:
            sent = sock.sendmsg(parts) if len(parts) > 1 else sock.send(parts[0])
        except OSError:
            # EAGAIN, EINTR, or a real error: Twisted's own write sees the
            # same condition and handles it (retry or close).
            sent = 0
        if sent:
            parts = _rest(parts, sent)
            if not parts:
                return
    transport.writeSequence(parts)


def _rest(parts: Sequence[bytes], sent: int) -> Sequence[bytes]:
    """
    What is left of C{parts} after the first C{sent} bytes.
    """
    for i, part in enumerate(parts):
        if sent < len(part):
            return [part[sent:], *parts[i + 1 :]]
        sent -= len(part)
    return ()
