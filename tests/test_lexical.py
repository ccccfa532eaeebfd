"""embeddings/lexical.py: the tokenizer and BM25."""

from __future__ import annotations

from embeddings.lexical import BM25, tokenize


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
