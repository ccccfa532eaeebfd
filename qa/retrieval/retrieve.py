"""Retrieval math as plain functions: top-n, near-duplicate collapsing, and `fuse`, which
puts them together with rank fusion (`qa.retrieval.fusion`) into passages.

`qa.retrieval.index.Index.search` (and the cluster's `ShardedIndex.search`) hand `fuse` the FAISS
and BM25 rankings; it reads only the index's chunk table and chunk vectors. The other
functions touch no index, so each is tested on hand-made numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from qa.retrieval.fusion import best_fused, rrf

if TYPE_CHECKING:  # pragma: no cover
    from qa.retrieval.query import Query


@dataclass(frozen=True)
class SearchSettings:
    """How `Index.search` ranks: chunks taken from each retriever, RRF constant and
    weights, the cosine above which two passages are one."""

    candidates: int = 30
    rrf_k: int = 60
    dense_weight: float = 1.0
    bm25_weight: float = 2.0
    duplicate_similarity: float = 0.95


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk. `text == file_text[start:end]` of `source`.

    score: fused retrieval score scaled to 0..1 (1 = first in every ranking).
    also: other sources holding a near-identical passage (collapsed into this one).
    The rest is the engine's own (not in the JSON): chunk, the chunk's row in the index;
    dense, its cosine with the question; bm25, its BM25 score; also_chunks, the rows of
    the chunks collapsed into it.
    """

    source: str
    text: str
    start: int
    end: int
    score: float
    chunk: int = field(default=-1, compare=False)
    also: tuple[str, ...] = ()
    dense: float = field(default=0.0, compare=False)
    bm25: float = field(default=0.0, compare=False)
    also_chunks: tuple[int, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict:
        out = {"source": self.source, "text": self.text, "start": self.start, "end": self.end,
               "score": round(self.score, 4)}
        if self.also:
            out["also"] = list(self.also)
        return out


def best_n(scores: np.ndarray, n: int) -> list[int]:
    """Indices of the `n` largest scores, best first; equal scores lower index first.
    (numpy's argpartition leaves equal scores in an order that depends on its SIMD
    kernel, and FAISS's heap keeps one of several equal similarities by the order it saw
    them in, so neither decides ties here: the same choice on every CPU, and over one
    index or its shards merged.)"""
    n = min(n, len(scores))
    if n <= 0:
        return []
    cut = scores[np.argpartition(-scores, n - 1)[n - 1]]
    above = np.flatnonzero(scores > cut)
    chosen = np.concatenate([above, np.flatnonzero(scores == cut)[: n - len(above)]])
    chosen = chosen[np.argsort(-scores[chosen], kind="stable")]
    return [int(i) for i in chosen]


def top_n(scores: np.ndarray, n: int) -> list[int]:
    """`best_n` of the positive scores (BM25's: a chunk without a query word is none)."""
    return [i for i in best_n(scores, n) if scores[i] > 0]


def merge_ranked(rankings: Sequence[Sequence[tuple[int, float]]], k: int
                 ) -> list[tuple[int, float]]:
    """The best k (id, score) pairs of several rankings of disjoint ids, best first, equal
    scores lower id first: of shards' `best_n` / `top_n` lists, the list one ranking over
    all of them gives."""
    return sorted((t for r in rankings for t in r), key=lambda t: (-t[1], t[0]))[:k]


def collapse(order: Sequence[int], vectors: np.ndarray, sources: Sequence[str],
             similarity: float) -> list[tuple[int, tuple[int, ...]]]:
    """Fold near-duplicates: walk `order` (best first) and fold an item whose vector has
    cosine >= `similarity` with an already kept item into it (as an "also" when it comes
    from another source; dropped when from the same). `vectors[r]` and `sources[r]`
    belong to `order[r]`. Returns (kept item, folded items) pairs, best first."""
    kept: list[int] = []  # rows of order
    out: list[tuple[int, tuple[int, ...]]] = []
    pair = vectors @ vectors.T if len(order) else np.zeros((0, 0), np.float32)
    for r, item in enumerate(order):
        if kept:
            sims = pair[r, kept]
            j = int(np.argmax(sims))
            if sims[j] >= similarity:
                head, also = out[j]
                if sources[r] != sources[kept[j]]:
                    out[j] = (head, also + (item,))
                continue
        out.append((item, ()))
        kept.append(r)
    return out


def fuse(index, query: Query, s: SearchSettings, dense_rank: list[int], dense: dict[int, float],
         lexical_rank: list[int], bm25_of, prefetch=None) -> list[Passage]:
    """Passages from the two rankings: weighted RRF, a cosine for BM25-only chunks,
    near-duplicates from other files folded into the better one. `index` has `chunks` and
    `chunk_vectors` (an `Index` or the cluster's `ShardedIndex`, which `prefetch`es the
    rows it will read); `bm25_of(i)` is chunk i's BM25 score."""
    weights = (s.dense_weight, s.bm25_weight)
    fused = rrf([dense_rank, lexical_rank], s.rrf_k, weights)
    order = sorted(fused, key=lambda i: (-fused[i], i))
    if prefetch is not None:
        prefetch(order)
    dense = dict(dense)
    missing = [i for i in order if i not in dense]  # BM25-only: give them a cosine too
    if missing:
        cos = index.chunk_vectors[missing] @ query.vector
        dense.update({i: float(c) for i, c in zip(missing, cos, strict=True)})
    best = best_fused(s.rrf_k, weights)
    out = []
    for i, folded in collapse(order, index.chunk_vectors[order],
                              [index.chunks[i].source for i in order], s.duplicate_similarity):
        c = index.chunks[i]
        also = tuple(dict.fromkeys(index.chunks[j].source for j in folded
                                   if index.chunks[j].source != c.source))
        score = min(1.0, fused[i] / best) if best > 0 else 0.0
        out.append(Passage(c.source, c.text, c.start, c.end, score, i, also, dense[i],
                           bm25_of(i), folded))
    return out
