"""embeddings/documents.py: reading, decoding, boilerplate removal, titles and dates."""

from __future__ import annotations

import hashlib
import logging

import pytest

from embeddings.documents import (
    content_spans,
    file_sha256,
    list_files,
    parse_date,
    read_document,
)
from embeddings.errors import BadInput
from support import SEEDS, write_corpus

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)

BOILERPLATE = [
    "ADVERTISEMENT", "58 views0 comments", "top of page", "bottom of page", "Sign in to comment",
    "Read Also |", "Latest articles", "More like this", "WhatsApp Unveils",
    "Hollywood", "Country Garden", "Support The Post Millennial", "as little as $1",
    "Privacy Policy", "Enable Notifications", "Remind me next month", "Photo: AFP",
    "HomeWorld", "Published on",
]


def _kept_text(doc) -> str:
    return "\n".join(doc.text[s:e] for s, e in doc.spans)


@pytest.mark.parametrize("path", sorted(SEEDS.glob("*.txt")), ids=lambda p: p.name)
def test_seed_boilerplate_is_dropped_and_offsets_hold(path):
    doc = read_document(path, path.name)
    kept = _kept_text(doc)
    for junk in BOILERPLATE:
        assert junk not in kept, junk
    # spans are offsets into the file's text as read
    raw = path.read_text(encoding="utf-8")
    assert doc.text == raw
    for s, e in doc.spans:
        assert raw[s:e].strip() == raw[s:e] and raw[s:e]


def test_real_reporting_appended_from_other_stories_stays():
    doc = read_document(SEEDS / "004_19a75a33014863ff.txt", "004_19a75a33014863ff.txt")
    kept = _kept_text(doc)
    for phrase in ("HMS Spey", "Hakka Youth Association", "Pedro Sanchez", "kill web"):
        assert phrase in kept


def test_titles_and_dates_of_seeds():
    doc = read_document(SEEDS / "002_03c80dfc9eda31c5.txt", "002_03c80dfc9eda31c5.txt")
    assert doc.date == "2024-03-01"
    assert doc.title.startswith("US Secretary of State Antony Blinken Advocates")
    doc = read_document(SEEDS / "000_61a2b7113e9c39af.txt", "000_61a2b7113e9c39af.txt")
    assert doc.title == ("Blinken Reaffirms US Stance on Taiwan, Says Washington Does Not "
                         "Support Independence")
    doc = read_document(SEEDS / "004_19a75a33014863ff.txt", "004_19a75a33014863ff.txt")
    assert doc.title.endswith("…") and len(doc.title) <= 95


@pytest.mark.parametrize("line,iso", [
    ("1, March, 2024", "2024-03-01"), ("March 1, 2024", "2024-03-01"),
    ("Published on 12 June 2023", "2023-06-12"), ("2024-11-05", "2024-11-05"),
    ("Blinken met Xi on March 1, 2024 in Beijing.", None), ("32, March, 2024", None),
])
def test_parse_date(line, iso):
    assert parse_date(line) == iso


def test_latest_articles_block_is_dropped_but_following_prose_stays():
    text = ("Real first paragraph about talks.\n\nLatest articles\n\nSome Headline Here\n\n"
            "A teaser that stops in the middle...\n\nMore like this\n\nOther Headline\n\n"
            "Another teaser...\n\nA real closing sentence of the article.\n")
    kept = [text[s:e] for s, e in content_spans(text)]
    assert kept == ["Real first paragraph about talks.",
                    "A real closing sentence of the article."]


