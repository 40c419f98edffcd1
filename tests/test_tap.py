"""
Tests for L{raft3d.tap}: the command line of C{twistd raft3d}, the services
it builds, the plugin that names it and the C{tac/} files.
"""

from __future__ import annotations

import gc
import os
import tempfile
from pathlib import Path
from typing import Any

from twisted.application.internet import TCPServer
from twisted.application.service import (
    IService,
    IServiceCollection,
    IServiceMaker,
    MultiService,
    loadApplication,
)
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from raft3d import tap
from raft3d.raft import Member
from raft3d.service import (
    EXIT_CANNOT_START,
    APISite,
    ClientPoolService,
    FatalExit,
    HTTPLimits,
    PeerSpec,
    RaftService,
    StartupGate,
)
from raft3d.service._lean import LeanHTTPChannel
from raft3d.transport import DEFAULT_MAX_FRAME, DEFAULT_RAFT_LIMITS, ConnectionLimits

from .service._fakes import LogCapture

ROOT = Path(__file__).resolve().parent.parent

SEED_NODE1 = [
    "--id",
    "node1",
    "--raft-addr",
    "localhost:7000",
    "--raft-dir",
    "data/node1",
    "--http-addr",
    "localhost:8000",
    "--bootstrap",
    "--peers",
    "localhost:7000,localhost:7001,localhost:7002",
]


def parse(args: list[str]) -> tap.Options:
    options = tap.Options()
    options.parseOptions(args)
    return options


def without(args: list[str], flag: str) -> list[str]:
    """
    C{args} without C{flag} and its value.
    """
    i = args.index(flag)
    return args[:i] + args[i + 2 :]


def replace(args: list[str], flag: str, value: str) -> list[str]:
    i = args.index(flag)
    return [*args[: i + 1], value, *args[i + 2 :]]


