"""embeddings/word.py: text, headings and tables of a made .docx (tests/made_files.py)."""

from __future__ import annotations

import made_files as made
import pytest

from embeddings import word


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