def test_non_utf8_binary_empty_and_unreadable_files(tmp_path, caplog):
    corpus = write_corpus(tmp_path / "c", {
        "latin.txt": "Café owners in Zürich said prices rose.".encode("cp1252"),
        "binary.txt": bytes(range(256)) * 4,
        "empty.md": "   \n",
        "good.md": "A good article sentence.",
    })
    (corpus / "locked.txt").write_text("secret")
    (corpus / "locked.txt").chmod(0)
    caplog.set_level(logging.WARNING)
    docs = {}
    for path, source in list_files(corpus):
        doc = read_document(path, source)
        if doc:
            docs[source] = doc
    assert docs["latin.txt"].text.startswith("Café owners in Zürich")
    assert "binary.txt" not in docs and "empty.md" not in docs
    assert "good.md" in docs
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "latin.txt: not UTF-8" in messages
    assert "binary.txt: skipped" in messages and "empty.md: skipped" in messages
    import os
    if os.geteuid() != 0:  # root reads any file
        assert "locked.txt" not in docs and "locked.txt: skipped" in messages


def test_html_main_text_is_extracted(tmp_path):
    page = ("<html><head><title>T</title><script>var x=1;</script></head><body>"
            "<nav>Home | World</nav><article><h1>Envoy visits Beijing</h1>"
            "<p>The envoy met the foreign minister on Monday and discussed trade.</p>"
            "<p>Both sides agreed to keep talking in the coming months.</p></article>"
            "</body></html>")
    corpus = write_corpus(tmp_path / "c", {"page.html": page})
    doc = read_document(corpus / "page.html", "page.html")
    kept = _kept_text(doc)
    assert "The envoy met the foreign minister on Monday" in kept
    assert "var x=1" not in kept


def test_list_files_walks_subfolders_and_rejects_bad_paths(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"a/x.txt": "x.", "b/x.txt": "y.", "c.xlsx": "no",
                                           ".hidden/z.txt": "z."})
    assert [s for _, s in list_files(corpus)] == ["a/x.txt", "b/x.txt"]
    with pytest.raises(BadInput, match="does not exist"):
        list_files(tmp_path / "missing")
    with pytest.raises(ValueError, match="not a folder"):  # BadInput is a ValueError
        list_files(corpus / "a" / "x.txt")


def test_the_hash_is_the_files_and_is_taken_once(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "c", {"a.txt": "Alpha beta gamma."})
    path = corpus / "a.txt"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert file_sha256(path) == digest
    assert file_sha256(corpus / "missing.txt") is None
    assert read_document(path, "a.txt").sha256 == digest  # hashed from the bytes read
    # a hash the caller already has is used as is, not computed again
    monkeypatch.setattr(hashlib, "sha256", lambda *a: pytest.fail("hashed again"))
    assert read_document(path, "a.txt", digest).sha256 == digest


# --- PDF and Word files ------------------------------------------------------------------


def test_a_pdf_is_read_by_paragraph_with_its_pages(tmp_path):
    import made_files as made

    path = tmp_path / "report.pdf"
    path.write_bytes(made.harbour_report())
    doc = read_document(path, "report.pdf")
    assert doc.title == "Harbour Authority Annual Report 2025"
    assert len(doc.pages) == 4 and doc.headings == ()
    paragraphs = [doc.text[s:e] for s, e in doc.spans]
    assert paragraphs[0] == "The year in review"
    assert paragraphs[1] == "\n".join(made.PAGE1)  # one span, line ends inside it
    assert paragraphs[-1] == "\n".join(" | ".join(row) for row in made.TABLE)


def test_a_word_file_is_read_with_its_headings(tmp_path):
    import made_files as made

    path = tmp_path / "minutes.docx"
    path.write_bytes(made.minutes_docx())
    doc = read_document(path, "minutes.docx")
    assert doc.title == made.MINUTES_TITLE and doc.pages == ()
    assert [h for _, h in doc.headings] == [made.MINUTES_TITLE, "Budget", "Staff"]
    assert doc.text[doc.spans[-1][0]:doc.spans[-1][1]] == "Pilots | Tugs\n14 | 6"


