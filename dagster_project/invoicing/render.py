"""Render issued invoices to HTML and PDF documents, once, byte-for-byte reproducibly.

Everything printed comes from the ledger (no render-time clock, locale or dict order), so the
same inputs give the same bytes. The PDF is made from the HTML bytes themselves, with the
document dates taken from the invoice date and no random file id: drawn directly by
``invoicing.pdf`` (~5.5 ms a document), or laid out by WeasyPrint (~150 ms) for HTML that
renderer refuses (an SVG logo, a character without a DejaVu glyph). A PDF stored by the other
renderer (every PDF issued before it, 2026-11-27, came from WeasyPrint) is recognised and kept.

A document is written once and its SHA-256 stored with the invoice (``document_sha256`` for
the HTML, ``pdf_sha256`` for the PDF). A later run that would produce different bytes for a
numbered invoice stops with ``DocumentMismatchError`` instead of overwriting anything.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import functools
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import yaml
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dagster_project.invoicing import pdf as invoice_pdf
from dagster_project.lib.faults import fault_point
from dagster_project.lib.money import format_money, minor_units, round_money
from dagster_project.lib.safe_paths import child
from dagster_project.lib.workers import process_pool

INVOICE_NUMBER = re.compile(r"^MH-\d{4}-\d{6}$")
BRANDING_FILE = "branding.yaml"
LOGO_MAX_BYTES = 1_000_000
TRIAL_TIER_NAME = "Free trial"  # the tier name dbt gives a metric's free-trial line
FIXED_FEE_SUFFIX = " (fixed fee)"  # dbt's tier name suffix on a tier's fixed-fee line
DOCUMENT_COLUMNS = {"document_sha256": "varchar", "pdf_sha256": "varchar"}


class DocumentMismatchError(RuntimeError):
    """A numbered invoice's document would change: it is never overwritten."""


class BrandingError(ValueError):
    """``branding.yaml`` is invalid, or its logo is not a safe, readable image."""


class Branding(BaseModel):
    """The seller details printed on every document (``<data dir>/branding.yaml``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    company_name: str = Field(default="Meterhouse Demo Co.", min_length=1, max_length=200)
    company_address: list[str] = Field(default_factory=lambda: ["1 Example Street", "Springfield"])
    company_email: str | None = Field(default="billing@meterhouse.example", max_length=200)
    company_phone: str | None = Field(default=None, max_length=100)
    company_website: str | None = Field(default=None, max_length=200)
    company_tax_id: str | None = Field(default=None, max_length=100)
    # a local image file, relative to the data directory (it must stay inside it)
    logo: str | None = Field(default=None, max_length=1000)
    logo_text: str = Field(default="MH", max_length=40)
    accent_color: str = Field(default="#3451b2", pattern=r"^#[0-9A-Fa-f]{6}$")
    payment_instructions: list[str] = Field(default_factory=list)
    footer: str = Field(default="Thank you for your business.", max_length=1000)

    @field_validator("company_address", "payment_instructions", mode="before")
    @classmethod
    def _lines(cls, value: object) -> object:
        if isinstance(value, str):
            return [line.strip() for line in value.splitlines() if line.strip()]
        return [] if value is None else value


@dataclass(frozen=True)
class RenderedDocument:
    invoice_number: str
    path: Path
    sha256: str
    pdf_path: Path
    pdf_sha256: str


# --- paths and branding -------------------------------------------------------------------


def _checked_number(number: str) -> str:
    if not isinstance(number, str) or not INVOICE_NUMBER.match(number):
        raise ValueError(f"invalid invoice number {number!r}")
    return number


def invoice_path(data_dir: Path, number: str) -> Path:
    """The HTML document's path; the number is checked so it can never name a file outside invoices/."""
    return child(data_dir / "invoices", _checked_number(number), ".html")


def pdf_path(data_dir: Path, number: str) -> Path:
    return child(data_dir / "invoices", _checked_number(number), ".pdf")


