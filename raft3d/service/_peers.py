# -*- test-case-name: tests.service.test_peers -*-
"""
The node's command-line vocabulary for addresses and peers, checked before
anything is built so that a typo is a usage error, not a node that waits
forever for a peer at a misspelt address.

C{--peers} takes C{host:port} entries (the bootstrap node learns each
peer's id by probing it) or C{id=host:port} entries (the id is checked
when probing).  The node's own address may be listed too: the seed README
gives every node the same list.
"""

from __future__ import annotations

import re

import attrs

from raft3d.transport import format_address, parse_address

NODE_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
"""
Node ids: short and shell-, URL- and systemd-instance-safe.
"""

_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


class BadAddress(ValueError):
    """
    An address or peer entry cannot be used; the message says why.
    """


def check_node_id(node_id: str) -> str:
    """
    @raise BadAddress: unless C{node_id} matches L{NODE_ID}.
    """
    if not NODE_ID.match(node_id):
        raise BadAddress(
            f"node id {node_id!r} must be 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return node_id


def check_address(addr: str, what: str) -> str:
    """
    Check an address that other nodes will dial: C{host:port} with a real
    host (not a wildcard such as C{0.0.0.0}, which peers cannot dial) and a
    port in 1-65535.  Returns it normalised (C{format_address}).

    @raise BadAddress: with a message naming C{what}.
    """
    try:
        host, port = parse_address(addr.strip())
    except ValueError as e:
        raise BadAddress(f"{what}: {e}") from None
    if host in _WILDCARDS:
        raise BadAddress(
            f"{what}: {addr!r} is not an address other nodes can reach;"
            " give this machine's name or IP address"
        )
    if not 1 <= port <= 65535:
        raise BadAddress(f"{what}: port {port} of {addr!r} is out of range (1-65535)")
    return format_address(host, port)


def same_address(a: str, b: str) -> bool:
    """
    Whether two checked addresses name the same listener as far as we can
    tell without DNS: same port, and same host or both loopback names.
    """
    host_a, port_a = parse_address(a)
    host_b, port_b = parse_address(b)
    if port_a != port_b:
        return False
    host_a, host_b = host_a.lower(), host_b.lower()
    return host_a == host_b or (host_a in _LOOPBACK and host_b in _LOOPBACK)


@attrs.frozen
class PeerSpec:
    """
    One C{--peers} entry.

    @ivar node_id: the id given as C{id=host:port}, or L{None} when only the
        address is known (the id is learned by probing).
    """

    addr: str
    node_id: str | None = None

    def describe(self) -> str:
        return f"{self.node_id} at {self.addr}" if self.node_id else self.addr


def parse_peers(text: str) -> tuple[PeerSpec, ...]:
    """
    Parse a C{--peers} value: comma-separated C{host:port} or
    C{id=host:port} entries; blanks around entries are ignored.

    @raise BadAddress: for a malformed entry or a repeated address or id.
    """
    specs: list[PeerSpec] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        node_id: str | None = None
        addr = entry
        if "=" in entry:
            node_id, _, addr = entry.partition("=")
            node_id = node_id.strip()
            try:
                check_node_id(node_id)
            except BadAddress as e:
                raise BadAddress(f"--peers entry {entry!r}: {e}") from None
        spec = PeerSpec(check_address(addr, f"--peers entry {entry!r}"), node_id)
        for other in specs:
            if same_address(other.addr, spec.addr):
                raise BadAddress(f"--peers lists {spec.addr} twice")
            if spec.node_id is not None and other.node_id == spec.node_id:
                raise BadAddress(f"--peers lists node {spec.node_id} twice")
        specs.append(spec)
    return tuple(specs)


def split_own(
    specs: tuple[PeerSpec, ...], node_id: str, raft_addr: str
) -> tuple[bool, tuple[PeerSpec, ...]]:
    """
    Separate this node's own entry from its peers.

    @return: whether C{specs} lists this node, and the other entries.
    @raise BadAddress: if an entry contradicts this node's id or address
        (our address under another id, or our id at another address).
    """
    listed = False
    others: list[PeerSpec] = []
    for spec in specs:
        mine_by_addr = same_address(spec.addr, raft_addr)
        mine_by_id = spec.node_id == node_id
        if mine_by_addr and spec.node_id is not None and not mine_by_id:
            raise BadAddress(
                f"--peers gives {spec.addr}, this node's --raft-addr, to node {spec.node_id}"
            )
        if mine_by_id and not mine_by_addr:
            raise BadAddress(
                f"--peers puts this node ({node_id}) at {spec.addr},"
                f" but its --raft-addr is {raft_addr}"
            )
        if mine_by_addr:
            listed = True
        else:
            others.append(spec)
    return listed, tuple(others)
