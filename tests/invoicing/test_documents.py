"""Invoice documents: HTML and PDF, byte-identical for the same inputs, written once, branded,
escaped. Rendered from a hand-built ledger (tests/invoicing/ledger.py), no pipeline run."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import zlib
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dagster_project.invoicing import render
from dagster_project.invoicing.render import BrandingError, DocumentMismatchError
from tests.conftest import REPO_ROOT
from tests.invoicing.ledger import BRANDING, LOGO, NUMBER, SECOND_NUMBER, add_invoice, make_data_dir


def connect(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "warehouse.duckdb"))


def stored_hashes(root: Path) -> tuple[str, str]:
    with connect(root) as connection:
        return connection.execute(
            "select document_sha256, pdf_sha256 from marts.invoices where invoice_number = ?", [NUMBER]
        ).fetchone()


def pdf_objects(pdf: bytes) -> bytes:
    """The PDF's objects, its compressed streams inflated (WeasyPrint keeps the document info in
    an object stream)."""
    inflated = [pdf]
    for match in re.finditer(rb"stream\r?\n(.*?)\r?\nendstream", pdf, re.S):
        try:
            inflated.append(zlib.decompress(match.group(1)))
        except zlib.error:
            continue
    return b"\n".join(inflated)


@pytest.fixture
def copy_of_issued(issued: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(issued, tmp_path / "copy"))


def test_html_and_pdf_are_written_next_to_each_other_with_their_hashes(issued: Path) -> None:
    html, pdf = issued / "invoices" / f"{NUMBER}.html", issued / "invoices" / f"{NUMBER}.pdf"
    assert stored_hashes(issued) == (
        hashlib.sha256(html.read_bytes()).hexdigest(), hashlib.sha256(pdf.read_bytes()).hexdigest()
    )
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert not list((issued / "invoices").glob("*.tmp"))


def test_the_pdf_carries_the_invoice_date_and_no_random_identifier(issued: Path) -> None:
    pdf = (issued / "invoices" / f"{NUMBER}.pdf").read_bytes()
    info = pdf_objects(pdf)
    # the invoice date is the moment October closed: 2026-11-01 00:00 UTC
    assert b"/CreationDate (D:20261101000000Z)" in info
    assert b"/ModDate (D:20261101000000Z)" in info
    assert b"/Title (Invoice MH-2026-000001)" in info
    assert b"/ID" not in pdf and b"/ID" not in info


def test_the_html_shows_the_hand_worked_lines(issued: Path) -> None:
    html = (issued / "invoices" / f"{NUMBER}.html").read_text(encoding="utf-8")
    # amounts per line (see ledger.py) and the total 262.20
    for amount in ("50.00", "199.00", "4.50", "1.00", "5.00", "2.70"):
        assert f'<td class="num">{amount}</td>' in html
    assert html.count("262.20 USD") == 3  # the "total due" box, subtotal and total
    assert "Fixed fee · 3+" in html and "Charged once when usage enters the tier" in html
    assert "1 event during the free trial, not charged" in html
    assert "Service period 2026-10-01 – 2026-10-31" in html  # [Oct 1, Nov 1) as people read it
    assert "4 billable events · 1 in free trial" in html
    assert "No billable usage" in html
    # credential breakdown with trial columns, and the seller's details
    assert "<td>Tokens</td><td>prod-key</td>" in html and "Trial quantity" in html
    assert "Lumen Analytics GmbH" in html and "Tax ID DE123456789" in html and "IBAN DE89" in html
    assert "--accent: #0f766e" in html


def test_the_logo_is_embedded_so_the_html_is_self_contained(issued: Path) -> None:
    html = (issued / "invoices" / f"{NUMBER}.html").read_text(encoding="utf-8")
    assert f'src="data:image/png;base64,{base64.b64encode(LOGO).decode()}"' in html
    assert "file:" not in html and "http://" not in html and "https://" not in html


def test_two_renders_give_identical_bytes_even_a_day_apart(issued: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with connect(issued) as connection:
        seller = render.branding(issued)
        first_html = render.render_invoice_html(connection, NUMBER, seller)
        second_html = render.render_invoice_html(connection, NUMBER, seller)
    assert first_html == second_html
    assert first_html.encode() == (issued / "invoices" / f"{NUMBER}.html").read_bytes()
    first_pdf = render.render_pdf(first_html, datetime(2026, 11, 1))
    # the font subsetter stamps the wall clock unless told otherwise: move the clock a day on
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400)
    second_pdf = render.render_pdf(second_html, datetime(2026, 11, 1))
    monkeypatch.undo()
    assert first_pdf == second_pdf == (issued / "invoices" / f"{NUMBER}.pdf").read_bytes()
    assert "SOURCE_DATE_EPOCH" not in os.environ  # restored after rendering


def test_the_weasyprint_pdf_is_what_weasyprint_makes_of_the_html_as_it_is(issued: Path) -> None:
    """render_pdf_with_weasyprint hands WeasyPrint the invoice's stylesheet parsed once per
    process, not inside the HTML, and one font configuration for every document: the bytes must
    be those of the HTML rendered as it is, style element included, with a fresh font configuration."""
    import weasyprint

    html = (issued / "invoices" / f"{NUMBER}.html").read_text(encoding="utf-8")
    assert html.count("<style>") == 1
    moment = datetime(2026, 11, 1)
    with render._source_date_epoch(moment):
        plain = weasyprint.HTML(string=html, base_url=None).write_pdf(pdf_identifier=None)
    assert render.render_pdf_with_weasyprint(html, moment) == plain
    assert render.render_pdf_with_weasyprint(html, moment) == plain  # the cached stylesheet, a second time
    # the process's font configuration, warmed by another document with other text and fonts, and
    # another invoice number in the @page rule (parsed per document; the rest of the sheet is cached)
    other = html.replace("Acme", "Ünïcødé Ωmega 株式会社").replace("262.20", "9,999,262.20")
    other = other.replace(NUMBER, "MH-2026-000777")
    assert '@bottom-left { content: "Invoice MH-2026-000777"' in other
    with render._source_date_epoch(moment):
        other_plain = weasyprint.HTML(string=other, base_url=None).write_pdf(pdf_identifier=None)
    assert other_plain != plain
    assert render.render_pdf_with_weasyprint(other, moment) == other_plain
    assert render.render_pdf_with_weasyprint(html, moment) == plain
    # the direct renderer has no glyph for 株: that invoice's PDF is WeasyPrint's, the other one is not
    assert render.render_pdf(other, moment) == other_plain
    assert render.render_pdf(html, moment) != plain and b"/Producer (Meterhouse)" in render.render_pdf(html, moment)


def test_invoices_share_one_parsed_stylesheet_whatever_their_number(issued: Path) -> None:
    # the footer in the @page rule names the invoice; the rest of the sheet is parsed once per
    # process (it was parsed for every invoice while the number was part of the cached text)
    html = (issued / "invoices" / f"{NUMBER}.html").read_text(encoding="utf-8")
    render._parsed_stylesheet.cache_clear()
    for number in (NUMBER, "MH-2026-000002", "MH-2027-000001"):
        body, sheets = render._with_parsed_style(html.replace(NUMBER, number))
        assert "<style>" not in body and len(sheets) == 2
    assert render._parsed_stylesheet.cache_info()[:2] == (2, 1)  # (hits, misses)


RENDER_ELSEWHERE = """
import sys
from pathlib import Path
import duckdb
from dagster_project.invoicing.render import write_documents
from tests.invoicing.ledger import make_data_dir
root = make_data_dir(Path(sys.argv[1]))
with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
    write_documents(connection, root)
