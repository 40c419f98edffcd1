"""
Test doubles for the API: an in-memory L{IRaftNode} that applies commands to
a real L{FarmState} synchronously, and helpers to drive a L{FarmAPI} through
its real Klein resource with C{treq.testing.StubTreq}.
"""

from __future__ import annotations

import json
from itertools import count
from typing import Any

import cbor2
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from raft3d.api import FarmAPI
from raft3d.farm import FarmState
from raft3d.raft import ApplyListener, IRaftNode, Member, NodeStatus

START_TIME = 1_714_557_600.0  # 2024-05-01T10:00:00Z
START_ISO = "2024-05-01T10:00:00.000Z"

LEADER = Member("n1", "127.0.0.1:7001", "127.0.0.1:8001")
FOLLOWER = Member("n2", "127.0.0.1:7002", "127.0.0.1:8002")
THIRD = Member("n3", "127.0.0.1:7003", "", voter=False)
MEMBERS = (LEADER, FOLLOWER, THIRD)


@implementer(IRaftNode)
class FakeRaftNode:
    """
    A node whose log is a counter: proposals are applied at once (after a
    CBOR round trip, like entries read back from the log), sessions cache
    their first result as the engine does, and errors can be injected.

    @ivar propose_error: if set, every proposal fails with it.
    @ivar read_error: if set, every read index fails with it.
    @ivar hold_proposals: if set, proposals return Deferreds that never fire
        (collected in C{held}).
    @ivar hold_reads: if set, read indexes return Deferreds that fire only
        when the test fires them (collected in C{held_reads}).
    """

    def __init__(self, farm: FarmState, member: Member = LEADER, leader: Member | None = LEADER):
        self.farm = farm
        self.member = member
        self.node_id = member.node_id
        self.leader = leader
        self.index = 0
        self.sessions: dict[str, tuple[int, Any]] = {}
        self.proposals: list[tuple[Any, tuple[str, int] | None]] = []
        self.read_index_calls = 0
        self.propose_error: Exception | None = None
        self.read_error: Exception | None = None
        self.hold_proposals = False
        self.held: list[Deferred[Any]] = []
        self.hold_reads = False
        self.held_reads: list[Deferred[int]] = []

    def propose(self, command: Any, session: tuple[str, int] | None = None) -> Deferred[Any]:
        self.proposals.append((command, session))
        if self.propose_error is not None:
            return fail(self.propose_error)
        if self.hold_proposals:
            d: Deferred[Any] = Deferred()
            self.held.append(d)
            return d
        if session is not None:
            cached = self.sessions.get(session[0])
            if cached is not None and cached[0] == session[1]:
                return succeed(cached[1])
        self.index += 1
        result = self.farm.apply(self.index, cbor2.loads(cbor2.dumps(command)))
        result = cbor2.loads(cbor2.dumps(result))
        if session is not None:
            self.sessions[session[0]] = (session[1], result)
        return succeed(result)

    @property
    def applied_index(self) -> int:
        return self.index

    def read_index(self) -> Deferred[int]:
        self.read_index_calls += 1
        if self.read_error is not None:
            return fail(self.read_error)
        if self.hold_reads:
            d: Deferred[int] = Deferred()
            self.held_reads.append(d)
            return d
        return succeed(self.index)

    def status(self) -> NodeStatus:
        leader_id = self.leader.node_id if self.leader is not None else None
        return NodeStatus(
            node_id=self.node_id,
            role="Leader" if leader_id == self.node_id else "Follower",
            term=3,
            leader_id=leader_id,
            commit_index=self.index,
            applied_index=self.index,
            last_log_index=self.index + 1,
            snapshot_index=0,
            members=MEMBERS,
        )

    def add_apply_listener(self, listener: ApplyListener) -> None:
        raise NotImplementedError()

    def add_learner(self, member: Member) -> Deferred[None]:
        raise NotImplementedError()

    def promote(self, node_id: str) -> Deferred[None]:
        raise NotImplementedError()

    def remove(self, node_id: str) -> Deferred[None]:
        raise NotImplementedError()

    def transfer_leadership(self, node_id: str | None = None) -> Deferred[str]:
        raise NotImplementedError()


class Response:
    """
    A fully read response.
    """

    def __init__(self, code: int, headers: Any, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name)
        return values[0] if values else None

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.code} {self.body[:200]!r}>"


class Node:
    """
    One node under test: a L{FarmState}, a L{FakeRaftNode}, a L{FarmAPI}
    with deterministic ids and clock, and a L{StubTreq} on its resource.
    """

    def __init__(
        self,
        member: Member = LEADER,
        leader: Member | None = LEADER,
        http_client: Any = None,
        **api_kwargs: Any,
    ) -> None:
        self.farm = FarmState()
        self.node = FakeRaftNode(self.farm, member, leader)
        self.clock = Clock()
        self.clock.advance(START_TIME)
        ids = count(1)
        self.api = FarmAPI(
            self.node,
            self.farm,
            self.clock,
            id_factory=lambda: f"{member.node_id}-id-{next(ids)}",
            http_client=http_client,
            **api_kwargs,
        )
        self.stub = StubTreq(self.api.resource())
        self.base = f"http://{member.http_addr or '127.0.0.1:8000'}"

    def start(
        self, method: str, path: str, body: Any = None, headers: dict[str, Any] | None = None
    ) -> Deferred[Any]:
        """
        Send a request (C{body}: bytes/str as is, anything else as JSON) and
        return the response Deferred without waiting.
        """
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        d: Deferred[Any] = self.stub.request(method, self.base + path, data=body, headers=headers)
        return d

    def finish(self, case: SynchronousTestCase, d: Deferred[Any]) -> Response:
        """
        Pump the in-memory connection and read the whole response.
        """
        self.stub.flush()
        response = case.successResultOf(d)
        content = response.content()
        self.stub.flush()
        return Response(response.code, response.headers, case.successResultOf(content))

    def request(
        self,
        case: SynchronousTestCase,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, Any] | None = None,
    ) -> Response:
        return self.finish(case, self.start(method, path, body, headers))
