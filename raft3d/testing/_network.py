# -*- test-case-name: tests.testing.test_simulation -*-
"""
A simulated network for many L{RaftNode}s in one process.

Messages travel on the shared L{Clock}: each one is encoded and decoded
with the real wire codec, then delivered after a random delay, so the
network reorders by itself; it also drops, duplicates, and honours
symmetric and one-way partitions.  All randomness comes from one seeded
L{random.Random}, so a run replays exactly from its seed.
"""

from __future__ import annotations

import random
from typing import Callable, Mapping

import cbor2
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from ..raft import IPeerTransport, Message, decode_message, encode_message


class SimNetwork:
    """
    The wires between simulated nodes.

    @ivar drop_rate: probability that a message is lost.
    @ivar duplicate_rate: probability that a message is delivered twice.
    @ivar reorder_rate: probability that a message may overtake earlier
        ones on its link (otherwise links are first-in first-out, as TCP).
    @ivar delay: the range of one-way latency in seconds.
    """

    def __init__(self, clock: IReactorTime, rng: random.Random) -> None:
        self._clock = clock
        self._rng = rng
        self._receivers: dict[str, Callable[[Message], None]] = {}
        self._blocked: set[tuple[str, str]] = set()
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.reorder_rate = 0.0
        self.delay = (0.001, 0.005)
        self._link_clear: dict[tuple[str, str], float] = {}
        self.sent = 0
        self.delivered = 0

    def attach(self, node_id: str, receiver: Callable[[Message], None]) -> None:
        self._receivers[node_id] = receiver

    def detach(self, node_id: str) -> None:
        self._receivers.pop(node_id, None)

    def block(self, source: str, destination: str) -> None:
        """
        Drop every message from C{source} to C{destination} (one way).
        """
        self._blocked.add((source, destination))

    def partition(self, *groups: set[str]) -> None:
        """
        Split the nodes into C{groups} that cannot talk to each other.
        """
        self._blocked.clear()
        for group in groups:
            for other in groups:
                if other is group:
                    continue
                for a in group:
                    for b in other:
                        self._blocked.add((a, b))

    def heal(self) -> None:
        self._blocked.clear()
        self.drop_rate = 0.0
        self.duplicate_rate = 0.0
        self.reorder_rate = 0.0

    def send(self, source: str, destination: str, message: Message) -> None:
        self.sent += 1
        if (source, destination) in self._blocked or self._rng.random() < self.drop_rate:
            return
        wire = cbor2.dumps(encode_message(message))
        copies = 2 if self._rng.random() < self.duplicate_rate else 1
        low, high = self.delay
        now = self._clock.seconds()
        link = (source, destination)
        for _ in range(copies):
            at = now + self._rng.uniform(low, high)
            if self._rng.random() >= self.reorder_rate:
                # Like TCP, a link delivers in order unless told to reorder.
                at = max(at, self._link_clear.get(link, 0.0))
                self._link_clear[link] = at
            self._clock.callLater(at - now, self._deliver, source, destination, wire)

    def _deliver(self, source: str, destination: str, wire: bytes) -> None:
        if (source, destination) in self._blocked:
            return
        receiver = self._receivers.get(destination)
        if receiver is not None:
            self.delivered += 1
            receiver(decode_message(cbor2.loads(wire)))


@implementer(IPeerTransport)
class SimTransport:
    """
    One node's end of a L{SimNetwork}.
    """

    def __init__(self, network: SimNetwork, node_id: str) -> None:
        self._network = network
        self._node_id = node_id

    def start(self, receiver: Callable[[Message], None]) -> None:
        self._network.attach(self._node_id, receiver)

    def send(self, to: str, message: Message) -> None:
        self._network.send(self._node_id, to, message)

    def set_peers(self, peers: Mapping[str, str]) -> None:
        pass

    def stop(self) -> Deferred[None]:
        self._network.detach(self._node_id)
        return succeed(None)
