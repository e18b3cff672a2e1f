"""``external`` products: landing/payments/*.csv and the ``payment`` command's function."""

from __future__ import annotations

from datetime import datetime

import pytest

from dagster_project import warehouse
from dagster_project.payments.external import (
    ExternalPaymentError,
    apply_external_payments,
    record_external_payment,
)
from tests.payments.builders import add_invoice, add_product, add_subscriber, invoice


@pytest.fixture
def ledger(data_dir):
    with warehouse.connect(data_dir) as connection:
        add_product(connection, "offline", payment="external")
        add_product(connection, "card", payment="stripe")
        add_subscriber(connection, "acme-ap", email="ap@acme.example")
        for number in ("MH-2026-000001", "MH-2026-000002", "MH-2026-000003"):
            add_invoice(connection, number, "acme-ap", product_id="offline")
        add_invoice(connection, "MH-2026-000004", "acme-ap", product_id="card")
    return data_dir


def _write(data_dir, name, text):
    path = data_dir / "landing" / "payments" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _statuses(connection):
    return dict(connection.execute("select invoice_number, payment_status from marts.invoices").fetchall())


def test_csv_updates_apply_and_bad_lines_are_reported_with_file_and_line(ledger):
    _write(ledger, "2026-11-bank.csv", (
        "invoice_number,status,reference,paid_at\n"
        "MH-2026-000001,paid,BANK-991,2026-11-03T10:00:00Z\n"
        "MH-2026-000002,failed,,\n"
        "MH-2026-009999,paid,,\n"
        "MH-2026-000003,refunded,,\n"
        "MH-2026-000004,paid,,\n"
        "MH-2026-000003,paid,X,not-a-date\n"
        "MH-2026-000003,paid,X,,extra\n"
    ))
    with warehouse.connect(ledger) as connection:
        report = apply_external_payments(connection, ledger)
        paid = invoice(connection, "MH-2026-000001")
        statuses = _statuses(connection)
        recorded = connection.execute(
            "select line_number, invoice_number, status, problem is null from billing.external_payments order by 1"
        ).fetchall()
    assert report.applied == [("MH-2026-000001", "external_paid"), ("MH-2026-000002", "failed")]
    assert report.problems == [
        "landing/payments/2026-11-bank.csv: line 4: unknown invoice 'MH-2026-009999'",
        "landing/payments/2026-11-bank.csv: line 5: status 'refunded': expected paid or failed",
        "landing/payments/2026-11-bank.csv: line 6: invoice MH-2026-000004 is for a product with payment "
        "'stripe'; only 'external' products take payment updates",
        "landing/payments/2026-11-bank.csv: line 7: paid_at 'not-a-date': expected an RFC 3339 timestamp",
        "landing/payments/2026-11-bank.csv: line 8: 1 value(s) more than the header has",
    ]
    assert (paid["payment_status"], paid["payment_reference"], paid["paid_at"]) == (
        "external_paid", "BANK-991", datetime(2026, 11, 3, 10)
    )
    assert statuses == {"MH-2026-000001": "external_paid", "MH-2026-000002": "failed",
                        "MH-2026-000003": "pending", "MH-2026-000004": "pending"}
    assert [row[0] for row in recorded] == [2, 3, 4, 5, 6, 7, 8]
    assert [row[3] for row in recorded] == [True, True, False, False, False, False, False]


def test_a_file_applies_once_and_a_later_file_wins(ledger):
    _write(ledger, "a.csv", "invoice_number,status\nMH-2026-000001,failed\n")
    with warehouse.connect(ledger) as connection:
        first = apply_external_payments(connection, ledger)
        # the command line corrects it; rerunning the old file must not undo that
        record_external_payment(connection, "MH-2026-000001", "paid", reference="cheque 7")
        again = apply_external_payments(connection, ledger)
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "external_paid"
        _write(ledger, "b.csv", "status,invoice_number\nfailed,MH-2026-000001\n")  # columns in any order
        later = apply_external_payments(connection, ledger)
        assert invoice(connection, "MH-2026-000001")["payment_status"] == "failed"
    assert first.files_applied == ["landing/payments/a.csv"]
    assert (again.files_applied, again.files_already_applied) == ([], 1)
    assert later.files_applied == ["landing/payments/b.csv"] and later.files_already_applied == 1


def test_missing_columns_reject_the_file(ledger):
    _write(ledger, "broken.csv", "number,state\nMH-2026-000001,paid\n")
    with warehouse.connect(ledger) as connection:
        report = apply_external_payments(connection, ledger)
        assert _statuses(connection)["MH-2026-000001"] == "pending"
    assert report.problems == [
        "landing/payments/broken.csv: line 1: missing column(s) invoice_number, status; "
        "expected invoice_number,status,reference,paid_at"
    ]


def test_no_payments_folder_is_fine(data_dir):
    with warehouse.connect(data_dir) as connection:
        report = apply_external_payments(connection, data_dir)
    assert report.applied == [] and report.problems == []


def test_payment_command_function(ledger):
    with warehouse.connect(ledger) as connection:
        result = record_external_payment(
            connection, "MH-2026-000002", "paid", reference="wire 42", paid_at="2026-11-05T09:30:00+01:00"
        )
        stored = invoice(connection, "MH-2026-000002")
        with pytest.raises(ExternalPaymentError, match="unknown invoice 'MH-2026-000099'"):
            record_external_payment(connection, "MH-2026-000099", "paid")
        with pytest.raises(ExternalPaymentError, match="only 'external' products"):
            record_external_payment(connection, "MH-2026-000004", "paid")
        with pytest.raises(ExternalPaymentError, match="expected paid or failed"):
            record_external_payment(connection, "MH-2026-000002", "maybe")
        failed = record_external_payment(connection, "MH-2026-000003", "failed")
    assert result == {"invoice_number": "MH-2026-000002", "payment_status": "external_paid",
                      "payment_reference": "wire 42"}
    assert stored["paid_at"] == datetime(2026, 11, 5, 8, 30)
    assert failed["payment_status"] == "failed"
