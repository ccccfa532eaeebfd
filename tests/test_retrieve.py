"""qa/retrieve.py: fusion math and the collapsing of near-identical passages."""

from __future__ import annotations

import numpy as np
import pytest
from test_store import make_data

from embeddings.lexical import BM25, tokenize
from qa.retrieve import rrf, search, top_n


def test_rrf_exact_values():
    fused = rrf([[1, 2, 3], [3, 1]], k=60)
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
    weighted = rrf([[1], [2]], k=0, weights=[2.0, 0.5])
    assert weighted == {1: 2.0, 2: 0.5}
    with pytest.raises(ValueError):
        rrf([[1]], weights=[1.0, 2.0])


def test_top_n_skips_zero_scores():
    assert top_n(np.array([0.0, 3.0, 1.0, 0.0]), 3) == [1, 2]
    assert top_n(np.array([]), 3) == []


def test_near_identical_passages_collapse_into_one_hit_with_both_sources():
    import faiss

    data = make_data({"a.txt": "Blinken met Xi in Beijing on Monday.",
                      "b.txt": "Blinken met Xi in Beijing on Monday.",
                      "c.txt": "Paris had mild weather all week."}, dim=4)
    vecs = data.chunk_vectors.copy()
    vecs[1] = vecs[0]  # the syndicated copy has the same vector
    data = data.__class__(data.manifest, data.documents, data.chunks, data.sentences, vecs,
                          data.sentence_vectors)
    index = faiss.IndexFlatIP(4)
    index.add(vecs)
    bm25 = BM25.build([c.text for c in data.chunks])
    hits = search(data, index, bm25, vecs[0], tokenize("Blinken Xi Beijing"),
                  candidates=3, duplicate_similarity=0.95)
    assert len(hits) == 2
    top = hits[0]
    assert {data.chunks[top.chunk].source, *(data.chunks[j].source for j in top.also)} == {
        "a.txt", "b.txt"}
