"""Invoice PDFs drawn straight from the invoice's HTML: ~100x cheaper than laying the HTML out
with WeasyPrint (0.15-0.2 CPU-s a document, which made 10 K invoices ~14 minutes on 2 cores).

The input is the very HTML bytes of the issued invoice (``invoice.html.j2``), so the PDF still
says exactly what the HTML says: this module reads that template's structure (the masthead,
heading, parties, line table, totals, credential breakdown, notes and footer, by their classes)
and draws it on A4 pages with the template's print measurements, fonts and colours. What it
cannot draw exactly is refused with ``UnsupportedDocument`` and the caller renders that
document with WeasyPrint instead: HTML of another shape, an SVG logo, or a character the
DejaVu fonts have no glyph for (WeasyPrint falls back to another system font there).

Reproducible: no clock, no random file identifier (no ``/ID``), the document dates from the
HTML's ``dcterms.created``/``dcterms.modified``, fonts subset deterministically (the subset of
printable ASCII plus the document's other characters) and streams compressed with zlib.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import re
import zlib
from dataclasses import dataclass, field, replace
from datetime import datetime
from html import unescape

PAGE_WIDTH, PAGE_HEIGHT = 595.28, 841.89  # A4 in points
MM = 72 / 25.4
PX = 0.75  # a CSS pixel, in points
MARGIN_TOP, MARGIN_RIGHT, MARGIN_BOTTOM, MARGIN_LEFT = 16 * MM, 15 * MM, 20 * MM, 15 * MM
CONTENT_WIDTH = PAGE_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
CONTENT_BOTTOM = PAGE_HEIGHT - MARGIN_BOTTOM

FONT_FILES = {
    "regular": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "bold": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
}
# every document embeds at least these glyphs, so most documents share one cached subset per font
BASE_CHARACTERS = frozenset(chr(code) for code in range(32, 127)) | frozenset("–·…")

TEXT, MUTED, SECONDARY, FAINT = "#1f2933", "#7b8794", "#52606d", "#9aa5b1"
BORDER, HAIRLINE, SECTION_FILL = "#d9dee4", "#e4e7eb", "#f5f7fa"


class UnsupportedDocument(ValueError):
    """This HTML needs the general renderer (WeasyPrint)."""


# --- the HTML as a small tree ---------------------------------------------------------------

_VOID = {"br", "img", "meta", "col", "link", "hr", "input"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list = field(default_factory=list)  # Node or str

    @functools.cached_property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @functools.cached_property
    def descendants(self) -> list[Node]:
        """Every element inside this one, in document order (built once: the tree is not changed)."""
        found = []
        for child in self.children:
            if isinstance(child, Node):
                found.append(child)
                found.extend(child.descendants)
        return found

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        return [node for node in self.descendants
                if (tag is None or node.tag == tag) and (cls is None or cls in node.classes)]

    def find(self, tag: str | None = None, cls: str | None = None) -> Node:
        found = self.find_all(tag, cls)
        if not found:
            raise UnsupportedDocument(f"no <{tag or '*'} class={cls!r}> in the invoice HTML")
        return found[0]

    def elements(self, tag: str | None = None) -> list[Node]:
        return [child for child in self.children if isinstance(child, Node) and (tag is None or child.tag == tag)]

    def text(self) -> str:
        return "".join(child if isinstance(child, str) else child.text() for child in self.children)


# The template's HTML (Jinja-escaped, so a "<" in text or attributes is always an entity) read
# with one regular expression: ~0.4 ms an invoice where html.parser took ~0.9 ms (the whole PDF
# 3.7 -> 3.5 ms). A test holds the tree to html.parser's (tests/invoicing/test_pdf.py).
_MARKUP = re.compile(
    r"<!--.*?-->|<![^>]*>|<\?[^>]*>"  # comments, the doctype, processing instructions: skipped
    r"|</([a-zA-Z][^\s/>]*)[^>]*>"  # an end tag
    r"|<([a-zA-Z][^\s/>]*)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>",  # a start tag and its attributes
    re.S,
)
_ATTRIBUTE = re.compile(r"""([^\s/>"'=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>"']+)))?""")
_RAW_TEXT = {"style": re.compile(r"</style\s*>", re.I), "script": re.compile(r"</script\s*>", re.I)}


def parse_html(html: str) -> Node:
    """The document as a tree of ``Node``s and text (entities decoded, as html.parser does)."""
    root = Node("#document", {})
    open_nodes = [root]
    position, size = 0, len(html)
    while position < size:
        markup = _MARKUP.search(html, position)
        text_end = markup.start() if markup else size
        if text_end > position:
            open_nodes[-1].children.append(unescape(html[position:text_end]))
        if markup is None:
            break
        position = markup.end()
        end_tag, start_tag, attributes = markup.groups()
        if end_tag:  # closes the innermost open element of that name, and those inside it
            tag = end_tag.lower()
            for depth in range(len(open_nodes) - 1, 0, -1):
                if open_nodes[depth].tag == tag:
                    del open_nodes[depth:]
                    break
        elif start_tag:
            tag = start_tag.lower()
            # findall gives "" for a missing value: a bare attribute is "", as in html.parser
            node = Node(tag, {name.lower(): unescape(double or single or bare)
                              for name, double, single, bare in _ATTRIBUTE.findall(attributes)})
            open_nodes[-1].children.append(node)
            if tag in _VOID or attributes.rstrip().endswith("/"):
                continue
            open_nodes.append(node)
            if tag in _RAW_TEXT:  # a stylesheet or script: text up to its end tag, not markup
                close = _RAW_TEXT[tag].search(html, position)
                text_end = close.start() if close else size
                if text_end > position:
                    node.children.append(html[position:text_end])
                position = text_end
    return root


# --- fonts ----------------------------------------------------------------------------------


class Font:
    """One TrueType font: advance widths for layout, and subsets to embed."""

    def __init__(self, key: str, path: str) -> None:
        from fontTools.ttLib import TTFont

        self.key, self.path = key, path
        font = TTFont(path, lazy=True)
        self.units = font["head"].unitsPerEm
        self.cmap = font.getBestCmap()
        metrics = font["hmtx"].metrics
        self.advance = {code: metrics[name][0] / self.units for code, name in self.cmap.items()}
        hhea, head, os2 = font["hhea"], font["head"], font["OS/2"]
        self.ascent, self.descent = hhea.ascent / self.units, -hhea.descent / self.units
        self.bbox = [round(value * 1000 / self.units) for value in (head.xMin, head.yMin, head.xMax, head.yMax)]
        self.cap_height = getattr(os2, "sCapHeight", hhea.ascent) * 1000 / self.units
        self.postscript_name = font["name"].getDebugName(6) or key
        font.close()

    def width(self, text: str, size: float, letter_spacing: float = 0.0) -> float:
        return self._em_width(text) * size + letter_spacing * len(text)

    @functools.lru_cache(maxsize=65_536)  # noqa: B019 - one Font per process; labels and numbers repeat
    def _em_width(self, text: str) -> float:
        try:
            return sum(self.advance[ord(char)] for char in text)
        except KeyError:
            self.check(text)  # names the character
            raise

    def check(self, text: str) -> None:
        for char in text:
            if ord(char) not in self.cmap:
                raise UnsupportedDocument(f"no glyph for {char!r} in {self.postscript_name}")

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one Font per process, kept for its life
    def subset(self, characters: frozenset[str]) -> tuple[bytes, int, dict[str, int], list[int]]:
        """The font cut down to ``characters``: its bytes compressed (zlib) and their
        uncompressed length, each character's glyph id in it and the advance width of every glyph
        (in 1/1000 em)."""
        from fontTools import subset as subsetting
        from fontTools.ttLib import TTFont

        options = subsetting.Options()
        options.hinting = False
        options.layout_features = []
        options.name_IDs = []
        options.notdef_outline = True
        options.drop_tables += ["GPOS", "GSUB", "GDEF", "kern", "FFTM", "BASE", "JSTF", "MATH"]
        font = TTFont(self.path, lazy=True, recalcTimestamp=False)  # no wall clock in the embedded font
        subsetter = subsetting.Subsetter(options)
        subsetter.populate(text="".join(sorted(characters)))
        subsetter.subset(font)
        output = io.BytesIO()
        font.save(output)
        order = font.getGlyphOrder()
        glyph_ids = {name: index for index, name in enumerate(order)}
        cmap = font.getBestCmap()
        metrics = font["hmtx"].metrics
        units = font["head"].unitsPerEm
        widths = [round(metrics[name][0] * 1000 / units) for name in order]
        glyphs = {chr(code): glyph_ids[name] for code, name in cmap.items()}
        return zlib.compress(output.getvalue(), 6), len(output.getvalue()), glyphs, widths


@functools.cache
def fonts() -> dict[str, Font]:
    try:
        return {key: Font(key, path) for key, path in FONT_FILES.items()}
    except OSError as error:
        raise UnsupportedDocument(f"DejaVu fonts not found: {error}") from error


# --- text styles and inline content ---------------------------------------------------------


@dataclass(frozen=True)
class Style:
    size: float = 9.0
    bold: bool = False
    color: str = TEXT
    uppercase: bool = False
    letter_spacing: float = 0.0  # in em
    line_height: float = 1.4  # a factor of the size

    @property
    def font(self) -> Font:
        return fonts()["bold" if self.bold else "regular"]


LABEL = Style(size=6.8, bold=True, color=MUTED, uppercase=True, letter_spacing=0.06)
HEADER = Style(size=6.8, bold=True, color=SECONDARY, uppercase=True, letter_spacing=0.06)

# how a class or tag changes the text style inside it (the template's stylesheet, print media)
_INLINE_STYLES = {
    "strong": {"bold": True},
    "b": {"bold": True},
    "muted": {"color": MUTED},
    "title": {"bold": True},
    "meta": {"size": 7.8, "color": SECONDARY},
    "detail": {"size": 7.6, "color": MUTED},
    "label": {"size": 6.8, "bold": True, "color": MUTED, "uppercase": True, "letter_spacing": 0.06},
}
_BLOCKS = {"div", "p", "h1", "h2", "table", "tr", "footer"}
_BLOCK_CLASSES = {"detail", "label"}

Run = tuple[str, Style]


def inline_lines(node: Node, style: Style) -> list[list[Run]]:
    """The node's text as lines of styled runs: ``<br>`` and block children break lines, white
    space collapses as in HTML."""
    lines: list[list[Run]] = [[]]

    def walk(current: Node | str, current_style: Style) -> None:
        if isinstance(current, str):
            text = re.sub(r"\s+", " ", current)
            if current_style.uppercase:
                text = text.upper()
            if text:
                lines[-1].append((text, current_style))
            return
        if current.tag == "br":
            lines.append([])
            return
        if current.tag == "img":
            raise UnsupportedDocument("an image inside text")
        changes: dict = {}
        for name in [current.tag, *sorted(current.classes)]:
            changes.update(_INLINE_STYLES.get(name, {}))
        inner = replace(current_style, **changes) if changes else current_style
        block = current.tag in _BLOCKS or bool(current.classes & _BLOCK_CLASSES)
        if block and lines[-1]:
            lines.append([])
        for child in current.children:
            walk(child, inner)
        if block and lines[-1]:
            lines.append([])

    for child in node.children:
        walk(child, style)
    return [trimmed for line in lines if (trimmed := _trim(line))]


def _trim(line: list[Run]) -> list[Run]:
    """Collapse the spaces between runs and drop them at both ends of a line."""
    merged: list[Run] = []
    for text, style in line:
        if merged and merged[-1][0].endswith(" ") and text.startswith(" "):
            text = text[1:]
        if not merged and text.startswith(" "):
            text = text.lstrip(" ")
        if text:
            merged.append((text, style))
    while merged and merged[-1][0].endswith(" "):
        text, style = merged[-1]
        text = text.rstrip(" ")
        merged[-1:] = [(text, style)] if text else []
    return merged


def _check(runs: list[Run]) -> None:
    for text, style in runs:
        style.font.check(text)


def run_width(text: str, style: Style) -> float:
    return style.font.width(text, style.size, style.letter_spacing * style.size)


def wrap(runs: list[Run], width: float) -> list[list[Run]]:
    """Break a line of runs into lines no wider than ``width``: at spaces, and inside a word
    that does not fit on a line of its own (``overflow-wrap: anywhere``)."""
    _check(runs)
    pieces: list[Run] = []  # words with their trailing space
    for text, style in runs:
        pieces.extend((word, style) for word in re.findall(r"\S+\s*|\s+", text))
    lines: list[list[Run]] = [[]]
    used = 0.0
    for word, style in pieces:
        bare = word.rstrip(" ")
        if lines[-1] and used + run_width(bare, style) > width + 0.01:
            lines.append([])
            used = 0.0
            word = word.lstrip(" ")
            bare = word.rstrip(" ")
        while run_width(bare, style) > width + 0.01 and len(bare) > 1:
            cut = 1
            while cut < len(bare) and run_width(bare[:cut + 1], style) <= width - used:
                cut += 1
            if used and cut == 1 and run_width(bare[:1], style) > width - used:
                lines.append([])
                used = 0.0
                continue
            lines[-1].append((bare[:cut], style))
            lines.append([])
            used = 0.0
            word, bare = word[cut:], bare[cut:]
        if word:
            lines[-1].append((word, style))
            used += run_width(word, style)
    return [_merged(trimmed) for line in lines if (trimmed := _trim(line))] or [[]]


def _merged(line: list[Run]) -> list[Run]:
    """Neighbouring runs of one style as one run: one text operation per run of text."""
    merged: list[Run] = []
    for text, style in line:
        if merged and merged[-1][1] == style:
            merged[-1] = (merged[-1][0] + text, style)
        else:
            merged.append((text, style))
    return merged


def line_box(line: list[Run], base: Style) -> tuple[float, float]:
    """A line's height and its baseline's offset from the line's top. The parent's strut counts,
    except on a line whose text is all smaller than the parent's: in the template those are the
    lines of smaller block elements (labels, details), whose strut is their own."""
    strut = base
    if line and all(style.size < base.size for _text, style in line):
        strut = max((style for _text, style in line), key=lambda style: style.size)
    size = max([strut.size] + [style.size for _text, style in line])
    height = max([strut.size * strut.line_height] + [style.size * style.line_height for _text, style in line])
    font = strut.font
    return height, (height - (font.ascent + font.descent) * size) / 2 + font.ascent * size


def lines_height(lines: list[list[Run]], base: Style) -> float:
    return sum(line_box(line, base)[0] for line in lines)


# --- pages ----------------------------------------------------------------------------------


def _color(hex_color: str) -> str:
    red, green, blue = (int(hex_color[index:index + 2], 16) / 255 for index in (1, 3, 5))
    return f"{red:.3f} {green:.3f} {blue:.3f}"


def _number(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class Pages:
    """Drawing operations per page, y measured down from the top of the page."""

    def __init__(self) -> None:
        self.pages: list[list[str | tuple[str, str, str]]] = []
        self.used: dict[str, set[str]] = {"regular": set(), "bold": set()}
        self.images: set[str] = set()
        self.new_page()

    def new_page(self) -> None:
        self.pages.append([])
        self.y = MARGIN_TOP

    @property
    def ops(self) -> list[str | tuple[str, str, str]]:
        return self.pages[-1]

    def text(self, x: float, baseline: float, text: str, style: Style, page: list | None = None) -> None:
        if not text:
            return
        font = style.font
        font.check(text)
        self.used[font.key].update(text)
        spacing = style.letter_spacing * style.size
        # the glyph ids are known once the fonts are subset, at the end (render)
        (self.ops if page is None else page).append((
            f"BT /{font.key} {_number(style.size)} Tf {_color(style.color)} rg {_number(spacing)} Tc"
            f" {_number(x)} {_number(PAGE_HEIGHT - baseline)} Td", font.key, text,
        ))

    def runs(self, x: float, baseline: float, line: list[Run], align_right_at: float | None = None) -> None:
        if align_right_at is not None:
            x = align_right_at - sum(run_width(text, style) for text, style in line)
        for text, style in line:
            self.text(x, baseline, text, style)
            x += run_width(text, style)

    def paragraph(self, x: float, top: float, lines: list[list[Run]], base: Style,
                  right: float | None = None) -> float:
        """Draw lines from ``top``; right-aligned at ``right`` when given. Returns the bottom."""
        for line in lines:
            height, baseline = line_box(line, base)
            self.runs(x, top + baseline, line, right)
            top += height
        return top

    def fill(self, x: float, y: float, width: float, height: float, color: str) -> None:
        self.ops.append(f"{_color(color)} rg {_number(x)} {_number(PAGE_HEIGHT - y - height)}"
                        f" {_number(width)} {_number(height)} re f")

    def rule(self, x: float, y: float, width: float, thickness: float, color: str) -> None:
        """A horizontal border of ``thickness`` whose top edge is at ``y``."""
        self.fill(x, y, width, thickness, color)

    def image(self, name: str, x: float, y: float, width: float, height: float) -> None:
        self.images.add(name)
        self.ops.append(f"q {_number(width)} 0 0 {_number(height)} {_number(x)} {_number(PAGE_HEIGHT - y - height)}"
                        f" cm /{name} Do Q")


# --- the invoice ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Logo:
    """The branding logo's pixels, compressed once per process (every invoice carries it)."""

    width: int
    height: int
    rgb: bytes  # zlib-compressed 8-bit RGB
    alpha: bytes | None  # zlib-compressed 8-bit alpha, when not fully opaque


@functools.lru_cache(maxsize=4)
def decode_logo(data_uri: str) -> Logo:
    match = re.match(r"data:(image/[a-z+]+);base64,(.*)$", data_uri, re.S)
    if match is None or match.group(1) == "image/svg+xml":
        raise UnsupportedDocument("the logo is not a raster data: URI")
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(match.group(2)))) as image:
        image.seek(0)
        converted = image.convert("RGBA")
    rgb = zlib.compress(converted.convert("RGB").tobytes(), 6)
    alpha = converted.getchannel("A")
    alpha_bytes = None if alpha.getextrema() == (255, 255) else zlib.compress(alpha.tobytes(), 6)
    return Logo(converted.width, converted.height, rgb, alpha_bytes)


@dataclass
class Invoice:
    """What the template printed, read back from the HTML."""

    html: Node
    number_footer: str
    accent: str
    info: dict[str, str]


def _meta(tree: Node) -> dict[str, str]:
    meta = {node.attrs.get("name"): node.attrs.get("content", "") for node in tree.find_all("meta")}
    return {
        "title": tree.find("title").text().strip(),
        "author": meta.get("author", ""),
        "subject": meta.get("description", ""),
        "creator": meta.get("generator", ""),
        "created": meta.get("dcterms.created", ""),
        "modified": meta.get("dcterms.modified", ""),
    }


def _read(html: str) -> Invoice:
    tree = parse_html(html)
    style = tree.find("style").text()
    footer = re.search(r'@bottom-left\s*\{\s*content:\s*"((?:[^"\\]|\\.)*)"', style)
    accent = re.search(r"--accent:\s*(#[0-9A-Fa-f]{6})", style)
    if footer is None or accent is None:
        raise UnsupportedDocument("the stylesheet is not the invoice template's")
    return Invoice(tree.find("body"), footer.group(1).replace('\\"', '"'), accent.group(1), _meta(tree))


def _cells(row: Node) -> list[Node]:
    return [cell for cell in row.elements() if cell.tag in ("td", "th")]


def _draw_masthead(pages: Pages, invoice: Invoice) -> None:
    masthead = invoice.html.find("table", "masthead")
    brand, seller = masthead.find("td", "brand"), masthead.find("td", "seller")
    base = Style(size=8, color=SECONDARY, line_height=1.5)
    seller_lines = inline_lines(seller, base)
    for line in seller_lines:
        for index, (text, style) in enumerate(line):
            if style.bold:
                line[index] = (text, replace(style, size=9.5, color=TEXT))
    seller_height = lines_height(seller_lines, base)
    images = brand.find_all("img")
    if images:
        logo = decode_logo(images[0].attrs.get("src", ""))
        scale = min(16 * MM / logo.height, 70 * MM / logo.width, PX)  # max 16 x 70 mm, else its own size
        brand_height, brand_width = logo.height * scale, logo.width * scale
    else:
        logo_style = Style(size=22, bold=True, color=invoice.accent, letter_spacing=0.04)
        logo_lines = inline_lines(brand, logo_style)
        logo_lines = [[(text, logo_style) for text, _style in line] for line in logo_lines]
        brand_height = lines_height(logo_lines, logo_style)
    height = max(seller_height, brand_height)
    top = pages.y
    if images:
        pages.image("Logo", MARGIN_LEFT, top + (height - brand_height) / 2, brand_width, brand_height)
    else:
        pages.paragraph(MARGIN_LEFT, top + (height - brand_height) / 2, logo_lines, logo_style)
    pages.paragraph(MARGIN_LEFT, top + (height - seller_height) / 2, seller_lines, base,
                    right=MARGIN_LEFT + CONTENT_WIDTH)
    pages.y = top + height
    invoice.html.find("div", "rule")  # the accent rule under the masthead (refused if the template lost it)
    pages.y += 5 * MM
    pages.rule(MARGIN_LEFT, pages.y, CONTENT_WIDTH, 3 * PX, invoice.accent)
    pages.y += 3 * PX + 7 * MM


def _draw_heading(pages: Pages, invoice: Invoice) -> None:
    heading = invoice.html.find("table", "heading")
    title_style, number_style = Style(size=20, bold=True), Style(size=10.5, color=SECONDARY)
    title = [[(heading.find("h1").text().strip(), title_style)]]
    number = [[(heading.find("div", "number").text().strip(), number_style)]]
    left_height = lines_height(title, title_style) + 1 * MM + lines_height(number, number_style)
    due = heading.find("td", "due")
    label = [[(due.find("div", "label").text().strip().upper(), LABEL)]]
    amount_style = Style(size=15, bold=True)
    amount = [[(due.find("div", "amount").text().strip(), amount_style)]]
    box_width, pad_x, pad_y = 58 * MM, 4 * MM, 3 * MM
    inner = lines_height(label, Style()) + 3 * PX + lines_height(amount, amount_style)
    box_height = 3 * PX + PX + 2 * pad_y + inner
    height = max(left_height, box_height)
    top = pages.y
    # vertical-align: bottom for both cells
    left_top = top + height - left_height
    after_title = pages.paragraph(MARGIN_LEFT, left_top, title, title_style)
    pages.paragraph(MARGIN_LEFT, after_title + 1 * MM, number, number_style)
    box_left, box_top = MARGIN_LEFT + CONTENT_WIDTH - box_width, top + height - box_height
    pages.fill(box_left, box_top, box_width, box_height, BORDER)
    pages.fill(box_left + PX, box_top + 3 * PX, box_width - 2 * PX, box_height - 4 * PX, "#ffffff")
    pages.fill(box_left, box_top, box_width, 3 * PX, invoice.accent)
    right = box_left + box_width - PX - pad_x
    inner_top = box_top + 3 * PX + pad_y
    after_label = pages.paragraph(0, inner_top, label, Style(), right=right) + 3 * PX
    pages.paragraph(0, after_label, amount, amount_style, right=right)
    pages.y = top + height


def _draw_parties(pages: Pages, invoice: Invoice) -> None:
    parties = invoice.html.find("table", "parties")
    cells = _cells(parties.find("tr"))
    if len(cells) != 3:
        raise UnsupportedDocument("the parties table has not three columns")
    pages.y += 7 * MM
    top = pages.y
    base = Style(line_height=1.5)
    widths = [0.31 * CONTENT_WIDTH, 0.31 * CONTENT_WIDTH, 0.38 * CONTENT_WIDTH]
    x, bottom = MARGIN_LEFT, top
    for index, cell in enumerate(cells):
        width = widths[index] - (5 * MM if index < 2 else 0)
        facts = cell.find_all("table", "facts")
        label = cell.find("div", "label")
        y = pages.paragraph(x, top, wrap([(label.text().strip().upper(), LABEL)], width), base) + 3 * PX
        if facts:
            rows = [_cells(row) for row in facts[0].find_all("tr")]
            key_width = max(run_width(key.text().strip(), Style(color=MUTED)) for key, _value in rows) + 3 * MM
            for key, value in rows:
                line_key = [(key.text().strip(), Style(color=MUTED))]
                line_value = [(re.sub(r"\s+", " ", value.text()).strip(), Style())]
                height, baseline = line_box(line_value, base)
                pages.runs(x, y + baseline, line_key)
                pages.runs(x + key_width, y + baseline, line_value)
                y += height + PX
        else:
            content = Node("td", {}, [child for child in cell.children if child is not label])
            y = pages.paragraph(x, y, _block_lines(content, base, width), base)
        bottom = max(bottom, y)
        x += widths[index]
    pages.y = bottom + 6 * MM


# the line table's columns (template: col.line 8mm, quantity 27mm, rate 24mm, amount 30mm)
_LINE_COLUMNS = (8 * MM, None, 27 * MM, 24 * MM, 30 * MM)
CELL_PAD_X = 2 * MM


def _column_edges(widths: tuple[float | None, ...], total: float) -> list[tuple[float, float]]:
    fixed = sum(width for width in widths if width is not None)
    flexible = [width is None for width in widths].count(True)
    edges, x = [], MARGIN_LEFT + CONTENT_WIDTH - total
    for width in widths:
        actual = width if width is not None else (total - fixed) / flexible
        edges.append((x, x + actual))
        x += actual
    return edges


def _header_row(pages: Pages, cells: list[Node], edges: list[tuple[float, float]], numeric: list[bool],
                pad_bottom: float, border: float, border_color: str) -> None:
    """A table's header row, repeated at the top of each page the table continues on."""
    texts = [[(cell.text().strip().upper(), HEADER)] for cell in cells]
    height, baseline = line_box(texts[0], Style())
    top = pages.y
    for (left, right), text, is_number in zip(edges, texts, numeric, strict=True):
        if is_number:
            pages.runs(0, top + baseline, text, align_right_at=right - CELL_PAD_X)
        else:
            pages.runs(left + CELL_PAD_X, top + baseline, text)
    pages.y = top + height + pad_bottom
    pages.rule(edges[0][0], pages.y, edges[-1][1] - edges[0][0], border, border_color)
    pages.y += border


def _draw_lines(pages: Pages, invoice: Invoice) -> None:
    table = invoice.html.find("table", "lines")
    header_cells = _cells(table.find("thead").find("tr"))
    if len(header_cells) != 5:
        raise UnsupportedDocument("the line table has not five columns")
    edges = _column_edges(_LINE_COLUMNS, CONTENT_WIDTH)
    numeric = ["num" in cell.classes for cell in header_cells]

    def header() -> None:
        _header_row(pages, header_cells, edges, numeric, 1.5 * MM, 1.5 * PX, TEXT)

    pages.y += 2 * MM
    header()
    for row in table.find("tbody").find_all("tr"):
        cells = _cells(row)
        if "section" in row.classes:
            left = edges[1][0]
            width = edges[-1][1] - left - 2 * CELL_PAD_X
            lines = _block_lines(cells[1], Style(), width)
            pad = 1.6 * MM
            height = 2 * pad + lines_height(lines, Style()) + 0.5 * PX
            if pages.y + height > CONTENT_BOTTOM:
                pages.new_page()
                header()
            top = pages.y
            pages.fill(edges[0][0], top, edges[-1][1] - edges[0][0], height, SECTION_FILL)
            pages.paragraph(left + CELL_PAD_X, top + pad, lines, Style())
            pages.rule(edges[0][0], top + height - 0.5 * PX, edges[-1][1] - edges[0][0], 0.5 * PX, BORDER)
            pages.y = top + height
            continue
        if len(cells) != 5:
            raise UnsupportedDocument("a line row has not five cells")
        zero = "zero" in row.classes
        indent = 5 * MM if "indented" in row.classes else 0.0
        number_style = Style(size=7.8, color=FAINT)
        laid: list[tuple[float, list[list[Run]], bool]] = []
        for index, cell in enumerate(cells):
            left, right = edges[index]
            pad_left = CELL_PAD_X + (indent if index == 1 else 0.0)
            pad_right = 0.0 if index == 0 else CELL_PAD_X
            base = number_style if index == 0 else Style(color=FAINT if zero and index >= 2 else TEXT)
            lines = []
            for line in inline_lines(cell, base):
                if "num" in cell.classes:
                    _check(line)
                    lines.append(line)
                else:
                    lines.extend(wrap(line, right - left - pad_left - pad_right))
            laid.append((left + pad_left, lines, "num" in cell.classes))
        pad = 1.8 * MM
        content = max(lines_height(lines, Style()) for _x, lines, _num in laid)
        height = 2 * pad + content + 0.5 * PX
        if pages.y + height > CONTENT_BOTTOM:
            pages.new_page()
            header()
        top = pages.y
        for index, (x, lines, is_number) in enumerate(laid):
            right = edges[index][1] - (0.0 if index == 0 else CELL_PAD_X)
            pages.paragraph(x, top + pad, lines, Style(), right=right if is_number else None)
        pages.rule(edges[0][0], top + height - 0.5 * PX, edges[-1][1] - edges[0][0], 0.5 * PX, HAIRLINE)
        pages.y = top + height


def _draw_totals(pages: Pages, invoice: Invoice) -> None:
    table = invoice.html.find("table", "totals")
    width = 80 * MM
    left = MARGIN_LEFT + CONTENT_WIDTH - width
    pages.y += 4 * MM
    rows = table.find_all("tr")
    heights = []
    for row in rows:
        grand = "grand" in row.classes
        style = Style(size=11, bold=True) if grand else Style()
        heights.append((style, (1.5 * PX if grand else 0) + (2 * MM if grand else 1.2 * MM) + 1.2 * MM
                        + line_box([("x", style)], style)[0]))
    if pages.y + sum(height for _style, height in heights) > CONTENT_BOTTOM:
        pages.new_page()
    for row, (style, height) in zip(rows, heights, strict=True):
        label, amount = _cells(row)
        grand = "grand" in row.classes
        top = pages.y
        if grand:
            pages.rule(left, top, width, 1.5 * PX, TEXT)
            top += 1.5 * PX
        pad_top = 2 * MM if grand else 1.2 * MM
        _line_height, baseline = line_box([("x", style)], style)
        pages.runs(left + CELL_PAD_X, top + pad_top + baseline, [(label.text().strip(), style)])
        pages.runs(0, top + pad_top + baseline, [(amount.text().strip(), style)],
                   align_right_at=left + width - CELL_PAD_X)
        pages.y += height


def _draw_breakdown(pages: Pages, invoice: Invoice) -> None:
    found = invoice.html.find_all("div", "breakdown")
    if not found:
        return
    block = found[0]
    table = block.find("table", "breakdown")
    header_cells = _cells(table.find("thead").find("tr"))
    numeric = ["num" in cell.classes for cell in header_cells]
    cell_style = Style(size=8)
    rows = [_cells(row) for row in table.find("tbody").find_all("tr")]
    # CSS's automatic table layout, simplified: each column its widest content and, when that
    # fits, the room left shared in proportion; else the text columns share what the number
    # columns leave (at least 20 mm each), and everything is scaled to fit between the margins
    content_widths = []
    for index in range(len(numeric)):
        texts = [header_cells[index].text().strip().upper()] + [re.sub(r"\s+", " ", row[index].text()).strip()
                                                                for row in rows]
        styles = [HEADER] + [cell_style] * len(rows)
        content_widths.append(max(run_width(text, style) for text, style in zip(texts, styles, strict=True))
                              + 2 * CELL_PAD_X)
    if sum(content_widths) <= CONTENT_WIDTH:
        room = CONTENT_WIDTH - sum(content_widths)
        widths = [width + room * width / sum(content_widths) for width in content_widths]
    else:
        fixed = sum(width for width, is_number in zip(content_widths, numeric, strict=True) if is_number)
        text_width = max((CONTENT_WIDTH - fixed) / max(numeric.count(False), 1), 20 * MM)
        widths = [width if is_number else text_width for width, is_number in zip(content_widths, numeric, strict=True)]
        widths = [width * min(1.0, CONTENT_WIDTH / sum(widths)) for width in widths]
    edges = _column_edges(widths, sum(widths))
    title_style = Style(size=9.5, bold=True)
    title = [[(block.find("h2").text().strip(), title_style)]]

    def row_layout(cells: list[Node]) -> tuple[float, list[list[list[Run]]]]:
        laid = []
        for (left, right), cell, is_number in zip(edges, cells, numeric, strict=True):
            text = [(re.sub(r"\s+", " ", cell.text()).strip(), cell_style)]
            laid.append([text] if is_number else wrap(text, right - left - 2 * CELL_PAD_X))
        return 2 * 1.2 * MM + max(lines_height(lines, cell_style) for lines in laid) + 0.5 * PX, laid

    laid_rows = [row_layout(cells) for cells in rows]
    header_height = line_box([("X", HEADER)], Style())[0] + 1.2 * MM + PX
    title_height = 8 * MM + lines_height(title, title_style) + 2 * MM
    keep = "keep" in block.classes
    needed = title_height + header_height + (sum(h for h, _l in laid_rows) if keep else laid_rows[0][0] if laid_rows else 0)
    if pages.y + needed > CONTENT_BOTTOM:
        pages.new_page()  # a block's top margin is dropped at the top of a page
    else:
        pages.y += 8 * MM
    pages.y = pages.paragraph(MARGIN_LEFT, pages.y, title, title_style) + 2 * MM

    def header() -> None:
        _header_row(pages, header_cells, edges, numeric, 1.2 * MM, PX, FAINT)

    header()
    for height, laid in laid_rows:
        if pages.y + height > CONTENT_BOTTOM:
            pages.new_page()
            header()
        top = pages.y
        for (left, right), lines, is_number in zip(edges, laid, numeric, strict=True):
            pages.paragraph(left + CELL_PAD_X, top + 1.2 * MM, lines, cell_style,
                            right=right - CELL_PAD_X if is_number else None)
        pages.rule(edges[0][0], top + height - 0.5 * PX, edges[-1][1] - edges[0][0], 0.5 * PX, HAIRLINE)
        pages.y = top + height


def _block_lines(node: Node, base: Style, width: float) -> list[list[Run]]:
    """The node's text as lines wrapped to ``width``."""
    lines = []
    for line in inline_lines(node, base):
        lines.extend(wrap(line, width))
    return lines


def _draw_notes(pages: Pages, invoice: Invoice) -> None:
    found = invoice.html.find_all("div", "notes")
    if not found:
        return
    base = Style()
    parts: list[tuple[list[list[Run]], float]] = []
    for child in found[0].elements():
        style = base
        if "muted" in child.classes:
            style = replace(base, color=MUTED)
        lines = _block_lines(Node("div", {}, [child]), style, CONTENT_WIDTH)
        if "muted" in child.classes:
            lines = [[(text, replace(run_style, color=MUTED)) for text, run_style in line] for line in lines]
        after = 3 * PX if "label" in child.classes else 1 * MM
        parts.append((lines, after))
    height = 8 * MM + sum(lines_height(lines, base) + after for lines, after in parts)
    if pages.y + height > CONTENT_BOTTOM:  # kept together
        pages.new_page()
    else:
        pages.y += 8 * MM
    for lines, after in parts:
        pages.y = pages.paragraph(MARGIN_LEFT, pages.y, lines, base) + after


def _draw_footer(pages: Pages, invoice: Invoice) -> None:
    footer = invoice.html.find("footer")
    base = Style(size=7.5, color=MUTED)
    lines = _block_lines(footer, base, CONTENT_WIDTH)
    rule_and_padding = 0.5 * PX + 3 * MM
    if pages.y + 9 * MM + rule_and_padding + line_box(lines[0], base)[0] > CONTENT_BOTTOM:
        pages.new_page()
    else:
        pages.y += 9 * MM
    pages.rule(MARGIN_LEFT, pages.y, CONTENT_WIDTH, 0.5 * PX, BORDER)
    pages.y += rule_and_padding
    for line in lines:
        if pages.y + line_box(line, base)[0] > CONTENT_BOTTOM:
            pages.new_page()
        pages.y = pages.paragraph(MARGIN_LEFT, pages.y, [line], base)


def _draw_page_footers(pages: Pages, invoice: Invoice) -> None:
    style = Style(size=7.5, color=MUTED)
    height, baseline = line_box([("x", style)], style)
    top = CONTENT_BOTTOM + (MARGIN_BOTTOM - height) / 2
    count = len(pages.pages)
    for number, ops in enumerate(pages.pages, start=1):
        pages.text(MARGIN_LEFT, top + baseline, invoice.number_footer, style, page=ops)
        label = f"Page {number} of {count}"
        pages.text(MARGIN_LEFT + CONTENT_WIDTH - run_width(label, style), top + baseline, label, style, page=ops)


def layout(html: str) -> tuple[Pages, Invoice]:
    invoice = _read(html)
    pages = Pages()
    _draw_masthead(pages, invoice)
    _draw_heading(pages, invoice)
    _draw_parties(pages, invoice)
    _draw_lines(pages, invoice)
    _draw_totals(pages, invoice)
    _draw_breakdown(pages, invoice)
    _draw_notes(pages, invoice)
    _draw_footer(pages, invoice)
    _draw_page_footers(pages, invoice)
    return pages, invoice


# --- the PDF file ---------------------------------------------------------------------------


def _pdf_string(text: str) -> bytes:
    """A PDF text string: PDFDocEncoding-safe ASCII as is, anything else as UTF-16BE."""
    if all(32 <= ord(char) < 127 for char in text):
        return b"(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("ascii") + b")"
    return b"<feff" + text.encode("utf-16-be").hex().encode("ascii") + b">"


