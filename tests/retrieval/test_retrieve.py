"""qa/retrieval/retrieve.py: fusion math, top-n and near-duplicate collapsing, on hand-made
numbers."""

from __future__ import annotations

import numpy as np
import pytest

from qa.retrieval.fusion import best_fused, rrf
from qa.retrieval.retrieve import collapse, top_n

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


def test_rrf_exact_values():
    fused = rrf([[1, 2, 3], [3, 1]], k=60)
    assert fused[1] == pytest.approx(1 / 61 + 1 / 62)
    assert fused[3] == pytest.approx(1 / 63 + 1 / 61)
    assert fused[2] == pytest.approx(1 / 62)
    assert rrf([[1], [2]], k=0, weights=[2.0, 0.5]) == {1: 2.0, 2: 0.5}
    with pytest.raises(ValueError):
        rrf([[1]], weights=[1.0, 2.0])
    with pytest.raises(ValueError):
        rrf([[1]], k=-1)


def test_best_fused_is_first_in_every_ranking():
    assert best_fused(60, (1.0, 2.0)) == pytest.approx(3 / 61)
    first_everywhere = rrf([[7, 1], [7, 2]], 60, [1.0, 2.0])[7]
    assert first_everywhere == pytest.approx(best_fused(60, (1.0, 2.0)))


def test_top_n_skips_zero_scores_and_keeps_order():
    assert top_n(np.array([0.0, 3.0, 1.0, 0.0]), 3) == [1, 2]
    assert top_n(np.array([2.0, 2.0, 5.0]), 2) == [2, 0]  # ties: lower index first
    assert top_n(np.array([]), 3) == []
    assert top_n(np.array([1.0]), 0) == []


def test_collapse_folds_other_sources_and_drops_same_source_copies():
    v = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    # item 10 (a), 11 (b, copy of 10), 12 (c, different), 13 (a, copy of 10 in its own file)
    out = collapse([10, 11, 12, 13], v, ["a", "b", "c", "a"], 0.95)
    assert out == [(10, (11,)), (12, ())]


def test_collapse_keeps_items_below_the_similarity():
    v = np.array([[1, 0], [0.6, 0.8]], dtype=np.float32)  # cosine 0.6
    assert collapse([1, 2], v, ["a", "b"], 0.95) == [(1, ()), (2, ())]
    assert collapse([1, 2], v, ["a", "b"], 0.6) == [(1, (2,))]
    assert collapse([], np.zeros((0, 2), np.float32), [], 0.9) == []
