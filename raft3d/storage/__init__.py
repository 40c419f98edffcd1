"""
Durable storage for a Raft node: metadata file, append-only log segments and
snapshot files, written in order by one writer thread.
"""

__all__: list[str] = []