def _pdf_date(w3c: str) -> bytes:
    """``2026-11-01T00:00:00Z`` as ``(D:20261101000000Z)``."""
    moment = datetime.strptime(w3c, "%Y-%m-%dT%H:%M:%SZ")
    return f"(D:{moment:%Y%m%d%H%M%S}Z)".encode("ascii")


def _to_unicode(glyphs: dict[str, int]) -> bytes:
    entries = sorted((glyph, char) for char, glyph in glyphs.items())
    chunks = []
    for start in range(0, len(entries), 100):
        chunk = entries[start:start + 100]
        body = "\n".join(f"<{glyph:04x}> <{char.encode('utf-16-be').hex()}>" for glyph, char in chunk)
        chunks.append(f"{len(chunk)} beginbfchar\n{body}\nendbfchar")
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<0000> <ffff>\nendcodespacerange\n"
        + "\n".join(chunks) + "\nendcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode("ascii")


class _Writer:
    def __init__(self) -> None:
        self.objects: list[bytes] = []

    def reserve(self) -> int:
        self.objects.append(b"")
        return len(self.objects)

    def set(self, number: int, content: bytes) -> None:
        self.objects[number - 1] = content

    def add(self, content: bytes) -> int:
        number = self.reserve()
        self.set(number, content)
        return number

    def stream(self, data: bytes, entries: bytes = b"", compress: bool = True) -> int:
        if compress:
            data = zlib.compress(data, 6)
            entries += b" /Filter /FlateDecode"
        return self.add(b"<< /Length %d%s >>\nstream\n" % (len(data), entries) + data + b"\nendstream")

    def output(self, root: int, info: int) -> bytes:
        out = io.BytesIO()
        out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        offsets = []
        for number, content in enumerate(self.objects, start=1):
            offsets.append(out.tell())
            out.write(b"%d 0 obj\n" % number + content + b"\nendobj\n")
        xref = out.tell()
        out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(self.objects) + 1))
        for offset in offsets:
            out.write(b"%010d 00000 n \n" % offset)
        out.write(b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
                  % (len(self.objects) + 1, root, info, xref))
        return out.getvalue()


