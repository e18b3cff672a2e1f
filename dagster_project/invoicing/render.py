"""Render issued invoices to HTML documents, once, byte-for-byte reproducibly.

Everything printed comes from the ledger (no render-time clock), so the same inputs give
the same bytes. A document is written once and its SHA-256 stored with the invoice; a
later run that would produce different bytes for an issued invoice stops with an error
instead of overwriting it.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from dagster_project.lib.money import format_money, minor_units

INVOICE_NUMBER = re.compile(r"^MH-\d{4}-\d{6}$")
DEFAULT_BRANDING = {
    "company_name": "Meterhouse Demo Co.",
    "company_address": ["1 Example Street", "Springfield"],
    "company_email": "billing@meterhouse.example",
    "logo_text": "MH",
    "footer": "Thank you for your business.",
}


@dataclass(frozen=True)
class RenderedDocument:
    invoice_number: str
    path: Path
    sha256: str


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("dagster_project.invoicing", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters["money"] = lambda amount, currency: format_money(Decimal(amount), currency)
    environment.filters["quantity"] = _format_quantity
    environment.filters["rate"] = _format_rate
    environment.filters["date"] = lambda moment: moment.strftime("%Y-%m-%d")
    environment.filters["instant"] = lambda moment: moment.strftime("%Y-%m-%d %H:%M UTC")
    return environment


def _format_quantity(value: Decimal | None) -> str:
    if value is None:
        return ""
    normalized = Decimal(value).normalize()
    return f"{normalized:,f}" if normalized == normalized.to_integral() else f"{normalized:,}"


def _format_rate(value: Decimal | None, currency: str) -> str:
    if value is None:
        return ""
    text = format(Decimal(value).normalize(), "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.ljust(minor_units(currency), "0")
    return f"{int(whole):,}" + (f".{fraction}" if fraction else "")


def branding(data_dir: Path) -> dict:
    """Seller details printed on documents: ``<data dir>/branding.yaml`` over the defaults."""
    path = data_dir / "branding.yaml"
    chosen = dict(DEFAULT_BRANDING)
    if path.exists():
        chosen.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return chosen


def invoice_path(data_dir: Path, number: str) -> Path:
    """The document path; the number is checked so it can never name a file outside invoices/."""
    if not INVOICE_NUMBER.match(number):
        raise ValueError(f"invalid invoice number {number!r}")
    return data_dir / "invoices" / f"{number}.html"


def _rows(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list) -> list[dict]:
    result = connection.execute(sql, parameters)
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def render_invoice_html(connection: duckdb.DuckDBPyConnection, number: str, seller: dict) -> str:
    invoice = _rows(connection, "select * from marts.invoices where invoice_number = ?", [number])[0]
    lines = _rows(
        connection, "select * from marts.invoice_lines where invoice_number = ? order by line_number", [number]
    )
    credentials = _rows(
        connection,
        """
        select metric, credential_name, quantity, event_count
        from marts.usage_by_period
        where subscription_id = ? and period_start = ? and period_end = ? and breakdown = 'credential'
        order by metric, credential_name
        """,
        [invoice["subscription_id"], invoice["period_start"], invoice["period_end"]],
    )
    return _environment().get_template("invoice.html.j2").render(
        invoice=invoice, lines=lines, credentials=credentials, seller=seller
    )


def write_documents(connection: duckdb.DuckDBPyConnection, data_dir: Path) -> list[RenderedDocument]:
    """Render every issued invoice that has no stored document hash yet."""
    seller = branding(data_dir)
    numbers = [
        row[0]
        for row in connection.execute(
            "select invoice_number from marts.invoices where status = 'issued' and document_sha256 is null"
            " order by invoice_number"
        ).fetchall()
    ]
    written = []
    for number in numbers:
        html = render_invoice_html(connection, number, seller).encode("utf-8")
        digest = hashlib.sha256(html).hexdigest()
        path = invoice_path(data_dir, number)
        if path.exists() and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise RuntimeError(f"{path}: an issued invoice's document exists with different content; not overwriting")
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".html.tmp")
        temporary.write_bytes(html)
        os.replace(temporary, path)
        connection.execute("update marts.invoices set document_sha256 = ? where invoice_number = ?", [digest, number])
        written.append(RenderedDocument(number, path, digest))
    return written