class OptionsTests(SynchronousTestCase):
    def test_seed_command(self) -> None:
        """
        The seed README's node1 command line gives node1, its addresses,
        bootstrap, and its two peers (its own entry removed), with the
        default tuning: 500 ms elections and 50 ms heartbeats as ticks,
        snapshots every 65536 entries (staggered) keeping 1024, 16 MiB
        frames.
        """
        config = parse(SEED_NODE1).config
        self.assertEqual(
            (config.node_id, config.raft_addr, config.raft_dir, config.http_addr),
            ("node1", "localhost:7000", "data/node1", "localhost:8000"),
        )
        self.assertTrue(config.bootstrap)
        self.assertEqual(config.peers, (PeerSpec("localhost:7001"), PeerSpec("localhost:7002")))
        self.assertEqual(config.member, Member("node1", "localhost:7000", "localhost:8000", True))
        self.assertEqual(config.cluster_id, "")
        settings = config.settings
        self.assertEqual(settings.tick_interval, 0.05)
        self.assertEqual((settings.election_ticks, settings.heartbeat_ticks), (10, 1))
        self.assertEqual((settings.snapshot_threshold, settings.trailing_entries), (65536, 1024))
        self.assertEqual(settings.snapshot_stagger, tap.SNAPSHOT_STAGGER)
        self.assertEqual(config.max_frame, DEFAULT_MAX_FRAME)
        self.assertEqual(settings.max_append_bytes, 1 << 20)
        self.assertEqual(config.warnings, ())
        self.assertFalse(config.verbose)
        self.assertIsNone(config.access_log)

    def test_go_style_flags(self) -> None:
        """
        The seed README spells flags with one dash, as Go does; they work
        verbatim, also as C{-flag=value}.
        """
        go = [("-" + a[2:] if a.startswith("--") else a) for a in SEED_NODE1]
        self.assertEqual(parse(go).config, parse(SEED_NODE1).config)
        self.assertEqual(parse(["-id=node1", *SEED_NODE1[2:]]).config.node_id, "node1")

    def test_go_style_stops_at_double_dash(self) -> None:
        """
        Only known long names are rewritten, and nothing after C{--}.
        """
        self.assertEqual(
            tap.go_style(["-id", "x", "-zz", "--", "-id"], frozenset({"id"})),
            ["--id", "x", "-zz", "--", "-id"],
        )

    def test_missing_required(self) -> None:
        """
        Each of C{--id}, C{--raft-addr}, C{--raft-dir} and C{--http-addr}
        is required, and the error names every missing one.
        """
        e = self.assertRaises(UsageError, parse, [])
        self.assertIn("missing --id, --raft-addr, --raft-dir, --http-addr", str(e))
        for flag in ("--id", "--raft-addr", "--raft-dir", "--http-addr"):
            e = self.assertRaises(UsageError, parse, without(SEED_NODE1, flag))
            self.assertEqual(str(e), f"missing {flag} (see --help)")

    def test_bad_values(self) -> None:
        """
        Bad ids and addresses, bad peers and impossible tuning are usage
        errors that say what is wrong.
        """
        for flag, value, fragment in (
            ("--id", "node 1", "1-64 letters"),
            ("--raft-addr", "localhost", "--raft-addr: address 'localhost' is not host:port"),
            ("--raft-addr", "0.0.0.0:7000", "other nodes can reach"),
            ("--http-addr", "localhost:99999", "--http-addr: port 99999"),
            ("--peers", "localhost:7000,localhost:7000", "twice"),
            ("--peers", "node2=localhost:7000", "this node's --raft-addr, to node node2"),
        ):
            e = self.assertRaises(UsageError, parse, replace(SEED_NODE1, flag, value))
            self.assertIn(fragment, str(e))
        for extra, fragment in (
            (["--election-timeout", "20"], "at least 50"),
            (["--election-timeout", "fast"], "must be an integer"),
            (["--heartbeat-interval", "200"], "at least three times --heartbeat-interval"),
            (["--snapshot-threshold", "0"], "at least 1"),
            (["--max-frame", "1000"], "at least 65536"),
            (["--cluster-id", "x" * 300], "at most 256"),
            (["--snapshot-encoder", "gpu"], "one of fork, thread, not 'gpu'"),
            (["--log-preallocate", "-1"], "at least 0"),
        ):
            e = self.assertRaises(UsageError, parse, [*SEED_NODE1, *extra])
            self.assertIn(fragment, str(e))

    def test_tuning(self) -> None:
        """
        Timeouts in milliseconds become whole 50 ms ticks; a small frame
        limit shrinks append batches and snapshot chunks to fit.
        """
        config = parse(
            [
                *SEED_NODE1,
                "--election-timeout",
                "1000",
                "--heartbeat-interval",
                "120",
                "--snapshot-threshold",
                "100",
                "--trailing-logs",
                "0",
                "--max-frame",
                "131072",
                "--cluster-id",
                "farm",
                "--access-log",
                "access.log",
                "--verbose",
                "--snapshot-encoder",
                "thread",
                "--log-preallocate",
                "0",
            ]
        ).config
        settings = config.settings
        self.assertEqual((settings.election_ticks, settings.heartbeat_ticks), (20, 2))
        self.assertEqual((settings.snapshot_threshold, settings.trailing_entries), (100, 0))
        self.assertEqual((settings.max_append_bytes, settings.snapshot_chunk_size), (65536, 65536))
        self.assertEqual((config.max_frame, config.cluster_id), (131072, "farm"))
        self.assertEqual(config.access_log, "access.log")
        self.assertTrue(config.verbose)
        self.assertEqual(config.snapshot_encoder, "thread")
        self.assertEqual(parse(SEED_NODE1).config.snapshot_encoder, "fork")
        self.assertEqual(config.log_preallocate, 0)
        self.assertEqual(parse(SEED_NODE1).config.log_preallocate, 1024 * 1024)

    def test_warnings(self) -> None:
        """
        Peers that do not list this node, and a bootstrap without peers,
        are allowed but warned about.
        """
        config = parse(replace(SEED_NODE1, "--peers", "localhost:7001")).config
        self.assertEqual(len(config.warnings), 1)
        self.assertIn("does not list this node's --raft-addr localhost:7000", config.warnings[0])
        config = parse(without(SEED_NODE1, "--peers")).config
        self.assertEqual(config.peers, ())
        self.assertIn("single-node cluster", config.warnings[0])

    def test_ids_in_peers(self) -> None:
        """
        C{id=host:port} peers keep their ids for the bootstrap probe.
        """
        config = parse(
            replace(SEED_NODE1, "--peers", "node1=localhost:7000,node2=localhost:7001")
        ).config
        self.assertEqual(config.peers, (PeerSpec("localhost:7001", "node2"),))

    def test_help_mentions_every_flag(self) -> None:
        """
        C{--help} documents every flag.
        """
        text = str(tap.Options())
        for flag in (
            "--id",
            "--raft-addr",
            "--raft-dir",
            "--http-addr",
            "--bootstrap",
            "--peers",
            "--cluster-id",
            "--election-timeout",
            "--heartbeat-interval",
            "--snapshot-threshold",
            "--trailing-logs",
            "--max-frame",
            "--access-log",
            "--verbose",
            "--http-max-connections",
            "--http-max-pending",
            "--http-timeout",
            "--http-request-timeout",
            "--raft-max-connections",
            "--raft-max-per-peer",
            "--raft-max-handshaking",
            "--raft-handshake-timeout",
            "--peer-secret-file",
        ):
            self.assertIn(flag, text)

    def test_limits(self) -> None:
        """
        The connection limits and timeouts of both ports default to
        L{HTTPLimits} and L{DEFAULT_RAFT_LIMITS} and a 5 s handshake, and
        each has its flag; timeouts may be fractional seconds.
        """
        config = parse(SEED_NODE1).config
        self.assertEqual(config.http_limits, HTTPLimits())
        self.assertEqual(config.raft_limits, DEFAULT_RAFT_LIMITS)
        self.assertEqual(config.handshake_timeout, 5.0)
        config = parse(
            [
                *SEED_NODE1,
                "--http-max-connections",
                "10",
                "--http-max-pending",
                "5",
                "--http-timeout",
                "20",
                "--http-request-timeout",
                "2.5",
                "--raft-max-connections",
                "9",
                "--raft-max-per-peer",
                "3",
                "--raft-max-handshaking",
                "4",
                "--raft-handshake-timeout",
                "1.5",
            ]
        ).config
        self.assertEqual(config.http_limits, HTTPLimits(10, 5, 20.0, 2.5))
        self.assertEqual(config.raft_limits, ConnectionLimits(9, 4, 3))
        self.assertEqual(config.handshake_timeout, 1.5)
        for extra, fragment in (
            (["--http-max-connections", "0"], "at least 1"),
            (["--http-timeout", "0"], "more than 0"),
            (["--http-request-timeout", "soon"], "number of seconds"),
            (["--raft-handshake-timeout", "-1"], "more than 0"),
            (["--raft-max-per-peer", "many"], "must be an integer"),
        ):
            e = self.assertRaises(UsageError, parse, [*SEED_NODE1, *extra])
            self.assertIn(fragment, str(e))


