"""
One real C{twistd raft3d} process: a single-node cluster's clean shutdown,
and the refusal to start on another node's data directory.
"""

from __future__ import annotations

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from raft3d.service import EXIT_CANNOT_START
from raft3d.testing import ProcessCluster


class NodeProcessTests(TestCase):
    timeout = 120

    def test_shutdown_and_refusal(self) -> Deferred[None]:
        """
        A node bootstrapped alone (C{--bootstrap} without other peers)
        leads at once and takes writes; SIGTERM stops it cleanly (the
        reactor stops and C{twistd} ends by the signal, as it does for
        Ctrl-C).  Started with another C{--id} on its data directory, a node
        refuses with a message naming both ids and exits with status 78, so
        that systemd does not restart it in a loop.
        """
        return Deferred.fromCoroutine(self.shutdown_and_refusal())

    async def shutdown_and_refusal(self) -> None:
        c = ProcessCluster(self, reactor, nodes=1)
        c.start("node1")
        self.assertEqual(await c.leader(), "node1")
        await c.ok("POST", "node1", "/api/v1/printers", {"company": "A", "model": "B"}, 201)
        c.signal("node1", "TERM")
        end = await c.output("node1").when_ended()
        self.assertEqual(end.describe(), "ended by SIGTERM", c.tails())
        lines = c.output("node1").lines
        self.assertTrue(any("Main loop terminated" in line for line in lines), c.tails())
        self.assertFalse(any("Traceback" in line for line in lines), c.tails())

        c.add(attrs.evolve(c.specs["node1"], name="node2"))
        c.start("node2")
        end = await c.output("node2").when_ended()
        self.assertEqual(end.status, EXIT_CANNOT_START, c.tails())
        lines = c.output("node2").lines
        self.assertTrue(
            any("belongs to node node1, not node2" in line for line in lines), c.tails()
        )
