"""
The peer transport: CBOR frames over TCP with a cluster handshake.

L{TCPPeerTransport} implements L{raft3d.raft.IPeerTransport}; the wire
format and handshake are specified in C{docs/transport.md}.
"""

from ._transport import DEFAULT_MAX_BUFFER, ProbeFailed, TCPPeerTransport
from ._wire import DEFAULT_MAX_FRAME, PROTOCOL_VERSION, format_address, parse_address

__all__ = [
    "DEFAULT_MAX_BUFFER",
    "DEFAULT_MAX_FRAME",
    "PROTOCOL_VERSION",
    "ProbeFailed",
    "TCPPeerTransport",
    "format_address",
    "parse_address",
]