"""


def test_another_data_dir_in_another_process_gives_identical_bytes(issued: Path, tmp_path: Path) -> None:
    # same inputs, a fresh data dir, another interpreter with another hash seed, time zone and locale
    other = tmp_path / "elsewhere"
    environment = {**os.environ, "PYTHONHASHSEED": "12345", "TZ": "Pacific/Auckland", "LC_ALL": "C.UTF-8",
                   "LANG": "de_DE.UTF-8"}
    result = subprocess.run(
        [sys.executable, "-c", RENDER_ELSEWHERE, str(other)], cwd=REPO_ROOT, env=environment,
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for suffix in ("html", "pdf"):
        mine = (issued / "invoices" / f"{NUMBER}.{suffix}").read_bytes()
        theirs = (other / "invoices" / f"{NUMBER}.{suffix}").read_bytes()
        assert mine == theirs, suffix
    assert stored_hashes(other) == stored_hashes(issued)


def test_a_second_run_writes_nothing(copy_of_issued: Path) -> None:
    before = {path.name: path.stat().st_mtime_ns for path in (copy_of_issued / "invoices").iterdir()}
    with connect(copy_of_issued) as connection:
        assert render.write_documents(connection, copy_of_issued) == []
    assert {path.name: path.stat().st_mtime_ns for path in (copy_of_issued / "invoices").iterdir()} == before


def test_rendering_different_content_for_an_issued_invoice_raises(copy_of_issued: Path) -> None:
    root = copy_of_issued
    originals = {path.name: path.read_bytes() for path in (root / "invoices").iterdir()}
    (root / "branding.yaml").write_text(BRANDING.replace("Lumen Analytics GmbH", "Lumen Holding AG"), encoding="utf-8")
    with connect(root) as connection:
        # checking the issued documents against what rendering gives now
        with pytest.raises(DocumentMismatchError, match="stored"):
            render.verify_documents(connection, root, NUMBER)
        # a run that lost the stored hashes (say, a crash) must not overwrite the customer's files
        connection.execute("update marts.invoices set document_sha256 = null, pdf_sha256 = null")
        with pytest.raises(DocumentMismatchError, match="different content"):
            render.write_documents(connection, root)
    assert {path.name: path.read_bytes() for path in (root / "invoices").iterdir()} == originals


def test_a_changed_ledger_cannot_replace_a_lost_document(copy_of_issued: Path) -> None:
    root = copy_of_issued
    (root / "invoices" / f"{NUMBER}.html").unlink()
    with connect(root) as connection:
        connection.execute("update marts.invoice_lines set amount = 6.00 where invoice_number = ? and line_number = 5",
                           [NUMBER])
        with pytest.raises(DocumentMismatchError, match="would change"):
            render.write_invoice_documents(connection, root, NUMBER)
    assert not (root / "invoices" / f"{NUMBER}.html").exists()


def test_a_lost_document_is_restored_only_byte_for_byte(copy_of_issued: Path) -> None:
    root = copy_of_issued
    original = (root / "invoices" / f"{NUMBER}.pdf").read_bytes()
    (root / "invoices" / f"{NUMBER}.pdf").unlink()
    with connect(root) as connection:
        restored = render.write_invoice_documents(connection, root, NUMBER)
        assert render.verify_documents(connection, root, NUMBER) == restored
    assert (root / "invoices" / f"{NUMBER}.pdf").read_bytes() == original


def test_a_tampered_document_is_reported_not_overwritten(copy_of_issued: Path) -> None:
    root = copy_of_issued
    html = root / "invoices" / f"{NUMBER}.html"
    html.write_bytes(html.read_bytes().replace(b"262.20", b"162.20"))
    with connect(root) as connection:
        connection.execute("update marts.invoices set pdf_sha256 = null")  # so the run looks at this invoice
        with pytest.raises(DocumentMismatchError, match="no longer matches"):
            render.write_documents(connection, root)
    assert b"162.20" in html.read_bytes()


def test_customer_strings_are_escaped(tmp_path: Path) -> None:
    script = "<script>alert('x')</script>"
    root = make_data_dir(
        tmp_path,
        subscription_name=f"Summaries {script}",
        organization_name='Evil & Co <img src=x onerror="alert(1)">',
        subscriber_email="a@b.example<script>",
        metric_names={"Summaries": "Pages <b>bold</b>"},
        branding_yaml=BRANDING.replace("Lumen Analytics GmbH", "Lumen <script>x</script>"),
    )
    with connect(root) as connection:
        html = render.render_invoice_html(connection, NUMBER, render.branding(root))
    assert "<script" not in html and "<img src=x" not in html and "<b>bold" not in html
    assert "Summaries &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "Evil &amp; Co &lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html
    assert "a@b.example&lt;script&gt;" in html
    assert "Pages &lt;b&gt;bold&lt;/b&gt;" in html
    assert "Lumen &lt;script&gt;x&lt;/script&gt;" in html


@pytest.mark.parametrize("logo", ["../../etc/passwd", "/etc/passwd", "brand/../../outside.png"])
def test_a_logo_outside_the_data_dir_is_rejected(tmp_path: Path, logo: str) -> None:
    root = tmp_path / "data"
    make_data_dir(root, branding_yaml=BRANDING.replace("brand/logo.png", logo))
    (tmp_path / "outside.png").write_bytes(LOGO)
    with pytest.raises(BrandingError, match="outside the data directory"):
        render.branding(root)
    with connect(root) as connection, pytest.raises(BrandingError):
        render.write_documents(connection, root)
    assert not (root / "invoices").exists()


def test_a_symlinked_logo_pointing_outside_is_rejected(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_data_dir(root)
    (tmp_path / "secret.png").write_bytes(LOGO)
    (root / "brand" / "logo.png").unlink()
    (root / "brand" / "logo.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(BrandingError, match="outside the data directory"):
        render.branding(root)


def test_a_logo_must_be_an_image(tmp_path: Path) -> None:
    root = make_data_dir(tmp_path)
    (root / "brand" / "logo.png").write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    with pytest.raises(BrandingError, match="not a PNG, JPEG, GIF, WebP or SVG"):
        render.branding(root)


def test_unknown_or_invalid_branding_keys_are_named(tmp_path: Path) -> None:
    root = make_data_dir(tmp_path, branding_yaml="logo_url: https://cdn.example/logo.png\naccent_color: red\n")
    with pytest.raises(BrandingError) as raised:
        render.branding(root)
    assert "logo_url" in str(raised.value) and "accent_color" in str(raised.value)


def test_without_branding_yaml_the_defaults_apply(tmp_path: Path) -> None:
    seller = render.branding(tmp_path)
    assert seller["company_name"] == "Meterhouse Demo Co." and seller["logo_data_uri"] is None


@pytest.mark.parametrize(("start", "end", "printed"), [
    (datetime(2026, 10, 1), datetime(2026, 11, 1), "2026-10-01 – 2026-10-31"),
    (datetime(2026, 10, 11), datetime(2026, 10, 12), "2026-10-11"),
    (datetime(2026, 10, 1, 10, 5), datetime(2026, 10, 1, 10, 10), "2026-10-01 10:05–10:10 UTC"),
    (datetime(2026, 10, 31, 22), datetime(2026, 11, 1), "2026-10-31 22:00 – 2026-11-01 00:00 UTC"),
    (datetime(2026, 10, 1), datetime(2026, 10, 1), "2026-10-01"),
])
def test_periods_print_as_people_read_them(start: datetime, end: datetime, printed: str) -> None:
    assert render._format_period(start, end) == printed


def test_numbers_print_without_locale() -> None:
    assert render._format_quantity(render.Decimal("1234567.5000")) == "1,234,567.5"
    assert render._format_quantity(render.Decimal("2700.0000000000")) == "2,700"
    assert render._format_quantity(render.Decimal("0E-10")) == "0"
    assert render._format_rate(render.Decimal("0.001000000000"), "USD") == "0.001"
    assert render._format_rate(render.Decimal("1.5"), "JPY") == "1.5"
    assert render._format_amount(render.Decimal("1234.500"), "KWD") == "1,234.500"


def test_an_invalid_invoice_number_never_names_a_file() -> None:
    with pytest.raises(ValueError, match="invalid invoice number"):
        render.pdf_path(Path("/data"), "../../etc/passwd")


def test_pdfs_rendered_by_worker_processes_are_the_same_bytes(issued: Path, tmp_path: Path, monkeypatch) -> None:
    # a big release renders PDFs in spawned processes; the bytes must not depend on where
    monkeypatch.setattr(render, "PARALLEL_PDF_FROM", 1)
    monkeypatch.setenv(render.PDF_PROCESSES_ENV, "2")
    other = make_data_dir(tmp_path / "pooled")
    with connect(other) as connection:
        written = render.write_documents(connection, other)
    assert [document.invoice_number for document in written] == [NUMBER]
    for suffix in ("html", "pdf"):
        assert (other / "invoices" / f"{NUMBER}.{suffix}").read_bytes() == \
            (issued / "invoices" / f"{NUMBER}.{suffix}").read_bytes(), suffix
    assert stored_hashes(other) == stored_hashes(issued)


@pytest.mark.parametrize("pooled", [False, True], ids=["one-process", "pdf-workers"])
def test_documents_read_in_chunks_each_show_only_their_own_invoice(tmp_path: Path, monkeypatch, pooled: bool) -> None:
    # a release reads its invoices' lines and credentials a chunk at a time; with one invoice per
    # chunk and with both in one, each document must be exactly what rendering it alone gives
    root = make_data_dir(tmp_path / "two")
    add_invoice(root, SECOND_NUMBER)  # Globex, one recurring line of 99.00, no credential breakdown
    monkeypatch.setattr(render, "PARALLEL_PDF_FROM", 1 if pooled else 10**6)
    monkeypatch.setenv(render.PDF_PROCESSES_ENV, "2")
    monkeypatch.setattr(render._ModelsInOrder, "CHUNK", 1 if pooled else 250)
    with connect(root) as connection:
        models = render.document_models(connection, [SECOND_NUMBER, NUMBER])
        assert [line["amount"] for section in models[SECOND_NUMBER]["sections"] for line in section["lines"]] \
            == [Decimal("99.00")]
        assert models[SECOND_NUMBER]["credentials"] == []
        assert [(row["metric"], row["credential_name"]) for row in models[NUMBER]["credentials"]] == \
            [("Summaries", "prod-key"), ("Summaries", "staging-key"), ("Tokens", "prod-key"), ("Tokens", "staging-key")]
        alone = {number: render.render_invoice_html(connection, number, render.branding(root)).encode("utf-8")
                 for number in (NUMBER, SECOND_NUMBER)}
        written = render.write_documents(connection, root)
    assert [document.invoice_number for document in written] == [NUMBER, SECOND_NUMBER]
    for number in (NUMBER, SECOND_NUMBER):
        assert (root / "invoices" / f"{number}.html").read_bytes() == alone[number], number
    second = alone[SECOND_NUMBER].decode("utf-8")
    assert "Other Plan recurring charge" in second and "Pro Plan setup fee" not in second and "prod-key" not in second
