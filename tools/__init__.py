"""
Developer tools that are not part of the Raft3D product: they drive and
judge real clusters from the outside and are never imported by C{raft3d}.
"""

__all__: list[str] = []
