"""Read the text of a PDF file, page by page, leaving out what is layout and not content.

pdfminer.six (MIT) does the character and line analysis; this module orders what it
finds and decides what is content:

- running headers and footers (a line in the top or bottom margin that repeats on most
  pages, digits aside) and page numbers are left out;
- a two-column page is read column by column: full-width lines (a title, a table row)
  split the page into bands, and each band is read left column first;
- a table's cells on one line become one row, "Cargo | 2024 | 2025", and its rows one
  paragraph (a row alone says little);
- a paragraph that runs on into the next column or page stays one paragraph;
- line ends stay as they are, hyphens included ("infor-\\nmation"): quotes are verbatim
  and `embeddings.lexical.reading_form` joins the word for the index.

The text returned is what citations' offsets point into. Paragraphs are separated by a
blank line, lines of a paragraph by a newline; `pages[i]` is the offset at which page
i + 1 starts. pypdf was measured against pdfminer.six on the test files
(`benchmarks/pdf_extract.py`, docs/benchmarks.md) and reads columns and tables in the
order they were drawn, which is not always the order they are read.
"""

from __future__ import annotations

import io
import logging
import re
from collections import Counter
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)

MARGIN = 0.09  # the top and bottom 9% of a page hold running headers and footers
_PAGE_NUMBER = re.compile(r"^(?:page\s+)?[-–—]?\s*\d{1,4}\s*[-–—]?(?:\s*(?:/|of)\s*\d{1,4})?$",
                          re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?:;…\"”’)。！？」』]\s*$")


class Unreadable(Exception):
    """The PDF can't be read (encrypted, damaged, no text layer); the message says why."""


@dataclass(frozen=True)
class Line:
    text: str
    x0: float
    x1: float
    y0: float
    y1: float


@dataclass(frozen=True)
class Block:
    """Lines that belong together: a box of pdfminer's layout, or a table row."""

    lines: tuple[str, ...]
    x0: float
    x1: float
    top: float
    bottom: float
    height: float  # of one line
    cells: int = 1  # a table row: how many cells
    last_x1: float = 0.0  # where its last line ends
    full: bool = False  # its last line runs to the column's right edge (`_rows`)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass(frozen=True)
class PdfText:
    text: str
    pages: tuple[int, ...]  # start offset of each page in `text`
    title: str | None
    empty_pages: tuple[int, ...]  # 1-based numbers of pages without a text layer


def _signature(text: str) -> str:
    """A line with its digits masked, so "Report 2025 - 3" and "Report 2025 - 4" match."""
    return re.sub(r"\d+", "#", " ".join(text.split()).lower())


def _page_blocks(page) -> tuple[list, float, float]:
    """pdfminer text boxes of a page as (lines, box) pairs, with the page's size."""
    from pdfminer.layout import LTTextBox, LTTextLine

    boxes = []
    for element in page:
        if isinstance(element, LTTextBox):
            lines = [Line(ln.get_text().strip(), *ln.bbox[:1], ln.bbox[2], ln.bbox[1],
                          ln.bbox[3])
                     for ln in element if isinstance(ln, LTTextLine) and ln.get_text().strip()]
            if lines:
                boxes.append(lines)
    x0, y0, x1, y1 = page.bbox
    return boxes, x1 - x0, y1 - y0


def _is_margin(line: Line, height: float) -> bool:
    return line.y0 >= height * (1 - MARGIN) or line.y1 <= height * MARGIN


def margin_lines(boxes: list[list[Line]], height: float) -> list[Line]:
    """The lines of a page that may be a running header, footer or page number: in the
    top or bottom margin, and alone on their baseline (a table row's cells, which share
    one, are content even at the top of a page)."""
    lines = [ln for box in boxes for ln in box]
    out = []
    for ln in lines:
        if not _is_margin(ln, height):
            continue
        tol = 0.5 * (ln.y1 - ln.y0)
        if not any(o is not ln and abs(o.y1 - ln.y1) <= tol for o in lines):
            out.append(ln)
    return out


