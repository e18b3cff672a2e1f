"""The direct PDF renderer (invoicing/pdf.py): the PDF says what the invoice's HTML says, on A4
pages inside the template's margins, a long invoice over several pages; what it cannot draw goes
to WeasyPrint, and a PDF issued by WeasyPrint before is kept.

The text is read back the way a PDF reader does: each text operation's glyph ids through the
font's ToUnicode map, and its width from the embedded font's own advance widths (fontTools)."""

from __future__ import annotations

import base64
import io
import re
import shutil
import zlib
from dataclasses import dataclass
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from dagster_project.invoicing import pdf as invoice_pdf
from dagster_project.invoicing import render
from tests.invoicing.ledger import NUMBER

MM = 72 / 25.4
A4 = (595.28, 841.89)  # 210 x 297 mm in points
MARGINS = {"top": 16 * MM, "right": 15 * MM, "bottom": 20 * MM, "left": 15 * MM}  # the template's @page
MOMENT = datetime(2026, 11, 1)


@dataclass(frozen=True)
class Text:
    x: float
    baseline: float  # from the top of the page
    size: float
    text: str
    width: float


def _objects(pdf: bytes) -> dict[int, bytes]:
    return {int(number): body for number, body in re.findall(rb"(\d+) 0 obj\n(.*?)\nendobj", pdf, re.S)}


def _stream(body: bytes) -> bytes:
    data = body.split(b"stream\n", 1)[1].rsplit(b"\nendstream", 1)[0]
    return zlib.decompress(data) if b"/FlateDecode" in body.split(b"stream\n", 1)[0] else data


def _reference(body: bytes, key: bytes) -> int:
    return int(re.search(rb"/" + key + rb" (\d+) 0 R", body).group(1))


def read_pages(pdf: bytes) -> list[list[Text]]:
    """Every page's text operations, in drawing order."""
    from fontTools.ttLib import TTFont

    objects = _objects(pdf)
    fonts = {}
    for number, body in objects.items():
        if b"/Subtype /Type0" not in body:
            continue
        to_unicode = _stream(objects[_reference(body, b"ToUnicode")]).decode("ascii")
        glyphs = {int(glyph, 16): bytes.fromhex(char).decode("utf-16-be")
                  for glyph, char in re.findall(r"<([0-9a-f]{4})> <([0-9a-f]+)>", to_unicode)}
        descendant = objects[int(re.search(rb"/DescendantFonts \[(\d+) 0 R\]", body).group(1))]
        descriptor = objects[_reference(descendant, b"FontDescriptor")]
        font = TTFont(io.BytesIO(_stream(objects[_reference(descriptor, b"FontFile2")])))
        order, metrics, units = font.getGlyphOrder(), font["hmtx"].metrics, font["head"].unitsPerEm
        advances = {index: metrics[name][0] / units for index, name in enumerate(order)}
        fonts[number] = (glyphs, advances)
    pages = []
    page_numbers = [number for number, body in objects.items() if re.search(rb"/Type /Page\b(?!s)", body)]
    for number in sorted(page_numbers):
        body = objects[number]
        names = {name.decode(): int(reference)
                 for name, reference in re.findall(rb"/(\w+) (\d+) 0 R", body.split(b"/Font <<", 1)[1].split(b">>", 1)[0])}
        content = _stream(objects[_reference(body, b"Contents")]).decode("ascii")
        texts = []
        for font_name, size, spacing, x, y, hexes in re.findall(
            r"BT /(\w+) ([\d.]+) Tf [\d. ]+ rg ([\d.-]+) Tc ([\d.-]+) ([\d.-]+) Td <([0-9a-f]*)> Tj ET", content
        ):
            glyphs, advances = fonts[names[font_name]]
            ids = [int(hexes[index:index + 4], 16) for index in range(0, len(hexes), 4)]
            width = sum(advances[glyph] for glyph in ids) * float(size) + float(spacing) * len(ids)
            texts.append(Text(float(x), A4[1] - float(y), float(size), "".join(glyphs[glyph] for glyph in ids), width))
        pages.append(texts)
    return pages


def page_text(page: list[Text]) -> str:
    return " ".join(text.text for text in page)


@pytest.fixture(scope="module")
def html(issued: Path) -> str:
    return (issued / "invoices" / f"{NUMBER}.html").read_text(encoding="utf-8")


