"""
Raft3D: a replicated print-farm manager whose state lives in a Raft log.

Layers, innermost first: L{raft3d.raft} (consensus core and node driver),
L{raft3d.storage} (log segments, snapshots, metadata), L{raft3d.transport}
(the CBOR peer protocol), the print-farm state machine, the Klein API and the
twistd service wiring in L{raft3d.tap}.
"""

__all__: list[str] = []