SECRET_TEXT = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0xMg=="


class PeerSecretTests(SynchronousTestCase):
    """
    C{--peer-secret-file} and L{tap.read_peer_secret}.
    """

    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="raft3d-test-")
        self.addCleanup(_remove_tree, self.dir)

    def write(self, content: bytes, mode: int = 0o600, name: str = "peer-secret") -> str:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(content)
        os.chmod(path, mode)
        return path

    def refused(self, path: str, *fragments: str) -> None:
        e = self.assertRaises(tap.BadPeerSecret, tap.read_peer_secret, path)
        self.assertIn(f"--peer-secret-file {path}", str(e))
        for fragment in fragments:
            self.assertIn(fragment, str(e))

    def test_flag(self) -> None:
        """
        The flag is off by default and keeps the path (not the secret) in
        the configuration; an empty path is a usage error.
        """
        self.assertIsNone(parse(SEED_NODE1).config.peer_secret_file)
        config = parse([*SEED_NODE1, "--peer-secret-file", "/etc/raft3d/peer-secret"]).config
        self.assertEqual(config.peer_secret_file, "/etc/raft3d/peer-secret")
        go = parse([*SEED_NODE1, "-peer-secret-file", "/etc/raft3d/peer-secret"]).config
        self.assertEqual(go, config)
        e = self.assertRaises(UsageError, parse, [*SEED_NODE1, "--peer-secret-file", " "])
        self.assertIn("--peer-secret-file must name a file", str(e))

    def test_read(self) -> None:
        """
        The secret is the file's bytes without one trailing newline (as
        C{base64} or an editor leaves it, C{\\n} or C{\\r\\n}); mode 0600 and
        0400 are accepted.
        """
        secret = SECRET_TEXT.encode()
        for content, mode in (
            (secret, 0o600),
            (secret + b"\n", 0o600),
            (secret + b"\r\n", 0o400),
        ):
            self.assertEqual(tap.read_peer_secret(self.write(content, mode)), secret)
        self.assertEqual(tap.read_peer_secret(self.write(secret + b"\n\n")), secret + b"\n")
        binary = bytes(range(256))
        self.assertEqual(tap.read_peer_secret(self.write(binary)), binary)

    def test_unreadable(self) -> None:
        """
        A missing file, a directory or a FIFO is refused, saying why.
        """
        self.refused(os.path.join(self.dir, "missing"), "cannot read", "No such file")
        self.refused(self.dir, "not a regular file")
        fifo = os.path.join(self.dir, "fifo")
        os.mkfifo(fifo, 0o600)
        self.refused(fifo, "not a regular file")

    def test_empty_or_short(self) -> None:
        """
        An empty file (or one holding only a newline) is refused, and so is
        a secret shorter than 16 bytes or longer than 4096.
        """
        self.refused(self.write(b""), "is empty")
        self.refused(self.write(b"\n"), "is empty")
        self.refused(self.write(b"123456789012345"), "only 15 bytes", "/dev/urandom")
        self.assertEqual(tap.read_peer_secret(self.write(b"1234567890123456")), b"1234567890123456")
        self.refused(self.write(b"x" * 4097), "more than 4096 bytes")

    def test_permissions(self) -> None:
        """
        Like an ssh key, the file must not be accessible to its group or
        other users at all; the error says how to fix it.
        """
        for mode in (0o640, 0o604, 0o620, 0o602, 0o610, 0o644, 0o666):
            path = self.write(SECRET_TEXT.encode(), mode)
            self.refused(path, f"mode {mode:04o}", f"chmod 600 {path}")

    def test_build_with_secret(self) -> None:
        """
        L{tap.build} reads the file and gives its secret to the transport.
        """
        path = self.write(SECRET_TEXT.encode() + b"\n")
        config = parse([*SEED_NODE1, "--peer-secret-file", path]).config
        transport = children(tap.build(config, MemoryReactorClock()))["raft"]._transport
        self.assertTrue(transport.authenticates)
        self.assertEqual(transport._peer_secret, SECRET_TEXT.encode())
        self.assertNotIn(SECRET_TEXT, repr(config))
        plain = children(tap.build(parse(SEED_NODE1).config, MemoryReactorClock()))
        self.assertFalse(plain["raft"]._transport.authenticates)

    def test_build_refuses_bad_secret(self) -> None:
        """
        With an unusable secret file, L{tap.build} builds nothing (no
        listener, no storage) and arranges for the process to log why and
        exit with status 78 as soon as the reactor runs.
        """
        log = LogCapture()
        log.install(self)
        path = self.write(SECRET_TEXT.encode(), 0o644)
        reactor = MemoryReactorClock()
        root = tap.build(parse([*SEED_NODE1, "--peer-secret-file", path]).config, reactor)
        self.assertEqual(list(root), [])
        [(exit_now, _, _)] = reactor.triggers["after"]["shutdown"]
        fatal = exit_now.__self__
        self.assertIsInstance(fatal, FatalExit)
        self.assertEqual(fatal.status, EXIT_CANNOT_START)
        self.assertIn(f"--peer-secret-file {path} is accessible", fatal.reason)
        self.assertEqual(len(reactor.whenRunningHooks), 1)
        self.assertTrue(log.matching("Fatal: refusing to start", "Exiting with status 78"))
        root.startService()
        self.assertEqual((reactor.tcpServers, reactor.tcpClients), ([], []))


