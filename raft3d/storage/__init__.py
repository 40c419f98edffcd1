"""
Durable storage for a Raft node: metadata file, append-only log segments and
snapshot files, written in order by one writer thread (or, for a follower
whose disk is quick, by the reactor thread while the writer is idle).

L{DiskStorage} is the real one; L{MemoryStorage} simulates a disk, with
latency and power loss, for deterministic simulation of a whole cluster.
Both provide L{raft3d.raft.IRaftStorage}.
"""

from ._disk import DEFAULT_PREALLOCATE, DiskStorage
from ._memory import MemoryStorage

__all__ = ["DEFAULT_PREALLOCATE", "DiskStorage", "MemoryStorage"]