def load_branding(data_dir: Path) -> Branding:
    """``<data dir>/branding.yaml`` over the defaults; an unknown key or bad value is an error."""
    path = data_dir / BRANDING_FILE
    if not path.exists():
        return Branding()
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise BrandingError(f"{path}: not valid YAML: {error}") from error
    if not isinstance(content, dict):
        raise BrandingError(f"{path}: expected a mapping of keys to values")
    try:
        return Branding.model_validate(content)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(file)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise BrandingError(f"{path}: {problems}") from error


_IMAGE_TYPES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def _image_type(content: bytes) -> str | None:
    for magic, media_type in _IMAGE_TYPES:
        if content.startswith(magic):
            return media_type
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    head = content[:512].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in content[:4096].lower()):
        return "image/svg+xml"
    return None


def resolve_logo(data_dir: Path, logo: str) -> Path:
    """The logo file, which must resolve (symbolic links followed) to a file inside the data dir."""
    root = Path(data_dir).resolve()
    candidate = Path(logo).expanduser()
    resolved = (candidate if candidate.is_absolute() else root / candidate).resolve()
    if not resolved.is_relative_to(root):
        raise BrandingError(f"{BRANDING_FILE}: logo {logo!r} is outside the data directory {root}")
    if not resolved.is_file():
        raise BrandingError(f"{BRANDING_FILE}: logo {logo!r} is not a file")
    return resolved


def logo_data_uri(data_dir: Path, logo: str) -> str:
    """The logo as a ``data:`` URI, so the HTML is self-contained and the PDF fetches nothing."""
    path = resolve_logo(data_dir, logo)
    if path.stat().st_size > LOGO_MAX_BYTES:
        raise BrandingError(f"{BRANDING_FILE}: logo {logo!r} is larger than {LOGO_MAX_BYTES:,} bytes")
    content = path.read_bytes()
    media_type = _image_type(content)
    if media_type is None:
        raise BrandingError(f"{BRANDING_FILE}: logo {logo!r} is not a PNG, JPEG, GIF, WebP or SVG image")
    return f"data:{media_type};base64,{base64.b64encode(content).decode('ascii')}"


def branding(data_dir: Path) -> dict:
    """Seller details for the template: the validated branding plus the logo as a data URI."""
    chosen = load_branding(data_dir)
    seller = chosen.model_dump()
    seller["logo_data_uri"] = logo_data_uri(data_dir, chosen.logo) if chosen.logo else None
    return seller


# --- formatting (locale-independent) ------------------------------------------------------


def _format_quantity(value: Decimal | None) -> str:
    if value is None:
        return ""
    normalized = Decimal(value).normalize()
    if normalized == normalized.to_integral():
        return f"{normalized.quantize(Decimal(1)):,f}"
    whole, _, fraction = format(normalized, "f").partition(".")
    return f"{int(whole):,}.{fraction}" if whole != "-0" else f"-0.{fraction}"


def _format_rate(value: Decimal | None, currency: str) -> str:
    if value is None:
        return ""
    text = format(Decimal(value).normalize(), "f")
    whole, _, fraction = text.partition(".")
    fraction = fraction.ljust(minor_units(currency), "0")
    return f"{int(whole):,}" + (f".{fraction}" if fraction else "")


def _format_amount(value: Decimal, currency: str) -> str:
    units = minor_units(currency)
    return f"{round_money(Decimal(value), units):,.{units}f}"