def _remove_tree(path: str) -> None:
    for name in os.listdir(path):
        os.unlink(os.path.join(path, name))
    os.rmdir(path)


def children(service: MultiService) -> dict[str, Any]:
    return {IService(s).name: s for s in IServiceCollection(service)}


class BuildTests(SynchronousTestCase):
    def test_services(self) -> None:
        """
        L{tap.build} makes a C{MultiService} of the forwarding client's
        pool, the Raft service and the HTTP server, in that order (so the
        API stops first), without binding anything until started.
        """
        reactor = MemoryReactorClock()
        root = tap.build(parse(SEED_NODE1).config, reactor)
        self.assertIsInstance(root, MultiService)
        self.assertEqual([s.name for s in root], ["clients", "raft", "http"])
        services = children(root)
        self.assertIsInstance(services["clients"], ClientPoolService)
        self.assertEqual(reactor.tcpServers, [])

    def test_http_server(self) -> None:
        """
        The HTTP server listens on C{--http-addr}'s port and interface and
        serves the API behind the start-up gate with bounded requests.
        """
        reactor = MemoryReactorClock()
        http = children(tap.build(parse(SEED_NODE1).config, reactor))["http"]
        self.assertIsInstance(http, TCPServer)
        port, site = http.args
        self.assertEqual((port, http.kwargs["interface"]), (8000, "localhost"))
        self.assertIsInstance(site, APISite)
        self.assertIsInstance(site.resource, StartupGate)
        self.assertFalse(site.resource.is_open)
        # Lean connections, whose fast path is the gate's: none while closed.
        self.assertIsInstance(site.buildProtocol(None), LeanHTTPChannel)
        self.assertIsNone(site.resource.route(object()))
        http.privilegedStartService()
        self.assertEqual(reactor.tcpServers[0][0], 8000)
        self.assertEqual(reactor.tcpServers[0][3], "localhost")

    def test_gc_thresholds(self) -> None:
        """
        The entry points set the node's collector thresholds.
        """
        self.addCleanup(gc.set_threshold, *gc.get_threshold())
        gc.set_threshold(700, 10, 10)
        tap.tune_process()
        self.assertEqual(gc.get_threshold(), tap.GC_THRESHOLDS)

    def test_limits_wired(self) -> None:
        """
        The HTTP site and the Raft transport get the configured limits, and
        the forwarding pool drops idle connections before the leader's idle
        timeout would.
        """
        reactor = MemoryReactorClock()
        config = parse(
            [*SEED_NODE1, "--http-timeout", "20", "--raft-max-per-peer", "3"]
            + ["--raft-handshake-timeout", "2"]
        ).config
        services = children(tap.build(config, reactor))
        site = services["http"].args[1]
        self.assertEqual(site.limits, config.http_limits)
        self.assertEqual(site.timeOut, 20)
        transport = services["raft"]._transport
        self.assertEqual(transport._limiter.limits.max_per_host, 3)
        self.assertEqual(transport._handshake_timeout, 2)
        self.assertEqual(services["clients"]._pool.cachedConnectionTimeout, 10)

    def test_raft_service(self) -> None:
        """
        The Raft service runs node1 with the configured settings, bootstrap
        flag and peers; its transport advertises the HTTP address and
        passes adopted cluster ids to the node.
        """
        reactor = MemoryReactorClock()
        config = parse([*SEED_NODE1, "--cluster-id", "farm"]).config
        raft = children(tap.build(config, reactor))["raft"]
        self.assertIsInstance(raft, RaftService)
        self.assertEqual(raft.node.node_id, "node1")
        self.assertEqual(raft.node.settings, config.settings)
        self.assertEqual(raft._peers, config.peers)
        self.assertTrue(raft._bootstrap)
        self.assertEqual(raft._cluster_id, "farm")
        self.assertEqual(raft._own, config.member)
        transport = raft._transport
        self.assertEqual(transport._http_addr, "localhost:8000")
        self.assertEqual(transport.advertised_address, "localhost:7000")
        adopted: list[str] = []
        self.patch(raft.node, "adopt_cluster_id", adopted.append)
        assert transport._on_cluster_id is not None
        transport._on_cluster_id("K")
        self.assertEqual(adopted, ["K"])
        self.assertIs(raft.node.on_fatal, raft._fatal)

    def test_make_service(self) -> None:
        """
        L{tap.makeService}, the plugin's entry point, builds the same
        services on the global reactor.
        """
        root = tap.makeService(parse(SEED_NODE1))
        self.assertEqual([s.name for s in root], ["clients", "raft", "http"])


