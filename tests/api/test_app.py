"""
Tests for L{raft3d.api._app.FarmAPI}, in process through the real Klein
resource with C{treq.testing.StubTreq} and a fake Raft node.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import HasHeaders, RequestSequence, StringStubbingResource, StubTreq
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from raft3d.api import MAX_BODY_BYTES, FarmAPI
from raft3d.api._app import MAX_QUERY_FIELDS, _ISONow, iso_now, parse_qsl_strictly, parse_query
from raft3d.farm import FarmState, JobStatus
from raft3d.raft import (
    LeadershipTransferInProgress,
    Member,
    NoLeader,
    NotLeader,
    ProposalDropped,
    StorageFull,
)
from raft3d.raft._node import LeaderDiskFull

from ._fakes import FOLLOWER, LEADER, START_ISO, FakeRaftNode, Node, Response

PRINTERS = "/api/v1/printers"
FILAMENTS = "/api/v1/filaments"
JOBS = "/api/v1/print_jobs"


class APITestCase(SynchronousTestCase):
    """
    A leader node under test, with helpers.
    """

    def setUp(self) -> None:
        self.n = Node()

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, Any] | None = None
    ) -> Response:
        return self.n.request(self, method, path, body, headers)

    def assertError(
        self, response: Response, status: int, code: str, *, retry: bool = False
    ) -> None:
        """
        C{response} is a JSON error with this status and code (and a
        C{Retry-After} when C{retry}).
        """
        self.assertEqual(response.code, status, response)
        self.assertEqual(response.header("content-type"), "application/json")
        body = response.json
        self.assertEqual(set(body), {"error"})
        self.assertEqual(body["error"]["code"], code, body)
        self.assertIsInstance(body["error"]["message"], str)
        self.assertEqual(response.header("retry-after") is not None, retry, response)

    def printer(self) -> str:
        response = self.call("POST", PRINTERS, {"company": "Prusa", "model": "MK4"})
        self.assertEqual(response.code, 201, response)
        return str(response.json["id"])

    def filament(self, total: int = 1000, **extra: Any) -> str:
        body = {"type": "pla", "color": "red", "total_weight_in_grams": total, **extra}
        response = self.call("POST", FILAMENTS, body)
        self.assertEqual(response.code, 201, response)
        return str(response.json["id"])

    def job(self, printer_id: str, filament_id: str, weight: int = 100) -> Response:
        return self.call(
            "POST",
            JOBS,
            {
                "printer_id": printer_id,
                "filament_id": filament_id,
                "filepath": "prints/model.gcode",
                "print_weight_in_grams": weight,
            },
        )


class PrinterTests(APITestCase):
    """
    C{/api/v1/printers}.
    """

    def test_create(self) -> None:
        """
        POST creates a printer: 201, JSON body with the new id and the
        node's time, and a Location naming it.  The command carries the id
        and time chosen here.
        """
        response = self.call("POST", PRINTERS, {"company": "Prusa", "model": "MK4"})
        self.assertEqual(response.code, 201)
        self.assertEqual(response.header("content-type"), "application/json")
        self.assertEqual(
            response.json,
            {
                "id": "n1-id-1",
                "company": "Prusa",
                "model": "MK4",
                "created_at": START_ISO,
                "updated_at": START_ISO,
            },
        )
        self.assertEqual(response.header("location"), f"{PRINTERS}/n1-id-1")
        [(command, session)] = self.n.node.proposals
        self.assertEqual((command["id"], command["at"], session), ("n1-id-1", START_ISO, None))

    def test_list_and_get(self) -> None:
        """
        GET lists printers as a JSON array in creation order; GET by id
        returns one.
        """
        first, second = self.printer(), self.printer()
        response = self.call("GET", PRINTERS)
        self.assertEqual(response.code, 200)
        self.assertEqual([p["id"] for p in response.json], [first, second])
        self.assertIsNone(response.header("link"))
        response = self.call("GET", f"{PRINTERS}/{second}")
        self.assertEqual((response.code, response.json["id"]), (200, second))

    def test_get_unknown(self) -> None:
        """
        An unknown printer id in the path is a 404.
        """
        self.assertError(self.call("GET", f"{PRINTERS}/nope"), 404, "printer_not_found")

    def test_invalid_bodies(self) -> None:
        """
        Missing, unknown, ill-typed, empty and over-long fields are 400s,
        and nothing is proposed.
        """
        for body in [
            {"company": "Prusa"},
            {"company": "Prusa", "model": "MK4", "colour": "red"},
            {"company": 3, "model": "MK4"},
            {"company": "", "model": "MK4"},
            {"company": "  ", "model": "MK4"},
            {"company": None, "model": "MK4"},
            {"company": "x" * 257, "model": "MK4"},
            ["company", "model"],
            '"just a string"',
            b"42",
        ]:
            self.assertError(self.call("POST", PRINTERS, body), 400, "invalid_request")
        self.assertEqual(self.n.node.proposals, [])

    def test_malformed_json(self) -> None:
        """
        Bodies that are not JSON (or not UTF-8, or use NaN, or nest
        absurdly deep) are 400 C{malformed_json}.
        """
        for body in [
            b"{bad",
            b"",
            b'{"company": "a", "model": NaN}',
            b"\xff\xfe\x00",
            b"[" * 100_000 + b"]" * 100_000,
        ]:
            self.assertError(self.call("POST", PRINTERS, body), 400, "malformed_json")
        self.assertEqual(self.n.node.proposals, [])

    def test_unknown_query_parameter(self) -> None:
        """
        Query parameters a route does not know are refused, as is a
        parameter given twice.
        """
        self.assertError(
            self.call("POST", f"{PRINTERS}?x=1", {"company": "a", "model": "b"}),
            400,
            "invalid_request",
        )
        self.assertError(self.call("GET", f"{PRINTERS}?limt=3"), 400, "invalid_request")
        self.assertError(self.call("GET", f"{PRINTERS}?limit=1&limit=2"), 400, "invalid_request")
        self.assertError(self.call("GET", f"{PRINTERS}?limit=%FF"), 400, "invalid_request")

    def test_json_encoding(self) -> None:
        """
        Responses are compact UTF-8 JSON that keeps non-ASCII text as is.
        """
        response = self.call("POST", PRINTERS, {"company": "Průša", "model": "MK4 ✓"})
        self.assertIn("Průša".encode(), response.body)
        self.assertIn("✓".encode(), response.body)
        self.assertNotIn(b'", "', response.body)
        self.assertNotIn(b": ", response.body)

    def test_form_encoded_json(self) -> None:
        """
        A JSON body sent with curl's default form content type is still read
        as JSON (twisted.web's form parsing does not leak into the query).
        """
        response = self.call(
            "POST",
            PRINTERS,
            '{"company":"Creality","model":"Ender 3"}',
            {"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.assertEqual(response.code, 201, response)


class FilamentTests(APITestCase):
    """
    C{/api/v1/filaments}.
    """

    def test_create_defaults(self) -> None:
        """
        The type is stored upper case and the remaining weight defaults to
        the total.
        """
        response = self.call(
            "POST", FILAMENTS, {"type": "petg", "color": "blue", "total_weight_in_grams": 750}
        )
        self.assertEqual(response.code, 201)
        self.assertEqual(response.json["type"], "PETG")
        self.assertEqual(response.json["remaining_weight_in_grams"], 750)
        self.assertEqual(response.header("location"), f"{FILAMENTS}/{response.json['id']}")

    def test_create_explicit_remaining(self) -> None:
        """
        An explicit remaining weight between 0 and the total is kept.
        """
        fid = self.filament(total=1000, remaining_weight_in_grams=0)
        response = self.call("GET", f"{FILAMENTS}/{fid}")
        self.assertEqual(response.json["remaining_weight_in_grams"], 0)

    def test_invalid(self) -> None:
        """
        Unknown types, non-positive totals, remaining above total, booleans
        and floats as weights, and missing fields are 400s.
        """
        base = {"type": "PLA", "color": "red", "total_weight_in_grams": 1000}
        for override in [
            {"type": "wood"},
            {"type": 1},
            {"total_weight_in_grams": 0},
            {"total_weight_in_grams": -1},
            {"total_weight_in_grams": True},
            {"total_weight_in_grams": 1000.0},
            {"total_weight_in_grams": "1000"},
            {"remaining_weight_in_grams": 1001},
            {"remaining_weight_in_grams": -1},
            {"remaining_weight_in_grams": None},
            {"remaining_weight_in_grams": 2.5},
            {"extra": 1},
        ]:
            self.assertError(
                self.call("POST", FILAMENTS, {**base, **override}), 400, "invalid_request"
            )
        self.assertError(self.call("POST", FILAMENTS, {"type": "PLA"}), 400, "invalid_request")
        self.assertEqual(self.n.node.proposals, [])

    def test_list_get_unknown(self) -> None:
        """
        Filaments list in creation order; an unknown id is a 404.
        """
        ids = [self.filament(), self.filament()]
        self.assertEqual([f["id"] for f in self.call("GET", FILAMENTS).json], ids)
        self.assertError(self.call("GET", f"{FILAMENTS}/nope"), 404, "filament_not_found")


class PrintJobTests(APITestCase):
    """
    C{/api/v1/print_jobs}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.pid = self.printer()
        self.fid = self.filament(total=1000)

    def test_create(self) -> None:
        """
        A new job is 201, Queued, with a Location.
        """
        response = self.job(self.pid, self.fid)
        self.assertEqual(response.code, 201)
        self.assertEqual(response.json["status"], "Queued")
        self.assertEqual(response.json["printer_id"], self.pid)
        self.assertEqual(response.header("location"), f"{JOBS}/{response.json['id']}")

    def test_unknown_references(self) -> None:
        """
        Unknown printers and filaments in the body are 422s.
        """
        self.assertError(self.job("nope", self.fid), 422, "printer_not_found")
        self.assertError(self.job(self.pid, "nope"), 422, "filament_not_found")

    def test_insufficient_filament(self) -> None:
        """
        A job heavier than the unreserved filament is a 422.
        """
        self.assertEqual(self.job(self.pid, self.fid, 700).code, 201)
        self.assertError(self.job(self.pid, self.fid, 301), 422, "insufficient_filament")
        self.assertEqual(self.job(self.pid, self.fid, 300).code, 201)

    def test_invalid(self) -> None:
        """
        Ill-typed weights, empty paths and missing fields are 400s.
        """
        for weight in (0, -3, True, 1.5, "10", None):
            self.assertError(self.job(self.pid, self.fid, weight), 400, "invalid_request")  # type: ignore[arg-type]
        response = self.call(
            "POST",
            JOBS,
            {"printer_id": self.pid, "filament_id": self.fid, "print_weight_in_grams": 1},
        )
        self.assertError(response, 400, "invalid_request")

    def test_status_changes(self) -> None:
        """
        The status endpoint takes the status in the query or in a JSON body,
        in any case, and answers 200 with the updated job; Done deducts
        filament.
        """
        jid = self.job(self.pid, self.fid, 250).json["id"]
        self.n.clock.advance(60)
        response = self.call("POST", f"{JOBS}/{jid}/status?status=running")
        self.assertEqual(response.code, 200, response)
        self.assertEqual(response.json["status"], "Running")
        self.assertEqual(response.json["updated_at"], "2024-05-01T10:01:00.000Z")
        self.assertIsNone(response.header("location"))
        response = self.call("POST", f"{JOBS}/{jid}/status", {"status": "DONE"})
        self.assertEqual((response.code, response.json["status"]), (200, "Done"))
        filament = self.call("GET", f"{FILAMENTS}/{self.fid}").json
        self.assertEqual(filament["remaining_weight_in_grams"], 750)

    def test_status_query_and_body(self) -> None:
        """
        Query and body may both name the status if they agree (in any case).
        """
        jid = self.job(self.pid, self.fid).json["id"]
        ok = self.call("POST", f"{JOBS}/{jid}/status?status=Canceled", {"status": "canceled"})
        self.assertEqual((ok.code, ok.json["status"]), (200, "Canceled"))

    def test_status_errors(self) -> None:
        """
        Unknown or missing or contradictory statuses are 400s, forbidden
        transitions 409s, unknown jobs 404s.
        """
        jid = self.job(self.pid, self.fid).json["id"]
        self.assertError(
            self.call("POST", f"{JOBS}/{jid}/status?status=Paused"), 400, "invalid_request"
        )
        self.assertError(self.call("POST", f"{JOBS}/{jid}/status"), 400, "invalid_request")
        self.assertError(
            self.call("POST", f"{JOBS}/{jid}/status", {"status": 3}), 400, "invalid_request"
        )
        self.assertError(
            self.call("POST", f"{JOBS}/{jid}/status", {"state": "Running"}), 400, "invalid_request"
        )
        self.assertError(
            self.call("POST", f"{JOBS}/{jid}/status?status=Running", {"status": "Done"}),
            400,
            "invalid_request",
        )
        self.assertError(
            self.call("POST", f"{JOBS}/{jid}/status?status=Done"), 409, "invalid_transition"
        )
        self.assertError(
            self.call("POST", f"{JOBS}/{jid}/status?status=Queued"), 409, "invalid_transition"
        )
        self.assertError(
            self.call("POST", f"{JOBS}/nope/status?status=Running"), 404, "job_not_found"
        )
        proposals = len(self.n.node.proposals)
        self.assertError(
            self.call("POST", f"{JOBS}/{'x' * 65}/status?status=Running"), 404, "job_not_found"
        )
        self.assertEqual(len(self.n.node.proposals), proposals)

    def test_get(self) -> None:
        """
        GET by id returns the job; an unknown id is a 404.
        """
        jid = self.job(self.pid, self.fid).json["id"]
        self.assertEqual(self.call("GET", f"{JOBS}/{jid}").json["id"], jid)
        self.assertError(self.call("GET", f"{JOBS}/nope"), 404, "job_not_found")

    def test_filters(self) -> None:
        """
        Lists filter by status (any case), printer and filament.
        """
        other_printer = self.printer()
        other_filament = self.filament()
        a = self.job(self.pid, self.fid).json["id"]
        b = self.job(other_printer, self.fid).json["id"]
        c = self.job(self.pid, other_filament).json["id"]
        self.call("POST", f"{JOBS}/{b}/status?status=Running")

        def ids(query: str) -> list[str]:
            response = self.call("GET", f"{JOBS}?{query}")
            self.assertEqual(response.code, 200, response)
            return [j["id"] for j in response.json]

        self.assertEqual(ids("status=queued"), [a, c])
        self.assertEqual(ids("status=Running"), [b])
        self.assertEqual(ids(f"printer_id={self.pid}"), [a, c])
        self.assertEqual(ids(f"filament_id={self.fid}"), [a, b])
        self.assertEqual(ids(f"printer_id={self.pid}&filament_id={self.fid}"), [a])
        self.assertEqual(ids("printer_id=unknown"), [])
        self.assertError(self.call("GET", f"{JOBS}?status=Paused"), 400, "invalid_request")


class PaginationTests(APITestCase):
    """
    C{?limit=} and C{?cursor=} with a C{Link} header.
    """

    def follow(self, path: str) -> tuple[list[str], int]:
        """
        Walk the pages from C{path}; return the ids seen and the number of
        pages.
        """
        seen: list[str] = []
        pages = 0
        next_path: str | None = path
        while next_path is not None:
            response = self.call("GET", next_path)
            self.assertEqual(response.code, 200, response)
            pages += 1
            seen.extend(item["id"] for item in response.json)
            link = response.header("link")
            if link is None:
                next_path = None
            else:
                self.assertTrue(link.endswith('>; rel="next"'), link)
                next_path = link[1 : link.index(">")]
        return seen, pages

    def test_pages(self) -> None:
        """
        Pages of C{limit} chain through C{Link} to exactly the full list.
        """
        ids = [self.printer() for _ in range(5)]
        self.assertEqual(self.follow(f"{PRINTERS}?limit=2"), (ids, 3))
        self.assertEqual(self.follow(f"{PRINTERS}?limit=5"), (ids, 1))
        self.assertEqual(self.follow(f"{PRINTERS}?limit=1000"), (ids, 1))

    def test_filtered_pages_keep_filters(self) -> None:
        """
        The next link keeps the filters, so filtered pages chain correctly.
        """
        pid, fid = self.printer(), self.filament()
        jobs = [self.job(pid, fid, 1).json["id"] for _ in range(5)]
        self.call("POST", f"{JOBS}/{jobs[1]}/status?status=Canceled")
        queued = [j for j in jobs if j != jobs[1]]
        self.assertEqual(self.follow(f"{JOBS}?status=Queued&limit=1"), (queued, 4))
        first = self.call("GET", f"{JOBS}?status=Queued&limit=1")
        self.assertIn("status=Queued", first.header("link") or "")

    def test_cursor_without_limit(self) -> None:
        """
        A cursor alone lists everything after it.
        """
        ids = [self.printer() for _ in range(3)]
        link = self.call("GET", f"{PRINTERS}?limit=1").header("link") or ""
        cursor = link.split("cursor=")[1].split(">")[0]
        rest = self.call("GET", f"{PRINTERS}?cursor={cursor}")
        self.assertEqual([p["id"] for p in rest.json], ids[1:])

    def test_bad_paging(self) -> None:
        """
        Limits outside 1..1000, non-numeric limits, garbage cursors and
        cursors of another collection are 400s.
        """
        self.printer()
        self.filament()
        for query in ("limit=0", "limit=1001", "limit=abc", "limit=", "cursor=%%%", "cursor=abc"):
            self.assertError(self.call("GET", f"{PRINTERS}?{query}"), 400, "invalid_request")
        self.filament()
        link = self.call("GET", f"{FILAMENTS}?limit=1").header("link") or ""
        cursor = link.split("cursor=")[1].split(">")[0]
        self.assertError(self.call("GET", f"{PRINTERS}?cursor={cursor}"), 400, "invalid_request")


class IdempotencyTests(APITestCase):
    """
    C{Idempotency-Key}.
    """

    def test_retry_gets_first_object(self) -> None:
        """
        Retrying a create with the same key returns the first object (same
        id, same Location) and creates nothing more; each attempt proposes
        in the session C{idem:<key>}, sequence 1.
        """
        headers = {"Idempotency-Key": "order-42"}
        body = {"company": "Prusa", "model": "MK4"}
        first = self.call("POST", PRINTERS, body, headers)
        self.n.clock.advance(5)
        second = self.call("POST", PRINTERS, body, headers)
        self.assertEqual((first.code, second.code), (201, 201))
        self.assertEqual(first.json, second.json)
        self.assertEqual(first.header("location"), second.header("location"))
        self.assertEqual(len(self.call("GET", PRINTERS).json), 1)
        self.assertEqual(
            [session for _, session in self.n.node.proposals], [("idem:order-42", 1)] * 2
        )
        # The retry's command had a fresh id and time; the engine's cache
        # answered, so they did not matter.
        self.assertNotEqual(self.n.node.proposals[0][0]["id"], self.n.node.proposals[1][0]["id"])

    def test_different_keys(self) -> None:
        """
        Different keys create different objects.
        """
        body = {"company": "Prusa", "model": "MK4"}
        a = self.call("POST", PRINTERS, body, {"Idempotency-Key": "a"})
        b = self.call("POST", PRINTERS, body, {"Idempotency-Key": "b"})
        self.assertNotEqual(a.json["id"], b.json["id"])

    def test_invalid_keys(self) -> None:
        """
        Keys that are empty, too long or not printable ASCII are 400s and
        nothing is proposed.
        """
        body = {"company": "Prusa", "model": "MK4"}
        for key in ("x" * 201, "tab\there", "ünïcode", " "):
            self.assertError(
                self.call("POST", PRINTERS, body, {"Idempotency-Key": key}), 400, "invalid_request"
            )
        self.assertError(
            self.call("POST", PRINTERS, body, {"Idempotency-Key": ["a", "b"]}),
            400,
            "invalid_request",
        )
        self.assertEqual(self.n.node.proposals, [])
        self.assertEqual(
            self.call("POST", PRINTERS, body, {"Idempotency-Key": "k" * 200}).code, 201
        )

    def test_key_reused_for_another_kind(self) -> None:
        """
        A key first used to create a printer, reused to create a filament,
        is a 422 rather than a printer passed off as a filament.
        """
        headers = {"Idempotency-Key": "same"}
        self.call("POST", PRINTERS, {"company": "a", "model": "b"}, headers)
        response = self.call(
            "POST", FILAMENTS, {"type": "PLA", "color": "red", "total_weight_in_grams": 5}, headers
        )
        self.assertError(response, 422, "idempotency_key_reused")

    def test_status_change_retry(self) -> None:
        """
        A retried status change with the same key gets the first answer
        (200) instead of an C{invalid_transition}.
        """
        pid, fid = self.printer(), self.filament()
        jid = self.job(pid, fid).json["id"]
        headers = {"Idempotency-Key": "start-it"}
        first = self.call("POST", f"{JOBS}/{jid}/status?status=Running", None, headers)
        second = self.call("POST", f"{JOBS}/{jid}/status?status=Running", None, headers)
        self.assertEqual((first.code, second.code), (200, 200))
        self.assertEqual(first.json, second.json)


class ForwardingTests(SynchronousTestCase):
    """
    Writes sent to a follower are forwarded to the leader.
    """

    def setUp(self) -> None:
        self.leader = Node()
        self.follower = Node(FOLLOWER, LEADER, http_client=StubTreq(self.leader.api.resource()))
        self.follower.node.propose_error = NotLeader(LEADER)

    def test_create_forwarded(self) -> None:
        """
        A create on a follower is applied by the leader, with the leader's
        ids, and the follower relays status, body and Location.
        """
        response = self.follower.request(
            self, "POST", PRINTERS, {"company": "Prusa", "model": "MK4"}
        )
        self.assertEqual(response.code, 201, response)
        self.assertEqual(response.json["id"], "n1-id-1")
        self.assertEqual(response.header("location"), f"{PRINTERS}/n1-id-1")
        self.assertEqual(response.header("content-type"), "application/json")
        self.assertIsNotNone(self.leader.farm.get_printer("n1-id-1"))
        self.assertEqual(len(self.leader.node.proposals), 1)

    def test_idempotency_key_forwarded(self) -> None:
        """
        The key travels with the forwarded request, so retries through the
        follower get the first object.
        """
        headers = {"Idempotency-Key": "k1"}
        body = {"company": "Prusa", "model": "MK4"}
        first = self.follower.request(self, "POST", PRINTERS, body, headers)
        second = self.follower.request(self, "POST", PRINTERS, body, headers)
        self.assertEqual(first.json, second.json)
        self.assertEqual([s for _, s in self.leader.node.proposals], [("idem:k1", 1)] * 2)
        self.assertEqual(len(self.leader.farm.printers().items), 1)

    def test_status_change_forwarded(self) -> None:
        """
        The query string is forwarded with the path, and domain errors from
        the leader are relayed as they are.
        """
        pid = self.leader.request(self, "POST", PRINTERS, {"company": "a", "model": "b"}).json["id"]
        fid = self.leader.request(
            self, "POST", FILAMENTS, {"type": "PLA", "color": "red", "total_weight_in_grams": 10}
        ).json["id"]
        job = {"printer_id": pid, "filament_id": fid, "filepath": "f", "print_weight_in_grams": 5}
        jid = self.follower.request(self, "POST", JOBS, job).json["id"]
        response = self.follower.request(self, "POST", f"{JOBS}/{jid}/status?status=running")
        self.assertEqual((response.code, response.json["status"]), (200, "Running"))
        response = self.follower.request(self, "POST", JOBS, {**job, "print_weight_in_grams": 6})
        self.assertEqual(response.code, 422)
        self.assertEqual(response.json["error"]["code"], "insufficient_filament")

    def test_exact_request(self) -> None:
        """
        The forwarded request has the original method, path, query, body,
        Content-Type and Idempotency-Key, plus the forwarded marker; the
        leader's status, body, Location and Retry-After are relayed.
        """
        body = b'{"status":"Done"}'
        expected_request = (
            b"post",
            "http://127.0.0.1:8001/api/v1/print_jobs/j%201/status",
            {b"status": [b"Done"]},
            # The agent adds headers of its own; match the ones that matter.
            HasHeaders(
                {
                    b"X-Raft3D-Forwarded": [b"1"],
                    b"Content-Type": [b"application/json"],
                    b"Idempotency-Key": [b"key-7"],
                }
            ),
            body,
        )
        leader_response = (
            409,
            {
                b"Content-Type": b"application/json",
                b"Location": b"/somewhere",
                b"Retry-After": b"3",
            },
            b'{"error":{"code":"invalid_transition","message":"m"}}',
        )
        sequence = RequestSequence([(expected_request, leader_response)])
        follower = Node(FOLLOWER, LEADER, http_client=StubTreq(StringStubbingResource(sequence)))
        follower.node.propose_error = NotLeader(LEADER)
        with sequence.consume(self.fail):
            response = follower.request(
                self,
                "POST",
                "/api/v1/print_jobs/j%201/status?status=Done",
                body,
                {"Content-Type": "application/json", "Idempotency-Key": "key-7"},
            )
        self.assertEqual(response.code, 409)
        self.assertEqual(response.json["error"]["code"], "invalid_transition")
        self.assertEqual(response.header("location"), "/somewhere")
        self.assertEqual(response.header("retry-after"), "3")

    def test_forwarded_request_not_forwarded_again(self) -> None:
        """
        A forwarded request reaching a node that is not the leader either is
        a 503, without a second forward.
        """
        calls: list[Any] = []

        class Recorder:
            def request(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
                calls.append(args)
                return Deferred()

        follower = Node(FOLLOWER, LEADER, http_client=Recorder())
        follower.node.propose_error = NotLeader(LEADER)
        response = follower.request(
            self,
            "POST",
            PRINTERS,
            {"company": "a", "model": "b"},
            {"X-Raft3D-Forwarded": "1"},
        )
        self.assertEqual((response.code, response.json["error"]["code"]), (503, "no_leader"))
        self.assertEqual(response.header("retry-after"), "1")
        self.assertEqual(calls, [])

    def test_no_leader_address(self) -> None:
        """
        Without a known leader, or without its HTTP address, a write is a
        503 with Retry-After.
        """
        for leader in (None, Member("n3", "127.0.0.1:7003", "")):
            self.follower.node.propose_error = NotLeader(leader)
            response = self.follower.request(self, "POST", PRINTERS, {"company": "a", "model": "b"})
            self.assertEqual((response.code, response.json["error"]["code"]), (503, "no_leader"))
            self.assertEqual(response.header("retry-after"), "1")

    def test_leader_unreachable(self) -> None:
        """
        A leader that refuses the connection gives a 503 C{no_leader}.
        """

        class Refusing:
            def request(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
                return fail(ConnectionRefusedError())

        follower = Node(FOLLOWER, LEADER, http_client=Refusing())
        follower.node.propose_error = NotLeader(LEADER)
        response = follower.request(self, "POST", PRINTERS, {"company": "a", "model": "b"})
        self.assertEqual((response.code, response.json["error"]["code"]), (503, "no_leader"))
        self.assertEqual(response.header("retry-after"), "1")

    def test_leader_timeout(self) -> None:
        """
        A leader that does not answer within the forward timeout gives a 503
        and the attempt is cancelled.
        """
        cancelled: list[Deferred[Any]] = []

        class Silent:
            def request(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
                return Deferred(cancelled.append)

        follower = Node(FOLLOWER, LEADER, http_client=Silent(), forward_timeout=2.0)
        follower.node.propose_error = NotLeader(LEADER)
        d = follower.start("POST", PRINTERS, {"company": "a", "model": "b"})
        follower.stub.flush()
        self.assertNoResult(d)
        follower.clock.advance(2.0)
        response = follower.finish(self, d)
        self.assertEqual((response.code, response.json["error"]["code"]), (503, "no_leader"))
        self.assertEqual(len(cancelled), 1)


class AvailabilityTests(APITestCase):
    """
    Engine errors on writes and reads become 503s with Retry-After.
    """

    def test_propose_errors(self) -> None:
        """
        NoLeader, ProposalDropped and LeadershipTransferInProgress are 503s
        with their own codes.
        """
        for error, expected in [
            (NoLeader(), "no_leader"),
            (ProposalDropped(), "proposal_dropped"),
            (LeadershipTransferInProgress(), "leadership_transfer_in_progress"),
        ]:
            self.n.node.propose_error = error
            self.assertError(
                self.call("POST", PRINTERS, {"company": "a", "model": "b"}),
                503,
                expected,
                retry=True,
            )

    def test_commit_timeout(self) -> None:
        """
        A proposal that is not committed within the request timeout is a
        503 C{timeout}; a late result is then ignored.
        """
        self.n.node.hold_proposals = True
        d = self.n.start("POST", PRINTERS, {"company": "a", "model": "b"})
        self.n.stub.flush()
        self.assertNoResult(d)
        self.n.clock.advance(10)
        self.assertError(self.n.finish(self, d), 503, "timeout", retry=True)
        self.n.node.held[0].callback({"ok": {"printer": {"id": "late"}}})

    def test_read_errors(self) -> None:
        """
        A linearizable read without a leader is a 503 C{no_leader}, for
        lists and single objects alike; a stale read still answers.
        """
        pid = self.printer()
        for error in (NoLeader(), NotLeader(None)):
            self.n.node.read_error = error
            self.assertError(self.call("GET", PRINTERS), 503, "no_leader", retry=True)
            self.assertError(self.call("GET", f"{PRINTERS}/{pid}"), 503, "no_leader", retry=True)
            response = self.call("GET", f"{PRINTERS}/{pid}?consistency=stale")
            self.assertEqual(response.code, 200)


class ReadPathTests(APITestCase):
    """
    Linearizable reads wait for the read index; stale reads do not.
    """

    def test_linearizable_waits(self) -> None:
        """
        A default read asks for a read index and answers only once it fires,
        with the state applied by then.
        """
        self.n.node.hold_reads = True
        d = self.n.start("GET", PRINTERS)
        self.n.stub.flush()
        self.assertNoResult(d)
        self.n.node.hold_reads = False
        pid = self.printer()
        self.n.node.held_reads[0].callback(self.n.node.index)
        response = self.n.finish(self, d)
        self.assertEqual([p["id"] for p in response.json], [pid])

    def test_read_index_counts(self) -> None:
        """
        Every default (or explicit linearizable) read calls C{read_index};
        stale reads never do.
        """
        pid = self.printer()
        self.call("GET", PRINTERS)
        self.call("GET", f"{PRINTERS}/{pid}?consistency=linearizable")
        self.assertEqual(self.n.node.read_index_calls, 2)
        self.call("GET", f"{PRINTERS}?consistency=stale")
        self.call("GET", f"{PRINTERS}/{pid}?consistency=STALE")
        self.call("GET", f"{JOBS}?consistency=stale&status=Done")
        self.assertEqual(self.n.node.read_index_calls, 2)

    def test_bad_consistency(self) -> None:
        """
        An unknown consistency level is a 400.
        """
        self.assertError(
            self.call("GET", f"{PRINTERS}?consistency=eventual"), 400, "invalid_request"
        )


class StatusTests(SynchronousTestCase):
    """
    C{GET /status}.
    """

    def test_leader(self) -> None:
        """
        The leader reports itself, its log positions and the members.
        """
        n = Node()
        response = n.request(self, "GET", "/status")
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.json,
            {
                "id": "n1",
                "state": "Leader",
                "is_leader": True,
                "term": 3,
                "leader_id": "n1",
                "leader_raft_addr": "127.0.0.1:7001",
                "leader_http_addr": "127.0.0.1:8001",
                "commit_index": 0,
                "applied_index": 0,
                "last_log_index": 1,
                "snapshot_index": 0,
                "members": [
                    {
                        "id": "n1",
                        "raft_addr": "127.0.0.1:7001",
                        "http_addr": "127.0.0.1:8001",
                        "voter": True,
                    },
                    {
                        "id": "n2",
                        "raft_addr": "127.0.0.1:7002",
                        "http_addr": "127.0.0.1:8002",
                        "voter": True,
                    },
                    {"id": "n3", "raft_addr": "127.0.0.1:7003", "http_addr": "", "voter": False},
                ],
            },
        )

    def test_follower_without_leader(self) -> None:
        """
        A follower that knows no leader reports nulls for the leader fields.
        """
        n = Node(FOLLOWER, None)
        body = n.request(self, "GET", "/status").json
        self.assertEqual(
            (body["state"], body["is_leader"], body["leader_id"]), ("Follower", False, None)
        )
        self.assertEqual((body["leader_raft_addr"], body["leader_http_addr"]), (None, None))


class ErrorMappingTests(APITestCase):
    """
    Every error is JSON: routing, sizes, and unexpected failures.
    """

    def test_unknown_route(self) -> None:
        """
        Unknown paths are 404 C{not_found} JSON.
        """
        for path in ("/nope", "/api/v1/printers/", "/api/v2/printers", "/"):
            self.assertError(self.call("GET", path), 404, "not_found")

    def test_wrong_method(self) -> None:
        """
        A known path with a wrong method is 405 JSON with an Allow header.
        """
        response = self.call("DELETE", PRINTERS)
        self.assertError(response, 405, "method_not_allowed")
        allowed = set((response.header("allow") or "").split(", "))
        self.assertTrue({"GET", "POST"} <= allowed, allowed)
        self.assertError(self.call("PUT", "/status"), 405, "method_not_allowed")
        self.assertError(self.call("GET", f"{JOBS}/x/status"), 405, "method_not_allowed")

    def test_body_too_large(self) -> None:
        """
        A body whose Content-Length exceeds the limit is 413 and nothing is
        proposed; a body at the limit is read.
        """
        self.assertEqual(MAX_BODY_BYTES, 1024 * 1024)
        body = json.dumps({"company": "a", "model": "b" * MAX_BODY_BYTES})
        self.assertError(self.call("POST", PRINTERS, body), 413, "payload_too_large")
        self.assertEqual(self.n.node.proposals, [])
        small = Node(max_body_bytes=40)
        exact = b'{"company":"a","model":"' + b"b" * 14 + b'"}'
        self.assertEqual(len(exact), 40)
        self.assertEqual(small.request(self, "POST", PRINTERS, exact).code, 201)
        self.assertError(
            small.request(self, "POST", PRINTERS, exact[:-2] + b'b"}'), 413, "payload_too_large"
        )

    def test_non_utf8_path(self) -> None:
        """
        A path that is not UTF-8 is a JSON 400, not Klein's plain text.
        """
        self.assertError(self.call("GET", f"{PRINTERS}/%FF"), 400, "invalid_request")

    def test_unexpected_exception(self) -> None:
        """
        A handler failing unexpectedly is logged and answered with a 500
        JSON body that carries no traceback.
        """

        def broken() -> Any:
            raise RuntimeError("secret internals")

        self.n.node.status = broken  # type: ignore[method-assign]
        response = self.call("GET", "/status")
        self.assertError(response, 500, "internal_error")
        self.assertNotIn(b"Traceback", response.body)
        self.assertNotIn(b"secret", response.body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unexpected_result(self) -> None:
        """
        A result that is not a farm result is a 500 too.
        """
        self.n.node.hold_proposals = True
        d = self.n.start("POST", PRINTERS, {"company": "a", "model": "b"})
        self.n.stub.flush()
        self.n.node.held[0].callback("garbage")
        self.assertError(self.n.finish(self, d), 500, "internal_error")
        self.assertEqual(len(self.flushLoggedErrors()), 1)

    def test_unknown_farm_error_code(self) -> None:
        """
        A rejection code this node does not know (from a newer leader) is
        passed on with a 500.
        """
        self.n.node.hold_proposals = True
        d = self.n.start("POST", PRINTERS, {"company": "a", "model": "b"})
        self.n.stub.flush()
        self.n.node.held[0].callback({"error": {"code": "quota_exceeded", "message": "m"}})
        self.assertError(self.n.finish(self, d), 500, "quota_exceeded")


class ConstructionTests(SynchronousTestCase):
    """
    L{FarmAPI} checks its collaborators.
    """

    def test_rejects_non_nodes(self) -> None:
        """
        A node that does not provide L{IRaftNode}, or a farm that is not a
        L{FarmState}, is refused.
        """
        farm = FarmState()
        node = FakeRaftNode(farm)
        self.assertRaises(TypeError, FarmAPI, object(), farm, Clock())
        self.assertRaises(TypeError, FarmAPI, node, object(), Clock())

    def test_default_ids_and_time(self) -> None:
        """
        By default ids are uuid4 strings and times come from the clock.
        """
        farm = FarmState()
        clock = Clock()
        clock.advance(1.5)
        api = FarmAPI(FakeRaftNode(farm), farm, clock)
        stub = StubTreq(api.resource())
        d = stub.post("http://127.0.0.1/api/v1/printers", data=b'{"company":"a","model":"b"}')
        stub.flush()
        response = self.successResultOf(d)
        content = response.content()
        stub.flush()
        body = json.loads(self.successResultOf(content))
        self.assertEqual(len(body["id"]), 36)
        self.assertEqual(body["id"].count("-"), 4)
        self.assertEqual(body["created_at"], "1970-01-01T00:00:01.500Z")
        self.assertEqual(farm.jobs(status=JobStatus.QUEUED).items, ())


class StorageFullTests(APITestCase):
    """
    A leader whose disk is full answers writes with a JSON 507 at once and
    keeps serving reads.
    """

    def test_write_refused_read_served(self) -> None:
        """
        A proposal refused with L{StorageFull} is a 507 C{storage_full}
        with C{Retry-After}, not a 500 and not a wait for the timeout, also
        when it is the engine's L{LeaderDiskFull}, which is a L{RaftError}
        too; reads (linearizable and stale) still answer.
        """
        pid = self.printer()
        for error in (StorageFull("disk full"), LeaderDiskFull("disk full")):
            self.n.node.propose_error = error
            self.assertError(
                self.call("POST", PRINTERS, {"company": "a", "model": "b"}),
                507,
                "storage_full",
                retry=True,
            )
        self.assertEqual(self.call("GET", f"{PRINTERS}/{pid}").code, 200)
        self.assertEqual(self.call("GET", f"{PRINTERS}?consistency=stale").code, 200)


class ParseQueryTests(SynchronousTestCase):
    """
    L{parse_query} reads every query exactly as C{parse_qsl} with the
    API's options (L{parse_qsl_strictly}) does, errors included.
    """

    @staticmethod
    def reference(text: str) -> Any:
        try:
            return parse_qsl_strictly(text)
        except ValueError as e:
            return type(e)

    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet="ab=&%+2F;", max_size=60))
    def test_same_as_parse_qsl(self, text: str) -> None:
        try:
            ours: Any = parse_query(text)
        except ValueError as e:
            ours = type(e)
        self.assertEqual(ours, self.reference(text))

    def test_cases(self) -> None:
        """
        Plain, blank, repeated and escaped fields, and too many of them.
        """
        for text in (
            "consistency=stale",
            "limit=10&cursor=abc",
            "a&&b=&=c",
            "a=b=c",
            "status=Queued&printer_id=x%20y",
            "a+b=c",
            "%FF=1",
            "&".join(["a=1"] * MAX_QUERY_FIELDS),
            "&".join(["a=1"] * (MAX_QUERY_FIELDS + 1)),
        ):
            try:
                ours: Any = parse_query(text)
            except ValueError as e:
                ours = type(e)
            self.assertEqual(ours, self.reference(text), text)


class ISONowTests(SynchronousTestCase):
    """
    L{_ISONow} formats the time once per millisecond and always gives what
    L{iso_now} gives.
    """

    @given(
        start=st.floats(min_value=0, max_value=4e9, allow_nan=False),
        steps=st.lists(st.floats(min_value=0, max_value=0.003), max_size=30),
    )
    @settings(max_examples=300)
    def test_same_as_iso_now(self, start: float, steps: list[float]) -> None:
        """
        For any run of clock readings, each string is L{iso_now}'s for
        that reading.
        """
        clock = Clock()
        clock.advance(start)
        now = _ISONow(clock)
        self.assertEqual(now(), iso_now(clock))
        for step in steps:
            clock.advance(step)
            self.assertEqual(now(), iso_now(clock))

    def test_formatted_once_per_millisecond(self) -> None:
        """
        Readings within one millisecond share one string; the next
        millisecond gets a new one.
        """
        clock = Clock()
        clock.advance(1_700_000_000.0001)
        now = _ISONow(clock)
        first = now()
        clock.advance(0.0005)
        self.assertIs(now(), first)
        clock.advance(0.0005)
        self.assertEqual((first, now()), ("2023-11-14T22:13:20.000Z", "2023-11-14T22:13:20.001Z"))
