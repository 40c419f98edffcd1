"""
Fixtures shared by the storage tests, built in code.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import Configuration, Entry, EntryType, Member, SnapshotMeta


def entries(first: int, last: int, term: int = 1, size: int = 8) -> tuple[Entry, ...]:
    """
    Entries C{first}..C{last} of C{term}, with payloads that differ.
    """
    return tuple(
        Entry(i, term, EntryType.NORMAL, f"cmd-{i}-".encode().ljust(size, b"x"))
        for i in range(first, last + 1)
    )


CONFIG = Configuration((Member("a", "127.0.0.1:7000"), Member("b", "127.0.0.1:7001")))


def meta(index: int, term: int = 1) -> SnapshotMeta:
    """
    Snapshot metadata for C{index}/C{term} with a two-member configuration.
    """
    return SnapshotMeta(index, term, CONFIG)


def temp_dir(case: SynchronousTestCase) -> str:
    """
    A fresh directory removed after the test (not C{mktemp}, which writes
    relative to the working directory under pytest).
    """
    path = tempfile.mkdtemp(prefix="raft3d-storage-")
    case.addCleanup(shutil.rmtree, path, True)
    return path


def capture_log() -> tuple[Logger, list[dict[str, Any]]]:
    """
    A logger whose events end up in the returned list.
    """
    events: list[dict[str, Any]] = []
    return Logger(observer=events.append), events


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def listdir(path: str) -> list[str]:
    return sorted(os.listdir(path))


def skip_syncs(case: SynchronousTestCase) -> None:
    """
    Make C{fsync} and C{fdatasync} no-ops for the rest of the test, for
    property tests that check file contents over many examples.
    """
    case.patch(os, "fsync", lambda fd: None)
    case.patch(os, "fdatasync", lambda fd: None)