def long_invoice(html: str, rows: int) -> str:
    """The hand-worked invoice with ``rows`` more usage lines (numbered 101, 102, ...), the last
    one with a description of one unbreakable 300-character word."""
    extra = []
    for index in range(rows):
        number = 101 + index
        label = "X" * 300 if index == rows - 1 else f"Extra tier {number}"
        extra.append(f'\n    <tr class="item indented"><td class="line">{number}</td><td class="description">{label}</td>'
                     f'<td class="num">1</td><td class="num">1.00</td><td class="num">{number}.00</td></tr>')
    return html.replace("\n  </tbody>\n</table>\n\n<table class=\"totals\">",
                        "".join(extra) + "\n  </tbody>\n</table>\n\n<table class=\"totals\">", 1)


def test_the_pdf_says_what_the_html_says(issued: Path) -> None:
    pdf = (issued / "invoices" / f"{NUMBER}.pdf").read_bytes()
    assert b"/Producer (Meterhouse)" in pdf  # the direct renderer drew the issued invoice
    pages = read_pages(pdf)
    text = " ".join(page_text(page) for page in pages)
    # the hand-worked lines (tests/invoicing/ledger.py) and the total 262.20: the due box,
    # the subtotal and the total
    for amount in ("50.00", "199.00", "4.50", "1.00", "5.00", "2.70"):
        assert amount in [item.text for page in pages for item in page]
    assert text.count("262.20 USD") == 3
    for phrase in ("Invoice", NUMBER, "Fixed fee · 3+", "Charged once when usage enters the tier",
                   "1 event during the free trial, not charged", "Lumen Analytics GmbH", "Friedrichstraße 123",
                   "Tax ID DE123456789", "IBAN DE89 3704 0044 0532 0130 00", "Danke.", "TOTAL DUE",
                   "Usage by credential", "TRIAL QUANTITY", "prod-key"):
        assert phrase in text, phrase
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in page_text(page)
        assert f"Invoice {NUMBER}" in page_text(page)
    # document info: the invoice date, no random file identifier
    assert b"/CreationDate (D:20261101000000Z)" in pdf and b"/ModDate (D:20261101000000Z)" in pdf
    assert b"/Title (Invoice MH-2026-000001)" in pdf and b"/ID" not in pdf


def test_a_long_invoice_breaks_across_pages_with_the_table_header_repeated(html: str) -> None:
    pages = read_pages(invoice_pdf.render(long_invoice(html, 120)))
    assert len(pages) >= 4  # 130 lines of ~7 mm on pages of 261 mm
    numbers = [item.text for page in pages for item in page if item.size == 7.8 and item.text.isdigit()]
    assert numbers == [str(number) for number in [*range(1, 11), *range(101, 221)]]  # each line once, in order
    for page in pages:
        if any(item.text.isdigit() and item.size == 7.8 for item in page):
            assert "DESCRIPTION" in page_text(page) and "AMOUNT (USD)" in page_text(page)
    for number in (150, 219):  # a row is never split: its description and amount on one page
        on_page = [index for index, page in enumerate(pages) for item in page if item.text == f"Extra tier {number}"]
        assert [index for index, page in enumerate(pages) for item in page if item.text == f"{number}.00"] == on_page
    assert "Total due" in page_text(pages[-1]) or "Total due" in page_text(pages[-2])


def test_nothing_is_drawn_outside_the_page_margins(html: str) -> None:
    long_name = html.replace("Acme Corp", "Acme " + "Subsidiary" * 12)  # one long unbreakable word
    pages = read_pages(invoice_pdf.render(long_invoice(long_name, 40)))
    wrapped = [item for page in pages for item in page if set(item.text) == {"X"}]
    assert sum(len(item.text) for item in wrapped) == 300 and len(wrapped) > 1  # the long word broke
    for page in pages:
        for item in page:
            assert item.x >= MARGINS["left"] - 0.01, item
            assert item.x + item.width <= A4[0] - MARGINS["right"] + 0.01, item
            if item.text.startswith(("Page ", "Invoice MH-")) and item.size == 7.5:
                assert A4[1] - MARGINS["bottom"] < item.baseline < A4[1], item  # the page footer
            else:
                assert MARGINS["top"] < item.baseline <= A4[1] - MARGINS["bottom"], item


def test_the_logo_is_an_image_with_its_own_size(issued: Path) -> None:
    pdf = (issued / "invoices" / f"{NUMBER}.pdf").read_bytes()
    images = [body for body in _objects(pdf).values() if b"/Subtype /Image" in body and b"/DeviceRGB" in body]
    assert len(images) == 1 and b"/Width 1 /Height 1" in images[0]  # the 1x1 PNG of the branding


