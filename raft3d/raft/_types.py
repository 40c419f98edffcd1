# -*- test-case-name: tests.raft.test_types -*-
"""
Records shared by every layer of the engine: log entries, configurations,
hard state and snapshot metadata.

They are frozen C{attrs} classes so that the core can hand them to storage
and transport without defensive copies.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs


class EntryType(enum.IntEnum):
    """
    What a log entry carries.

    NORMAL entries carry an opaque command for the state machine, NOOP entries
    are appended by a new leader (paper 5.4.2, thesis 6.4) and CONFIG entries
    carry a whole L{Configuration} (thesis 4.1).
    """

    NORMAL = 0
    NOOP = 1
    CONFIG = 2


@attrs.frozen
class Entry:
    """
    One log entry; C{data} is opaque to the core except for CONFIG entries.
    """

    index: int
    term: int
    type: EntryType
    data: bytes = b""


@attrs.frozen
class Member:
    """
    One server of the cluster; learners (C{voter=False}) replicate but do not
    vote or count towards commitment.
    """

    node_id: str
    raft_addr: str
    http_addr: str = ""
    voter: bool = True

    def to_wire(self) -> list[Any]:
        return [self.node_id, self.raft_addr, self.http_addr, self.voter]

    @classmethod
    def from_wire(cls, value: object) -> Member:
        if (
            not isinstance(value, list)
            or len(value) != 4
            or not all(isinstance(v, str) for v in value[:3])
            or not isinstance(value[3], bool)
        ):
            raise ValueError("malformed member")
        return cls(value[0], value[1], value[2], value[3])


@attrs.frozen
class Configuration:
    """
    The cluster membership, as carried by a CONFIG entry or a snapshot.
    """

    members: tuple[Member, ...] = ()

    def voters(self) -> frozenset[str]:
        return frozenset(m.node_id for m in self.members if m.voter)

    def ids(self) -> frozenset[str]:
        return frozenset(m.node_id for m in self.members)

    def get(self, node_id: str) -> Member | None:
        for m in self.members:
            if m.node_id == node_id:
                return m
        return None

    def with_member(self, member: Member) -> Configuration:
        """
        Return a copy with C{member} added or replaced (keeping order).
        """
        out = [m for m in self.members if m.node_id != member.node_id]
        out.append(member)
        return Configuration(tuple(sorted(out, key=lambda m: m.node_id)))

    def without(self, node_id: str) -> Configuration:
        return Configuration(tuple(m for m in self.members if m.node_id != node_id))

    def to_wire(self) -> list[Any]:
        return [m.to_wire() for m in self.members]

    @classmethod
    def from_wire(cls, value: object) -> Configuration:
        if not isinstance(value, list):
            raise ValueError("malformed configuration")
        return cls(tuple(Member.from_wire(v) for v in value))


@attrs.frozen
class HardState:
    """
    What must be on disk before any message that depends on it is sent
    (paper figure 2, "persistent state on all servers").
    """

    term: int = 0
    voted_for: str | None = None


@attrs.frozen
class SnapshotMeta:
    """
    Describes a snapshot: the last entry it covers and the configuration in
    force at that entry.
    """

    index: int
    term: int
    configuration: Configuration

    def to_wire(self) -> dict[str, Any]:
        return {"i": self.index, "t": self.term, "c": self.configuration.to_wire()}

    @classmethod
    def from_wire(cls, value: object) -> SnapshotMeta:
        if (
            not isinstance(value, dict)
            or type(value.get("i")) is not int
            or type(value.get("t")) is not int
        ):
            raise ValueError("malformed snapshot metadata")
        return cls(value["i"], value["t"], Configuration.from_wire(value.get("c")))


@attrs.frozen
class NodeIdentity:
    """
    Who this node is and which cluster it belongs to; kept in the metadata
    file next to the hard state.  C{cluster_id} is empty until the node has
    been bootstrapped or contacted by a member of a cluster.
    """

    node_id: str
    cluster_id: str = ""
