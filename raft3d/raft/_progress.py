# -*- test-case-name: tests.raft.test_core -*-
"""
What a leader knows about each follower's log (paper figure 2, "volatile
state on leaders"), with the flow control of etcd/raft's progress tracker:
probe one message at a time after a rejection, pipeline up to a bounded
number of batches once the follower matches, stop while a snapshot is sent.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Progress:
    """
    Replication state of one follower.
    """

    def __init__(self, next_index: int, max_inflight: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflight: deque[int] = deque()
        self.max_inflight = max_inflight
        self.recent_active = False
        self.pending_snapshot = 0
        self.heartbeat_match = 0
        self.heartbeat_stalls = 0

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True

    def become_probe(self, next_index: int) -> None:
        if self.state is ProgressState.SNAPSHOT:
            next_index = max(self.match + 1, self.pending_snapshot + 1, next_index)
        self.state = ProgressState.PROBE
        self.next = max(next_index, self.match + 1)
        self.probe_sent = False
        self.inflight.clear()
        self.pending_snapshot = 0
        self.heartbeat_stalls = 0

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflight.clear()

    def become_snapshot(self, snapshot_index: int) -> None:
        self.state = ProgressState.SNAPSHOT
        self.pending_snapshot = snapshot_index
        self.inflight.clear()

    def sent(self, last_index: int) -> None:
        """
        Record that entries up to C{last_index} were sent.
        """
        if self.state is ProgressState.REPLICATE:
            self.next = last_index + 1
            self.inflight.append(last_index)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True

    def acknowledge(self, match: int) -> bool:
        """
        Record a successful append up to C{match}; return whether the match
        index moved.
        """
        moved = match > self.match
        if moved:
            self.match = match
        if self.next < match + 1:
            self.next = match + 1
        self.probe_sent = False
        while self.inflight and self.inflight[0] <= match:
            self.inflight.popleft()
        return moved
