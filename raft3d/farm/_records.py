# -*- test-case-name: tests.farm.test_records -*-
"""
The records of the print farm: printers, filaments and print jobs.

They are frozen: a change replaces the record in the state, so a record
handed to a reader (or kept in an apply result) never changes under it.
C{seq} is the record's position in creation order within its kind; it is
assigned by the state machine, hence the same on every replica, and it is
what listings are ordered and paged by.  It is not part of the JSON form.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import attrs

from ._status import JobStatus


@attrs.frozen
class Printer:
    """
    A printer of the farm.
    """

    id: str
    company: str
    model: str
    created_at: str
    updated_at: str
    seq: int

    def to_json(self) -> dict[str, Any]:
        """
        The client-facing form (also carried in apply results).
        """
        return {
            "id": self.id,
            "company": self.company,
            "model": self.model,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_row(self) -> list[Any]:
        return [self.id, self.company, self.model, self.created_at, self.updated_at]


@attrs.frozen
class Filament:
    """
    A spool of filament; C{type} is one of L{FILAMENT_TYPES}, upper case.
    """

    id: str
    type: str
    color: str
    total_weight_in_grams: int
    remaining_weight_in_grams: int
    created_at: str
    updated_at: str
    seq: int

    def to_json(self) -> dict[str, Any]:
        """
        The client-facing form (also carried in apply results).
        """
        return {
            "id": self.id,
            "type": self.type,
            "color": self.color,
            "total_weight_in_grams": self.total_weight_in_grams,
            "remaining_weight_in_grams": self.remaining_weight_in_grams,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_row(self) -> list[Any]:
        return [
            self.id,
            self.type,
            self.color,
            self.total_weight_in_grams,
            self.remaining_weight_in_grams,
            self.created_at,
            self.updated_at,
        ]


@attrs.frozen
class PrintJob:
    """
    A print of one file on one printer with one filament.
    """

    id: str
    printer_id: str
    filament_id: str
    filepath: str
    print_weight_in_grams: int
    status: JobStatus
    created_at: str
    updated_at: str
    seq: int

    def to_json(self) -> dict[str, Any]:
        """
        The client-facing form (also carried in apply results).
        """
        return {
            "id": self.id,
            "printer_id": self.printer_id,
            "filament_id": self.filament_id,
            "filepath": self.filepath,
            "print_weight_in_grams": self.print_weight_in_grams,
            "status": self.status.value,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    def to_row(self) -> list[Any]:
        return [
            self.id,
            self.printer_id,
            self.filament_id,
            self.filepath,
            self.print_weight_in_grams,
            self.status.value,
            self.created_at,
            self.updated_at,
        ]


_T = TypeVar("_T")


@attrs.frozen
class Page(Generic[_T]):
    """
    One page of a listing, in creation order.

    @ivar items: the records of this page.
    @ivar next_after: pass it as C{after} to get the next page; L{None} when
        this page is the last.
    """

    items: tuple[_T, ...]
    next_after: int | None
