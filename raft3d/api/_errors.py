# -*- test-case-name: tests.api.test_errors -*-
"""
HTTP errors of the API and the one table that maps every failure to a status.

Handlers raise: L{APIError} for what the HTTP layer itself refuses, the
farm's typed L{FarmError}s for domain rejections and the engine's
L{RaftError}s for availability problems.  L{FarmAPI} registers Klein error
handlers that turn each into C{{"error": {"code", "message"}}} with the
status chosen here, so no handler decides a status code on its own and no
error ever leaves as an HTML page or a traceback.
"""

from __future__ import annotations

from typing import Final, Mapping

from ..farm import (
    Conflict,
    FarmError,
    FilamentNotFound,
    InsufficientFilament,
    InvalidTransition,
    JobNotFound,
    MalformedCommand,
    PrinterNotFound,
)
from ..raft import (
    CommitTimeout,
    LeadershipTransferInProgress,
    NoLeader,
    NotLeader,
    ProposalDropped,
    RaftError,
    StorageFull,
)

RETRY_AFTER_SECONDS: Final = 1
"""
What 503 answers put in C{Retry-After}: an election takes about a second.
"""


class APIError(Exception):
    """
    A request the HTTP layer answers with an error.

    @ivar status: the HTTP status code.
    @ivar code: the stable error code of the JSON body.
    @ivar headers: extra response headers (C{Allow}, C{Retry-After}...).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers: Mapping[str, str] = headers or {}


def bad_request(message: str, code: str = "invalid_request") -> APIError:
    """
    A 400 for a request that breaks the API's rules.
    """
    return APIError(400, code, message)


def unavailable(code: str, message: str) -> APIError:
    """
    A 503 the client should retry after L{RETRY_AFTER_SECONDS}.
    """
    return APIError(503, code, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


FARM_ERROR_STATUS: Final[Mapping[type[FarmError], int]] = {
    MalformedCommand: 400,
    Conflict: 409,
    InvalidTransition: 409,
    JobNotFound: 404,
    PrinterNotFound: 422,
    FilamentNotFound: 422,
    InsufficientFilament: 422,
}
"""
Status of each rejection a write can get from the state machine.  Printers
and filaments are only ever named in a request body (hence 422), jobs only
in the path of a status change (hence 404).  Reads answer 404 for an unknown
id of any kind without going through this table.
"""


def farm_error_status(error: FarmError) -> int:
    """
    The status for a domain rejection; 500 for a code this node does not
    know (a newer leader?), which is a server-side problem.
    """
    return FARM_ERROR_STATUS.get(type(error), 500)


def raft_error_to_api(error: RaftError) -> APIError:
    """
    The 503 for an engine error that reached a handler.  L{NotLeader} gets
    here only when forwarding was impossible.
    """
    if isinstance(error, (NoLeader, NotLeader)):
        return unavailable("no_leader", "no leader is available; retry later")
    if isinstance(error, ProposalDropped):
        return unavailable(
            "proposal_dropped", "the request was not applied because leadership changed; retry"
        )
    if isinstance(error, CommitTimeout):
        return unavailable(
            "timeout",
            "the request was not known to be applied in time and may still take effect:"
            " retry with the same Idempotency-Key",
        )
    if isinstance(error, LeadershipTransferInProgress):
        return unavailable(
            "leadership_transfer_in_progress", "leadership is being transferred; retry"
        )
    return unavailable("unavailable", "the cluster cannot serve this request now; retry")


def storage_full_to_api(error: StorageFull) -> APIError:
    """
    The 507 for a write that the leader refused because it cannot write its
    log (its disk is full).  The write was not applied.  The leader hands
    leadership to a node with space meanwhile, so a retry soon succeeds:
    the answer carries C{Retry-After} like a 503.
    """
    return APIError(
        507,
        "storage_full",
        "the leader cannot write its log (disk full); the request was not applied."
        " Retry: leadership moves to a node with space",
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
