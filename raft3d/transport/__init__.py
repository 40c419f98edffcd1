"""
The peer transport: CBOR frames over TCP with a cluster handshake.
"""

__all__: list[str] = []