class PluginTests(SynchronousTestCase):
    def test_plugin(self) -> None:
        """
        C{twistd} finds the C{raft3d} plugin, which names L{raft3d.tap}.
        """
        makers = {m.tapname: m for m in getPlugins(IServiceMaker)}
        maker = makers["raft3d"]
        self.assertEqual(maker.name, "Raft3D")
        self.assertIs(maker.options, tap.Options)
        self.assertIs(maker.makeService, tap.makeService)

    def test_plugin_layout(self) -> None:
        """
        The plugin directory has no C{__init__.py} (it must stay a namespace
        portion of the installed C{twisted.plugins}), and the plugin file
        imports nothing of Raft3D at discovery time.
        """
        plugins = ROOT / "twisted" / "plugins"
        self.assertFalse((ROOT / "twisted" / "__init__.py").exists())
        self.assertFalse((plugins / "__init__.py").exists())
        source = (plugins / "raft3d_plugin.py").read_text()
        self.assertIn('ServiceMaker("Raft3D", "raft3d.tap",', source)
        self.assertNotIn("import raft3d", source)


class TacTests(SynchronousTestCase):
    def test_tac_files(self) -> None:
        """
        C{tac/nodeN.tac} builds the service of the seed README's node N:
        raft port 700N-1, HTTP port 800N-1, data in data/nodeN, the same
        peers everywhere, and only node1 bootstraps.
        """
        for n in (1, 2, 3):
            application = loadApplication(str(ROOT / "tac" / f"node{n}.tac"), "python")
            [root] = list(IServiceCollection(application))
            raft = children(root)["raft"]
            http = children(root)["http"]
            self.assertEqual(
                raft._own,
                Member(f"node{n}", f"localhost:{6999 + n}", f"localhost:{7999 + n}", True),
            )
            self.assertEqual(raft._bootstrap, n == 1)
            self.assertEqual(
                {p.addr for p in raft._peers},
                {"localhost:7000", "localhost:7001", "localhost:7002"} - {f"localhost:{6999 + n}"},
            )
            self.assertEqual(http.args[0], 7999 + n)
            self.assertIn(f"data/node{n}", raft._where)
