"""
Tests for L{raft3d.api._errors}: the status tables.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from raft3d.api._errors import (
    FARM_ERROR_STATUS,
    farm_error_status,
    raft_error_to_api,
    storage_full_to_api,
)
from raft3d.farm import ERRORS_BY_CODE, FarmError
from raft3d.raft import (
    CommitTimeout,
    ConfigurationChangeError,
    LeadershipTransferInProgress,
    NoLeader,
    NotLeader,
    ProposalDropped,
    StorageFull,
)


class FarmErrorStatusTests(SynchronousTestCase):
    """
    Every domain rejection has a status.
    """

    def test_every_code_mapped(self) -> None:
        """
        Each rejection class the state machine can return has an entry.
        """
        self.assertEqual(set(FARM_ERROR_STATUS), set(ERRORS_BY_CODE.values()))

    def test_statuses(self) -> None:
        """
        Unknown references and lack of filament are 422, forbidden
        transitions and id conflicts 409, unknown jobs 404, bad commands 400.
        """
        expected = {
            "printer_not_found": 422,
            "filament_not_found": 422,
            "insufficient_filament": 422,
            "invalid_transition": 409,
            "conflict": 409,
            "job_not_found": 404,
            "malformed_command": 400,
        }
        for code, status in expected.items():
            self.assertEqual(farm_error_status(ERRORS_BY_CODE[code]("m")), status)

    def test_unknown_class(self) -> None:
        """
        A rejection this node cannot classify is a 500.
        """
        self.assertEqual(farm_error_status(FarmError("m")), 500)


class RaftErrorTests(SynchronousTestCase):
    """
    Engine errors are 503s with Retry-After.
    """

    def test_codes(self) -> None:
        """
        Each engine error gets its code, a 503 and a Retry-After.
        """
        for error, code in [
            (NoLeader(), "no_leader"),
            (NotLeader(None), "no_leader"),
            (ProposalDropped(), "proposal_dropped"),
            (LeadershipTransferInProgress(), "leadership_transfer_in_progress"),
            (CommitTimeout(), "timeout"),
            (ConfigurationChangeError(), "unavailable"),
        ]:
            api = raft_error_to_api(error)
            self.assertEqual((api.status, api.code), (503, code))
            self.assertEqual(api.headers, {"Retry-After": "1"})


class StorageFullTests(SynchronousTestCase):
    """
    A leader that cannot write its log refuses writes with a 507.
    """

    def test_storage_full(self) -> None:
        """
        L{StorageFull} is a 507 C{storage_full} with a C{Retry-After}: the
        write was not applied and another node will lead soon.
        """
        api = storage_full_to_api(StorageFull("disk full"))
        self.assertEqual((api.status, api.code), (507, "storage_full"))
        self.assertEqual(api.headers, {"Retry-After": "1"})
        self.assertIn("not applied", api.message)
