"""
Tests for L{raft3d.service._raft}: the three start-up paths (resume,
bootstrap, join), refusals, and shutdown, with a real L{RaftNode} on a
real (synchronous) L{DiskStorage} in a temporary directory, a fake peer
transport and a L{Clock}.
"""

from __future__ import annotations

import random

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from raft3d.farm import FarmState
from raft3d.raft import Configuration, CorruptStorage, Member
from raft3d.raft._node import RaftNode
from raft3d.service import EXIT_CANNOT_START, LoadOnceStorage, PeerSpec, RaftService
from raft3d.storage import DiskStorage

from ._fakes import FakeTransport, temp_dir

N1 = Member("node1", "localhost:7000", "localhost:8000")
PEERS = (PeerSpec("localhost:7001"), PeerSpec("localhost:7002"))
ANSWERS: dict[str, tuple[str, str, str] | str] = {
    "localhost:7001": ("node2", "", "localhost:8001"),
    "localhost:7002": ("node3", "", "localhost:8002"),
}


class _BrokenStorage(LoadOnceStorage):
    def load(self) -> object:  # type: ignore[override]
        raise CorruptStorage("/data/log.1", 12, "bad checksum")

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


class RaftServiceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.directory = temp_dir(self)
        self.fatals: list[tuple[str, int]] = []
        self.started: list[str] = []

    def make(
        self,
        own: Member = N1,
        *,
        bootstrap: bool = False,
        peers: tuple[PeerSpec, ...] = (),
        cluster_id: str = "",
        storage: LoadOnceStorage | None = None,
    ) -> RaftService:
        self.storage = storage or LoadOnceStorage(DiskStorage(self.directory, _synchronous=True))
        self.transport = FakeTransport()
        self.transport.answers = dict(ANSWERS)
        node = RaftNode(
            own.node_id,
            clock=self.clock,
            storage=self.storage,
            transport=self.transport,
            state_machine=FarmState(),
            rng=random.Random(1),
        )
        return RaftService(
            clock=self.clock,
            node=node,
            storage=self.storage,
            transport=self.transport,  # type: ignore[arg-type]
            own=own,
            peers=peers,
            bootstrap=bootstrap,
            cluster_id=cluster_id,
            fatal=lambda reason, status: self.fatals.append((reason, status)),
            on_started=lambda: self.started.append(own.node_id),
            make_cluster_id=lambda: "new-cluster",
        )

    def tick(self, n: int) -> None:
        for _ in range(n):
            self.clock.advance(0.05)

    def run_single_node(self) -> None:
        """
        Bootstrap a one-node cluster in the directory, let it elect itself
        and commit a write, then stop it.
        """
        service = self.make(bootstrap=True)
        service.startService()
        self.tick(40)
        self.assertTrue(service.node.status().is_leader)
        d = service.node.propose({"op": "noop-for-test"})
        self.tick(2)
        self.successResultOf(d)
        self.successResultOf(service.stopService())

    def test_join_starts_at_once(self) -> None:
        """
        Without C{--bootstrap}, a node with an empty directory starts at
        once with an empty configuration, probing nobody, and waits to be
        contacted; the HTTP gate opens.
        """
        service = self.make(peers=PEERS)
        service.startService()
        self.assertEqual(service.path, "join")
        self.assertTrue(self.transport.started)
        self.assertEqual(self.transport.probed, [])
        self.assertEqual(self.started, ["node1"])
        self.assertEqual(service.node.status().members, ())
        self.assertEqual(self.transport.cluster_id, "")
        self.assertEqual(self.fatals, [])

    def test_join_with_cluster_id(self) -> None:
        """
        Joining with C{--cluster-id} tells the transport (which then only
        talks to that cluster) and records the id as the node's.
        """
        service = self.make(cluster_id="K")
        service.startService()
        self.assertEqual(self.transport.cluster_id, "K")
        self.assertEqual(service.node.identity.cluster_id, "K")

    def test_bootstrap_waits_for_peers(self) -> None:
        """
        With C{--bootstrap} and an empty directory, the node starts only
        once every peer has answered, with all of them in its first
        configuration and a new cluster id given to the transport too.
        """
        self.make(peers=PEERS)
        service = self.make(bootstrap=True, peers=PEERS)
        self.transport.answers["localhost:7002"] = "refused"
        service.startService()
        self.assertEqual(service.path, "bootstrap")
        self.assertFalse(self.transport.started)
        self.assertEqual(self.started, [])
        self.transport.answers["localhost:7002"] = ANSWERS["localhost:7002"]
        self.clock.advance(0.5)
        self.assertTrue(self.transport.started)
        self.assertEqual(self.started, ["node1"])
        self.assertEqual(self.transport.cluster_id, "new-cluster")
        self.assertEqual(service.node.identity.cluster_id, "new-cluster")
        self.assertEqual(
            service.node.status().members,
            (
                N1,
                Member("node2", "localhost:7001", "localhost:8001"),
                Member("node3", "localhost:7002", "localhost:8002"),
            ),
        )
        self.assertEqual(
            self.transport.peers, {"node2": "localhost:7001", "node3": "localhost:7002"}
        )

    def test_bootstrap_given_cluster_id(self) -> None:
        """
        C{--cluster-id} names the bootstrapped cluster.
        """
        service = self.make(bootstrap=True, cluster_id="farm-1")
        service.startService()
        self.assertEqual(service.node.identity.cluster_id, "farm-1")
        self.assertEqual(self.transport.cluster_id, "farm-1")

    def test_resume_ignores_bootstrap(self) -> None:
        """
        Restarted with the same command line (C{--bootstrap} included), a
        node with data resumes at once: no probing, its stored cluster id
        and configuration, its data.
        """
        self.run_single_node()
        service = self.make(bootstrap=True, peers=PEERS)
        service.startService()
        self.assertEqual(service.path, "resume")
        self.assertEqual(self.transport.probed, [])
        self.assertEqual(self.started, ["node1", "node1"])
        self.assertEqual(self.transport.cluster_id, "new-cluster")
        status = service.node.status()
        self.assertEqual(status.members, (N1,))
        self.assertGreaterEqual(status.last_log_index, 3)

    def test_blank_directory_can_bootstrap(self) -> None:
        """
        A directory left by a node started once without C{--bootstrap} (an
        identity and nothing else) may still be bootstrapped.
        """
        service = self.make()
        service.startService()
        self.successResultOf(service.stopService())
        service = self.make(bootstrap=True)
        service.startService()
        self.assertEqual(service.path, "bootstrap")
        self.assertEqual(service.node.status().members, (N1,))

    def test_other_nodes_directory_refused(self) -> None:
        """
        A directory that belongs to another node is refused with a message
        naming both ids, and the status that stops systemd restarting.
        """
        self.run_single_node()
        service = self.make(Member("node2", "localhost:7001", "localhost:8001"))
        service.startService()
        [(reason, status)] = self.fatals
        self.assertIn("belongs to node node1, not node2", reason)
        self.assertEqual(status, EXIT_CANNOT_START)
        self.assertFalse(self.transport.started)
        self.assertEqual(self.started, ["node1"])
        self.successResultOf(service.stopService())
        self.assertTrue(self.transport.stopped)

    def test_other_clusters_directory_refused(self) -> None:
        """
        A directory of another cluster than C{--cluster-id} is refused.
        """
        self.run_single_node()
        service = self.make(cluster_id="other")
        service.startService()
        [(reason, status)] = self.fatals
        self.assertIn("belongs to cluster new-cluster, not other", reason)
        self.assertEqual(status, EXIT_CANNOT_START)

    def test_corrupt_storage_refused(self) -> None:
        """
        Storage that cannot be loaded stops the start with its message.
        """
        broken = _BrokenStorage(DiskStorage(self.directory, _synchronous=True))
        service = self.make(storage=broken)
        service.startService()
        [(reason, status)] = self.fatals
        self.assertIn("corrupt at byte offset 12", reason)
        self.assertEqual(status, EXIT_CANNOT_START)
        self.successResultOf(service.stopService())
        self.assertTrue(broken.closed)

    def test_node_start_failure(self) -> None:
        """
        A node that cannot start (its raft port is taken) ends the process
        with a message naming the problem.
        """
        service = self.make()

        def refuse(receiver: object) -> None:
            raise CannotListenError("localhost", 7000, OSError("Address already in use"))

        self.transport.start = refuse  # type: ignore[method-assign]
        service.startService()
        [(reason, status)] = self.fatals
        self.assertIn("cannot start node node1", reason)
        self.assertIn("Address already in use", reason)
        self.assertEqual(self.started, [])
        self.successResultOf(service.stopService())

    def test_stop_during_discovery(self) -> None:
        """
        Stopping while waiting for peers cancels the probes and retries,
        closes the transport and the storage, and never starts the node.
        """
        service = self.make(bootstrap=True, peers=(PeerSpec("localhost:7009"),))
        service.startService()
        self.assertEqual(len(self.transport.pending), 1)
        self.successResultOf(service.stopService())
        self.assertTrue(self.transport.pending[0].called)
        self.assertTrue(self.transport.stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.started, [])
        self.assertFalse(service.node_started)

    def test_stop_after_start(self) -> None:
        """
        Stopping a started node stops its ticking and its transport and
        closes its storage; nothing is left scheduled.
        """
        service = self.make()
        service.startService()
        self.tick(20)
        self.successResultOf(service.stopService())
        self.assertTrue(self.transport.stopped)
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()], [])

    def test_discovery_result_after_stop_ignored(self) -> None:
        """
        Configuration arriving after the service stopped does not start the
        node.
        """
        service = self.make(bootstrap=True, peers=(PeerSpec("localhost:7009"),))
        service.startService()
        discovery = service.discovery
        self.successResultOf(service.stopService())
        assert discovery is not None
        service._start_node(Configuration((N1,)), "late")
        self.assertFalse(self.transport.started)
