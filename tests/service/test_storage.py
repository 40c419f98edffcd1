"""
Tests for L{raft3d.service._storage}: loading once, and treating a blank
data directory as empty.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from raft3d.raft import (
    Configuration,
    Entry,
    EntryType,
    HardState,
    IRaftStorage,
    LoadedState,
    Member,
    NodeIdentity,
    PersistBatch,
    SnapshotMeta,
)
from raft3d.service import LoadOnceStorage, is_blank
from raft3d.storage import DiskStorage

from ._fakes import temp_dir


def disk(directory: str) -> DiskStorage:
    return DiskStorage(directory, _synchronous=True)


def state(identity: NodeIdentity | None, **kwargs: object) -> LoadedState:
    values: dict[str, object] = {
        "identity": identity,
        "hard_state": HardState(),
        "snapshot": None,
        "snapshot_data": None,
        "entries": (),
    }
    values.update(kwargs)
    return LoadedState(**values)  # type: ignore[arg-type]


class IsBlankTests(SynchronousTestCase):
    def test_blank(self) -> None:
        """
        No identity, or an identity without a cluster and nothing else, is
        blank.
        """
        self.assertTrue(is_blank(state(None)))
        self.assertTrue(is_blank(state(NodeIdentity("n1"))))

    def test_not_blank(self) -> None:
        """
        A cluster id, a term, a vote, a log entry or a snapshot means the
        node took part in a cluster.
        """
        n1 = NodeIdentity("n1")
        meta = SnapshotMeta(3, 1, Configuration())
        for loaded in (
            state(NodeIdentity("n1", "K")),
            state(n1, hard_state=HardState(term=1)),
            state(n1, hard_state=HardState(voted_for="n2")),
            state(n1, entries=(Entry(1, 1, EntryType.NOOP),)),
            state(n1, snapshot=meta, snapshot_data=b"x"),
        ):
            self.assertFalse(is_blank(loaded), loaded)


class LoadOnceStorageTests(SynchronousTestCase):
    def test_interface(self) -> None:
        """
        L{LoadOnceStorage} provides L{IRaftStorage}.
        """
        self.assertTrue(verifyObject(IRaftStorage, LoadOnceStorage(disk(temp_dir(self)))))

    def test_load_twice(self) -> None:
        """
        The second C{load()} returns the first result without reading the
        disk again (which L{DiskStorage} would refuse).
        """
        storage = LoadOnceStorage(disk(temp_dir(self)))
        first = storage.load()
        self.assertIs(storage.load(), first)

    def test_blank_identity_reported_empty(self) -> None:
        """
        A directory holding only an identity without a cluster loads as
        empty, so that the node may still bootstrap it.
        """
        directory = temp_dir(self)
        raw = disk(directory)
        raw.load()
        self.successResultOf(raw.set_identity(NodeIdentity("n1")))
        self.successResultOf(raw.close())
        self.assertIsNone(LoadOnceStorage(disk(directory)).load().identity)

    def test_data_passes_through(self) -> None:
        """
        A node's data loads unchanged, and every write goes to the wrapped
        storage.
        """
        directory = temp_dir(self)
        storage = LoadOnceStorage(disk(directory))
        storage.load()
        config = Configuration((Member("n1", "h:1", "h:2"),))
        entry = Entry(1, 1, EntryType.NOOP)
        self.successResultOf(storage.set_identity(NodeIdentity("n1", "K")))
        self.successResultOf(storage.save(PersistBatch(HardState(1, "n1"), (entry,))))
        self.successResultOf(storage.save_snapshot(SnapshotMeta(1, 1, config), b"snap"))
        self.successResultOf(storage.compact(1))
        self.successResultOf(storage.close())
        loaded = LoadOnceStorage(disk(directory)).load()
        self.assertEqual(loaded.identity, NodeIdentity("n1", "K"))
        self.assertEqual(loaded.hard_state, HardState(1, "n1"))
        self.assertEqual(loaded.snapshot, SnapshotMeta(1, 1, config))
        self.assertEqual(loaded.snapshot_data, b"snap")

    def test_install_snapshot_passes_through(self) -> None:
        """
        C{install_snapshot} reaches the wrapped storage too.
        """
        directory = temp_dir(self)
        storage = LoadOnceStorage(disk(directory))
        storage.load()
        meta = SnapshotMeta(5, 2, Configuration((Member("n1", "h:1"),)))
        self.successResultOf(storage.install_snapshot(meta, b"data"))
        self.successResultOf(storage.close())
        self.assertEqual(disk(directory).load().snapshot, meta)
