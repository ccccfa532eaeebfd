"""Find the passages (chunks) for a question: dense + BM25 rankings fused, duplicates collapsed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from embeddings.lexical import BM25
from embeddings.store import IndexData


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk. `text == file_text[start:end]` of `source`.

    score: fused retrieval score scaled to 0..1 (1 = first in every ranking).
    also: other sources holding a near-identical passage (collapsed into this one).
    chunk: the chunk's row in the index (not part of the JSON).
    """

    source: str
    text: str
    start: int
    end: int
    score: float
    chunk: int = field(default=-1, compare=False)
    also: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        out = {"source": self.source, "text": self.text, "start": self.start, "end": self.end,
               "score": round(self.score, 4)}
        if self.also:
            out["also"] = list(self.also)
        return out


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


def top_n(scores: np.ndarray, n: int) -> list[int]:
    """Indices of the `n` largest positive scores, best first."""
    n = min(n, len(scores))
    if n <= 0:
        return []
    idx = np.argpartition(-scores, n - 1)[:n]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return [int(i) for i in idx if scores[i] > 0]


@dataclass(frozen=True)
class Hit:
    """A fused retrieval result before it becomes a Passage. Scores: cosine, BM25, RRF."""

    chunk: int
    fused: float
    dense: float
    bm25: float
    also: tuple[int, ...] = ()


def search(
    data: IndexData,
    vectors,
    bm25: BM25,
    query_vector: np.ndarray,
    query_tokens: list[str],
    *,
    candidates: int = 30,
    rrf_k: int = 60,
    dense_weight: float = 1.0,
    bm25_weight: float = 1.0,
    duplicate_similarity: float = 0.95,
) -> list[Hit]:
    """Rank chunks for a question. Returns fused hits, best first, near-duplicates collapsed.

    query_vector: unit-length (dim,) float32; query_tokens: `embeddings.lexical.tokenize`.
    A chunk whose vector has cosine >= `duplicate_similarity` with a better hit from
    another source is folded into that hit's `also`.
    """
    if not data.chunks:
        return []
    k = min(candidates, len(data.chunks))
    sims, ids = vectors.search(query_vector.reshape(1, -1).astype(np.float32), k)
    dense_rank = [int(i) for i in ids[0] if i >= 0]
    dense_score = {int(i): float(s) for i, s in zip(ids[0], sims[0], strict=True) if i >= 0}
    lexical = bm25.scores(query_tokens)
    bm25_rank = top_n(lexical, k)
    fused = rrf([dense_rank, bm25_rank], rrf_k, [dense_weight, bm25_weight])
    order = sorted(fused, key=lambda i: (-fused[i], i))
    # cosine for BM25-only hits, so every hit carries both signals
    missing = [i for i in order if i not in dense_score]
    if missing:
        cos = data.chunk_vectors[missing] @ query_vector
        dense_score.update({i: float(c) for i, c in zip(missing, cos, strict=True)})
    hits: list[Hit] = []
    # cosine of every candidate with every other, once; kept[j] = candidate row of hits[j]
    rows = data.chunk_vectors[order]
    pair = rows @ rows.T
    kept: list[int] = []
    for r, i in enumerate(order):
        if kept:
            sims_kept = pair[r, kept]
            j = int(np.argmax(sims_kept))
            if sims_kept[j] >= duplicate_similarity:
                h = hits[j]
                if data.chunks[i].source != data.chunks[h.chunk].source:
                    hits[j] = Hit(h.chunk, h.fused, h.dense, h.bm25, h.also + (i,))
                continue
        hits.append(Hit(i, fused[i], dense_score[i], float(lexical[i])))
        kept.append(r)
    return hits


def to_passage(data: IndexData, hit: Hit, best_possible: float) -> Passage:
    """A Passage for a hit, its fused score scaled by `best_possible` (the top RRF value)."""
    c = data.chunks[hit.chunk]
    also = tuple(dict.fromkeys(data.chunks[j].source for j in hit.also
                               if data.chunks[j].source != c.source))
    score = hit.fused / best_possible if best_possible > 0 else 0.0
    return Passage(c.source, c.text, c.start, c.end, min(1.0, score), hit.chunk, also)
