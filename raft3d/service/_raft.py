# -*- test-case-name: tests.service.test_raft -*-
"""
L{RaftService}: the life cycle of one Raft node inside C{twistd}.

On start it reads the data directory and takes one of three paths:

 - B{resume}: the directory holds a node's data.  Start at once, whatever
   the command line says about bootstrapping, so that restarting a node
   with the same command line (the seed README's walk-through, a systemd
   restart) just picks up where it left off.
 - B{bootstrap}: the directory is empty and C{--bootstrap} was given.
   Probe the peers until all have answered (L{BootstrapDiscovery}), then
   write the first configuration under a new cluster id.
 - B{join}: the directory is empty.  Start with an empty configuration and
   wait: the leader contacts this node, which adopts its cluster id and
   receives the log.

A directory that belongs to another node, or another cluster than
C{--cluster-id}, or that is damaged, is refused with a clear message and a
non-zero exit (L{FatalExit}).
"""

from __future__ import annotations

import uuid
from typing import Callable

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from raft3d.raft import Configuration, IRaftStorage, LoadedState, Member
from raft3d.raft._node import RaftNode
from raft3d.transport import TCPPeerTransport

from ._bootstrap import BootstrapDiscovery
from ._exit import EXIT_CANNOT_START, EXIT_FATAL
from ._peers import PeerSpec


def new_cluster_id() -> str:
    """
    A fresh cluster id (a uuid4 in hex).
    """
    return uuid.uuid4().hex


class RaftService(Service):
    """
    Runs a L{RaftNode}, bootstrapping its cluster first when asked to.

    @param node: the node, built on C{storage} and C{transport}.
    @param storage: the node's storage; C{load()} must be callable again
        (L{raft3d.service.LoadOnceStorage}).
    @param transport: the node's transport, used to probe peers.
    @param own: this node's member record (id, raft and HTTP addresses).
    @param peers: the other nodes of C{--peers}.
    @param bootstrap: whether C{--bootstrap} was given.
    @param cluster_id: C{--cluster-id}, or C{""}.
    @param fatal: called with a reason and an exit status when the node
        cannot start.
    @param on_started: called once the node is running.
    @param describe_storage: names the data directory in log lines.
    """

    log = Logger()

    def __init__(
        self,
        *,
        clock: IReactorTime,
        node: RaftNode,
        storage: IRaftStorage,
        transport: TCPPeerTransport,
        own: Member,
        peers: tuple[PeerSpec, ...] = (),
        bootstrap: bool = False,
        cluster_id: str = "",
        fatal: Callable[[str, int], object],
        on_started: Callable[[], object] = lambda: None,
        make_cluster_id: Callable[[], str] = new_cluster_id,
        probe_interval: float = 0.5,
        describe_storage: str = "the data directory",
    ) -> None:
        self._clock = clock
        self.node = node
        self._storage = storage
        self._transport = transport
        self._own = own
        self._peers = peers
        self._bootstrap = bootstrap
        self._cluster_id = cluster_id
        self._fatal = fatal
        self._on_started = on_started
        self._make_cluster_id = make_cluster_id
        self._probe_interval = probe_interval
        self._where = describe_storage
        self.discovery: BootstrapDiscovery | None = None
        self.path: str | None = None
        self._node_started = False

    @property
    def node_started(self) -> bool:
        """
        Whether the node was started (it may still be discovering peers).
        """
        return self._node_started

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        try:
            loaded = self._storage.load()
        except Exception as e:
            self._fatal(f"cannot read {self._where}: {e}", EXIT_CANNOT_START)
            return
        problem = self._check(loaded)
        if problem is not None:
            self._fatal(problem, EXIT_CANNOT_START)
            return
        identity = loaded.identity
        if identity is not None:
            self.path = "resume"
            self.log.info(
                "Node {node} resuming from {where}: term {term}, log up to {last},"
                " snapshot at {snap}",
                node=self._own.node_id,
                where=self._where,
                term=loaded.hard_state.term,
                last=loaded.entries[-1].index
                if loaded.entries
                else (loaded.snapshot.index if loaded.snapshot else 0),
                snap=loaded.snapshot.index if loaded.snapshot else 0,
            )
            self._start_node(None, identity.cluster_id)
        elif self._bootstrap:
            self.path = "bootstrap"
            cluster_id = self._cluster_id or self._make_cluster_id()
            self.log.info(
                "Node {node} has no data in {where}: bootstrapping cluster {cluster}"
                " once its {count} peer(s) answer",
                node=self._own.node_id,
                where=self._where,
                cluster=cluster_id,
                count=len(self._peers),
            )
            self.discovery = BootstrapDiscovery(
                self._clock,
                self._transport.probe,
                self._own,
                self._peers,
                interval=self._probe_interval,
            )
            self.discovery.start().addCallback(self._start_node, cluster_id).addErrback(
                self._failed
            )
        else:
            self.path = "join"
            self.log.info(
                "Node {node} has no data in {where}: waiting for the cluster's leader"
                " to contact it at {addr}",
                node=self._own.node_id,
                where=self._where,
                addr=self._own.raft_addr,
            )
            self._start_node(None, self._cluster_id)

    def _check(self, loaded: LoadedState) -> str | None:
        identity = loaded.identity
        if identity is None:
            return None
        if identity.node_id != self._own.node_id:
            return (
                f"{self._where} belongs to node {identity.node_id}, not {self._own.node_id}:"
                f" use --id {identity.node_id} or another --raft-dir"
            )
        if self._cluster_id and identity.cluster_id and identity.cluster_id != self._cluster_id:
            return (
                f"{self._where} belongs to cluster {identity.cluster_id},"
                f" not {self._cluster_id} (--cluster-id)"
            )
        return None

    def _start_node(self, bootstrap: Configuration | None, cluster_id: str) -> None:
        self.discovery = None
        if not self.running:
            return
        if cluster_id:
            self._transport.set_cluster_id(cluster_id)
        self._node_started = True
        try:
            self.node.start(bootstrap=bootstrap, cluster_id=cluster_id)
        except Exception as e:
            self._fatal(f"cannot start node {self._own.node_id}: {e}", EXIT_CANNOT_START)
            return
        if cluster_id and not self.node.identity.cluster_id:
            # Joining with --cluster-id: only that cluster may adopt us.
            self.node.adopt_cluster_id(cluster_id)
        self.log.info(
            "Node {node} started: Raft on {raft}, HTTP on {http}",
            node=self._own.node_id,
            raft=self._own.raft_addr,
            http=self._own.http_addr,
        )
        self._on_started()

    def _failed(self, failure: Failure) -> None:
        self.log.failure("Starting the node failed", failure)
        self._fatal(f"starting the node failed: {failure.getErrorMessage()}", EXIT_FATAL)

    def stopService(self) -> Deferred[None]:
        """
        Stop discovery or the node; fires once the transport is closed and
        the storage has finished its queued writes.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        if self.discovery is not None:
            self.discovery.stop()
            self.discovery = None
        if self._node_started:
            return self.node.stop()
        d: Deferred[None] = self._transport.stop()
        d.addBoth(lambda _: self._storage.close())
        return d
