"""
End-to-end tests: three real C{twistd raft3d} processes on 127.0.0.1,
started with the seed README's command lines (node1 bootstraps, every node
gets the same address-only C{--peers}), driven over HTTP, killed with
SIGKILL.
"""

from __future__ import annotations

from typing import Any, Coroutine

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from raft3d.testing import ProcessCluster

STATUS_KEYS = {
    "id",
    "state",
    "is_leader",
    "term",
    "leader_id",
    "leader_raft_addr",
    "leader_http_addr",
    "commit_index",
    "applied_index",
    "last_log_index",
    "snapshot_index",
    "members",
}


class ClusterTests(TestCase):
    timeout = 240

    def setUp(self) -> None:
        self.cluster = ProcessCluster(self, reactor)
        self.cluster.start_all()

    def run_test(self, body: Coroutine[Any, Any, None]) -> Deferred[None]:
        """
        Run C{body}; an unexpected error fails the test with the nodes'
        output attached.
        """

        async def guarded() -> None:
            try:
                await body
            except self.failureException:
                raise
            except Exception as e:
                self.cluster.fail(f"{type(e).__name__}: {e}")

        return Deferred.fromCoroutine(guarded())

    def test_readme_walkthrough(self) -> Deferred[None]:
        """
        The seed README's walk-through works end to end on a cluster
        bootstrapped from address-only peers: every node reports the same
        leader and all three members (with their HTTP addresses, learned
        by the bootstrap node) in C{/status}; a printer, a filament and a
        print job are created and listed; the job goes Running then Done
        and Done deducts its weight from the filament.  A write sent to a
        follower is forwarded and succeeds, and a linearizable read on the
        other follower right after it sees it.
        """
        return self.run_test(self.readme_walkthrough())

    async def readme_walkthrough(self) -> None:
        c = self.cluster
        leader = await c.leader()

        async def configured() -> bool:
            for name in c.specs:
                status = await c.status(name)
                if status is None or len(status["members"]) != 3 or status["commit_index"] < 1:
                    return False
            return True

        await c.wait_for("every node to have the committed configuration", configured)
        for name in c.specs:
            status = await c.status(name)
            assert status is not None
            self.assertEqual(set(status), STATUS_KEYS)
            self.assertEqual(status["id"], name)
            self.assertEqual(status["state"], "Leader" if name == leader else "Follower")
            self.assertEqual(status["is_leader"], name == leader)
            self.assertEqual(status["leader_http_addr"], c.specs[leader].http_addr)
            self.assertEqual(status["leader_raft_addr"], c.specs[leader].raft_addr)
            self.assertEqual(
                status["members"],
                [
                    {"id": n, "raft_addr": s.raft_addr, "http_addr": s.http_addr, "voter": True}
                    for n, s in c.specs.items()
                ],
            )
            self.assertGreaterEqual(status["commit_index"], 1)

        printer = await c.ok(
            "POST", leader, "/api/v1/printers", {"company": "Creality", "model": "Ender 3"}, 201
        )
        printers = await c.ok("GET", leader, "/api/v1/printers")
        self.assertEqual(printers, [printer])
        filament = await c.ok(
            "POST",
            leader,
            "/api/v1/filaments",
            {
                "type": "PLA",
                "color": "red",
                "total_weight_in_grams": 1000,
                "remaining_weight_in_grams": 1000,
            },
            201,
        )
        self.assertEqual(await c.ok("GET", leader, "/api/v1/filaments"), [filament])
        job = await c.ok(
            "POST",
            leader,
            "/api/v1/print_jobs",
            {
                "printer_id": printer["id"],
                "filament_id": filament["id"],
                "filepath": "prints/model.gcode",
                "print_weight_in_grams": 100,
            },
            201,
        )
        self.assertEqual(job["status"], "Queued")
        self.assertEqual(await c.ok("GET", leader, "/api/v1/print_jobs"), [job])
        path = f"/api/v1/print_jobs/{job['id']}/status"
        running = await c.ok("POST", leader, f"{path}?status=Running")
        self.assertEqual(running["status"], "Running")
        done = await c.ok("POST", leader, f"{path}?status=Done")
        self.assertEqual(done["status"], "Done")
        spool = await c.ok("GET", leader, f"/api/v1/filaments/{filament['id']}")
        self.assertEqual(spool["remaining_weight_in_grams"], 900)

        follower, other = [n for n in c.specs if n != leader]
        forwarded = await c.ok(
            "POST", follower, "/api/v1/printers", {"company": "Prusa", "model": "MK4"}, 201
        )
        seen = await c.ok("GET", other, "/api/v1/printers")
        self.assertEqual(seen, [printer, forwarded])
        self.assertEqual(await c.ok("GET", other, f"/api/v1/print_jobs/{job['id']}"), done)

    def test_leader_failover_and_restart(self) -> Deferred[None]:
        """
        Kill the leader with SIGKILL: the two others elect a new leader in
        a later term, which takes writes.  Restarted with its very same
        command line (C{--bootstrap} included), the old leader resumes from
        its data directory, follows the new leader and catches up with
        everything, including what was written while it was dead (read
        locally with C{?consistency=stale}).
        """
        return self.run_test(self.failover())

    async def failover(self) -> None:
        c = self.cluster
        old = await c.leader()
        before = await c.ok(
            "POST", old, "/api/v1/printers", {"company": "Creality", "model": "Ender 3"}, 201
        )
        old_term = (await c.status(old) or {})["term"]
        end = await c.kill(old)
        self.assertIn("SIGKILL", end.describe())

        survivors = [n for n in c.specs if n != old]
        new = await c.leader(among=survivors, other_than=old)
        new_status = await c.status(new)
        assert new_status is not None
        self.assertGreater(new_status["term"], old_term)
        during = await c.ok(
            "POST", new, "/api/v1/printers", {"company": "Prusa", "model": "MK4"}, 201
        )

        c.start(old)

        async def caught_up() -> bool:
            try:
                code, printers, _ = await c.call("GET", old, "/api/v1/printers?consistency=stale")
            except Exception:
                return False
            status = await c.status(old)
            return (
                code == 200
                and printers == [before, during]
                and status is not None
                and status["state"] == "Follower"
                and status["leader_id"] == new
            )

        await c.wait_for(f"{old} to follow {new} and catch up after its restart", caught_up)
        self.assertEqual(await c.ok("GET", old, "/api/v1/printers"), [before, during])
