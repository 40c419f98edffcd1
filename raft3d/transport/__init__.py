"""
The peer transport: CBOR frames over TCP with a cluster handshake, which a
shared peer secret turns into a mutual HMAC challenge-response.

L{TCPPeerTransport} implements L{raft3d.raft.IPeerTransport}; the wire
format and handshake are specified in C{docs/transport.md}.
L{ConnectionLimiter} bounds what clients may hold on a listener; the Raft
port and the HTTP API both use it.
"""

from ._limits import (
    DEFAULT_RAFT_LIMITS,
    Admission,
    ConnectionLimiter,
    ConnectionLimits,
    ThrottledLog,
)
from ._transport import DEFAULT_MAX_BUFFER, ProbeFailed, TCPPeerTransport
from ._wire import DEFAULT_MAX_FRAME, PROTOCOL_VERSION, format_address, parse_address
from ._writethrough import write_now

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_FRAME",
    "DEFAULT_RAFT_LIMITS",
    "PROTOCOL_VERSION",
    "Admission",
    "ConnectionLimiter",
    "ConnectionLimits",
    "ProbeFailed",
    "TCPPeerTransport",
    "ThrottledLog",
    "format_address",
    "parse_address",
    "write_now",
]
