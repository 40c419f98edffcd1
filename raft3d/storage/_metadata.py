# -*- test-case-name: tests.storage.test_metadata -*-
"""
The byte format of C{metadata.cbor}: who the node is, and the hard state.

The file is one CBOR map::

    {"version": 1, "node_id": str or null, "cluster_id": str,
     "term": int, "voted_for": str or null, "crc": int}

C{node_id} is null until L{IRaftStorage.set_identity} has been called.
C{crc} is the zlib.crc32 of the canonical CBOR encoding of the map without
C{crc}.  The file is always replaced atomically, so it is never torn; the
checksum is there because a flipped bit in C{term} or C{voted_for} would
otherwise be read back as a valid vote and silently break Raft's safety.
"""

from __future__ import annotations

import zlib
from typing import Any

import cbor2

from ..raft._types import HardState, NodeIdentity
from ._errors import FormatError

METADATA_NAME = "metadata.cbor"
METADATA_VERSION = 1


def _body(identity: NodeIdentity | None, hard_state: HardState) -> dict[str, Any]:
    return {
        "version": METADATA_VERSION,
        "node_id": identity.node_id if identity is not None else None,
        "cluster_id": identity.cluster_id if identity is not None else "",
        "term": hard_state.term,
        "voted_for": hard_state.voted_for,
    }


def _crc(body: dict[str, Any]) -> int:
    return zlib.crc32(cbor2.dumps(body, canonical=True))


def encode_metadata(identity: NodeIdentity | None, hard_state: HardState) -> bytes:
    """
    The content of the metadata file.
    """
    body = _body(identity, hard_state)
    body["crc"] = _crc(body)
    return bytes(cbor2.dumps(body, canonical=True))


def decode_metadata(buf: bytes) -> tuple[NodeIdentity | None, HardState]:
    """
    Decode the content of the metadata file.

    @raise FormatError: if it is not a well-formed, untouched metadata map.
    """
    try:
        value: Any = cbor2.loads(buf)
    except Exception as e:
        raise FormatError(0, f"undecodable metadata: {e}")
    if not isinstance(value, dict) or type(value.get("crc")) is not int:
        raise FormatError(0, "metadata is not a checksummed map")
    crc = value.pop("crc")
    if _crc(value) != crc:
        raise FormatError(0, "metadata checksum mismatch")
    node_id = value.get("node_id")
    cluster_id = value.get("cluster_id")
    term = value.get("term")
    voted_for = value.get("voted_for")
    if (
        value.get("version") != METADATA_VERSION
        or not (node_id is None or isinstance(node_id, str))
        or not isinstance(cluster_id, str)
        or type(term) is not int
        or term < 0
        or not (voted_for is None or isinstance(voted_for, str))
    ):
        raise FormatError(0, f"malformed metadata {value!r}")
    identity = NodeIdentity(node_id, cluster_id) if node_id is not None else None
    return identity, HardState(term, voted_for)