def _format_moment(moment: datetime) -> str:
    """A date when the instant is midnight UTC, else the date and time (UTC)."""
    if moment.hour == moment.minute == moment.second == moment.microsecond == 0:
        return moment.strftime("%Y-%m-%d")
    if moment.second == moment.microsecond == 0:
        return moment.strftime("%Y-%m-%d %H:%M UTC")
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _format_period(start: datetime, end: datetime) -> str:
    """A half-open period ``[start, end)`` as people read it: whole days print their last day."""
    if start == end:
        return _format_moment(start)
    midnight = all(m.hour == m.minute == m.second == m.microsecond == 0 for m in (start, end))
    if midnight:
        last_day = end - timedelta(days=1)
        if last_day == start:
            return start.strftime("%Y-%m-%d")
        return f"{start:%Y-%m-%d} – {last_day:%Y-%m-%d}"
    time_format = "%H:%M" if start.second == end.second == start.microsecond == end.microsecond == 0 else "%H:%M:%S"
    if start.date() == end.date():
        return f"{start:%Y-%m-%d} {start.strftime(time_format)}–{end.strftime(time_format)} UTC"
    return f"{start:%Y-%m-%d} {start.strftime(time_format)} – {end:%Y-%m-%d} {end.strftime(time_format)} UTC"


