"""Releasing drafts into the ledger, without dbt: drafts are written by hand as dbt would.

Covers numbering, holds, grace periods, and late events (prior-period adjustments and
credit notes), with every amount worked out in the comments.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project.invoicing.release import release_due_invoices
from dagster_project.warehouse import ensure_schema

OCT, NOV, DEC, JAN = datetime(2026, 10, 1), datetime(2026, 11, 1), datetime(2026, 12, 1), datetime(2027, 1, 1)


@pytest.fixture
def db(tmp_path: Path):
    connection = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(connection)
    connection.execute("""
        create table marts.invoice_drafts (
            draft_key varchar, subscription_id varchar, subscription_name varchar, organization_id varchar,
            organization_name varchar, subscriber_id varchar, subscriber_email varchar, product_id varchar,
            product_name varchar, currency varchar, period_start timestamp, period_end timestamp,
            due_at timestamp, subtotal decimal(18,3), total decimal(18,3));
        create table marts.invoice_line_drafts (
            draft_key varchar, line_number integer, kind varchar, metric varchar, tier_name varchar,
            quantity decimal(21,10), unit_rate decimal(17,12), amount decimal(18,3), currency varchar,
            event_count bigint, period_start timestamp, period_end timestamp, description varchar, line_type varchar);
        insert into catalog.products values
            ('p', 'Plan', 'USD', 2, 199, 'month', 1, 'calendar', 'in_arrears', 'invoice_only', 0, 0, 0);
        insert into catalog.subscription_periods (subscription_id, phase_number, product_id, currency, minor_units,
            period_start, period_end, active_start, active_end, due_at, recurring_billable_seconds,
            recurring_period_seconds, recurring_amount, setup_amount)
        values ('s', 1, 'p', 'USD', 2, '2026-10-01', '2026-11-01', '2026-10-01', '2026-11-01', '2026-11-01', 0, 0, 0, 0),
               ('s', 1, 'p', 'USD', 2, '2026-11-01', '2026-12-01', '2026-11-01', '2026-12-01', '2026-12-01', 0, 0, 0, 0),
               ('s', 1, 'p', 'USD', 2, '2026-12-01', '2027-01-01', '2026-12-01', '2027-01-01', '2027-01-01', 0, 0, 0, 0);
    """)
    yield connection
    connection.close()


def draft(db, start: datetime, end: datetime, usage: str, due: datetime | None = None, key_suffix: str = "") -> str:
    """A draft of subscription s: the 199.00 fee plus one usage line of ``usage``."""
    key = f"s|{start:%Y-%m-%dT%H:%M:%S}|{end:%Y-%m-%dT%H:%M:%S}{key_suffix}"
    total = Decimal("199.00") + Decimal(usage)
    db.execute("delete from marts.invoice_drafts where draft_key = ?", [key])
    db.execute("delete from marts.invoice_line_drafts where draft_key = ?", [key])
    db.execute(
        "insert into marts.invoice_drafts values (?, 's', 'S', 'org', 'Org', 'sub', 'a@b.c', 'p', 'Plan', 'USD',"
        " ?, ?, ?, ?, ?)", [key, start, end, due or end, total, total],
    )
    db.execute(
        "insert into marts.invoice_line_drafts values (?, 1, 'recurring', null, null, 1, 199, 199.00, 'USD', null,"
        " ?, ?, 'fee', 'recurring'), (?, 2, 'usage', 'Calls', 'All', 1, 1, ?, 'USD', 1, ?, ?, null, 'tier')",
        [key, start, end, key, Decimal(usage), start, end],
    )
    return key


def invoices(db) -> list[tuple]:
    return db.execute(
        "select invoice_number, document_type, period_start, total, status from marts.invoices"
        " order by invoice_number nulls last"
    ).fetchall()


def test_numbers_are_gapless_in_release_order_and_a_rerun_issues_nothing(db) -> None:
    draft(db, OCT, NOV, "1.50")
    draft(db, NOV, DEC, "3.00")
    first = release_due_invoices(db, OCT, DEC, as_of=DEC)
    again = release_due_invoices(db, OCT, DEC, as_of=DEC)
    assert first.issued == ["MH-2026-000001", "MH-2026-000002"]
    assert again.issued == [] and again.already_issued == 2


def test_a_draft_is_not_issued_before_its_grace_period_ends(db) -> None:
    # 48 hours of grace: October closes for invoicing on Nov 3 00:00
    draft(db, OCT, NOV, "1.50", due=datetime(2026, 11, 3))
    assert release_due_invoices(db, OCT, NOV, as_of=datetime(2026, 11, 2, 23, 59)).issued == []
    assert release_due_invoices(db, OCT, NOV, as_of=datetime(2026, 11, 3)).issued == ["MH-2026-000001"]


def test_a_held_draft_gets_no_number_and_is_released_later(db) -> None:
    key = draft(db, OCT, NOV, "1.50")
    held = release_due_invoices(db, OCT, NOV, as_of=NOV, failing_checks={key: ["some_check"]})
    assert held.held == {key: ["some_check"]}
    assert invoices(db) == [(None, "invoice", OCT, Decimal("200.50"), "held")]
    released = release_due_invoices(db, OCT, NOV, as_of=NOV)
    assert released.issued == ["MH-2026-000001"]
    assert invoices(db) == [("MH-2026-000001", "invoice", OCT, Decimal("200.50"), "issued")]


def test_a_late_event_two_periods_back_goes_on_the_next_invoice(db) -> None:
    draft(db, OCT, NOV, "1.50")
    draft(db, NOV, DEC, "3.00")
    release_due_invoices(db, OCT, DEC, as_of=DEC)
    # a late October event arrives: October re-rates from 1.50 to 2.85 of usage (+1.35)
    draft(db, OCT, NOV, "2.85")
    draft(db, DEC, JAN, "0.00")
    report = release_due_invoices(db, DEC, JAN, as_of=JAN)
    # December's invoice is dated 2027-01-01, so it opens the 2027 sequence
    assert report.issued == ["MH-2027-000001"] and report.adjustments_detected == 1
    # December: 199.00 + 0.00 usage + 1.35 adjustment for October = 200.35
    assert invoices(db)[-1] == ("MH-2027-000001", "invoice", DEC, Decimal("200.35"), "issued")
    lines = db.execute(
        "select line_number, kind, amount, period_start, description from marts.invoice_lines"
        " where invoice_number = 'MH-2027-000001' order by line_number"
    ).fetchall()
    assert [line[:4] for line in lines] == [
        (1, "recurring", Decimal("199.00"), DEC), (2, "usage", Decimal("0.00"), DEC),
        (3, "adjustment", Decimal("1.35"), OCT),
    ]
    assert "MH-2026-000001" in lines[2][4]
    # the issued October invoice itself never changed
    assert invoices(db)[0] == ("MH-2026-000001", "invoice", OCT, Decimal("200.50"), "issued")
    # and a rerun neither records the difference again nor carries it twice
    again = release_due_invoices(db, DEC, JAN, as_of=JAN)
    assert again.adjustments_detected == 0 and again.adjustment_documents == []


def test_a_negative_difference_is_a_credit_note(db) -> None:
    draft(db, OCT, NOV, "10.00")
    release_due_invoices(db, OCT, NOV, as_of=NOV)
    # October re-rated lower (e.g. a corrected cost): 10.00 -> 7.50 of usage, a credit of 2.50
    draft(db, OCT, NOV, "7.50")
    report = release_due_invoices(db, NOV, DEC, as_of=datetime(2026, 11, 15))
    assert report.adjustment_documents == ["MH-2026-000002"]
    assert invoices(db)[-1] == ("MH-2026-000002", "credit_note", OCT, Decimal("-2.50"), "issued")
    (payment,) = db.execute(
        "select payment_status from marts.invoices where invoice_number = 'MH-2026-000002'"
    ).fetchone()
    assert payment == "none"


def test_held_drafts_get_no_number_and_each_year_of_invoice_date_has_its_own_sequence(db) -> None:
    draft(db, OCT, NOV, "1.50")  # invoice date 2026-11-01
    november = draft(db, NOV, DEC, "3.00")  # 2026-12-01, held below
    draft(db, DEC, JAN, "0.25")  # 2027-01-01
    report = release_due_invoices(db, OCT, JAN, as_of=JAN, failing_checks={november: ["usage_check"]})
    # the held November draft takes no number: October is 2026's first, December 2027's first
    assert report.issued == ["MH-2026-000001", "MH-2027-000001"] and report.held == {november: ["usage_check"]}
    assert db.execute("select * from billing.invoice_number_sequences order by 1").fetchall() == [(2026, 1), (2027, 1)]
    # the held draft is in the ledger with its reason, without a date or a payment to collect
    assert db.execute(
        "select status, held_reasons, issued_at, payment_status from marts.invoices where draft_key = ?", [november]
    ).fetchone() == ("held", "usage_check", None, "none")
    # released later, it continues 2026's sequence, and its lines are the draft's: 199.00 + 3.00
    again = release_due_invoices(db, OCT, JAN, as_of=JAN)
    assert again.issued == ["MH-2026-000002"] and again.already_issued == 2
    assert db.execute(
        "select invoice_number, line_number, kind, amount from marts.invoice_lines where draft_key = ?"
        " order by line_number", [november]
    ).fetchall() == [("MH-2026-000002", 1, "recurring", Decimal("199.00")),
                     ("MH-2026-000002", 2, "usage", Decimal("3.00"))]
    assert db.execute("select count(*) from marts.invoices where draft_key = ?", [november]).fetchone() == (1,)
    assert invoices(db) == [
        ("MH-2026-000001", "invoice", OCT, Decimal("200.50"), "issued"),
        ("MH-2026-000002", "invoice", NOV, Decimal("202.00"), "issued"),
        ("MH-2027-000001", "invoice", DEC, Decimal("199.25"), "issued"),
    ]


def test_a_draft_whose_lines_do_not_add_up_stops_the_whole_release(db) -> None:
    draft(db, OCT, NOV, "1.50")
    november = draft(db, NOV, DEC, "3.00")
    # a total one cent above its lines (199.00 + 3.00 = 202.00)
    db.execute("update marts.invoice_drafts set total = 202.01 where draft_key = ?", [november])
    with pytest.raises(ValueError, match=rf"draft {re.escape(november)}: total 202\.010 is not the sum of its lines 202\.000"):
        release_due_invoices(db, OCT, DEC, as_of=DEC)
    # nothing of the release stays: not October's invoice, not its number
    assert invoices(db) == []
    assert db.execute("select count(*) from marts.invoice_lines").fetchone() == (0,)
    assert db.execute("select count(*) from billing.invoice_number_sequences").fetchone() == (0,)


def test_two_periods_released_together_carry_a_pending_adjustment_once(db) -> None:
    draft(db, OCT, NOV, "1.50")
    release_due_invoices(db, OCT, NOV, as_of=NOV)
    # October re-rated 1.50 -> 2.85 (+1.35); November and December are released in one go
    draft(db, OCT, NOV, "2.85")
    draft(db, NOV, DEC, "3.00")
    draft(db, DEC, JAN, "0.00")
    report = release_due_invoices(db, NOV, JAN, as_of=JAN)
    assert report.issued == ["MH-2026-000002", "MH-2027-000001"] and report.adjustments_detected == 1
    # the first invoice in release order carries it: 199.00 + 3.00 + 1.35; December does not: 199.00
    assert invoices(db)[1:] == [
        ("MH-2026-000002", "invoice", NOV, Decimal("203.35"), "issued"),
        ("MH-2027-000001", "invoice", DEC, Decimal("199.00"), "issued"),
    ]
    assert db.execute(
        "select applied_invoice_number, applied_line_number, amount from billing.adjustments"
    ).fetchall() == [("MH-2026-000002", 3, Decimal("1.35"))]
