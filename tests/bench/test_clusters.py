"""
Tests for the pure parts of L{bench._clusters}.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from bench._clusters import agreed_leader, b64

NAMES = ["node1", "node2", "node3"]


def st(leader: str | None, leads: bool = False) -> dict[str, Any]:
    return {"leader_id": leader, "is_leader": leads}


class LeaderTests(SynchronousTestCase):
    """
    The Raft3D leader is the one every node names.
    """

    def test_agreed(self) -> None:
        """
        Every node names node2 and node2 says it leads.
        """
        self.assertEqual(agreed_leader([st("node2"), st("node2", True), st("node2")], NAMES), 1)

    def test_not_agreed(self) -> None:
        """
        A silent node, a disagreement, or a leader that does not say so
        gives no leader.
        """
        self.assertIsNone(agreed_leader([st("node2"), None, st("node2")], NAMES))
        self.assertIsNone(agreed_leader([st("node1", True), st("node2", True), st("node2")], NAMES))
        self.assertIsNone(agreed_leader([st("node2"), st("node2"), st("node2")], NAMES))
        self.assertIsNone(agreed_leader([st(None), st(None), st(None)], NAMES))

    def test_b64(self) -> None:
        """
        Keys are base64 of their UTF-8, as etcd's gateway wants.
        """
        self.assertEqual(b64("bench/é"), "YmVuY2gvw6k=")