def _w3c_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@functools.cache  # one compiled template per process: compiling it took ~50 ms, more than the rest of an invoice's HTML
def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("dagster_project.invoicing", "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    environment.filters["money"] = lambda amount, currency: format_money(Decimal(amount), currency)
    environment.filters["amount"] = _format_amount
    environment.filters["quantity"] = _format_quantity
    environment.filters["rate"] = _format_rate
    environment.filters["moment"] = _format_moment
    environment.filters["period"] = _format_period
    environment.filters["w3c"] = _w3c_date
    environment.filters["count"] = lambda value: f"{int(value):,}"
    return environment


# --- the document model -------------------------------------------------------------------


def _rows(connection: duckdb.DuckDBPyConnection, sql: str, parameters: list) -> list[dict]:
    result = connection.execute(sql, parameters)
    names = [column[0] for column in result.description]
    return [dict(zip(names, row, strict=True)) for row in result.fetchall()]


def line_role(line: dict, lines: list[dict]) -> str:
    """What an invoice line is: setup, recurring, adjustment, tier, fixed_fee, trial or no_usage.

    The ledger keeps dbt's tier name, not its line type; a metric's free-trial line is the
    last usage line of that metric and period, named "Free trial", at rate 0 (a catalog tier of
    that name can only be the trial line's predecessor).
    """
    if line["kind"] != "usage":
        return line["kind"]
    tier = line["tier_name"]
    if tier is None:
        return "no_usage"
    if tier.endswith(FIXED_FEE_SUFFIX) and line["event_count"] is None:
        return "fixed_fee"
    if tier == TRIAL_TIER_NAME and not line["amount"] and not line["unit_rate"]:
        same_metric = [
            other["line_number"] for other in lines
            if other["kind"] == "usage" and other["metric"] == line["metric"]
            and (other["period_start"], other["period_end"]) == (line["period_start"], line["period_end"])
        ]
        if line["line_number"] == max(same_metric):
            return "trial"
    return "tier"


def _line_view(line: dict, role: str) -> dict:
    tier = line["tier_name"] or ""
    if role in ("setup", "recurring", "adjustment"):
        label = line["description"] or role.capitalize()
        detail = {
            "setup": "One-time setup fee",
            "recurring": f"Service period {_format_period(line['period_start'], line['period_end'])}",
            "adjustment": f"Adjustment for {_format_period(line['period_start'], line['period_end'])}",
        }[role]
    elif role == "fixed_fee":
        label = f"Fixed fee · {tier.removesuffix(FIXED_FEE_SUFFIX)}"
        detail = "Charged once when usage enters the tier"
    elif role == "trial":
        label = "Free trial"
        events = line["event_count"] or 0
        detail = f"{events:,} event{'' if events == 1 else 's'} during the free trial, not charged"
    elif role == "no_usage":
        label = "No billable usage"
        detail = ""
    else:
        label = tier
        detail = ""
    return {**line, "role": role, "label": label, "detail": detail}


def _sections(lines: list[dict]) -> list[dict]:
    """Fees first (setup, recurring, adjustments), then one section per metric and period."""
    fees: list[dict] = []
    usage: dict[tuple, dict] = {}
    for line in lines:
        role = line_role(line, lines)
        view = _line_view(line, role)
        if line["kind"] != "usage":
            fees.append(view)
            continue
        key = (line["metric"], line["period_start"], line["period_end"])
        section = usage.setdefault(key, {
            "title": line["metric"] or line["description"] or "Usage",
            "period": _format_period(line["period_start"], line["period_end"]),
            "event_count": None,
            "trial_event_count": 0,
            "lines": [],
        })
        if role == "trial":
            section["trial_event_count"] = line["event_count"] or 0
        elif line["event_count"] is not None and section["event_count"] is None:
            section["event_count"] = line["event_count"]
        section["lines"].append(view)
    sections = [{"title": None, "period": None, "event_count": None, "trial_event_count": 0, "lines": fees}] if fees else []
    return sections + list(usage.values())


def document_models(connection: duckdb.DuckDBPyConnection, numbers: Sequence[str]) -> dict[str, dict]:
    """Everything the template prints for each of ``numbers``, read from the ledger (and the
    credential breakdown) with three queries however many invoices: a release writes thousands."""
    wanted = [_checked_number(number) for number in numbers]
    selected = "where i.invoice_number in (select unnest(cast(? as varchar[])))"
    invoices = {row["invoice_number"]: row for row in _rows(
        connection, f"select * from marts.invoices as i {selected}", [wanted]
    )}
    for number in wanted:
        if number not in invoices:
            raise LookupError(f"no invoice {number!r}")
        if invoices[number]["issued_at"] is None:
            raise ValueError(f"invoice {number} has no invoice date")
    lines: dict[str, list[dict]] = {number: [] for number in wanted}
    for line in _rows(
        connection, f"select * from marts.invoice_lines as i {selected} order by i.invoice_number, i.line_number",
        [wanted],
    ):
        lines[line["invoice_number"]].append(line)
    credentials: dict[str, list[dict]] = {number: [] for number in wanted}
    for row in _rows(
        connection,
        f"""
        select i.invoice_number, u.metric, u.credential_name, u.quantity, u.event_count,
               coalesce(u.trial_quantity, 0) as trial_quantity, coalesce(u.trial_event_count, 0) as trial_event_count
        from marts.invoices as i
        join marts.usage_by_period as u
          on u.subscription_id = i.subscription_id and u.period_start = i.period_start
         and u.period_end = i.period_end and u.breakdown = 'credential'
        {selected}
        order by i.invoice_number, u.metric_position, u.metric, u.credential_name
        """,
        [wanted],
    ):
        credentials[row.pop("invoice_number")].append(row)
    return {
        number: {
            "invoice": invoices[number],
            "sections": _sections(lines[number]),
            "credentials": credentials[number],
            "credentials_have_trial": any(row["trial_event_count"] for row in credentials[number]),
        }
        for number in wanted
    }


def document_model(connection: duckdb.DuckDBPyConnection, number: str) -> dict:
    """Everything the template prints for one invoice."""
    return document_models(connection, [number])[number]


def render_invoice_html(connection: duckdb.DuckDBPyConnection, number: str, seller: dict,
                        model: dict | None = None) -> str:
    if model is None:
        model = document_model(connection, number)
    return _environment().get_template("invoice.html.j2").render(**model, seller=seller)


# --- PDF ----------------------------------------------------------------------------------

_PDF_LOCK = threading.Lock()


class _DropSubsetterNotice(logging.Filter):
    """WeasyPrint warns on every document when HarfBuzz-subset is missing; once is enough."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "HarfBuzz-Subset" in record.getMessage():
            if _DropSubsetterNotice.seen:
                return False
            _DropSubsetterNotice.seen = True
        return True


@contextlib.contextmanager
def _source_date_epoch(moment: datetime) -> Iterator[None]:
    """fontTools stamps subset fonts with the wall clock unless SOURCE_DATE_EPOCH is set
    (https://reproducible-builds.org/specs/source-date-epoch/): pin it to the invoice date."""
    previous = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(moment.replace(tzinfo=UTC).timestamp()))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = previous


def render_pdf(html: str, issued_at: datetime) -> bytes:
    """The PDF of an invoice's HTML. Reproducible: the document dates come from the HTML's
    ``dcterms.created``/``dcterms.modified`` (the invoice date), there is no file identifier,
    and nothing outside the HTML is fetched (only ``data:`` URIs are allowed)."""
    try:
        return invoice_pdf.render(html)
    except invoice_pdf.UnsupportedDocument:
        return render_pdf_with_weasyprint(html, issued_at)


def _pdf_like_stored(html: str, issued_at: datetime, rendered: bytes, stored_digest: str | None) -> bytes:
    """``rendered``, unless the stored PDF hash is that of WeasyPrint's bytes: an invoice issued
    while WeasyPrint drew every PDF keeps its PDF (laid out again only to compare)."""
    if stored_digest is None or _sha256(rendered) == stored_digest:
        return rendered
    earlier = render_pdf_with_weasyprint(html, issued_at)
    return earlier if _sha256(earlier) == stored_digest else rendered


def render_pdf_with_weasyprint(html: str, issued_at: datetime) -> bytes:
    """The general renderer: WeasyPrint's layout of the HTML (print media)."""
    import weasyprint
    from weasyprint.urls import URLFetcher

    logger = logging.getLogger("weasyprint")
    if not any(isinstance(existing, _DropSubsetterNotice) for existing in logger.filters):
        logger.addFilter(_DropSubsetterNotice())
    fetcher = URLFetcher(allowed_protocols=["data"], fail_on_errors=True)
    with _PDF_LOCK, _source_date_epoch(issued_at):
        html, stylesheets = _with_parsed_style(html)
        document = weasyprint.HTML(string=html, base_url=None, url_fetcher=fetcher)
        return document.write_pdf(pdf_identifier=None, stylesheets=stylesheets, font_config=_font_configuration())


_STYLE_ELEMENT = re.compile(r"<style>(.*?)</style>", re.DOTALL)
# the leading @page rule, its margin boxes nested one level deep
_PAGE_RULE = re.compile(r"\s*@page\s*\{(?:[^{}]|\{[^{}]*\})*\}", re.DOTALL)


def _with_parsed_style(html: str) -> tuple[str, list]:
    """The HTML without its one ``<style>`` element, and that stylesheet parsed: every invoice has
    the same one but for its leading ``@page`` rule (the footer names the invoice), so that rule is
    parsed per document and the rest once per process (parsing it was ~15 % of a PDF). WeasyPrint
    applies them in that order with the same (author) origin, so the PDF's bytes are the same
    (tested)."""
    import weasyprint

    styles = _STYLE_ELEMENT.findall(html)
    if len(styles) != 1:
        return html, []
    style = styles[0]
    page = _PAGE_RULE.match(style)
    if page is None:
        sheets = [_parsed_stylesheet(style)]
    else:
        sheets = [weasyprint.CSS(string=page.group(0)), _parsed_stylesheet(style[page.end():])]
    return _STYLE_ELEMENT.sub("", html, count=1), sheets


@functools.lru_cache(maxsize=1)
def _font_configuration():
    """One font configuration per process (used under ``_PDF_LOCK``): WeasyPrint otherwise loads
    Fontconfig and a new Pango font map for every document, and lays text out with cold caches:
    ~30 % of a PDF. Fonts are still subset per document, so the bytes are the same (tested)."""
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


@functools.lru_cache(maxsize=4)
def _parsed_stylesheet(text: str):
    import weasyprint

    return weasyprint.CSS(string=text)


# --- writing once -------------------------------------------------------------------------


def ensure_document_columns(connection: duckdb.DuckDBPyConnection) -> None:
    for column, column_type in DOCUMENT_COLUMNS.items():
        connection.execute(f"alter table marts.invoices add column if not exists {column} {column_type}")


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _write_once(path: Path, content: bytes, stored_digest: str | None) -> str:
    """Write ``content`` unless the document exists; never replace different bytes."""
    digest = _sha256(content)
    if stored_digest is not None and stored_digest != digest:
        raise DocumentMismatchError(
            f"{path.name}: the document would change (stored sha256 {stored_digest[:12]}…, rendered"
            f" {digest[:12]}…); an issued invoice's document is never rewritten"
        )
    if path.exists():
        existing = _sha256(path.read_bytes())
        if existing != digest:
            raise DocumentMismatchError(
                f"{path}: a document exists with different content (sha256 {existing[:12]}…, rendered"
                f" {digest[:12]}…); not overwriting"
            )
        return digest
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)
    return digest


