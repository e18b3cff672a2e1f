"""Release due invoice drafts into the ledger: gate, number, freeze.

A draft becomes an invoice when its period has closed (``due_at <= as_of``). Numbers are
``MH-<YYYY>-<NNNNNN>``, gapless per year of the invoice date, assigned in one transaction
with the rows they number, so a crash leaves either all of a release or none of it. An
issued invoice is never updated again except for its payment status and void flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

LEDGER_COLUMNS = (
    "draft_key", "subscription_id", "subscription_name", "organization_id", "organization_name",
    "subscriber_id", "subscriber_email", "product_id", "product_name", "currency",
    "period_start", "period_end", "subtotal", "total",
)
LINE_COLUMNS = (
    "draft_key", "line_number", "kind", "metric", "tier_name", "quantity", "unit_rate", "amount",
    "currency", "event_count", "period_start", "period_end", "description",
)


@dataclass
class ReleaseReport:
    issued: list[str] = field(default_factory=list)
    held: dict[str, list[str]] = field(default_factory=dict)
    already_issued: int = 0


def invoice_number(year: int, sequence: int) -> str:
    return f"MH-{year:04d}-{sequence:06d}"


def _due_drafts(
    connection: duckdb.DuckDBPyConnection, window_start: datetime, window_end: datetime, as_of: datetime
) -> list[dict]:
    # A usage period belongs to the window its last instant falls in: (start, end].
    # An opening draft (empty period, in-advance fees) belongs to the window holding its start.
    rows = connection.execute(
        f"""
        select {", ".join(f"d.{column}" for column in LEDGER_COLUMNS)}, d.due_at, p.payment,
               l.status as ledger_status
        from marts.invoice_drafts as d
        join catalog.products as p on p.product_id = d.product_id
        left join marts.invoices as l on l.draft_key = d.draft_key
        where d.due_at <= ?
          and case when d.period_start = d.period_end
                   then d.period_start >= ? and d.period_start < ?
                   else d.period_end > ? and d.period_end <= ? end
        order by d.due_at, d.subscription_id, d.period_start, d.period_end
        """,
        [as_of, window_start, window_end, window_start, window_end],
    )
    names = [column[0] for column in rows.description]
    return [dict(zip(names, row, strict=True)) for row in rows.fetchall()]


def release_due_invoices(
    connection: duckdb.DuckDBPyConnection,
    window_start: datetime,
    window_end: datetime,
    as_of: datetime,
    failing_checks: Mapping[str, list[str]] | None = None,
    hold_all: list[str] | None = None,
) -> ReleaseReport:
    """Issue every due draft of the window that has no issued invoice yet.

    ``failing_checks`` maps a draft key to the names of blocking checks that failed for
    its inputs; such drafts are stored as ``held`` with those names and get no number.
    ``hold_all`` names failed run-wide checks: then every due draft is held.
    """
    failing_checks = failing_checks or {}
    report = ReleaseReport()
    drafts = _due_drafts(connection, window_start, window_end, as_of)
    connection.execute("begin transaction")
    try:
        for draft in drafts:
            if draft["ledger_status"] in ("issued", "void"):
                report.already_issued += 1
                continue
            reasons = list(hold_all or []) + list(failing_checks.get(draft["draft_key"], []))
            if reasons:
                _store(connection, draft, number=None, status="held", held_reasons="; ".join(reasons), as_of=as_of)
                report.held[draft["draft_key"]] = reasons
                continue
            year = draft["due_at"].year
            sequence = connection.execute(
                "select coalesce(max(last_number), 0) + 1 from billing.invoice_number_sequences where invoice_year = ?",
                [year],
            ).fetchone()[0]
            number = invoice_number(year, sequence)
            connection.execute(
                "insert or replace into billing.invoice_number_sequences values (?, ?)", [year, sequence]
            )
            _store(connection, draft, number=number, status="issued", held_reasons=None, as_of=as_of)
            report.issued.append(number)
        connection.execute("commit")
    except Exception:
        connection.execute("rollback")
        raise
    return report


def _store(
    connection: duckdb.DuckDBPyConnection,
    draft: dict,
    number: str | None,
    status: str,
    held_reasons: str | None,
    as_of: datetime,
) -> None:
    key = draft["draft_key"]
    lines = connection.execute(
        f"select {', '.join(LINE_COLUMNS)} from marts.invoice_line_drafts where draft_key = ? order by line_number",
        [key],
    ).fetchall()
    line_total = sum((line[LINE_COLUMNS.index("amount")] for line in lines), start=0)
    if line_total != draft["total"]:
        raise ValueError(f"draft {key}: total {draft['total']} is not the sum of its lines {line_total}")
    payment_status = "none" if draft["payment"] == "invoice_only" else "pending"
    # a held draft may be stored again with fresher numbers; an issued one never reaches here
    connection.execute("delete from marts.invoice_lines where draft_key = ?", [key])
    connection.execute("delete from marts.invoices where draft_key = ?", [key])
    values = [draft[column] for column in LEDGER_COLUMNS]
    connection.execute(
        f"""
        insert into marts.invoices ({", ".join(LEDGER_COLUMNS)}, invoice_number, issued_at, released_at,
                                    status, held_reasons, payment_status)
        values ({", ".join("?" for _ in LEDGER_COLUMNS)}, ?, ?, ?, ?, ?, ?)
        """,
        [*values, number, draft["due_at"] if number else None, as_of if number else None, status,
         held_reasons, payment_status if number else "none"],
    )
    if lines:
        connection.executemany(
            f"insert into marts.invoice_lines ({', '.join(LINE_COLUMNS)}, invoice_number)"
            f" values ({', '.join('?' for _ in LINE_COLUMNS)}, ?)",
            [[*line, number] for line in lines],
        )