def running_lines(pages: list[tuple[list, float, float]]) -> set[str]:
    """Signatures of margin lines that repeat on at least half the pages (two at least)."""
    if len(pages) < 2:
        return set()
    seen: Counter = Counter()
    for boxes, _, height in pages:
        seen.update({_signature(ln.text) for ln in margin_lines(boxes, height)})
    return {s for s, n in seen.items() if n >= max(2, (len(pages) + 1) // 2)}


def _aligned(row: list[Line], other: list[Line]) -> bool:
    """True if at least two cells of `row` start where cells of `other` start."""
    if len(other) < 2:
        return False
    return sum(any(abs(c.x0 - o.x0) <= 6 for o in other) for c in row) >= 2


def _rows(boxes: list[list[Line]], width: float) -> list[Block]:
    """Turn boxes into blocks. One-line boxes of short text on the same baseline (table
    cells) join into one row, left to right; a long line stays a block of its own (a
    line of one column beside a line of the other)."""
    cell = width * 0.3
    single = [b[0] for b in boxes if len(b) == 1 and b[0].x1 - b[0].x0 < cell]
    blocks = [Block(tuple(ln.text for ln in b), min(ln.x0 for ln in b),
                    max(ln.x1 for ln in b), max(ln.y1 for ln in b), min(ln.y0 for ln in b),
                    b[0].y1 - b[0].y0, 1, b[-1].x1)
              for b in boxes if len(b) > 1 or b[0].x1 - b[0].x0 >= cell]
    single.sort(key=lambda ln: (-ln.y1, ln.x0))
    rows: list[list[Line]] = []
    for ln in single:
        if rows and abs(ln.y1 - rows[-1][0].y1) <= 0.5 * (rows[-1][0].y1 - rows[-1][0].y0):
            rows[-1].append(ln)
        else:
            rows.append([ln])
    for k, row in enumerate(rows):
        row.sort(key=lambda c: c.x0)
        # a table row has neighbour rows whose cells start where its cells start; two
        # short headings side by side ("Methods", "Results") have none
        aligned = any(_aligned(row, rows[j]) for j in (k - 1, k + 1) if 0 <= j < len(rows))
        for cells in ([row] if len(row) > 1 and aligned else [[c] for c in row]):
            blocks.append(Block((" | ".join(c.text for c in cells),), cells[0].x0,
                                max(c.x1 for c in cells), max(c.y1 for c in cells),
                                min(c.y0 for c in cells), cells[0].y1 - cells[0].y0,
                                len(cells), max(c.x1 for c in cells)))
    # a full last line reaches 85% of the widest block starting at about the same left
    # edge (the column's width)
    out = []
    for b in blocks:
        column = max(o.x1 - o.x0 for o in blocks if abs(o.x0 - b.x0) < 20)
        out.append(replace(b, full=b.cells == 1 and b.last_x1 - b.x0 >= 0.85 * column))
    return out


def reading_order(blocks: list[Block], width: float) -> list[Block]:
    """Blocks in reading order: top to bottom, and where the page has two columns, the
    left one first. A block crossing the middle of the page (a title, a table row)
    ends the columns above it."""
    middle = width / 2
    ordered: list[Block] = []
    band: list[Block] = []

    def flush() -> None:
        left = [b for b in band if b.x0 < middle]
        right = [b for b in band if b.x0 >= middle]
        ordered.extend(sorted(left, key=lambda b: -b.top))
        ordered.extend(sorted(right, key=lambda b: -b.top))
        band.clear()

    for block in sorted(blocks, key=lambda b: -b.top):
        if block.x0 < middle - 12 and block.x1 > middle + 12:
            flush()
            ordered.append(block)
        else:
            band.append(block)
    flush()
    return ordered


def joiner(before: Block | None, after: Block, same_page: bool) -> str:
    """What goes between two blocks read one after the other: a newline when they are
    one paragraph, else a blank line. One paragraph: rows of one table; blocks of one
    column with no blank line between them; or a paragraph that runs on into the next
    column or page (it doesn't end a sentence, and the next block starts in lower case
    or its last line ran to the column's edge)."""
    if before is None:
        return "\n\n"
    if before.cells > 1 and after.cells > 1:
        return "\n"
    if same_page and abs(before.x0 - after.x0) < 20 and after.top <= before.bottom + 1:
        # directly below in the same column: one paragraph unless a blank line parts them
        return "\n" if before.bottom - after.top <= 0.8 * before.height else "\n\n"
    last = before.lines[-1]
    if not _SENTENCE_END.search(last) and (after.text[:1].islower() or before.full):
        return "\n"
    return "\n\n"


def extract(data: bytes) -> PdfText:
    """The text of a PDF's bytes; raises Unreadable with the reason."""
    from pdfminer.high_level import extract_pages
    from pdfminer.layout import LAParams
    from pdfminer.pdfdocument import PDFEncryptionError, PDFPasswordIncorrect
    from pdfminer.pdfparser import PDFSyntaxError

    try:
        pages = [_page_blocks(p) for p in extract_pages(io.BytesIO(data), laparams=LAParams())]
    except (PDFPasswordIncorrect, PDFEncryptionError) as exc:
        raise Unreadable(f"encrypted ({type(exc).__name__})") from None
    except PDFSyntaxError as exc:
        raise Unreadable(f"damaged ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - pdfminer raises many kinds on broken files
        raise Unreadable(f"damaged ({type(exc).__name__}: {exc})") from None
    if not pages:
        raise Unreadable("no pages")
    running = running_lines(pages)
    text = ""
    starts: list[int] = []
    empty: list[int] = []
    previous: Block | None = None
    for number, (boxes, width, height) in enumerate(pages, 1):
        layout = {id(ln) for ln in margin_lines(boxes, height)
                  if _signature(ln.text) in running or _PAGE_NUMBER.match(ln.text)}
        kept = []
        for box in boxes:
            lines = [ln for ln in box if id(ln) not in layout]
            if lines:
                kept.append(lines)
        starts.append(len(text))
        if not kept:  # no text, or only a header and a page number: a scan or a figure
            empty.append(number)
            continue
        for i, block in enumerate(reading_order(_rows(kept, width), width)):
            if text:
                text += joiner(previous, block, same_page=i > 0)
            previous = block
            if i == 0:
                starts[-1] = len(text)
            text += block.text
    if not text.strip():
        if any(boxes for boxes, _, _ in pages):
            raise Unreadable("no text but running headers and page numbers")
        raise Unreadable("no text layer (a scanned PDF?); OCR is not done")
    return PdfText(text, tuple(starts), _title(data), tuple(empty))


def _title(data: bytes) -> str | None:
    """The document information's title, when it has a useful one."""
    try:
        from pdfminer.pdfdocument import PDFDocument
        from pdfminer.pdfparser import PDFParser
        from pdfminer.utils import decode_text

        info = PDFDocument(PDFParser(io.BytesIO(data))).info
        raw = info[0].get("Title") if info else None
        if hasattr(raw, "resolve"):
            raw = raw.resolve()
        title = decode_text(raw) if isinstance(raw, bytes) else raw
    except Exception:  # noqa: BLE001 - a title is a nicety; any failure means none
        return None
    if isinstance(title, str) and title.strip() and not title.lower().startswith(
            ("untitled", "microsoft word")):
        return " ".join(title.split())
    return None

