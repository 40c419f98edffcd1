# -*- test-case-name: tests.service.test_storage -*-
"""
Let the service look at a node's storage before the node starts.

The service must know whether the data directory is empty (bootstrap: wait
for the peers first) or not (resume at once), but L{IRaftStorage.load} may
only run once and L{RaftNode.start} calls it.  L{LoadOnceStorage} loads
once, answers every later C{load()} with the same state, and passes every
other call through.

It also treats a I{blank} directory as empty: an identity with no cluster
id, no term, no vote, no log and no snapshot belongs to a node that was
started once but never joined anything (say, without C{--bootstrap} by
mistake).  Reporting it as empty lets L{RaftNode.start} bootstrap it, which
it only does for storage without an identity.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import implementer

from raft3d.raft import (
    HardState,
    IRaftStorage,
    LoadedState,
    NodeIdentity,
    PersistBatch,
    SnapshotMeta,
)


def is_blank(state: LoadedState) -> bool:
    """
    Whether C{state} holds nothing a Raft node ever agreed to.
    """
    identity = state.identity
    return identity is None or (
        identity.cluster_id == ""
        and state.hard_state == HardState()
        and state.snapshot is None
        and not state.entries
    )


@implementer(IRaftStorage)
class LoadOnceStorage:
    """
    An L{IRaftStorage} whose C{load()} may be called again and returns the
    first result (with a blank identity reported as none).
    """

    def __init__(self, storage: IRaftStorage) -> None:
        self._storage = storage
        self._loaded: LoadedState | None = None

    def load(self) -> LoadedState:
        if self._loaded is None:
            state = self._storage.load()
            if state.identity is not None and is_blank(state):
                state = LoadedState(
                    identity=None,
                    hard_state=state.hard_state,
                    snapshot=None,
                    snapshot_data=None,
                    entries=(),
                )
            self._loaded = state
        return self._loaded

    def set_identity(self, identity: NodeIdentity) -> Deferred[None]:
        return self._storage.set_identity(identity)

    def save(self, batch: PersistBatch, blocking: bool = False) -> Deferred[None]:
        return self._storage.save(batch, blocking)

    def save_snapshot(self, meta: SnapshotMeta, data: bytes) -> Deferred[None]:
        return self._storage.save_snapshot(meta, data)

    def install_snapshot(self, meta: SnapshotMeta, data: bytes) -> Deferred[None]:
        return self._storage.install_snapshot(meta, data)

    def compact(self, upto_index: int) -> Deferred[None]:
        return self._storage.compact(upto_index)

    def close(self) -> Deferred[None]:
        return self._storage.close()
