"""The word-and-vector ranker: every sentence of the best passages is a candidate, scored
by the calibration's logistic model over `qa.features.FEATURES`."""

from __future__ import annotations

from dataclasses import dataclass

from qa.calibration import MAX_MARGIN, Calibration
from qa.features import sentence_features, unknown_share
from qa.index import Index
from qa.query import Query
from qa.retrieve import Passage


@dataclass(frozen=True)
class Candidate:
    """A candidate sentence: its row in the index, the passage (index into the passages)
    that brought it, its FEATURES and the ranker's logit z."""

    sentence: int
    passage: int
    features: tuple[float, ...]
    z: float


def score_candidates(query: Query, index: Index, passages: list[Passage],
                     calibration: Calibration, n_passages: int) -> list[Candidate]:
    """Score every sentence of the best `n_passages` passages; candidates, best first."""
    seen = index.passage_sentences(passages, n_passages)
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
        f = sentence_features(
            query.terms, query.vector, dense=float(dense[k]),
            passage_dense=passages[p].dense, passage_score=passages[p].score,
            text=index.sentences[s].text, tokens=own, words=index.words(s),
            context_tokens=context, window_vectors=index.sentence_vectors[[s, *around]],
            unknown=unknown)
        out.append(Candidate(s, p, f, calibration.score(f)))
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


def margin(candidates: list[Candidate]) -> float:
    """The best candidate's logit minus the runner-up's (0..MAX_MARGIN)."""
    if not candidates:
        return 0.0
    if len(candidates) == 1:
        return MAX_MARGIN
    return min(candidates[0].z - candidates[1].z, MAX_MARGIN)


def confidence_of(candidates: list[Candidate], calibration: Calibration) -> float:
    """Confidence in 0..1 that the best candidate answers (0 without candidates)."""
    if not candidates:
        return 0.0
    best, gap = candidates[0], margin(candidates)
    return calibration.confidence(best.features, best.z, gap)
