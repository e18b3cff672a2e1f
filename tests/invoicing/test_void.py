"""Void: explicit, with a reason; the invoice keeps its number, lines and documents."""

from __future__ import annotations

import hashlib
import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from dagster_project.invoicing import render
from dagster_project.invoicing.void import VoidError, void_invoice
from tests.invoicing.ledger import NUMBER, SECOND_NUMBER, add_invoice, build_warehouse

VOIDED_AT = datetime(2026, 11, 3, 9, 30)


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_warehouse(tmp_path_factory.mktemp("void"))
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        render.write_documents(connection, root)
    return root


@pytest.fixture
def root(issued: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(issued, tmp_path / "copy"))


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "warehouse.duckdb"))


def invoice_row(connection: duckdb.DuckDBPyConnection, number: str) -> dict:
    result = connection.execute("select * from marts.invoices where invoice_number = ?", [number])
    names = [column[0] for column in result.description]
    return dict(zip(names, result.fetchone(), strict=True))


def test_void_marks_the_invoice_and_keeps_everything_else(root: Path) -> None:
    documents = {path.name: path.read_bytes() for path in (root / "invoices").iterdir()}
    with connect(root) as connection:
        before = invoice_row(connection, NUMBER)
        lines_before = connection.execute("select * from marts.invoice_lines order by line_number").fetchall()
        voided = void_invoice(connection, NUMBER, "  Billed to the wrong\n company  ", VOIDED_AT)
        after = invoice_row(connection, NUMBER)
        lines_after = connection.execute("select * from marts.invoice_lines order by line_number").fetchall()
        assert render.write_documents(connection, root) == []  # nothing to re-render
        render.verify_documents(connection, root, NUMBER)  # the documents are still the issued ones
    assert (voided.invoice_number, voided.void_reason, voided.voided_at) == (
        NUMBER, "Billed to the wrong company", VOIDED_AT
    )
    assert (after["status"], after["void_reason"], after["voided_at"]) == ("void", "Billed to the wrong company",
                                                                           VOIDED_AT)
    unchanged = {key: value for key, value in before.items() if key not in ("status", "void_reason", "voided_at")}
    assert {key: after[key] for key in unchanged} == unchanged  # number, total, hashes, dates
    assert lines_after == lines_before
    assert {path.name: path.read_bytes() for path in (root / "invoices").iterdir()} == documents
    assert hashlib.sha256(documents[f"{NUMBER}.html"]).hexdigest() == after["document_sha256"]


def test_voiding_twice_is_an_error_and_keeps_the_first_reason(root: Path) -> None:
    with connect(root) as connection:
        void_invoice(connection, NUMBER, "duplicate invoice", VOIDED_AT)
        with pytest.raises(VoidError, match="already void"):
            void_invoice(connection, NUMBER, "again", datetime(2026, 11, 4))
        row = invoice_row(connection, NUMBER)
    assert (row["void_reason"], row["voided_at"]) == ("duplicate invoice", VOIDED_AT)


def test_a_reason_is_mandatory(root: Path) -> None:
    with connect(root) as connection:
        for reason in ("", "   \n\t"):
            with pytest.raises(VoidError, match="reason is required"):
                void_invoice(connection, NUMBER, reason, VOIDED_AT)
        assert invoice_row(connection, NUMBER)["status"] == "issued"


def test_a_held_invoice_cannot_be_voided(root: Path) -> None:
    add_invoice(root, None, status="held", subscription="sub-held")  # held drafts have no number
    add_invoice(root, SECOND_NUMBER, status="held")  # and one that has, should one ever exist
    with connect(root) as connection:
        with pytest.raises(VoidError, match="is held, not issued"):
            void_invoice(connection, SECOND_NUMBER, "not needed", VOIDED_AT)
        statuses = connection.execute("select status, count(*) from marts.invoices group by 1 order by 1").fetchall()
    assert statuses == [("held", 2), ("issued", 1)]


def test_a_paid_invoice_cannot_be_voided(root: Path) -> None:
    add_invoice(root, SECOND_NUMBER, payment_status="paid")
    with connect(root) as connection, pytest.raises(VoidError, match="credit note"):
        void_invoice(connection, SECOND_NUMBER, "customer cancelled", VOIDED_AT)


def test_unknown_and_malformed_numbers_are_errors(root: Path) -> None:
    with connect(root) as connection:
        with pytest.raises(VoidError, match="no invoice MH-2026-000099"):
            void_invoice(connection, "MH-2026-000099", "typo", VOIDED_AT)
        with pytest.raises(VoidError, match="invalid invoice number"):
            void_invoice(connection, "MH-2026-1' or '1'='1", "typo", VOIDED_AT)


def test_voiding_never_deletes_or_renumbers(root: Path) -> None:
    add_invoice(root, SECOND_NUMBER)
    with connect(root) as connection:
        void_invoice(connection, NUMBER, "wrong customer", VOIDED_AT)
        numbers = connection.execute(
            "select invoice_number, status from marts.invoices order by invoice_number"
        ).fetchall()
        lines = connection.execute("select count(*) from marts.invoice_lines").fetchone()[0]
    assert numbers == [(NUMBER, "void"), (SECOND_NUMBER, "issued")]
    assert lines == 10 + 1
