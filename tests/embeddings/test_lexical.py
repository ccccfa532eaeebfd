"""embeddings/lexical.py: the tokenizer and BM25."""

from __future__ import annotations

import pytest

from embeddings.lexical import BM25, lucene_idf, tokenize

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


def test_tokenize_stems_drops_stopwords_and_possessives():
    assert tokenize("The Talks between China's leaders were talking") == [
        "talk", "china", "leader", "talk"]
    assert tokenize("習近平 met") == ["習", "近", "平", "met"]


def test_bm25_ranks_and_roundtrips(tmp_path):
    texts = ["Blinken met Xi in Beijing.", "The weather in Paris was mild.",
             "Xi praised the visit of Blinken."]
    bm25 = BM25.build(texts)
    scores = bm25.scores(tokenize("Blinken Xi"))
    assert scores[1] == 0 and scores[0] > 0 and scores[2] > 0
    assert bm25.idf("pari") > bm25.idf("blinken") > 0
    assert bm25.idf("unseen") == 0
    assert not bm25.scores(["unseen"]).any()
    bm25.save(tmp_path / "bm25")
    again = BM25.load(tmp_path / "bm25")
    assert (again.scores(tokenize("Blinken Xi")) == scores).all()


def test_idf_is_the_lucene_formula_bm25s_scores_with():
    import math

    from bm25s.scoring import _score_idf_lucene

    texts = ["Blinken met Xi in Beijing.", "The weather in Paris was mild.",
             "Xi praised the visit of Blinken."]
    bm25 = BM25.build(texts)
    # N = 3 texts; "blinken" is in 2 of them, "pari" in 1
    assert bm25.idf("blinken") == math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))
    assert bm25.idf("pari") == math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))
    assert lucene_idf(2, 3) == math.log(1.6)
    for df, n in ((1, 1), (1, 3), (2, 3), (7, 1000), (1000, 1000)):
        assert lucene_idf(df, n) == _score_idf_lucene(df, n)  # the formula bm25s applies
    assert bm25._retriever.idf_method == "lucene"


def test_reading_form_joins_a_word_hyphenated_at_a_line_end_and_keeps_offsets():
    from embeddings.lexical import JOINER, reading_form

    text = "traffic infor-\nmation, well-known, 2024-\n25 and US-\nChina"
    form = reading_form(text)
    assert len(form) == len(text)
    assert form == text.replace("infor-\nmation", "infor" + JOINER * 2 + "mation")
    assert tokenize(text) == tokenize("traffic information, well-known, 2024-\n25 and US-\nChina")
    assert "inform" in tokenize(text) and "infor" not in tokenize(text)
    assert reading_form("no line break-here") == "no line break-here"
