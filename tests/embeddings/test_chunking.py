"""embeddings/chunking.py: sentence splitting and token-sized chunks."""

from __future__ import annotations

import pytest

from embeddings.chunking import chunk_sentences, sentences_of, split_sentences, token_counter
from embeddings.documents import Document

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


def _doc(text: str) -> Document:
    return Document("d.txt", text, "t", None, ((0, len(text)),), "0")


def test_split_handles_abbreviations_initials_and_quotes():
    text = ('Mr. Smith met the U.S. envoy at 9 a.m. on Monday. "We agree," he said. '
            "J. R. Doe left. Then it rained!")
    got = [text[s:e] for s, e in split_sentences(text)]
    assert got == ["Mr. Smith met the U.S. envoy at 9 a.m. on Monday.",
                   '"We agree," he said.', "J. R. Doe left.", "Then it rained!"]


def test_split_after_closing_quote():
    text = "He said it was “very good.” Xi praised the visit."
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "He said it was “very good.”", "Xi praised the visit."]


def test_chunks_are_whole_sentences_within_target_with_overlap():
    count = token_counter()
    text = " ".join(f"Sentence number {i} talks about topic {i} in some detail." for i in range(40))
    doc = _doc(text)
    sentences = sentences_of(doc, 96, count)
    assert len(sentences) == 40
    chunks = chunk_sentences(doc, sentences, 60, 15, count)
    assert len(chunks) > 3
    for c in chunks:
        assert c.text == text[c.start:c.end]
        assert c.tokens <= 60
        assert c.start == sentences[c.first].start and c.end == sentences[c.last].end
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.first <= a.last  # consecutive chunks share a sentence
        assert b.first > a.first  # and always advance
    assert chunks[-1].last == 39


def test_long_sentence_is_cut_to_the_limit():
    count = token_counter()
    text = " ".join(["word"] * 500) + "."
    sentences = sentences_of(_doc(text), 50, count)
    assert len(sentences) > 1
    assert all(count(s.text) <= 50 and s.text == text[s.start:s.end] for s in sentences)


def test_bad_chunk_settings():
    with pytest.raises(ValueError, match="overlap"):
        chunk_sentences(_doc("A."), [], 10, 10, len)
    with pytest.raises(ValueError, match="at least 1"):
        chunk_sentences(_doc("A."), [], 0, 0, len)


def test_chunks_never_span_dropped_boilerplate():
    count = token_counter()
    text = "First point made here.\n\nADVERTISEMENT\n\nSecond point made here."
    doc = Document("d.txt", text, "t", None, ((0, 22), (39, 62)), "0")
    assert text[39:62] == "Second point made here."
    chunks = chunk_sentences(doc, sentences_of(doc, 96, count), 200, 20, count)
    assert [c.text for c in chunks] == ["First point made here.", "Second point made here."]


def test_line_breaks_inside_a_sentence_cost_no_tokens():
    """PDF text wraps inside sentences: it must chunk as the same text on one line does."""
    count = token_counter()
    words = " ".join(f"word{i}" for i in range(60)) + "."
    wrapped = "\n".join(words[i:i + 40] for i in range(0, len(words), 40))
    flat = wrapped.replace("\n", " ")
    assert count(wrapped) > count(flat)  # tiktoken counts the line breaks
    sizes = []
    for text in (flat, wrapped):
        doc = Document("a.pdf", text, "a", None, ((0, len(text)),), "0")
        sentences = sentences_of(doc, count(flat), count)
        chunks = chunk_sentences(doc, sentences, count(flat), 0, count)
        sizes.append((len(sentences), len(chunks)))
    assert sizes == [(1, 1), (1, 1)]
