"""Read the text of a Word (.docx) file with python-docx (MIT), headings marked.

Paragraphs and tables are read in document order; a table row becomes one line,
"Cargo | 2024 | 2025", and a table one paragraph. Paragraphs are separated by a blank
line. `headings` holds (offset, heading text) for every paragraph styled as a heading
or title, so a citation can name the heading its quote stands under.
"""

from __future__ import annotations

import io
from dataclasses import dataclass


def _blocks(parent):
    """The paragraphs and tables under `parent` in document order, content controls
    (w:sdt) opened."""
    for child in parent.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "sdt":
            for part in child.iterchildren():
                if part.tag.rsplit("}", 1)[-1] == "sdtContent":
                    yield from _blocks(part)
        elif tag in ("p", "tbl"):
            yield child


def _cell_text(cell) -> str:
    """A cell's text, the text of tables nested in it included."""
    texts = [p.text for p in cell.paragraphs]
    for inner in cell.tables:
        texts.extend(" ".join(_cell_text(c) for c in row.cells) for row in inner.rows)
    return " ".join(texts)


class Unreadable(Exception):
    """The file is not a readable .docx; the message says why."""


@dataclass(frozen=True)
class WordText:
    text: str
    headings: tuple[tuple[int, str], ...]
    title: str | None


def _is_heading(paragraph) -> bool:
    name = (paragraph.style.name if paragraph.style is not None else "") or ""
    return name.startswith(("Heading", "Title"))


MAX_UNZIPPED = 256 * 1024 * 1024  # a .docx's parts may expand to this much in all ...
MAX_RATIO = 200  # ... and none more than this many times its compressed size


def check_zip(data: bytes) -> None:
    """Raise Unreadable for a .docx whose parts would expand past `MAX_UNZIPPED` bytes, or
    one part past `MAX_RATIO` times its compressed size (a zip bomb), before any is read."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise Unreadable(f"not a readable .docx file (not a zip archive: {exc})") from None
    total = sum(m.file_size for m in members)
    if total > MAX_UNZIPPED:
        raise Unreadable(f"its parts would expand to {total:,} bytes (over "
                         f"{MAX_UNZIPPED:,}): a zip bomb?")
    for m in members:
        if m.file_size > 1_000_000 and m.file_size > MAX_RATIO * max(1, m.compress_size):
            raise Unreadable(f"its part {m.filename} would expand {m.file_size:,} bytes from "
                             f"{m.compress_size:,} (over {MAX_RATIO}x): a zip bomb?")


def extract(data: bytes) -> WordText:
    """The text of a .docx file's bytes; raises Unreadable with the reason."""
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    check_zip(data)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - zip, XML and package errors alike
        raise Unreadable(f"not a readable .docx file ({type(exc).__name__}: {exc})") from None
    parts: list[str] = []
    headings: list[tuple[int, str]] = []
    offset = 0

    def add(block: str) -> None:
        nonlocal offset
        if parts:
            offset += 2  # the blank line between paragraphs
        parts.append(block)
        offset += len(block)

    for child in _blocks(document.element.body):
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(child, document)
            text = paragraph.text.strip()
            if not text:
                continue
            add(text)
            if _is_heading(paragraph):
                headings.append((offset - len(text), " ".join(text.split())))
        elif tag == "tbl":
            rows = []
            for row in Table(child, document).rows:
                cells, seen = [], set()
                for cell in row.cells:
                    if id(cell._tc) in seen:  # a merged cell is listed once per column
                        continue
                    seen.add(id(cell._tc))
                    value = " ".join(_cell_text(cell).split())
                    if value:
                        cells.append(value)
                if cells:
                    rows.append(" | ".join(cells))
            if rows:
                add("\n".join(rows))  # one paragraph: a row alone says little
    title = document.core_properties.title
    return WordText("\n\n".join(parts), tuple(headings),
                    " ".join(title.split()) if title and title.strip() else None)