def _stored_html(path: Path, stored_digest: str) -> bytes | None:
    """The issued HTML as written, when the file is there and intact."""
    if not path.exists():
        return None
    content = path.read_bytes()
    if _sha256(content) != stored_digest:
        raise DocumentMismatchError(
            f"{path}: the file no longer matches its stored sha256 {stored_digest[:12]}…; not overwriting"
        )
    return content


def _document_html(connection: duckdb.DuckDBPyConnection, data_dir: Path, number: str, stored_digest: str | None,
                   seller: dict | None, model: dict | None = None) -> bytes:
    """The issued HTML as stored when there is one, else rendered from the ledger now."""
    html = _stored_html(invoice_path(data_dir, number), stored_digest) if stored_digest else None
    if html is None:
        seller = seller if seller is not None else branding(data_dir)
        html = render_invoice_html(connection, number, seller, model).encode("utf-8")
    return html


@dataclass(frozen=True)
class _Prepared:
    """An invoice's ledger row (dates, stored hashes) and the HTML its documents are made of."""

    invoice: dict
    html: bytes


def _prepare(connection: duckdb.DuckDBPyConnection, data_dir: Path, number: str, seller: dict | None,
             model: dict | None = None) -> _Prepared:
    if model is None:
        found = _rows(
            connection,
            "select invoice_number, status, issued_at, document_sha256, pdf_sha256 from marts.invoices"
            " where invoice_number = ?",
            [_checked_number(number)],
        )
        if not found:
            raise LookupError(f"no invoice {number!r}")
        invoice = found[0]
    else:
        invoice = model["invoice"]
    return _Prepared(invoice, _document_html(connection, data_dir, number, invoice["document_sha256"], seller, model))


