"""Reciprocal rank fusion, the one fusion method of the search.

Source: G. V. Cormack, C. L. A. Clarke, S. Büttcher, "Reciprocal rank fusion outperforms
Condorcet and individual rank learning methods", SIGIR 2009 (k = 60 is theirs; the weights
are ours: `SearchSettings.dense_weight`, `bm25_weight`).
"""

from __future__ import annotations

from collections.abc import Sequence


def rrf(rankings: Sequence[Sequence[int]], k: int = 60,
        weights: Sequence[float] | None = None) -> dict[int, float]:
    """Reciprocal rank fusion: item -> sum over rankings of weight / (k + rank), rank from 1."""
    if k < 0:
        raise ValueError(f"rrf k must not be negative, got {k}")
    weights = [1.0] * len(rankings) if weights is None else list(weights)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking")
    fused: dict[int, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (k + rank)
    return fused


def best_fused(k: int, weights: Sequence[float]) -> float:
    """The largest RRF value: first in every ranking (the scale of Passage.score)."""
    return sum(weights) / (k + 1)
