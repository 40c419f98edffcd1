"""
Tests for L{raft3d.service._bootstrap}: learning the peers' ids and HTTP
addresses before writing the first configuration, with a fake probe on a
L{Clock}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from raft3d.raft import Configuration, Member
from raft3d.service import BootstrapDiscovery, PeerSpec
from raft3d.service._bootstrap import REMINDER_INTERVAL

from ._fakes import FakeTransport, LogCapture

OWN = Member("node1", "localhost:7000", "localhost:8000")
PEERS = (PeerSpec("localhost:7001"), PeerSpec("localhost:7002"))
NODE2 = ("node2", "", "localhost:8001")
NODE3 = ("node3", "", "localhost:8002")


def expected(*members: Member) -> Configuration:
    return Configuration(tuple(sorted(members, key=lambda m: m.node_id)))


class DiscoveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = FakeTransport()
        self.log = LogCapture()
        self.log.install(self)

    def discovery(self, peers: tuple[PeerSpec, ...] = PEERS) -> BootstrapDiscovery:
        return BootstrapDiscovery(self.clock, self.transport.probe, OWN, peers, interval=0.5)

    def test_all_answer_at_once(self) -> None:
        """
        When every peer answers the first probe, the result is the
        configuration of this node and every peer, all voters, with the
        probed raft address and the announced HTTP address, sorted by id.
        """
        self.transport.answers = {"localhost:7001": NODE2, "localhost:7002": NODE3}
        config = self.successResultOf(self.discovery().start())
        self.assertEqual(
            config,
            expected(
                OWN,
                Member("node2", "localhost:7001", "localhost:8001", True),
                Member("node3", "localhost:7002", "localhost:8002", True),
            ),
        )
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_no_peers(self) -> None:
        """
        Without peers the result is a single-node configuration, at once.
        """
        config = self.successResultOf(self.discovery(()).start())
        self.assertEqual(config, expected(OWN))
        self.assertEqual(self.transport.probed, [])

    def test_retries_until_everyone_answers(self) -> None:
        """
        A peer that is not up yet is probed again every half second (only
        the missing ones); the result waits for it, and the log says who is
        missing and why.
        """
        self.transport.answers = {"localhost:7001": NODE2, "localhost:7002": "refused"}
        d = self.discovery().start()
        self.assertNoResult(d)
        self.assertTrue(self.log.matching("Waiting for 1 of 2 peers", "localhost:7002", "refused"))
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertNoResult(d)
        self.assertEqual(
            self.transport.probed,
            ["localhost:7001", "localhost:7002", "localhost:7002", "localhost:7002"],
        )
        self.transport.answers["localhost:7002"] = NODE3
        self.clock.advance(0.5)
        self.assertEqual(self.successResultOf(d).ids(), {"node1", "node2", "node3"})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_waiting_logged_on_change_and_as_reminder(self) -> None:
        """
        The "waiting" line is logged when the set of problems changes, and
        repeated every L{REMINDER_INTERVAL} seconds while nothing changes,
        not on every round.
        """
        self.transport.answers = {"localhost:7001": "refused", "localhost:7002": "refused"}
        self.discovery().start()
        for _ in range(int(REMINDER_INTERVAL / 0.5) - 1):
            self.clock.advance(0.5)
        self.assertEqual(len(self.log.matching("Waiting for")), 1)
        self.transport.answers["localhost:7001"] = NODE2
        self.clock.advance(0.5)
        self.assertEqual(len(self.log.matching("Waiting for 1 of 2")), 1)
        for _ in range(int(REMINDER_INTERVAL / 0.5)):
            self.clock.advance(0.5)
        self.assertEqual(len(self.log.matching("Waiting for 1 of 2")), 2)

    def test_slow_probe_delays_next_round(self) -> None:
        """
        A round ends when every probe of it has ended; the next one starts
        half a second later (no pile-up of probes to a silent address).
        """
        d = self.discovery((PeerSpec("localhost:7001"),)).start()
        self.assertEqual(len(self.transport.pending), 1)
        self.clock.advance(5)
        self.assertEqual(len(self.transport.probed), 1)
        self.transport.pending[0].callback(NODE2)
        self.assertEqual(self.successResultOf(d).ids(), {"node1", "node2"})

    def test_expected_id_checked(self) -> None:
        """
        With C{id=host:port}, another node answering at that address is an
        error (logged once), and discovery waits for the right one.
        """
        self.transport.answers = {"localhost:7001": ("node9", "", "h:1")}
        d = self.discovery((PeerSpec("localhost:7001", "node2"),)).start()
        self.clock.advance(0.5)
        self.clock.advance(0.5)
        self.assertNoResult(d)
        errors = self.log.matching("expected node node2 but node9 answers", level="error")
        self.assertEqual(len(errors), 1)
        self.transport.answers["localhost:7001"] = NODE2
        self.clock.advance(0.5)
        self.assertEqual(self.successResultOf(d).ids(), {"node1", "node2"})

    def test_peer_in_a_cluster_refused(self) -> None:
        """
        A peer that already belongs to a cluster is never put into a new
        one; the error tells the operator how to rejoin instead.
        """
        self.transport.answers = {"localhost:7001": ("node2", "abc", "h:1")}
        d = self.discovery((PeerSpec("localhost:7001"),)).start()
        self.clock.advance(0.5)
        self.assertNoResult(d)
        [error] = self.log.matching("already belongs to cluster abc", level="error")
        self.assertIn("without --bootstrap", error)

    def test_duplicate_and_own_ids_refused(self) -> None:
        """
        Two addresses answering with the same id, or a peer answering with
        this node's id, are errors: ids must be unique.
        """
        self.transport.answers = {
            "localhost:7001": NODE2,
            "localhost:7002": NODE2,
            "localhost:7003": ("node1", "", "h:1"),
        }
        peers = (*PEERS, PeerSpec("localhost:7003"))
        d = self.discovery(peers).start()
        self.assertNoResult(d)
        self.assertTrue(self.log.matching("node node2 already answered at localhost:7001"))
        self.assertTrue(self.log.matching("claims to be this node (node1)"))

    def test_missing_http_address_warned(self) -> None:
        """
        A peer that announces no HTTP address (an older version) is
        accepted with an empty one, with a warning that writes cannot be
        forwarded to it.
        """
        self.transport.answers = {"localhost:7001": ("node2", "", "")}
        config = self.successResultOf(self.discovery((PeerSpec("localhost:7001"),)).start())
        self.assertEqual(config.get("node2"), Member("node2", "localhost:7001", "", True))
        self.assertTrue(self.log.matching("did not say where it serves HTTP", level="warn"))

    def test_stop_cancels(self) -> None:
        """
        Stopping cancels the probes in flight and the next round; the
        result never fires.
        """
        self.transport.answers = {"localhost:7001": "refused"}
        discovery = self.discovery()
        d = discovery.start()
        discovery.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(all(p.called for p in self.transport.pending))
        self.clock.advance(10)
        self.assertNoResult(d)
        self.assertEqual(len(self.transport.probed), 2)
        self.assertEqual(
            [p.addr for p in discovery.missing()], ["localhost:7001", "localhost:7002"]
        )

    def test_start_twice(self) -> None:
        """
        A discovery runs once.
        """
        discovery = self.discovery(())
        discovery.start()
        self.assertRaises(RuntimeError, discovery.start)