def write_invoice_documents(
    connection: duckdb.DuckDBPyConnection, data_dir: Path, number: str, seller: dict | None = None,
    pdf_renderer: Callable[[str, datetime], bytes] = render_pdf, prepared: _Prepared | None = None,
    hashes_to_store: _HashBatch | None = None,
) -> RenderedDocument:
    """Write (or confirm) one numbered invoice's HTML and PDF, then store their hashes.

    Once the HTML has a stored hash, the PDF is rendered from those stored bytes, so the two
    documents always agree even if the branding changed since. A missing file is written again
    only if it comes out byte-identical to its stored hash; anything else raises
    ``DocumentMismatchError`` and leaves the files as they are. With ``hashes_to_store``, the
    hashes are stored with other invoices' (one UPDATE per invoice cost more than its PDF).
    """
    if prepared is None:
        ensure_document_columns(connection)
        prepared = _prepare(connection, data_dir, number, seller)
    invoice, html = prepared.invoice, prepared.html
    html_file, pdf_file = invoice_path(data_dir, number), pdf_path(data_dir, number)
    html_digest = _write_once(html_file, html, invoice["document_sha256"])
    fault_point("render.html_written")
    text = html.decode("utf-8")
    pdf = _pdf_like_stored(text, invoice["issued_at"], pdf_renderer(text, invoice["issued_at"]), invoice["pdf_sha256"])
    pdf_digest = _write_once(pdf_file, pdf, invoice["pdf_sha256"])
    fault_point("render.pdf_written")
    if (invoice["document_sha256"], invoice["pdf_sha256"]) != (html_digest, pdf_digest):
        if hashes_to_store is None:
            _store_hashes(connection, [(number, html_digest, pdf_digest)])
        else:
            hashes_to_store.append((number, html_digest, pdf_digest))
    return RenderedDocument(number, html_file, html_digest, pdf_file, pdf_digest)