def _embed_font(writer: _Writer, font: Font, used: set[str]) -> tuple[int, dict[str, int]]:
    characters = BASE_CHARACTERS | frozenset(used)
    data, length, glyphs, widths = font.subset(characters)
    tag = "".join(chr(65 + byte % 26) for byte in hashlib.sha256("".join(sorted(characters)).encode()).digest()[:6])
    name = f"{tag}+{font.postscript_name}".encode("ascii", "replace")
    file_number = writer.stream(data, b" /Length1 %d /Filter /FlateDecode" % length, compress=False)
    descriptor = writer.add(
        b"<< /Type /FontDescriptor /FontName /%s /Flags 32 /FontBBox [%s] /ItalicAngle 0 /Ascent %d"
        b" /Descent %d /CapHeight %d /StemV 80 /FontFile2 %d 0 R >>"
        % (name, " ".join(str(value) for value in font.bbox).encode(), round(font.ascent * 1000),
           -round(font.descent * 1000), round(font.cap_height), file_number)
    )
    cid_font = writer.add(
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /%s /CIDSystemInfo << /Registry (Adobe)"
        b" /Ordering (Identity) /Supplement 0 >> /FontDescriptor %d 0 R /CIDToGIDMap /Identity"
        b" /W [0 [%s]] >>" % (name, descriptor, " ".join(str(width) for width in widths).encode())
    )
    to_unicode = writer.stream(_to_unicode({char: glyph for char, glyph in glyphs.items() if char in characters}))
    number = writer.add(
        b"<< /Type /Font /Subtype /Type0 /BaseFont /%s /Encoding /Identity-H /DescendantFonts [%d 0 R]"
        b" /ToUnicode %d 0 R >>" % (name, cid_font, to_unicode)
    )
    return number, glyphs


