"""The word-and-vector ranker: every sentence of the best passages is a candidate, scored
by the calibration's logistic model over `qa.answering.features.FEATURES`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from qa.answering.calibration import Calibration, confidence_of
from qa.answering.features import FEATURES, extent, sentence_features, type_mismatch, unknown_share
from qa.retrieval.index import Index
from qa.retrieval.query import Query
from qa.retrieval.retrieve import Passage

_TYPE_MISMATCH = FEATURES.index("type_mismatch")


@dataclass(frozen=True)
class Candidate:
    """A candidate sentence: its row in the index, the passage (index into the passages)
    that brought it, its FEATURES, the ranker's logit z and the sentences (first, last)
    its quote would span (`qa.answering.features.extent`), and the run of sentences (first, last)
    it stands in with its neighbours (what the reader reads around it)."""

    sentence: int
    passage: int
    features: tuple[float, ...]
    z: float
    extent: tuple[int, int] = (-1, -1)
    window: tuple[int, int] = (-1, -1)
    # the extents of its neighbours that are not candidates (the reader reads them too)
    neighbour_extents: tuple[tuple[int, tuple[int, int]], ...] = ()


def passage_sentences(chunks: Sequence, passages: list[Passage], n: int) -> dict[int, int]:
    """sentence -> the first of the best `n` passages that holds it (`chunks`: the
    index's chunk table, whose `first`/`last` are sentence rows)."""
    seen: dict[int, int] = {}
    for p, passage in enumerate(passages[:n]):
        chunk = chunks[passage.chunk]
        for s in range(chunk.first, chunk.last + 1):
            seen.setdefault(s, p)
    return seen


def score_candidates(query: Query, index: Index, passages: list[Passage],
                     calibration: Calibration, n_passages: int) -> list[Candidate]:
    """Score every sentence of the best `n_passages` passages; candidates, best first."""
    seen = passage_sentences(index.chunks, passages, n_passages)
    if not seen:
        return []
    ids = list(seen)
    dense = index.sentence_vectors[ids] @ query.vector
    unknown = unknown_share(query.terms)
    out = []
    for k, s in enumerate(ids):
        p = seen[s]
        own = index.tokens(s)
        around = index.neighbours(s)
        context = set(own)
        for j in around:
            context |= index.tokens(j)
        text = index.sentences[s].text
        f = sentence_features(
            query.terms, query.vector, dense=float(dense[k]),
            passage_dense=passages[p].dense, passage_score=passages[p].score,
            text=text, tokens=own, words=index.words(s),
            context_tokens=context, window_vectors=index.sentence_vectors[[s, *around]],
            unknown=unknown)
        span = extent(query.terms, s, text, own,
                      [(j, index.sentences[j].text, index.tokens(j)) for j in around],
                      bool(f[_TYPE_MISMATCH]))
        others = []  # neighbours that are not candidates, with their own type check
        for j in around:
            if j not in seen:
                t = index.sentences[j].text
                others.append((j, extent(
                    query.terms, j, t, index.tokens(j),
                    [(m, index.sentences[m].text, index.tokens(m))
                     for m in index.neighbours(j)], bool(type_mismatch(query.terms, t)))))
        out.append(Candidate(s, p, f, calibration.score(f), span,
                             (min([s, *around]), max([s, *around])), tuple(others)))
    out.sort(key=lambda c: (-c.z, c.sentence))
    return out


@dataclass(frozen=True)
class Ranking:
    """The candidates, best first, and the confidence that the best one answers."""

    candidates: list[Candidate]
    confidence: float


def rank(query: Query, index: Index, passages: list[Passage], calibration: Calibration,
         n_passages: int) -> Ranking:
    """`score_candidates` and the calibrated confidence in the best of them."""
    candidates = score_candidates(query, index, passages, calibration, n_passages)
    return Ranking(candidates, confidence_of(candidates, calibration))
