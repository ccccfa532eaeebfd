"""PDF and Word files made for the tests, with what a reader of them should find.

`harbour_report()` writes a four-page PDF (fpdf2) the way report generators do: a
running header and a page number on every page, hyphenated line ends, a two-column page
whose columns are drawn line by line across the page (so drawing order is not reading
order), a table, a paragraph running on from one page to the next, and a last page that
is only an image (a scan, no text layer). `minutes_docx()` writes a Word file with a
title, headings, paragraphs and a table (python-docx). `text_pdf(text)` renders plain
text as a simple PDF (the seeds and bbc-news as PDFs). Not a test file: tests import it.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

HEADER = "Harbour Authority - Annual Report 2025"

# page 1: one column, a hyphenated line end, a paragraph running on to page 2
PAGE1 = [
    "The harbour handled 4.2 million containers in 2025, a record for the",
    "port. The new crane terminal opened in March and doubled the capacity of",
    "the eastern quay. The authority publishes its traffic infor-",
    "mation every month on its website.",
]
PAGE1_RUN_ON = [
    "Dredging of the main channel finished in October, after two years of",
    "work, and the channel is now sixteen metres deep, enough for the",
]
PAGE2_RUN_ON = ["largest container ships afloat today."]
# page 2: two columns
LEFT = [
    "The western basin is reserved for",
    "ferries and cruise ships. Eleven",
    "ferry routes leave from it, the",
    "longest to Bergen.",
]
RIGHT = [
    "The southern terminal was built",
    "on reclaimed land at a cost of",
    "310 million euros. It was opened",
    "by the mayor, Ana Ruiz, in June.",
]
# page 3: a table
TABLE_CAPTION = "Table 1. Cargo by type, in million tonnes."
TABLE = [("Cargo", "2024", "2025"), ("Containers", "31.5", "35.0"), ("Grain", "4.1", "3.8"),
         ("Oil", "12.0", "11.2")]


def harbour_report() -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="pt")
    pdf.set_auto_page_break(False)
    pdf.set_title("Harbour Authority Annual Report 2025")

    def page(number: int) -> None:
        pdf.add_page()
        pdf.set_font("Helvetica", size=9)
        pdf.text(56, 40, HEADER)
        pdf.text(290, 810, str(number))

    def lines(x: float, y: float, rows: list[str]) -> float:
        pdf.set_font("Helvetica", size=11)
        for row in rows:
            pdf.text(x, y, row)
            y += 15
        return y

    page(1)
    pdf.set_font("Helvetica", "B", 16)
    pdf.text(56, 90, "The year in review")
    y = lines(56, 130, PAGE1)
    lines(56, max(y + 15, 760), PAGE1_RUN_ON)
    page(2)
    y = lines(56, 90, PAGE2_RUN_ON)
    pdf.set_font("Helvetica", size=11)
    for i, (left, right) in enumerate(zip(LEFT, RIGHT, strict=True)):  # across the page
        pdf.text(56, y + 30 + 15 * i, left)
        pdf.text(310, y + 30 + 15 * i, right)
    page(3)
    pdf.set_font("Helvetica", size=11)
    pdf.text(56, 90, TABLE_CAPTION)
    pdf.set_xy(56, 110)
    for row in TABLE:
        for cell in row:
            pdf.cell(120, 18, cell, border=1)
        pdf.set_xy(56, pdf.get_y() + 18)
    page(4)  # a scanned page: an image, no text layer
    pdf.image(_grey_png(), x=56, y=100, w=480, h=600)
    return bytes(pdf.output())


def scanned_pdf() -> bytes:
    """A PDF whose only page is an image: no text layer at all."""
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="pt")
    pdf.add_page()
    pdf.image(_grey_png(), x=56, y=100, w=480, h=600)
    return bytes(pdf.output())


def encrypted_pdf() -> bytes:
    """A PDF that needs a password to open."""
    from fpdf import FPDF
    from fpdf.enums import EncryptionMethod

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="secret",
                       encryption_method=EncryptionMethod.AES_128)
    pdf.add_page()
    pdf.set_font("Helvetica", size=11)
    pdf.text(20, 20, "Nobody can read this without the password.")
    return bytes(pdf.output())


def _grey_png() -> io.BytesIO:
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (40, 50), 180).save(out, format="PNG")
    out.seek(0)
    return out


def unicode_font() -> str:
    """DejaVu Sans, which matplotlib (a dependency) ships: a font with curly quotes and
    dashes, so news text renders as it is (not CJK: those characters drop out)."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf")


def text_pdf(text: str, title: str | None = None, width: int = 85,
             lines_per_page: int = 48) -> bytes:
    """Plain text as a PDF: each paragraph wrapped at spaces to `width` characters,
    pages of `lines_per_page` lines, a blank line between paragraphs."""
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="pt")
    pdf.set_auto_page_break(False)
    if title:
        pdf.set_title(title)
    pdf.add_font("DejaVu", fname=unicode_font())
    pdf.set_font("DejaVu", size=10)
    y = None
    for paragraph in text.replace("\r", "").split("\n"):
        paragraph = " ".join(paragraph.split())
        if not paragraph:
            continue
        rows = textwrap.wrap(paragraph, width, break_on_hyphens=False,
                             break_long_words=False) + [""]
        for row in rows:
            if y is None or y > 60 + 15 * lines_per_page:
                pdf.add_page()
                y = 60
            if row:
                pdf.text(50, y, row)
            y += 15
    return bytes(pdf.output())


MINUTES_TITLE = "Minutes of the harbour board"


def minutes_docx() -> bytes:
    """A Word file: title, two headings with paragraphs under them, and a table."""
    import docx

    document = docx.Document()
    document.core_properties.title = MINUTES_TITLE
    document.add_heading(MINUTES_TITLE, level=0)
    document.add_paragraph("The board met on 12 May 2025 in the old customs house.")
    document.add_heading("Budget", level=1)
    document.add_paragraph("The board approved a budget of 48 million euros for 2026. "
                           "Most of it goes to the repair of the northern breakwater.")
    document.add_heading("Staff", level=1)
    document.add_paragraph("Maria Olsen was appointed harbour master from 1 July.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Pilots"
    table.cell(0, 1).text = "Tugs"
    table.cell(1, 0).text = "14"
    table.cell(1, 1).text = "6"
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()
