# -*- test-case-name: tests.service.test_bootstrap -*-
"""
Learning who the bootstrap node's peers are before the cluster exists.

The seed README starts the bootstrap node with addresses only
(C{--peers localhost:7000,localhost:7001,localhost:7002}), but the first
configuration entry must name every member's node id and HTTP address.
L{BootstrapDiscovery} asks each address (C{TCPPeerTransport.probe}: a
hello exchange that also carries the HTTP address) and tries again every
C{interval} seconds until every peer has answered, logging who is still
missing.  Writing a configuration with a member we could not identify would
make a cluster that can never reach a quorum, so there is no timeout: an
operator reads the log.

A peer that already belongs to a cluster is never put in a new one: that
would be a second cluster claiming the same servers.  It usually means this
node lost its data; started without C{--bootstrap}, it rejoins and the
leader sends it everything.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import CancelledError, Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from raft3d.raft import Configuration, Member

from ._peers import PeerSpec

Probe = Callable[[str], "Deferred[tuple[str, str, str]]"]
"""
C{probe(addr)} fires with C{(node_id, cluster_id, http_addr)} of the node
listening at C{addr} (L{raft3d.transport.TCPPeerTransport.probe}).
"""

REMINDER_INTERVAL = 10.0
"""
Seconds between repeated "still waiting" log lines when nothing changes.
"""


class BootstrapDiscovery:
    """
    Probe every peer until all have answered, then fire with the initial
    configuration: this node and every peer, all voters.

    @param clock: schedules the retries.
    @param probe: see L{Probe}.
    @param own: this node's member record.
    @param peers: the other nodes (this node's own entry removed).
    @param interval: seconds between the end of one round of probes and the
        next.
    """

    def __init__(
        self,
        clock: IReactorTime,
        probe: Probe,
        own: Member,
        peers: tuple[PeerSpec, ...],
        *,
        interval: float = 0.5,
        log: Logger | None = None,
    ) -> None:
        self._clock = clock
        self._probe = probe
        self._own = own
        self._peers = peers
        self._interval = interval
        self._log = log if log is not None else Logger()
        self._found: dict[str, Member] = {}
        self._in_flight: list[Deferred[tuple[str, str, str]]] = []
        self._retry: IDelayedCall | None = None
        self._result: Deferred[Configuration] | None = None
        self._last_summary = ""
        self._summary_at = 0.0
        self._errors_logged: set[str] = set()
        self._done = False

    def start(self) -> Deferred[Configuration]:
        """
        Start probing; the result fires once every peer has answered (at
        once when there are none: a single-node cluster).
        """
        if self._result is not None:
            raise RuntimeError("discovery already started")
        self._result = Deferred()
        self._round()
        return self._result

    def stop(self) -> None:
        """
        Give up (the service is stopping): cancel probes and retries.  The
        result Deferred never fires.
        """
        self._done = True
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        in_flight, self._in_flight = self._in_flight, []
        for d in in_flight:
            d.cancel()

    def missing(self) -> tuple[PeerSpec, ...]:
        """
        The peers that have not answered acceptably yet.
        """
        return tuple(p for p in self._peers if p.addr not in self._found)

    # -- rounds ---------------------------------------------------------

    def _round(self) -> None:
        self._retry = None
        if self._done:
            return
        pending = self.missing()
        if not pending:
            self._finish()
            return
        self._in_flight = [self._probe(p.addr) for p in pending]
        results = DeferredList(self._in_flight, consumeErrors=True)
        results.addCallback(self._answered, pending)

    def _answered(
        self,
        outcome: list[tuple[bool, Any]],
        pending: tuple[PeerSpec, ...],
    ) -> None:
        self._in_flight = []
        if self._done:
            return
        problems: list[str] = []
        for spec, (ok, value) in zip(pending, outcome, strict=True):
            if not ok:
                assert isinstance(value, Failure)
                if value.check(CancelledError):  # type: ignore[no-untyped-call]
                    return
                problems.append(f"{spec.describe()} ({value.getErrorMessage()})")
                continue
            assert isinstance(value, tuple)
            problem = self._accept(spec, *value)
            if problem is not None:
                problems.append(f"{spec.describe()} ({problem})")
        if not self.missing():
            self._finish()
            return
        self._report(problems)
        self._retry = self._clock.callLater(self._interval, self._round)

    def _accept(self, spec: PeerSpec, node_id: str, cluster_id: str, http_addr: str) -> str | None:
        """
        Record the answer of C{spec}'s address, or say what is wrong with it.
        """
        if spec.node_id is not None and node_id != spec.node_id:
            return self._error(f"expected node {spec.node_id} but {node_id} answers there")
        if node_id == self._own.node_id:
            return self._error(f"it claims to be this node ({node_id}): two nodes share an id")
        for addr, member in self._found.items():
            if member.node_id == node_id:
                return self._error(f"node {node_id} already answered at {addr}: ids must be unique")
        if cluster_id:
            return self._error(
                f"node {node_id} already belongs to cluster {cluster_id}; refusing to bootstrap"
                " a new cluster with it.  If this node lost its data, start it without"
                " --bootstrap and the cluster will bring it back up to date"
            )
        if not http_addr:
            self._log.warn(
                "Node {node} at {addr} did not say where it serves HTTP: writes cannot be"
                " forwarded to it while it leads",
                node=node_id,
                addr=spec.addr,
            )
        self._found[spec.addr] = Member(node_id, spec.addr, http_addr, voter=True)
        self._log.info(
            "Found node {node} at {addr} (HTTP {http})",
            node=node_id,
            addr=spec.addr,
            http=http_addr or "unknown",
        )
        return None

    def _error(self, problem: str) -> str:
        if problem not in self._errors_logged:
            self._errors_logged.add(problem)
            self._log.error("Cannot bootstrap yet: {problem}", problem=problem)
        return problem

    def _report(self, problems: list[str]) -> None:
        summary = "; ".join(problems)
        now = self._clock.seconds()
        if summary == self._last_summary and now - self._summary_at < REMINDER_INTERVAL:
            return
        self._last_summary = summary
        self._summary_at = now
        self._log.info(
            "Waiting for {count} of {total} peers before bootstrapping the cluster: {missing}",
            count=len(self.missing()),
            total=len(self._peers),
            missing=summary,
        )

    def _finish(self) -> None:
        self._done = True
        members = sorted([self._own, *self._found.values()], key=lambda m: m.node_id)
        configuration = Configuration(tuple(members))
        self._log.info(
            "All peers answered; bootstrapping with {members}",
            members=", ".join(f"{m.node_id} ({m.raft_addr})" for m in members),
        )
        assert self._result is not None
        self._result.callback(configuration)
