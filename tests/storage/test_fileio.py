"""
Tests for L{raft3d.storage._fileio}: durable file primitives.
"""

from __future__ import annotations

import errno
import os

from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import StorageFull
from raft3d.storage import _fileio
from raft3d.storage._fileio import as_storage_error, atomic_write, write_all, write_temporary

from ._support import listdir, read, temp_dir, write


class StorageErrorTests(SynchronousTestCase):
    """
    L{as_storage_error} maps lack of space to L{StorageFull}.
    """

    def test_space(self) -> None:
        """
        ENOSPC and EDQUOT become L{StorageFull}, chained to the original.
        """
        for code in (errno.ENOSPC, errno.EDQUOT):
            original = OSError(code, os.strerror(code))
            mapped = as_storage_error(original)
            self.assertIsInstance(mapped, StorageFull)
            self.assertIs(mapped.__cause__, original)

    def test_other(self) -> None:
        """
        Other errors are reported as they are.
        """
        error = OSError(errno.EIO, "I/O error")
        self.assertIs(as_storage_error(error), error)


class WriteTests(SynchronousTestCase):
    """
    L{write_all} and L{atomic_write}.
    """

    def test_short_writes(self) -> None:
        """
        L{write_all} keeps writing when C{pwrite} writes only part.
        """
        real = os.pwrite
        self.patch(os, "pwrite", lambda fd, data, offset: real(fd, bytes(data)[:3], offset))
        path = os.path.join(temp_dir(self), "f")
        fd = os.open(path, os.O_RDWR | os.O_CREAT)
        self.addCleanup(os.close, fd)
        write_all(fd, b"0123456789", 2)
        self.assertEqual(read(path), b"\x00\x000123456789")

    def test_atomic_replace(self) -> None:
        """
        L{atomic_write} replaces the file and leaves no temporary file.
        """
        d = temp_dir(self)
        write(os.path.join(d, "m"), b"old")
        atomic_write(d, "m", [b"ne", b"w"])
        self.assertEqual(read(os.path.join(d, "m")), b"new")
        self.assertEqual(listdir(d), ["m"])

    def test_atomic_failure(self) -> None:
        """
        When writing fails the target is untouched and the temporary file
        is gone.
        """
        d = temp_dir(self)
        write(os.path.join(d, "m"), b"old")

        def full(fd: int, data: bytes, offset: int) -> int:
            raise OSError(errno.ENOSPC, "full")

        self.patch(os, "pwrite", full)
        self.assertRaises(OSError, atomic_write, d, "m", [b"new"])
        self.assertEqual(read(os.path.join(d, "m")), b"old")
        self.assertEqual(listdir(d), ["m"])

    def test_temporary_in_steps(self) -> None:
        """
        L{write_temporary} syncs after every full L{SYNC_CHUNK} and once at
        the end, and the file holds every part in order.
        """
        self.patch(_fileio, "SYNC_CHUNK", 4)
        syncs: list[str] = []
        real_datasync, real_sync = os.fdatasync, os.fsync
        self.patch(os, "fdatasync", lambda fd: (syncs.append("data"), real_datasync(fd)))
        self.patch(os, "fsync", lambda fd: (syncs.append("full"), real_sync(fd)))
        path = os.path.join(temp_dir(self), "t")
        write_temporary(path, [b"ab", b"0123456789"])
        self.assertEqual(read(path), b"ab0123456789")
        self.assertEqual(syncs, ["data", "data", "full"])

    def test_temporary_failure(self) -> None:
        """
        A L{write_temporary} that fails part-way leaves no file.
        """
        d = temp_dir(self)
        self.patch(_fileio, "SYNC_CHUNK", 4)
        real = os.pwrite
        calls: list[int] = []

        def full_later(fd: int, data: bytes, offset: int) -> int:
            calls.append(offset)
            if len(calls) > 1:
                raise OSError(errno.ENOSPC, "full")
            return real(fd, data, offset)

        self.patch(os, "pwrite", full_later)
        self.assertRaises(OSError, write_temporary, os.path.join(d, "t"), [b"0123456789"])
        self.assertEqual(listdir(d), [])