def test_the_same_html_gives_the_same_bytes_with_cold_caches(html: str) -> None:
    first = invoice_pdf.render(html)
    invoice_pdf.fonts.cache_clear()
    invoice_pdf.decode_logo.cache_clear()
    assert invoice_pdf.render(html) == first
    assert invoice_pdf.render(html.replace("Acme Corp", "Åcme Çorp")) != first  # another glyph subset


def test_html_it_cannot_draw_goes_to_weasyprint(html: str) -> None:
    svg = base64.b64encode(b'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="10"/>').decode()
    with_svg_logo = re.sub(r'src="data:image/png;base64,[^"]*"', f'src="data:image/svg+xml;base64,{svg}"', html)
    with_cjk_name = html.replace("Acme Corp", "株式会社 Acme")
    with_cjk_credential = html.replace("<td>prod-key</td>", "<td>本番キー</td>")  # in the breakdown's widths
    for document in (with_svg_logo, with_cjk_name, with_cjk_credential):
        with pytest.raises(invoice_pdf.UnsupportedDocument):
            invoice_pdf.render(document)
        assert render.render_pdf(document, MOMENT) == render.render_pdf_with_weasyprint(document, MOMENT)
        assert b"/Producer (Meterhouse)" not in render.render_pdf(document, MOMENT)


def test_a_pdf_issued_by_weasyprint_stays_that_pdf(issued: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(issued, tmp_path / "copy"))
    for document in (root / "invoices").iterdir():
        document.unlink()
    with duckdb.connect(str(root / "warehouse.duckdb")) as connection:
        connection.execute("update marts.invoices set document_sha256 = null, pdf_sha256 = null")
        # issued as before the direct renderer
        render.write_invoice_documents(connection, root, NUMBER, pdf_renderer=render.render_pdf_with_weasyprint)
        earlier = (root / "invoices" / f"{NUMBER}.pdf").read_bytes()
        assert b"/Producer (Meterhouse)" not in earlier
        render.verify_documents(connection, root, NUMBER)  # still verifies
        (root / "invoices" / f"{NUMBER}.pdf").unlink()
        render.write_invoice_documents(connection, root, NUMBER)  # written again: the same bytes
        assert (root / "invoices" / f"{NUMBER}.pdf").read_bytes() == earlier
        render.verify_documents(connection, root, NUMBER)


@pytest.mark.parametrize("width_mm", [20, 60])
def test_wrapping_keeps_every_character_in_order_and_within_the_width(width_mm: float) -> None:
    style = invoice_pdf.Style()
    words = "DocSum Summaries recurring charge (prorated: 20 days of 31 days) " + "Z" * 90 + " tail"
    lines = invoice_pdf.wrap([(words, style)], width_mm * MM)
    assert len(lines) > 1
    assert all(sum(invoice_pdf.run_width(text, run) for text, run in line) <= width_mm * MM + 0.01 for line in lines)
    assert "".join(text for line in lines for text, _style in line).replace(" ", "") == words.replace(" ", "")


class _ReferenceTree(HTMLParser):
    """html.parser's reading of a document, as the tree pdf.parse_html builds."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = invoice_pdf.Node("#document", {})
        self.open = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = invoice_pdf.Node(tag, {name: value or "" for name, value in attrs})
        self.open[-1].children.append(node)
        if tag not in invoice_pdf._VOID:  # the elements html.parser never sees closed
            self.open.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.open) - 1, 0, -1):
            if self.open[depth].tag == tag:
                del self.open[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.open[-1].children.append(data)


def test_the_invoice_html_is_read_as_html_parser_reads_it(html: str) -> None:
    """parse_html is one regular expression over the template's output; html.parser is the
    reference, on the issued invoice, a long one, and markup the template could grow into."""
    unusual = html.replace("<body>", """<body>
<!-- a comment with <tags> in it --><?pi x?>
<DIV Class='upper' data-x=bare hidden data-q="a &quot;b&quot; &amp; c">R&amp;D &lt;b&gt; caf&eacute; &#x41;&#66; 5 &lt; 6</DIV>
<p class="a"/>
<span>one<br/>two<br>three</span><div><span>unclosed</div>
<style>body > p::after { content: "</p>"; }</style>""", 1)
    assert unusual != html
    for document in (html, long_invoice(html, 40), unusual):
        reference = _ReferenceTree()
        reference.feed(document)
        reference.close()
        assert invoice_pdf.parse_html(document) == reference.root