def render(html: str) -> bytes:
    """The invoice's PDF, or ``UnsupportedDocument`` for HTML this renderer does not draw."""
    pages, invoice = layout(html)
    writer = _Writer()
    catalog, page_tree = writer.reserve(), writer.reserve()
    font_numbers, glyph_maps = {}, {}
    for key in ("regular", "bold"):
        if pages.used[key]:
            font_numbers[key], glyph_maps[key] = _embed_font(writer, fonts()[key], pages.used[key])
    xobjects = b""
    if pages.images:
        logo = decode_logo(invoice.html.find("td", "brand").find("img").attrs["src"])
        mask = b""
        if logo.alpha is not None:
            mask_number = writer.stream(logo.alpha, b" /Type /XObject /Subtype /Image /Width %d /Height %d"
                                        b" /ColorSpace /DeviceGray /BitsPerComponent 8 /Filter /FlateDecode"
                                        % (logo.width, logo.height), compress=False)
            mask = b" /SMask %d 0 R" % mask_number
        image = writer.stream(logo.rgb, b" /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB"
                              b" /BitsPerComponent 8 /Filter /FlateDecode%s" % (logo.width, logo.height, mask),
                              compress=False)
        xobjects = b" /XObject << /Logo %d 0 R >>" % image
    fonts_entry = b" ".join(b"/%s %d 0 R" % (key.encode(), number) for key, number in font_numbers.items())
    resources = b"<< /Font << %s >>%s >>" % (fonts_entry, xobjects)

    def operation(op: str | tuple[str, str, str]) -> str:
        if isinstance(op, str):
            return op
        start, key, text = op
        return start + " <" + "".join(f"{glyph_maps[key][char]:04x}" for char in text) + "> Tj ET"

    kids = []
    for ops in pages.pages:
        content = writer.stream("\n".join(operation(op) for op in ops).encode("ascii"))
        kids.append(writer.add(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %s %s] /Resources %s /Contents %d 0 R >>"
            % (page_tree, _number(PAGE_WIDTH).encode(), _number(PAGE_HEIGHT).encode(), resources, content)
        ))
    writer.set(page_tree, b"<< /Type /Pages /Kids [%s] /Count %d >>"
               % (b" ".join(b"%d 0 R" % kid for kid in kids), len(kids)))
    writer.set(catalog, b"<< /Type /Catalog /Pages %d 0 R >>" % page_tree)
    info = invoice.info
    entries = [b"/Title " + _pdf_string(info["title"]), b"/Producer (Meterhouse)"]
    for key, name in (("author", b"Author"), ("subject", b"Subject"), ("creator", b"Creator")):
        if info[key]:
            entries.append(b"/" + name + b" " + _pdf_string(info[key]))
    for key, name in (("created", b"CreationDate"), ("modified", b"ModDate")):
        if info[key]:
            entries.append(b"/" + name + b" " + _pdf_date(info[key]))
    info_number = writer.add(b"<< " + b" ".join(entries) + b" >>")
    return writer.output(catalog, info_number)
