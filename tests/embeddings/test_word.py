"""embeddings/word.py: text, headings and tables of a made .docx (tests/made_files.py)."""

from __future__ import annotations

import pytest

import made_files as made
from embeddings import word

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


@pytest.fixture(scope="module")
def minutes() -> word.WordText:
    return word.extract(made.minutes_docx())


def test_paragraphs_and_table_in_document_order(minutes):
    assert minutes.text == (
        "Minutes of the harbour board\n\n"
        "The board met on 12 May 2025 in the old customs house.\n\n"
        "Budget\n\n"
        "The board approved a budget of 48 million euros for 2026. Most of it goes to the "
        "repair of the northern breakwater.\n\n"
        "Staff\n\n"
        "Maria Olsen was appointed harbour master from 1 July.\n\n"
        "Pilots | Tugs\n14 | 6")


def test_headings_with_their_offsets(minutes):
    assert [h for _, h in minutes.headings] == [made.MINUTES_TITLE, "Budget", "Staff"]
    for offset, heading in minutes.headings:
        assert minutes.text[offset:offset + len(heading)] == heading
    assert minutes.headings[0][0] == 0
    assert minutes.headings[1][0] == len("Minutes of the harbour board\n\n"
                                         "The board met on 12 May 2025 in the old customs "
                                         "house.\n\n")


def test_title_from_the_core_properties(minutes):
    assert minutes.title == made.MINUTES_TITLE


@pytest.mark.parametrize("data", [b"PK\x03\x04 broken zip", b"plain text, not a docx"])
def test_a_broken_file_is_unreadable(data):
    with pytest.raises(word.Unreadable, match="not a readable .docx"):
        word.extract(data)


def test_equal_cells_merged_cells_nested_tables_and_content_controls():
    import io

    import docx
    from docx.oxml import OxmlElement

    document = docx.Document()
    table = document.add_table(rows=2, cols=3)
    for r, row in enumerate([("Quarter", "Ships", "Tugs"), ("Q1", "10", "10")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    merged = document.add_table(rows=1, cols=3)
    merged.cell(0, 0).merge(merged.cell(0, 1)).text = "Merged head"
    merged.cell(0, 2).text = "X"
    outer = document.add_table(rows=1, cols=2)
    outer.cell(0, 0).text = "Outer"
    inner = outer.cell(0, 1).add_table(rows=1, cols=2)
    inner.cell(0, 0).text, inner.cell(0, 1).text = "Inner A", "Inner B"
    control, content = OxmlElement("w:sdt"), OxmlElement("w:sdtContent")
    content.append(document.add_paragraph("Text inside a content control.")._p)
    control.append(content)
    document.element.body.insert(len(document.element.body) - 1, control)
    out = io.BytesIO()
    document.save(out)
    assert word.extract(out.getvalue()).text == (
        "Quarter | Ships | Tugs\nQ1 | 10 | 10\n\n"  # two equal cells are two cells
        "Merged head | X\n\n"                       # a merged cell once
        "Outer | Inner A Inner B\n\n"               # a nested table's text kept
        "Text inside a content control.")
