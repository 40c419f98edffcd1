# -*- test-case-name: tests.bench.test_clusters -*-
"""
The two systems under test, each as three real processes on 127.0.0.1 with
free ports and their data on disk: a Raft3D cluster (C{twistd -n raft3d},
exactly the README's command lines) and an etcd cluster (Debian's
C{etcd}, default durability: it fsyncs its WAL).

Both offer the same small surface to the harness: start, find the leader,
the members' HTTP addresses and pids, stop.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any, Callable, Sequence

import attrs

from ._net import HOST, free_ports, request, try_json, wait_for
from ._procs import Child, Supervisor

START_TIMEOUT = 60.0


@attrs.frozen
class Member:
    """
    One member: its name, HTTP (client) address and data directory.
    """

    name: str
    http_addr: str
    data_dir: str
    argv: tuple[str, ...]
    log_path: str


class Cluster:
    """
    What the two systems have in common.
    """

    system = ""

    def __init__(self, supervisor: Supervisor, base_dir: str, say: Callable[[str], None]) -> None:
        self._sup = supervisor
        self._base = base_dir
        self._say = say
        self.members: list[Member] = []
        self.children: list[Child | None] = []

    # -- processes ------------------------------------------------------------

    def start(self) -> None:
        """
        Start every member and wait for a leader that every member knows.
        """
        os.makedirs(self._base, exist_ok=True)
        self.children = [self._spawn(m) for m in self.members]
        self.wait_ready()

    def _spawn(self, member: Member) -> Child:
        os.makedirs(member.data_dir, exist_ok=True)
        return self._sup.spawn(
            f"{self.system}:{member.name}",
            member.argv,
            cwd=self._base,
            env=self._env(),
            log_path=member.log_path,
        )

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def start_member(self, index: int) -> Child:
        """
        Start member C{index} again with the very same command line.
        """
        child = self._spawn(self.members[index])
        self.children[index] = child
        return child

    def kill_member(self, index: int) -> None:
        """
        SIGKILL member C{index} (a crash).
        """
        child = self.children[index]
        if child is not None:
            self._sup.kill(child)

    def stop_member(self, index: int) -> None:
        """
        SIGTERM member C{index} (then SIGKILL if it lingers).
        """
        child = self.children[index]
        if child is not None:
            self._sup.stop(child)

    def stop(self) -> None:
        """
        Stop every member.
        """
        self._sup.stop_many([c for c in self.children if c is not None])

    def pid(self, index: int) -> int | None:
        child = self.children[index]
        return child.pid if child is not None and child.running else None

    def check_alive(self) -> list[str]:
        """
        The names of members whose process has ended unexpectedly.
        """
        return [
            m.name
            for m, c in zip(self.members, self.children, strict=True)
            if c is None or not c.running
        ]

    @property
    def http_addrs(self) -> list[str]:
        return [m.http_addr for m in self.members]

    # -- to be provided -------------------------------------------------------

    def wait_ready(self, timeout: float = START_TIMEOUT) -> int:
        """
        Wait until every member agrees on a leader; return its index.
        """
        raise NotImplementedError

    def leader(self) -> int | None:
        """
        The index of the current leader, if every live member agrees.
        """
        raise NotImplementedError


class Raft3DCluster(Cluster):
    """
    Three C{twistd -n raft3d} nodes; node1 bootstraps.
    """

    system = "raft3d"

    def __init__(
        self,
        supervisor: Supervisor,
        base_dir: str,
        say: Callable[[str], None],
        twistd: str,
        extra_args: Sequence[str] = (),
        size: int = 3,
    ) -> None:
        super().__init__(supervisor, base_dir, say)
        ports = free_ports(2 * size)
        raft = [f"{HOST}:{p}" for p in ports[:size]]
        http = [f"{HOST}:{p}" for p in ports[size:]]
        for i in range(size):
            name = f"node{i + 1}"
            data = os.path.join(base_dir, name)
            argv = [twistd, "-n", "--pidfile=", "raft3d", "--id", name]
            argv += ["--raft-addr", raft[i], "--raft-dir", data, "--http-addr", http[i]]
            if i == 0:
                argv.append("--bootstrap")
            argv += ["--peers", ",".join(raft), *extra_args]
            self.members.append(
                Member(name, http[i], data, tuple(argv), os.path.join(base_dir, f"{name}.log"))
            )

    def status(self, index: int) -> dict[str, Any] | None:
        """
        Member C{index}'s C{/status}, or L{None}.
        """
        value = try_json("GET", self.members[index].http_addr, "/status")
        return value if isinstance(value, dict) else None

    def leader(self) -> int | None:
        statuses = [self.status(i) for i in range(len(self.members))]
        return agreed_leader(statuses, [m.name for m in self.members])

    def wait_ready(self, timeout: float = START_TIMEOUT) -> int:
        return wait_for("a Raft3D leader known to every node", self.leader, timeout)


def agreed_leader(statuses: Sequence[dict[str, Any] | None], names: Sequence[str]) -> int | None:
    """
    The index of the node that every answering Raft3D node names as leader
    (and that says it leads), when all answered.
    """
    if any(s is None for s in statuses):
        return None
    leaders = {s.get("leader_id") for s in statuses if s is not None}
    if len(leaders) != 1:
        return None
    leader = leaders.pop()
    if not isinstance(leader, str) or leader not in names:
        return None
    index = list(names).index(leader)
    own = statuses[index]
    return index if own is not None and own.get("is_leader") else None


class EtcdCluster(Cluster):
    """
    Three C{etcd} members with the v3 JSON gateway on their client ports.
    """

    system = "etcd"

    def __init__(
        self,
        supervisor: Supervisor,
        base_dir: str,
        say: Callable[[str], None],
        etcd: str,
        size: int = 3,
    ) -> None:
        super().__init__(supervisor, base_dir, say)
        ports = free_ports(2 * size)
        client = [f"{HOST}:{p}" for p in ports[:size]]
        peer = [f"http://{HOST}:{p}" for p in ports[size:]]
        initial = ",".join(f"e{i + 1}={peer[i]}" for i in range(size))
        for i in range(size):
            name = f"e{i + 1}"
            data = os.path.join(base_dir, name)
            argv = [
                etcd,
                "--name",
                name,
                "--data-dir",
                data,
                "--listen-client-urls",
                f"http://{client[i]}",
                "--advertise-client-urls",
                f"http://{client[i]}",
                "--listen-peer-urls",
                peer[i],
                "--initial-advertise-peer-urls",
                peer[i],
                "--initial-cluster",
                initial,
                "--initial-cluster-token",
                "raft3d-bench",
                "--initial-cluster-state",
                "new",
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
                "--log-level",
                "warn",
            ]
            self.members.append(
                Member(name, client[i], data, tuple(argv), os.path.join(base_dir, f"{name}.log"))
            )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("ETCDCTL_API", None)
        return {k: v for k, v in env.items() if not k.startswith("ETCD_")}

    def status(self, index: int) -> dict[str, Any] | None:
        value = try_json("POST", self.members[index].http_addr, "/v3/maintenance/status", {})
        return value if isinstance(value, dict) else None

    def leader(self) -> int | None:
        statuses = [self.status(i) for i in range(len(self.members))]
        if any(s is None for s in statuses):
            return None
        leaders = {str(s.get("leader")) for s in statuses if s is not None}
        if len(leaders) != 1:
            return None
        leader = leaders.pop()
        for i, s in enumerate(statuses):
            if s is not None and str(s.get("header", {}).get("member_id")) == leader:
                return i
        return None

    def wait_ready(self, timeout: float = START_TIMEOUT) -> int:
        return wait_for("an etcd leader known to every member", self.leader, timeout)

    def put(self, key: str, value: str) -> None:
        """
        Put C{key} through member 0 (the fixtures of the read workloads).
        """
        body = {"key": b64(key), "value": b64(value)}
        if try_json("POST", self.members[0].http_addr, "/v3/kv/put", body) is None:
            raise RuntimeError(f"etcd put of {key!r} failed")


def row_fixture(cluster: Cluster, leader: int, workload: str) -> list[str]:
    """
    Create what a row of C{workload} on C{cluster} needs (see
    C{bench/lua/workload.lua}) and return its ids or keys.
    """
    if isinstance(cluster, EtcdCluster):
        if workload == "mixed":
            return [str(uuid.uuid4()), str(uuid.uuid4())]
        cluster.put("bench/fixture", '{"company":"Bench","model":"fixture"}')
        return ["bench/fixture"]
    return raft3d_fixture(cluster.http_addrs[leader], workload)


def raft3d_fixture(addr: str, workload: str) -> list[str]:
    """
    Create, through C{addr}, what a Raft3D row of C{workload} needs (see
    C{bench/lua/workload.lua}): the printer the reads read, and for
    C{mixed} the spool its jobs use.  Their ids, in that order.
    """
    if workload not in ("read", "stale", "stale_writes", "mixed"):
        return []
    status, _, printer = request(
        "POST", addr, "/api/v1/printers", {"company": "Bench", "model": "fixture"}
    )
    if status != 201:
        raise RuntimeError(f"creating the fixture printer failed: {status} {printer!r:.200}")
    if workload != "mixed":
        return [printer["id"]]
    status, _, filament = request(
        "POST",
        addr,
        "/api/v1/filaments",
        {"type": "PLA", "color": "grey", "total_weight_in_grams": 1_000_000_000},
    )
    if status != 201:
        raise RuntimeError(f"creating the fixture filament failed: {status} {filament!r:.200}")
    return [printer["id"], filament["id"]]


def b64(text: str) -> str:
    """
    The base64 of C{text}'s UTF-8, as the etcd JSON gateway wants keys.
    """
    return base64.b64encode(text.encode()).decode("ascii")
