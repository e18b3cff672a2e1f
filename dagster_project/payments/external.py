"""Payment status updates for ``external`` products: CSV files and the ``payment`` command.

``landing/payments/*.csv`` has a header and the columns ``invoice_number,status`` and
optionally ``reference,paid_at`` (status ``paid`` or ``failed``; ``paid_at`` RFC 3339).
``paid`` sets the invoice's payment status to ``external_paid``, ``failed`` to ``failed``.
Lines apply in file-name then line order, so a later line wins. A file is applied once
per content (``billing.external_payment_files``); a bad line is reported with the file
and line number and recorded, and never stops the other lines.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from dagster_project import settings
from dagster_project.payments.ledger import ensure_payment_tables

REQUIRED_COLUMNS = ("invoice_number", "status")
OPTIONAL_COLUMNS = ("reference", "paid_at")
STATUSES = {"paid": "external_paid", "failed": "failed"}


class ExternalPaymentError(ValueError):
    """An update that cannot be applied; the message says why."""


@dataclass
class ExternalPaymentsReport:
    files_applied: list[str] = field(default_factory=list)
    files_already_applied: int = 0
    applied: list[tuple[str, str]] = field(default_factory=list)   # (invoice_number, payment_status)
    problems: list[str] = field(default_factory=list)              # "<file>: line N: reason"


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def payments_dir(data_dir: Path) -> Path:
    return data_dir / "landing" / "payments"


def _check(connection: duckdb.DuckDBPyConnection, invoice_number: str, status: str) -> str:
    """The payment status to store, or ExternalPaymentError naming what is wrong."""
    if status not in STATUSES:
        raise ExternalPaymentError(f"status {status!r}: expected paid or failed")
    row = connection.execute(
        """
        select i.status, p.payment
        from marts.invoices as i left join catalog.products as p on p.product_id = i.product_id
        where i.invoice_number = ?
        """,
        [invoice_number],
    ).fetchone()
    if row is None:
        raise ExternalPaymentError(f"unknown invoice {invoice_number!r}")
    invoice_status, payment = row
    if invoice_status != "issued":
        raise ExternalPaymentError(f"invoice {invoice_number} is {invoice_status}, not issued")
    if payment != "external":
        raise ExternalPaymentError(
            f"invoice {invoice_number} is for a product with payment {payment!r}; only 'external' products "
            "take payment updates"
        )
    return STATUSES[status]


def _parse_paid_at(text: str | None) -> datetime | None:
    if not text or not text.strip():
        return None
    try:
        return settings.parse_instant(text)
    except ValueError:
        raise ExternalPaymentError(f"paid_at {text!r}: expected an RFC 3339 timestamp") from None


def _apply(
    connection: duckdb.DuckDBPyConnection,
    invoice_number: str,
    status: str,
    reference: str | None,
    paid_at: datetime | None,
    source: str,
    line_number: int | None,
) -> str:
    payment_status = _check(connection, invoice_number, status)
    connection.execute(
        """
        update marts.invoices
        set payment_status = ?, payment_reference = coalesce(?, payment_reference), paid_at = ?,
            payment_failure_code = ?, payment_failure_message = null
        where invoice_number = ?
        """,
        [payment_status, reference, paid_at if status == "paid" else None,
         "external_failed" if status == "failed" else None, invoice_number],
    )
    connection.execute(
        "insert into billing.external_payments values (?, ?, ?, ?, ?, ?, null, ?)",
        [source, line_number, invoice_number, status, reference, paid_at, _now()],
    )
    return payment_status


def record_external_payment(
    connection: duckdb.DuckDBPyConnection,
    invoice_number: str,
    status: str,
    *,
    reference: str | None = None,
    paid_at: str | datetime | None = None,
) -> dict:
    """``meterhouse payment NUMBER --status paid|failed [--reference R] [--paid-at T]``.

    Returns the invoice's new ``payment_status`` and ``payment_reference``; raises
    :class:`ExternalPaymentError` when the invoice is unknown, not issued, not an
    ``external`` product, or the status is not paid/failed.
    """
    ensure_payment_tables(connection)
    moment = paid_at if isinstance(paid_at, datetime) or paid_at is None else _parse_paid_at(paid_at)
    connection.execute("begin transaction")
    try:
        payment_status = _apply(
            connection, invoice_number.strip(), status.strip().lower(), reference or None, moment, "cli", None
        )
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    reference_now = connection.execute(
        "select payment_reference from marts.invoices where invoice_number = ?", [invoice_number.strip()]
    ).fetchone()[0]
    return {"invoice_number": invoice_number.strip(), "payment_status": payment_status,
            "payment_reference": reference_now}


def apply_external_payments(connection: duckdb.DuckDBPyConnection, data_dir: Path) -> ExternalPaymentsReport:
    """Apply every not yet applied ``landing/payments/*.csv`` (see the module docstring)."""
    ensure_payment_tables(connection)
    report = ExternalPaymentsReport()
    folder = payments_dir(data_dir)
    if not folder.is_dir():
        return report
    for path in sorted(folder.glob("*.csv")):
        content = path.read_bytes()
        digest = hashlib.sha256(content).hexdigest()
        name = path.relative_to(data_dir).as_posix()
        done = connection.execute(
            "select count(*) from billing.external_payment_files where source_file = ? and content_sha256 = ?",
            [name, digest],
        ).fetchone()[0]
        if done:
            report.files_already_applied += 1
            continue
        _apply_file(connection, name, content, digest, report)
    return report


def _apply_file(
    connection: duckdb.DuckDBPyConnection, name: str, content: bytes, digest: str, report: ExternalPaymentsReport
) -> None:
    problems: list[tuple[int, str]] = []
    applied = 0
    lines = 0
    connection.execute("begin transaction")
    try:
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as error:
            text = ""
            problems.append((1, f"not UTF-8 text ({error.reason} at byte {error.start})"))
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = [column.strip() for column in (reader.fieldnames or [])]
        reader.fieldnames = header
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if text and missing:
            problems.append((1, f"missing column(s) {', '.join(missing)}; expected "
                                f"{','.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}"))
        elif text:
            for record in reader:
                line_number = reader.line_num
                lines += 1
                if None in record:
                    problems.append((line_number, f"{len(record[None])} value(s) more than the header has"))
                    continue
                invoice_number = (record.get("invoice_number") or "").strip()
                status = (record.get("status") or "").strip().lower()
                reference = (record.get("reference") or "").strip() or None
                try:
                    if not invoice_number:
                        raise ExternalPaymentError("invoice_number is empty")
                    paid_at = _parse_paid_at(record.get("paid_at"))
                    payment_status = _apply(connection, invoice_number, status, reference, paid_at, name, line_number)
                except ExternalPaymentError as error:
                    problems.append((line_number, str(error)))
                    continue
                applied += 1
                report.applied.append((invoice_number, payment_status))
        now = _now()
        for line_number, reason in problems:
            connection.execute(
                "insert into billing.external_payments (source, line_number, problem, recorded_at) values (?, ?, ?, ?)",
                [name, line_number, reason, now],
            )
        connection.execute(
            "insert into billing.external_payment_files values (?, ?, ?, ?, ?, ?)",
            [name, digest, lines, applied, len(problems), now],
        )
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    report.files_applied.append(name)
    report.problems.extend(f"{name}: line {line_number}: {reason}" for line_number, reason in problems)