def test_scanned_encrypted_and_corrupt_files_are_skipped_with_one_warning_each(tmp_path,
                                                                                caplog):
    import made_files as made

    files = {"scan.pdf": made.scanned_pdf(), "locked.pdf": made.encrypted_pdf(),
             "broken.pdf": b"%PDF-1.7\nthis is not a PDF body", "broken.docx": b"PK\x03\x04"}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    with caplog.at_level(logging.WARNING):
        for name in files:
            assert read_document(tmp_path / name, name) is None
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 4
    assert warned[0].startswith("scan.pdf: skipped, no text layer (a scanned PDF?)")
    assert warned[1].startswith("locked.pdf: skipped, encrypted")
    assert warned[2].startswith("broken.pdf: skipped, damaged")
    assert warned[3].startswith("broken.docx: skipped, not a readable .docx file")


def test_a_pdf_page_without_text_is_named_in_one_warning(tmp_path, caplog):
    import made_files as made

    (tmp_path / "report.pdf").write_bytes(made.harbour_report())
    with caplog.at_level(logging.WARNING):
        assert read_document(tmp_path / "report.pdf", "report.pdf") is not None
    assert [r.getMessage() for r in caplog.records] == [
        "report.pdf: page 4 without text (scanned, or a figure?) left out; OCR is not done"]


def test_paragraph_spans_judge_a_paragraph_whole_and_by_its_lines():
    from embeddings.documents import paragraph_spans

    text = ("A sentence that wraps\nonto a second line.\n\n58 views0 comments\nbottom of page"
            "\n\nLatest articles\n\nSome Other Headline\n\nThe prose goes on here.")
    assert [text[s:e] for s, e in paragraph_spans(text)] == [
        "A sentence that wraps\nonto a second line.", "The prose goes on here."]


@pytest.mark.parametrize("line", [
    "Support us from as little as $1 and sign up for the newsletter",  # three cues
    "SUBSCRIBE to unlimited ACCESS",  # upper case
    "Read our privacy\npolicy and terms of  service.",  # white space between the words
    "We can\u2019t be cancelled, say the free thinkers",
    "\u017fubscribe now to the \u017fervice",  # long s: IGNORECASE folds it onto "s"
    "Free thin\u212aers",  # Kelvin sign K (lower-cases to "k")
    "S\u0131gn up here",  # dotless i: IGNORECASE folds it onto "i", lower() does not
    "S\u0130GN UP here",  # dotted capital I: lower() makes it "i" and a combining dot
    "Markets shrugged and the pound fell.",  # no cue word at all
    "He signed the design; she sells terms.",  # cue words, no cue
])
def test_pitch_cues_count_what_the_pattern_finds(line):
    from embeddings.documents import _PITCH_CUES, _pitch_cues

    assert _pitch_cues(line) == len(_PITCH_CUES.findall(line))


def test_every_pitch_cue_holds_one_of_the_quick_test_words():
    import re

    from embeddings.documents import _PITCH_CUES, _PITCH_WORDS

    # each alternative of the pattern, written out once with single spaces
    examples = ["support us", "supporting the post", "support our journalism",
                "support independent", "as little as $", "subscribe", "subscription",
                "sign up", "signing up", "privacy policy", "terms of use", "terms of service",
                "personal data", "do not sell", "newsletter", "can't be cancelled",
                "can\u2019t be cancelled", "free thinkers", "donate", "donation", "paywall",
                "unlimited access", "become a member"]
    for example in examples:
        assert any(word in example for word in _PITCH_WORDS), example
    # the pattern's top-level alternatives, split where no bracket is open: a cue added
    # to the pattern without an example here fails, so _PITCH_WORDS gets looked at
    alternatives, depth, part = [], 0, ""
    for ch in _PITCH_CUES.pattern:
        depth += (ch in "([") - (ch in ")]")
        if ch == "|" and depth == 0:
            alternatives.append(part)
            part = ""
        else:
            part += ch
    alternatives.append(part)
    assert len(alternatives) == 15
    for alternative in alternatives:
        assert any(re.fullmatch(alternative, x, re.IGNORECASE) for x in examples), alternative
