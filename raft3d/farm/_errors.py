# -*- test-case-name: tests.farm.test_errors -*-
"""
Domain rejections of the print-farm state machine.

A rejection must reach every replica, and a client retrying a command with
the same session, as the same answer.  So L{FarmState.apply} never lets these
exceptions escape: it turns them into a plain result
C{{"error": {"code": ..., "message": ...}}} that the engine can log, cache in
its snapshots and send back.  On the way out, L{unwrap} turns such a result
back into the typed exception, so that the API layer maps errors by class in
one place.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FarmError(Exception):
    """
    Base of every domain rejection; C{code} is the stable, machine-readable
    name clients see.
    """

    code: ClassVar[str] = "farm_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_result(self) -> dict[str, Any]:
        """
        The deterministic, CBOR-serializable result that carries this
        rejection through the log and the session cache.
        """
        return {"error": {"code": self.code, "message": self.message}}


class MalformedCommand(FarmError):
    """
    The command is not one this state machine understands: not a map, an
    unknown operation, a missing, unknown or ill-typed field, or a value out of
    range.
    """

    code = "malformed_command"


class Conflict(FarmError):
    """
    An object with the command's id already exists; nothing is overwritten.
    """

    code = "conflict"


class PrinterNotFound(FarmError):
    """
    The command names a printer that does not exist.
    """

    code = "printer_not_found"


class FilamentNotFound(FarmError):
    """
    The command names a filament that does not exist.
    """

    code = "filament_not_found"


class JobNotFound(FarmError):
    """
    The command names a print job that does not exist.
    """

    code = "job_not_found"


class InsufficientFilament(FarmError):
    """
    The filament's remaining weight, less what Queued and Running jobs have
    reserved, is smaller than the new job's weight.
    """

    code = "insufficient_filament"


class InvalidTransition(FarmError):
    """
    The job's status machine has no transition for this input in its current
    state.
    """

    code = "invalid_transition"


ERRORS_BY_CODE: dict[str, type[FarmError]] = {
    cls.code: cls
    for cls in (
        MalformedCommand,
        Conflict,
        PrinterNotFound,
        FilamentNotFound,
        JobNotFound,
        InsufficientFilament,
        InvalidTransition,
    )
}


class UnexpectedResult(Exception):
    """
    A result is neither C{{"ok": {...}}} nor a well-formed C{{"error": ...}};
    this is a bug (or a version skew), not a client error.
    """


def unwrap(result: object) -> dict[str, Any]:
    """
    Return the C{"ok"} payload of an apply result, or raise the typed
    L{FarmError} its C{"error"} names.

    @raise FarmError: for a rejection (an unknown code gives a plain
        L{FarmError} carrying that code).
    @raise UnexpectedResult: for anything that is not a result.
    """
    if isinstance(result, dict) and len(result) == 1:
        ok = result.get("ok")
        if isinstance(ok, dict):
            return ok
        error = result.get("error")
        if (
            isinstance(error, dict)
            and isinstance(error.get("code"), str)
            and isinstance(error.get("message"), str)
        ):
            cls = ERRORS_BY_CODE.get(error["code"])
            if cls is None:
                unknown = FarmError(error["message"])
                unknown.code = error["code"]  # type: ignore[misc]
                raise unknown
            raise cls(error["message"])
    raise UnexpectedResult(f"not a farm result: {result!r:.200}")