HASH_BATCH = 1_000


def _store_hashes(connection: duckdb.DuckDBPyConnection, rows: list[tuple[str, str, str]]) -> None:
    """Store documents' hashes with their invoices, in one statement (one UPDATE per invoice was
    8 ms, more than drawing its PDF). Until then a rerun finds the files and confirms them."""
    if not rows:
        return
    numbers, html_digests, pdf_digests = (list(column) for column in zip(*rows, strict=True))
    connection.execute(
        """
        update marts.invoices as i set document_sha256 = d.document_sha256, pdf_sha256 = d.pdf_sha256
        from (select unnest(cast(? as varchar[])) as invoice_number, unnest(cast(? as varchar[])) as document_sha256,
                     unnest(cast(? as varchar[])) as pdf_sha256) as d
        where i.invoice_number = d.invoice_number
        """,
        [numbers, html_digests, pdf_digests],
    )


class _HashBatch:
    """Documents' hashes waiting to be stored, ``HASH_BATCH`` at a time."""

    def __init__(self, connection: duckdb.DuckDBPyConnection) -> None:
        self._connection, self._rows = connection, []

    def append(self, row: tuple[str, str, str]) -> None:
        self._rows.append(row)
        if len(self._rows) >= HASH_BATCH:
            self.flush()

    def flush(self) -> None:
        rows, self._rows = self._rows, []
        _store_hashes(self._connection, rows)


@contextlib.contextmanager
def _hashes_stored_in_batches(connection: duckdb.DuckDBPyConnection) -> Iterator[_HashBatch]:
    """Stored at the end too when a later document fails: those written are recorded."""
    batch = _HashBatch(connection)
    try:
        yield batch
    finally:
        batch.flush()


class _ModelsInOrder:
    """Document models of ``numbers``, read a chunk of invoices at a time as the writing loop
    reaches them (per invoice, the three reads cost ~10 ms at 10 K invoices)."""

    CHUNK = 250

    def __init__(self, connection: duckdb.DuckDBPyConnection, numbers: list[str]) -> None:
        self._connection, self._numbers = connection, numbers
        self._position = {number: index for index, number in enumerate(numbers)}
        self._ready: dict[str, dict] = {}

    def take(self, number: str) -> dict:
        if number not in self._ready:
            start = self._position[number]
            self._ready.update(document_models(self._connection, self._numbers[start:start + self.CHUNK]))
        return self._ready.pop(number)


def write_documents(connection: duckdb.DuckDBPyConnection, data_dir: Path) -> list[RenderedDocument]:
    """Write the documents of every numbered invoice that lacks a stored HTML or PDF hash.

    Runs right after the release, in the same run, so it also records which events the
    invoice's lines were rated from (``lineage.stamp_events_loaded_through``).
    """
    from dagster_project.invoicing.lineage import stamp_events_loaded_through

    ensure_document_columns(connection)
    numbers = [
        row[0]
        for row in connection.execute(
            "select invoice_number from marts.invoices"
            " where invoice_number is not null and status in ('issued', 'void')"
            " and (document_sha256 is null or pdf_sha256 is null)"
            " order by invoice_number"
        ).fetchall()
    ]
    if not numbers:
        return []
    stamp_events_loaded_through(connection, numbers)  # first, so a branding error later does not move the stamp
    seller = branding(data_dir)
    models = _ModelsInOrder(connection, numbers)
    with _pdf_pool(len(numbers)) as pool, _hashes_stored_in_batches(connection) as hashes:
        if pool is None:
            return [
                write_invoice_documents(connection, data_dir, number, seller,
                                        prepared=_prepare(connection, data_dir, number, seller, models.take(number)),
                                        hashes_to_store=hashes)
                for number in numbers
            ]
        return _write_with_pool(connection, data_dir, numbers, seller, pool, models, hashes)


