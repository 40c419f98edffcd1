"""
Tests for L{raft3d.service._peers}: node ids, addresses and C{--peers}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.service import (
    BadAddress,
    PeerSpec,
    check_address,
    check_node_id,
    parse_peers,
    same_address,
    split_own,
)


class NodeIdTests(SynchronousTestCase):
    def test_good_ids(self) -> None:
        """
        Letters, digits, dots, dashes and underscores are fine.
        """
        for node_id in ("node1", "n", "web-01.rack_2", "A" * 64):
            self.assertEqual(check_node_id(node_id), node_id)

    def test_bad_ids(self) -> None:
        """
        Empty, overlong, or with characters that break URLs, shells,
        C{--peers} or systemd instance names: refused with the rule.
        """
        for node_id in ("", "-x", "a b", "a=b", "a,b", "a/b", "A" * 65, "nœud"):
            e = self.assertRaises(BadAddress, check_node_id, node_id)
            self.assertIn("1-64 letters", str(e))


class AddressTests(SynchronousTestCase):
    def test_good(self) -> None:
        """
        C{host:port} and C{[v6]:port} are accepted and normalised.
        """
        self.assertEqual(check_address("localhost:7000", "x"), "localhost:7000")
        self.assertEqual(check_address(" 10.0.0.1:80 ", "x"), "10.0.0.1:80")
        self.assertEqual(check_address("[::1]:7000", "x"), "[::1]:7000")

    def test_bad(self) -> None:
        """
        No port, a bad port, or a wildcard host (which other nodes cannot
        dial) are refused with a message naming the flag.
        """
        for addr, fragment in (
            ("localhost", "not host:port"),
            ("localhost:http", "not host:port"),
            ("localhost:0", "out of range"),
            ("localhost:70000", "out of range"),
            ("0.0.0.0:7000", "this machine's name or IP"),
            ("[::]:7000", "this machine's name or IP"),
            (":7000", "this machine's name or IP"),
        ):
            e = self.assertRaises(BadAddress, check_address, addr, "--raft-addr")
            self.assertIn("--raft-addr", str(e))
            self.assertIn(fragment, str(e))

    def test_same_address(self) -> None:
        """
        Loopback names are interchangeable; hosts compare case-blind;
        ports must match.
        """
        self.assertTrue(same_address("localhost:7000", "127.0.0.1:7000"))
        self.assertTrue(same_address("LocalHost:7000", "localhost:7000"))
        self.assertTrue(same_address("[::1]:7000", "localhost:7000"))
        self.assertFalse(same_address("localhost:7000", "localhost:7001"))
        self.assertFalse(same_address("10.0.0.1:7000", "10.0.0.2:7000"))


class ParsePeersTests(SynchronousTestCase):
    def test_seed_list(self) -> None:
        """
        The seed README's address-only list, with blanks and empty entries
        tolerated.
        """
        self.assertEqual(
            parse_peers(" localhost:7000, localhost:7001,,localhost:7002 "),
            (PeerSpec("localhost:7000"), PeerSpec("localhost:7001"), PeerSpec("localhost:7002")),
        )
        self.assertEqual(parse_peers(""), ())

    def test_ids(self) -> None:
        """
        C{id=host:port} entries carry the expected id; both forms mix.
        """
        self.assertEqual(
            parse_peers("node1=h1:7000,h2:7000"),
            (PeerSpec("h1:7000", "node1"), PeerSpec("h2:7000")),
        )

    def test_errors(self) -> None:
        """
        Bad addresses, bad ids and repeated addresses or ids are refused,
        quoting the entry.
        """
        for text, fragment in (
            ("h1", "entry 'h1'"),
            ("bad id=h1:1", "entry 'bad id=h1:1'"),
            ("h1:1,h1:1", "lists h1:1 twice"),
            ("localhost:1,127.0.0.1:1", "twice"),
            ("a=h1:1,a=h2:1", "node a twice"),
        ):
            e = self.assertRaises(BadAddress, parse_peers, text)
            self.assertIn(fragment, str(e))


class SplitOwnTests(SynchronousTestCase):
    def test_own_entry_removed(self) -> None:
        """
        This node's entry (by address, loopback names being equivalent) is
        taken out of the peers and reported as listed.
        """
        specs = parse_peers("127.0.0.1:7000,localhost:7001")
        self.assertEqual(
            split_own(specs, "node1", "localhost:7000"), (True, (PeerSpec("localhost:7001"),))
        )

    def test_not_listed(self) -> None:
        """
        A list without this node is fine: it is reported as not listed.
        """
        specs = parse_peers("localhost:7001")
        self.assertEqual(split_own(specs, "node1", "localhost:7000"), (False, specs))

    def test_contradictions(self) -> None:
        """
        Our address under another id, or our id at another address, is a
        configuration mistake.
        """
        e = self.assertRaises(
            BadAddress, split_own, parse_peers("node2=localhost:7000"), "node1", "localhost:7000"
        )
        self.assertIn("to node node2", str(e))
        e = self.assertRaises(
            BadAddress, split_own, parse_peers("node1=localhost:7005"), "node1", "localhost:7000"
        )
        self.assertIn("its --raft-addr is localhost:7000", str(e))
        self.assertEqual(
            split_own(parse_peers("node1=localhost:7000"), "node1", "localhost:7000"), (True, ())
        )
