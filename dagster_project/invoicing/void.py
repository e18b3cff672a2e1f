"""Void an issued invoice: an explicit action with a mandatory reason.

A voided invoice keeps its number, its lines and its documents (they are never rewritten:
the HTML and PDF stay byte-identical to what the customer received); only its status becomes
``void``, with ``void_reason`` and ``voided_at`` recorded. Nothing is deleted or renumbered,
so the numbering stays gapless. A void invoice is no longer charged (payments only pick up
``issued`` invoices) and is never issued again for the same period.

Refused: an unknown number, an invoice that is held (it has no number) or already void, a
blank reason, and an invoice already paid (money was collected: refund it and issue a credit
note instead).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import duckdb

VOID_COLUMNS = {"void_reason": "varchar", "voided_at": "timestamp"}
PAID_STATUSES = ("paid", "external_paid")
INVOICE_NUMBER = re.compile(r"^MH-\d{4}-\d{6}$")
MAX_REASON_LENGTH = 1000


class VoidError(ValueError):
    """The invoice cannot be voided (the message says why)."""


@dataclass(frozen=True)
class VoidedInvoice:
    invoice_number: str
    void_reason: str
    voided_at: datetime


def ensure_void_columns(connection: duckdb.DuckDBPyConnection) -> None:
    for column, column_type in VOID_COLUMNS.items():
        connection.execute(f"alter table marts.invoices add column if not exists {column} {column_type}")


def void_invoice(
    connection: duckdb.DuckDBPyConnection, number: str, reason: str, as_of: datetime
) -> VoidedInvoice:
    """Mark issued invoice ``number`` void with ``reason`` at ``as_of`` (naive UTC)."""
    if not isinstance(number, str) or not INVOICE_NUMBER.match(number):
        raise VoidError(f"invalid invoice number {number!r}")
    reason = " ".join((reason or "").split())
    if not reason:
        raise VoidError("a reason is required to void an invoice")
    if len(reason) > MAX_REASON_LENGTH:
        raise VoidError(f"the reason is longer than {MAX_REASON_LENGTH} characters")
    if as_of.tzinfo is not None:
        raise VoidError("as_of must be a naive UTC datetime")
    ensure_void_columns(connection)
    connection.execute("begin transaction")
    try:
        found = connection.execute(
            "select status, payment_status, voided_at from marts.invoices where invoice_number = ?", [number]
        ).fetchall()
        if not found:
            raise VoidError(f"no invoice {number}")
        status, payment_status, voided_at = found[0]
        if status == "void":
            raise VoidError(f"invoice {number} is already void (since {voided_at:%Y-%m-%d %H:%M:%S} UTC)"
                            if voided_at else f"invoice {number} is already void")
        if status != "issued":
            raise VoidError(f"invoice {number} is {status}, not issued; only an issued invoice can be voided")
        if payment_status in PAID_STATUSES:
            raise VoidError(
                f"invoice {number} is paid ({payment_status}); refund it and issue a credit note instead of voiding"
            )
        connection.execute(
            "update marts.invoices set status = 'void', void_reason = ?, voided_at = ?"
            " where invoice_number = ? and status = 'issued'",
            [reason, as_of, number],
        )
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    return VoidedInvoice(number, reason, as_of)
