# -*- test-case-name: tests.storage.test_fileio -*-
"""
The few file-system primitives the disk storage needs, each doing exactly
the durable thing.

They call C{os} functions through the module at call time (never a saved
reference) so that tests can make C{os.pwrite} fail with C{ENOSPC} or count
C{os.fdatasync} calls by patching the C{os} module.
"""

from __future__ import annotations

import errno
import os
from typing import Sequence

from ..raft._interfaces import StorageFull

TMP_SUFFIX = ".tmp"
"""Suffix of files being written; any left at start-up are deleted."""

_SPACE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT})


def as_storage_error(error: BaseException) -> BaseException:
    """
    The exception to report for C{error}: L{StorageFull} for lack of space
    (chained to the original), else C{error} itself.
    """
    if isinstance(error, OSError) and error.errno in _SPACE_ERRORS:
        full = StorageFull(str(error))
        full.__cause__ = error
        return full
    return error


def fdatasync(fd: int) -> None:
    """
    Make the data of C{fd} (and the size) durable; C{fsync} where the
    platform has no C{fdatasync}.
    """
    sync = getattr(os, "fdatasync", None)
    if sync is None:
        os.fsync(fd)
    else:
        sync(fd)


def fsync_dir(directory: str) -> None:
    """
    Make the creations, renames and deletions in C{directory} durable.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """
    Write all of C{data} at C{offset}, however many calls it takes.
    """
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


SYNC_CHUNK = 8 * 1024 * 1024
"""
Bytes written between two syncs by L{write_temporary}: a large file goes to
the disk in steps instead of one flush at the end, so the log's own
C{fdatasync} calls never queue behind hundreds of megabytes.
"""


def write_temporary(path: str, parts: Sequence[bytes]) -> None:
    """
    Create C{path} with the concatenation of C{parts} and make it durable,
    syncing every L{SYNC_CHUNK} bytes.  On failure the file is removed.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            offset = 0
            for part in parts:
                view = memoryview(part)
                for start in range(0, len(view), SYNC_CHUNK):
                    chunk = view[start : start + SYNC_CHUNK]
                    write_all(fd, chunk, offset)
                    offset += len(chunk)
                    if len(chunk) == SYNC_CHUNK:
                        fdatasync(fd)
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        discard(path)
        raise


def discard(path: str) -> None:
    """
    Remove C{path} if it is there, ignoring errors: for clean-up paths
    that are already reporting a failure of their own.
    """
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(directory: str, name: str, parts: Sequence[bytes]) -> None:
    """
    Replace C{directory/name} with the concatenation of C{parts}, atomically
    and durably: write a temporary file, fsync it, rename it over the
    target, fsync the directory.  On failure the temporary file is removed
    and the target is untouched.
    """
    path = os.path.join(directory, name)
    tmp = path + TMP_SUFFIX
    write_temporary(tmp, parts)
    try:
        os.replace(tmp, path)
    except BaseException:
        discard(tmp)
        raise
    fsync_dir(directory)
