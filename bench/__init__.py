"""
The Raft3D benchmark: C{python -m bench} starts a Raft3D cluster and an etcd
cluster on 127.0.0.1, drives both with the same C{wrk} load, measures the
reference rows, the scale run and a py-spy profile, and writes the results
under C{bench/results/}.  See C{docs/performance.md}.
"""

__all__: list[str] = []