# PDFs are the slow part of a release (~5.5 ms each drawn directly, ~150 ms in WeasyPrint): past a
# couple of hundred, worker processes render them ahead while this process renders the HTML and
# writes files in invoice order (500 invoices: 3.5-3.8 s against 4.2-5.1 s in one process; starting
# the workers costs ~1 CPU-s each, more than 100 PDFs).
PDF_PROCESSES_ENV = "METERHOUSE_PDF_PROCESSES"
PARALLEL_PDF_FROM = 200


def _pdf_processes() -> int:
    return int(os.environ.get(PDF_PROCESSES_ENV) or os.cpu_count() or 1)


@contextlib.contextmanager
def _pdf_pool(count: int) -> Iterator[concurrent.futures.Executor | None]:
    if count < PARALLEL_PDF_FROM or _pdf_processes() < 2:
        yield None
        return
    # spawned (this process holds DuckDB's threads and an open connection), and ending with it
    with process_pool(_pdf_processes()) as pool:
        yield pool


def _write_with_pool(connection: duckdb.DuckDBPyConnection, data_dir: Path, numbers: list[str], seller: dict,
                     pool: concurrent.futures.Executor, models: _ModelsInOrder,
                     hashes: _HashBatch) -> list[RenderedDocument]:
    """As the one-by-one loop, with each PDF rendered ahead in ``pool`` from the same HTML bytes
    (render_pdf is pure, so the bytes are the ones this process would have made)."""
    window = 4 * _pdf_processes()
    ahead: dict[str, tuple[_Prepared, concurrent.futures.Future]] = {}

    def submit(number: str) -> None:
        prepared = _prepare(connection, data_dir, number, seller, models.take(number))
        ahead[number] = (prepared, pool.submit(render_pdf, prepared.html.decode("utf-8"), prepared.invoice["issued_at"]))

    for number in numbers[:window]:
        submit(number)
    written = []
    for index, number in enumerate(numbers):
        if index + window < len(numbers):
            submit(numbers[index + window])
        prepared, future = ahead.pop(number)
        written.append(write_invoice_documents(
            connection, data_dir, number, seller, lambda _html, _issued_at, pdf=future: pdf.result(), prepared, hashes,
        ))
    return written


def verify_documents(connection: duckdb.DuckDBPyConnection, data_dir: Path, number: str) -> RenderedDocument:
    """Render an invoice again from the ledger and the current branding, and check that both
    files and both stored hashes are exactly those bytes. Raises ``DocumentMismatchError``."""
    ensure_document_columns(connection)
    found = _rows(
        connection, "select issued_at, document_sha256, pdf_sha256 from marts.invoices where invoice_number = ?",
        [_checked_number(number)],
    )
    if not found:
        raise LookupError(f"no invoice {number!r}")
    invoice = found[0]
    html = render_invoice_html(connection, number, branding(data_dir)).encode("utf-8")
    text = html.decode("utf-8")
    pdf = _pdf_like_stored(text, invoice["issued_at"], render_pdf(text, invoice["issued_at"]), invoice["pdf_sha256"])
    checks = (
        (invoice_path(data_dir, number), html, invoice["document_sha256"]),
        (pdf_path(data_dir, number), pdf, invoice["pdf_sha256"]),
    )
    for path, content, stored in checks:
        digest = _sha256(content)
        if stored != digest:
            raise DocumentMismatchError(f"{path.name}: rendering now gives sha256 {digest[:12]}…, stored {stored}")
        if not path.exists() or _sha256(path.read_bytes()) != digest:
            raise DocumentMismatchError(f"{path}: missing or not the stored document")
    return RenderedDocument(number, checks[0][0], checks[0][2], checks[1][0], checks[1][2])
