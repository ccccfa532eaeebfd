"""qa/retrieval/index.py: search over a tiny hand-made index (bag-of-words vectors, real BM25 and
FAISS), sentence look-ups and quotes."""

from __future__ import annotations

import pytest

from corpora import query_of, tiny_index
from qa.retrieval.fusion import best_fused
from qa.retrieval.retrieve import SearchSettings

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)

TEXTS = {
    "bridge.txt": "The new bridge opened in Lyon on Monday. It cost 38 million euros. "
                  "Traffic is expected to ease.",
    "copy.txt": "The new bridge opened in Lyon on Monday. It cost 38 million euros. "
                "Traffic is expected to ease, officials said.",
    "weather.txt": "Paris had mild weather all week. Rain is forecast for Sunday.",
}


@pytest.fixture(scope="module")
def index():
    return tiny_index(TEXTS)


def test_search_ranks_fuses_and_collapses_the_syndicated_copy(index):
    q = query_of(index, "How much did the Lyon bridge cost?")
    passages = index.search(q, SearchSettings(candidates=10, duplicate_similarity=0.9))
    assert [p.source for p in passages] == ["bridge.txt", "weather.txt"]
    top = passages[0]
    assert top.also == ("copy.txt",) and len(top.also_chunks) == 1
    assert top.score == pytest.approx(1.0)  # first in both rankings
    assert top.dense == pytest.approx(float(index.chunk_vectors[top.chunk] @ q.vector))
    assert top.bm25 > 0 and passages[1].bm25 == 0.0
    assert top.text == TEXTS["bridge.txt"][top.start:top.end]


def test_scores_are_fused_rrf_over_the_best_possible(index):
    q = query_of(index, "mild weather in Paris")
    s = SearchSettings(candidates=10, rrf_k=60, dense_weight=1.0, bm25_weight=2.0)
    top = index.search(q, s)[0]
    assert top.source == "weather.txt"
    assert top.score == pytest.approx((1 / 61 + 2 / 61) / best_fused(60, (1.0, 2.0)))


def test_duplicate_similarity_one_keeps_copies_apart(index):
    q = query_of(index, "bridge cost")
    passages = index.search(q, SearchSettings(candidates=10, duplicate_similarity=0.99))
    assert {p.source for p in passages} == set(TEXTS) and not any(p.also for p in passages)


def test_sentences_tokens_neighbours_and_quotes(index):
    first = next(i for i, s in enumerate(index.sentences) if s.source == "weather.txt")
    assert index.neighbours(first) == [first + 1]  # the sentence before is another file's
    assert index.tokens(first + 1) == {"rain", "forecast", "sunday"}
    assert index.words(first) == ("pari", "mild", "weather", "week")
    start, end, text = index.quote(first, first + 1)
    assert text == TEXTS["weather.txt"][start:end] == TEXTS["weather.txt"]
    assert index.titles["weather.txt"] == "Weather" and index.n_chunks == len(index.chunks)
