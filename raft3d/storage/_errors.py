# -*- test-case-name: tests.storage.test_segments -*-
"""
The one exception the pure decoders raise.

Decoders work on bytes and know nothing about files, so they report damage as
an offset and a reason; the disk layer adds the path and turns it into
L{raft3d.raft.CorruptStorage}.  Keeping it separate lets the decoders be
tested without a file system.
"""

from __future__ import annotations


class FormatError(ValueError):
    """
    Bytes that do not decode.

    @ivar offset: where the damage starts, from the start of the decoded
        buffer (the caller adds any base offset).
    @ivar reason: what is wrong, for humans.
    """

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"at byte offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason
