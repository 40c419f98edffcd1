# -*- test-case-name: tests.test_tap -*-
"""
C{twistd raft3d}: the command line of a Raft3D node and the one place where
its parts are put together.

L{Options} checks the command line and turns it into a L{NodeConfig};
L{makeService} builds, from that and the global reactor, a C{MultiService}
of one service per concern: the Raft node (storage in C{--raft-dir}, peer
transport on C{--raft-addr}, the farm state machine), the HTTP API on
C{--http-addr}, and the forwarding client's connection pool.  L{build}
does the same on any reactor, for tests.  The plugin in
C{twisted/plugins/raft3d_plugin.py} names this module lazily, so
C{twistd --help} does not import any of it.

With C{--peer-secret-file} every peer connection authenticates with the
cluster's shared secret (see C{docs/transport.md}).  The file is read by
L{build}, not by L{Options}: a missing, empty or unprotected file must stop
the node with exit status 78 (L{EXIT_CANNOT_START}, which systemd does not
retry) rather than twistd's usage status, and no part of the node is built,
so it never runs without the authentication it was told to require.

The flags are the seed README's.  They may be spelt with one dash, as Go
programs take them (C{-id node1 -bootstrap}), so the README's commands work
with C{twistd -n raft3d} in place of C{./raft3d}.
"""

from __future__ import annotations

import gc
import os
import stat
import sys
from functools import partial
from typing import Any, Callable, Sequence, cast

import attrs
from treq.client import HTTPClient as TreqClient
from twisted.application.internet import TCPServer
from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogPublisher,
)
from twisted.python import usage
from twisted.web.client import Agent, HTTPConnectionPool

from raft3d.api import FarmAPI
from raft3d.api import HTTPClient as ForwardingClient
from raft3d.farm import FarmState
from raft3d.raft import Member, SnapshotWriter, bytes_written_by
from raft3d.raft._node import NodeSettings, RaftNode
from raft3d.service import (
    EXIT_CANNOT_START,
    APISite,
    BadAddress,
    ClientPoolService,
    FatalExit,
    HTTPLimits,
    LoadOnceStorage,
    PeerSpec,
    RaftService,
    StartupGate,
    check_address,
    check_node_id,
    parse_peers,
    run_in_child,
    run_in_pool,
    split_own,
)
from raft3d.storage import DEFAULT_PREALLOCATE, DiskStorage
from raft3d.transport import (
    DEFAULT_MAX_FRAME,
    DEFAULT_RAFT_LIMITS,
    ConnectionLimits,
    TCPPeerTransport,
    parse_address,
)

TICK_MS = 50
"""
One tick of the Raft core, in milliseconds; timeouts are whole ticks.
"""

MIN_MAX_FRAME = 64 * 1024
"""
The smallest C{--max-frame}: a hello must fit, and so must a useful batch.
"""

MAX_BATCH_BYTES = 1 << 20
"""
The largest append batch or snapshot chunk sent when frames allow it.
"""

MIN_PEER_SECRET = 16
"""
The fewest bytes a peer secret may have: the HMAC is only as strong as its
key, and C{head -c 32 /dev/urandom | base64} gives 44.
"""

MAX_PEER_SECRET = 4096
"""
The most bytes a peer secret may have; a larger file is not a secret.
"""


class BadPeerSecret(Exception):
    """
    C{--peer-secret-file} cannot be used; the message says why and what to do.
    """


def read_peer_secret(path: str) -> bytes:
    """
    Read the peer secret from C{path}, as C{ssh} reads a private key: the
    file must be a regular file that its group and other users cannot
    access at all (mode C{0600} or C{0400}).  One trailing newline (C{\\n}
    or C{\\r\\n}), as C{echo} or an editor leaves, is not part of the secret.

    @raise BadPeerSecret: if the file cannot be read, is not a regular
        file, is accessible to others, or holds an empty, too short (under
        L{MIN_PEER_SECRET} bytes) or too long secret.
    """
    where = f"--peer-secret-file {path}"
    try:
        # O_NONBLOCK: a FIFO must not hang start-up; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise BadPeerSecret(f"cannot read {where}: {e.strerror}") from None
    try:
        # Checked on the open file, so that it cannot be swapped in between.
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadPeerSecret(f"{where} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise BadPeerSecret(
                f"{where} is accessible by its group or other users (mode {mode:04o});"
                f" the secret must be private: chmod 600 {path}"
            )
        with os.fdopen(os.dup(fd), "rb") as f:
            data = f.read(MAX_PEER_SECRET + 3)
    except OSError as e:
        raise BadPeerSecret(f"cannot read {where}: {e.strerror}") from None
    finally:
        os.close(fd)
    if data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    if not data:
        raise BadPeerSecret(f"{where} is empty")
    if len(data) < MIN_PEER_SECRET:
        raise BadPeerSecret(
            f"{where} holds only {len(data)} bytes; use at least {MIN_PEER_SECRET}:"
            f" head -c 32 /dev/urandom | base64 > {path}"
        )
    if len(data) > MAX_PEER_SECRET:
        raise BadPeerSecret(f"{where} holds more than {MAX_PEER_SECRET} bytes")
    return data


SNAPSHOT_ENCODERS = ("fork", "thread")
"""
The values of C{--snapshot-encoder}, the default first.
"""


@attrs.frozen
class NodeConfig:
    """
    A checked command line.

    @ivar peers: the other nodes of C{--peers} (this node's entry removed).
    @ivar warnings: things worth telling the operator that do not stop the
        node; logged when the service is built.
    """

    node_id: str
    raft_addr: str
    raft_dir: str
    http_addr: str
    bootstrap: bool
    peers: tuple[PeerSpec, ...]
    cluster_id: str
    settings: NodeSettings
    max_frame: int
    access_log: str | None
    verbose: bool = False
    warnings: tuple[str, ...] = ()
    http_limits: HTTPLimits = HTTPLimits()
    raft_limits: ConnectionLimits = DEFAULT_RAFT_LIMITS
    handshake_timeout: float = 5.0
    peer_secret_file: str | None = None
    snapshot_encoder: str = SNAPSHOT_ENCODERS[0]
    log_preallocate: int = DEFAULT_PREALLOCATE

    @property
    def member(self) -> Member:
        return Member(self.node_id, self.raft_addr, self.http_addr, voter=True)


def _positive(name: str, minimum: int = 1) -> Any:
    def coerce(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"{name} must be an integer, not {text!r}") from None
        if value < minimum:
            raise ValueError(f"{name} must be at least {minimum}, not {value}")
        return value

    coerce.coerceDoc = f"An integer, at least {minimum}."  # type: ignore[attr-defined]
    return coerce


def _choice(name: str, choices: Sequence[str]) -> Any:
    def coerce(text: str) -> str:
        if text not in choices:
            raise ValueError(f"{name} must be one of {', '.join(choices)}, not {text!r}")
        return text

    coerce.coerceDoc = f"One of {', '.join(choices)}."  # type: ignore[attr-defined]
    return coerce


def _seconds(name: str) -> Any:
    def coerce(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number of seconds, not {text!r}") from None
        if not 0 < value < 86400:
            raise ValueError(f"{name} must be more than 0 and less than a day, not {text}")
        return value

    coerce.coerceDoc = "Seconds, more than 0."  # type: ignore[attr-defined]
    return coerce


_HTTP = HTTPLimits()


def _snapshot_runner(encoder: str, reactor: Any) -> Callable[[SnapshotWriter], Deferred[bytes]]:
    """
    What runs a snapshot's encoder off the reactor: a forked child, or a
    thread of the reactor's pool.
    """
    if encoder == "fork":
        return lambda work: run_in_child(reactor, work)
    return lambda work: run_in_pool(reactor, partial(bytes_written_by, work))


SNAPSHOT_STAGGER = 0.5
"""
A node takes each snapshot after between 1 and 1.5 times
C{--snapshot-threshold} entries (see C{NodeSettings.snapshot_stagger}).
"""

COMMIT_NOTICE_DELAY = 0.002
"""
A leader holds back a commit notice for up to 2 ms, for the next batch to
carry it (see C{NodeSettings.commit_notice_delay}).
"""


class Options(usage.Options):
    """
    The flags of C{twistd raft3d}; see C{docs/operations.md}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run one node of a Raft3D print-farm cluster. Example (node 1 of 3, bootstrapping):"
        " twistd -n raft3d --id node1 --raft-addr localhost:7000 --raft-dir data/node1"
        " --http-addr localhost:8000 --bootstrap"
        " --peers localhost:7000,localhost:7001,localhost:7002."
        " Flags may also be written with one dash (-id node1). See docs/operations.md."
    )

    optFlags = [
        [
            "bootstrap",
            None,
            "Create the cluster if --raft-dir is empty: wait until every --peers address"
            " answers, then write the first configuration. Give it to exactly one node."
            " Ignored when --raft-dir already holds data.",
        ],
        [
            "verbose",
            None,
            "Also log the peer transport's debug lines (every reconnection attempt,"
            " discovery connections).",
        ],
    ]

    optParameters: list[list[Any]] = [
        ["id", None, None, "This node's id, unique in the cluster (e.g. node1)."],
        [
            "raft-addr",
            None,
            None,
            "host:port to listen on for other nodes; they dial this address too.",
        ],
        [
            "raft-dir",
            None,
            None,
            "Directory for this node's log, snapshots and metadata (created if missing).",
        ],
        ["http-addr", None, None, "host:port to serve the REST API on."],
        [
            "peers",
            None,
            "",
            "Comma-separated raft addresses of all nodes (host:port or id=host:port),"
            " this one included. Needed with --bootstrap; checked otherwise.",
        ],
        [
            "cluster-id",
            None,
            "",
            "With --bootstrap: the new cluster's id (default: a random one)."
            " Without: join only the cluster with this id.",
        ],
        [
            "election-timeout",
            None,
            500,
            "Minimum election timeout in milliseconds (randomised up to twice that),"
            f" rounded to {TICK_MS} ms ticks.",
            _positive("--election-timeout", TICK_MS),
        ],
        [
            "heartbeat-interval",
            None,
            TICK_MS,
            f"Leader heartbeat interval in milliseconds, rounded to {TICK_MS} ms ticks.",
            _positive("--heartbeat-interval", TICK_MS),
        ],
        [
            "snapshot-threshold",
            None,
            65536,
            "Take a snapshot every this many applied log entries (and once the log"
            " since the last one is a quarter of its size).",
            _positive("--snapshot-threshold"),
        ],
        [
            "trailing-logs",
            None,
            1024,
            "Log entries kept behind a snapshot for slightly lagging followers.",
            _positive("--trailing-logs", 0),
        ],
        [
            "max-frame",
            None,
            DEFAULT_MAX_FRAME,
            "Largest peer message in bytes, sent or accepted.",
            _positive("--max-frame", MIN_MAX_FRAME),
        ],
        [
            "access-log",
            None,
            None,
            "Write an HTTP access log (combined format) to this file. Default: none.",
        ],
        [
            "http-max-connections",
            None,
            _HTTP.max_connections,
            "Most HTTP connections open at once; more are closed at once.",
            _positive("--http-max-connections"),
        ],
        [
            "http-max-pending",
            None,
            _HTTP.max_pending,
            "Most HTTP connections waiting for or receiving a request at once (idle"
            " keep-alive ones included); a new one closes the one waiting longest.",
            _positive("--http-max-pending"),
        ],
        [
            "http-timeout",
            None,
            _HTTP.idle_timeout,
            "Close an HTTP connection that sends nothing for this many seconds.",
            _seconds("--http-timeout"),
        ],
        [
            "http-request-timeout",
            None,
            _HTTP.request_timeout,
            "Seconds a client has to send a whole request (line, headers, body) from"
            " its first byte; a slower one gets a 408 and is closed.",
            _seconds("--http-request-timeout"),
        ],
        [
            "raft-max-connections",
            None,
            DEFAULT_RAFT_LIMITS.max_connections,
            "Most inbound connections on the Raft port at once; more are closed at once.",
            _positive("--raft-max-connections"),
        ],
        [
            "raft-max-per-peer",
            None,
            DEFAULT_RAFT_LIMITS.max_per_host,
            "Most inbound connections on the Raft port from one IP address at once.",
            _positive("--raft-max-per-peer"),
        ],
        [
            "raft-max-handshaking",
            None,
            DEFAULT_RAFT_LIMITS.max_pending,
            "Most inbound Raft connections that have not yet said hello as a cluster"
            " member; a new one closes the one waiting longest.",
            _positive("--raft-max-handshaking"),
        ],
        [
            "raft-handshake-timeout",
            None,
            5.0,
            "Close a Raft connection that has not completed its hello within this many seconds.",
            _seconds("--raft-handshake-timeout"),
        ],
        [
            "peer-secret-file",
            None,
            None,
            "File holding the cluster's shared peer secret (mode 600, at least"
            f" {MIN_PEER_SECRET} bytes; one trailing newline is ignored). Every node must"
            " use the same one: peers then authenticate every Raft connection, and a"
            " process without the secret can neither join nor learn the cluster's ids."
            " Default: no authentication.",
        ],
        [
            "snapshot-encoder",
            None,
            SNAPSHOT_ENCODERS[0],
            "Where snapshots are encoded: 'fork' (a child process, on another core and"
            " off the reactor's interpreter lock; it briefly needs memory for the pages"
            " it copies) or 'thread' (a thread of this process).",
            _choice("--snapshot-encoder", SNAPSHOT_ENCODERS),
        ],
        [
            "log-preallocate",
            None,
            DEFAULT_PREALLOCATE,
            "Grow log segments by this many bytes of zeros at a time (an fdatasync that"
            " need not change the file's size is faster); 0 to grow them record by record"
            " (say, on a copy-on-write file system, where it gains nothing).",
            _positive("--log-preallocate", 0),
        ],
    ]

    config: NodeConfig

    def parseOptions(self, options: Sequence[str] | None = None) -> None:
        """
        Parse C{options}, accepting the single-dash spelling of every long
        flag (C{-id node1}) as Go's C{flag} package does.
        """
        if options is None:
            options = sys.argv[1:]
        super().parseOptions(go_style(options, self._long_names()))  # type: ignore[no-untyped-call]

    def _long_names(self) -> frozenset[str]:
        names: set[str] = {str(flag[0]) for flag in self.optFlags}
        names.update(str(param[0]) for param in self.optParameters)
        names.update({"help", "version"})
        return frozenset(name for name in names if len(name) > 1)

    def postOptions(self) -> None:
        self.config = self._check()

    def _check(self) -> NodeConfig:
        missing = [
            f"--{name}"
            for name in ("id", "raft-addr", "raft-dir", "http-addr")
            if not (self[name] or "").strip()
        ]
        if missing:
            raise usage.UsageError(f"missing {', '.join(missing)} (see --help)")
        warnings: list[str] = []
        try:
            node_id = check_node_id(self["id"].strip())
            raft_addr = check_address(self["raft-addr"], "--raft-addr")
            http_addr = check_address(self["http-addr"], "--http-addr")
            specs = parse_peers(self["peers"])
            listed, peers = split_own(specs, node_id, raft_addr)
        except BadAddress as e:
            raise usage.UsageError(str(e)) from None
        if specs and not listed:
            warnings.append(
                f"--peers does not list this node's --raft-addr {raft_addr};"
                " it is added to the cluster anyway"
            )
        if self["bootstrap"] and not peers:
            warnings.append("--bootstrap without other --peers: a single-node cluster")
        cluster_id = self["cluster-id"].strip()
        if len(cluster_id) > 256:
            raise usage.UsageError("--cluster-id must be at most 256 characters")
        peer_secret_file = self["peer-secret-file"]
        if peer_secret_file is not None and not peer_secret_file.strip():
            raise usage.UsageError("--peer-secret-file must name a file")
        heartbeat_ticks = max(1, round(self["heartbeat-interval"] / TICK_MS))
        election_ticks = max(1, round(self["election-timeout"] / TICK_MS))
        if election_ticks < 3 * heartbeat_ticks:
            raise usage.UsageError(
                f"--election-timeout ({election_ticks * TICK_MS} ms) must be at least three"
                f" times --heartbeat-interval ({heartbeat_ticks * TICK_MS} ms)"
            )
        max_frame = self["max-frame"]
        batch = min(MAX_BATCH_BYTES, max_frame // 2)
        settings = NodeSettings(
            tick_interval=TICK_MS / 1000,
            election_ticks=election_ticks,
            heartbeat_ticks=heartbeat_ticks,
            snapshot_threshold=self["snapshot-threshold"],
            snapshot_stagger=SNAPSHOT_STAGGER,
            commit_notice_delay=COMMIT_NOTICE_DELAY,
            trailing_entries=self["trailing-logs"],
            max_append_bytes=batch,
            snapshot_chunk_size=batch,
        )
        return NodeConfig(
            node_id=node_id,
            raft_addr=raft_addr,
            raft_dir=self["raft-dir"],
            http_addr=http_addr,
            bootstrap=bool(self["bootstrap"]),
            peers=peers,
            cluster_id=cluster_id,
            settings=settings,
            max_frame=max_frame,
            access_log=self["access-log"],
            verbose=bool(self["verbose"]),
            warnings=tuple(warnings),
            http_limits=HTTPLimits(
                max_connections=self["http-max-connections"],
                max_pending=self["http-max-pending"],
                idle_timeout=self["http-timeout"],
                request_timeout=self["http-request-timeout"],
            ),
            raft_limits=ConnectionLimits(
                max_connections=self["raft-max-connections"],
                max_pending=self["raft-max-handshaking"],
                max_per_host=self["raft-max-per-peer"],
            ),
            handshake_timeout=self["raft-handshake-timeout"],
            peer_secret_file=peer_secret_file,
            snapshot_encoder=self["snapshot-encoder"],
            log_preallocate=self["log-preallocate"],
        )


def go_style(args: Sequence[str], long_names: frozenset[str]) -> list[str]:
    """
    Rewrite C{-name} and C{-name=value} to C{--name...} for the known long
    option names; stop at C{--}.
    """
    out: list[str] = []
    for i, arg in enumerate(args):
        if arg == "--":
            out.extend(args[i:])
            break
        if arg.startswith("-") and not arg.startswith("--"):
            name = arg[1:].partition("=")[0]
            if name in long_names:
                arg = "-" + arg
        out.append(arg)
    return out


def transport_logger(verbose: bool) -> Logger:
    """
    The transport's logger: without C{--verbose} its debug lines (one per
    reconnection attempt while a peer is down) are dropped.
    """
    if verbose:
        return Logger(namespace="raft3d.transport")
    only_info = LogLevelFilterPredicate(defaultLogLevel=LogLevel.info)
    observer = FilteringLogObserver(globalLogPublisher, [only_info])
    return Logger(namespace="raft3d.transport", observer=observer)


def build(config: NodeConfig, reactor: Any) -> MultiService:
    """
    Build the services of one node on C{reactor} (which must provide the
    TCP, time, thread and core reactor interfaces).

    If C{--peer-secret-file} cannot be used, nothing is built: the
    returned service is empty and the process exits with status 78 as soon
    as the reactor runs.
    """
    log = RaftService.log
    for warning in config.warnings:
        log.warn("{warning}", warning=warning)
    root = MultiService()  # type: ignore[no-untyped-call]
    fatal = FatalExit(reactor)
    peer_secret: bytes | None = None
    if config.peer_secret_file is not None:
        try:
            peer_secret = read_peer_secret(config.peer_secret_file)
        except BadPeerSecret as e:
            fatal(f"refusing to start: {e}", EXIT_CANNOT_START)
            return root
        log.info(
            "Peer connections authenticate with the shared secret in {path}",
            path=config.peer_secret_file,
        )
    storage = LoadOnceStorage(
        DiskStorage(config.raft_dir, reactor=reactor, preallocate=config.log_preallocate)
    )
    farm = FarmState()
    node: RaftNode | None = None

    def adopt(cluster_id: str) -> None:
        assert node is not None
        node.adopt_cluster_id(cluster_id)

    transport = TCPPeerTransport(
        reactor,
        config.node_id,
        config.raft_addr,
        on_cluster_id=adopt,
        http_addr=config.http_addr,
        max_frame=config.max_frame,
        log=transport_logger(config.verbose),
        limits=config.raft_limits,
        handshake_timeout=config.handshake_timeout,
        peer_secret=peer_secret,
    )
    node = RaftNode(
        config.node_id,
        clock=reactor,
        storage=storage,
        transport=transport,
        state_machine=farm,
        settings=config.settings,
        run_in_thread=_snapshot_runner(config.snapshot_encoder, reactor),
    )
    node.on_fatal = fatal
    pool = HTTPConnectionPool(reactor)  # type: ignore[no-untyped-call]
    # Forwarded writes from many clients at once: keep enough connections
    # to the leader open instead of dialling one per request.
    pool.maxPersistentPerHost = 64
    idle = config.http_limits.idle_timeout
    if idle is not None:
        # Give up an idle connection to the leader before the leader's own
        # idle timeout (the same flag, cluster-wide) closes it under a
        # forwarded write, which would then fail.
        pool.cachedConnectionTimeout = min(pool.cachedConnectionTimeout, max(1, int(idle / 2)))
    agent = Agent(reactor, pool=pool)  # type: ignore[no-untyped-call]
    client = cast(ForwardingClient, TreqClient(agent))
    api = FarmAPI(node, farm, reactor, http_client=client)
    resource = api.resource()
    gate = StartupGate(resource, fast=resource)
    raft = RaftService(
        clock=reactor,
        node=node,
        storage=storage,
        transport=transport,
        own=config.member,
        peers=config.peers,
        bootstrap=config.bootstrap,
        cluster_id=config.cluster_id,
        fatal=fatal,
        on_started=gate.open,
        describe_storage=f"--raft-dir {os.path.abspath(config.raft_dir)}",
    )
    host, port = parse_address(config.http_addr)
    site = APISite(gate, config.access_log, reactor=reactor, limits=config.http_limits, fast=gate)
    http = TCPServer(port, site, interface=host, reactor=reactor)  # type: ignore[no-untyped-call]
    clients = ClientPoolService(pool)
    # Started in this order, stopped in reverse: the API goes away first,
    # then the node, then idle client connections.
    services: list[tuple[str, Service]] = [("clients", clients), ("raft", raft), ("http", http)]
    for name, service in services:
        service.setName(name)  # type: ignore[no-untyped-call]
        service.setServiceParent(root)  # type: ignore[no-untyped-call]
    return root


GC_THRESHOLDS = (50_000, 20, 10)
"""
The collector's thresholds for a node process.  With CPython's defaults
(700, 10, 10) a loaded leader ran a full collection every second or two,
each 30-37 ms with the reactor stopped: the worst latency of every
request.  Young collections every 50,000 net allocations instead of 700
make full ones about 70 times rarer; cycles are still collected.  See
C{docs/performance.md}.
"""


def tune_process() -> None:
    """
    Process-wide settings for a node: the global state of the process
    belongs to its entry points (the plugin and the tac files), not to the
    library.
    """
    gc.set_threshold(*GC_THRESHOLDS)


def makeService(options: Options) -> MultiService:
    """
    The C{IServiceMaker} entry point: build the node on the global reactor.
    """
    from twisted.internet import reactor

    tune_process()
    return build(options.config, reactor)
