"""The extractive answerer: pick the sentence (or two adjacent ones) that answers, cite it.

No text is generated. Candidate sentences come from the best retrieved passages; each is
scored from a few signals (features below), a logistic model turns the best score into a
confidence in 0..1, and below the abstention threshold the answer says the documents
don't contain one. Every citation's quote is `file_text[start:end]` of its source.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from embeddings.lexical import BM25, tokenize
from embeddings.store import IndexData
from qa.retrieve import Hit, Passage

ABSTAIN_TEXT = "The documents don't contain an answer to this question."
CALIBRATION_FILE = Path(__file__).parent / "data" / "calibration.json"

# Signals computed for each candidate sentence; all lie in 0..1 (cosines may dip below 0).
FEATURES = (
    "dense",  # cosine(question, sentence)
    "passage_dense",  # cosine(question, best passage holding the sentence)
    "coverage",  # share of the question's IDF mass found in the sentence
    "context_coverage",  # ... in the sentence with its neighbours
    "passage_score",  # fused retrieval score of the passage, 0..1
    "unknown",  # share of the question's IDF mass on words the corpus never uses
    "headline",  # 1 if the sentence lacks closing punctuation (a title or caption)
)
_DEFAULT_MODEL = {
    "features": list(FEATURES),
    "weights": [4.0, 2.0, 4.0, 2.0, 1.0, -6.0, -1.0],
    "bias": -6.0,
    "threshold": 0.5,
}


@dataclass(frozen=True)
class Citation:
    """A verbatim quote: `quote == file_text[start:end]` of `source`; score in 0..1."""

    source: str
    title: str
    quote: str
    start: int
    end: int
    score: float

    def to_dict(self) -> dict:
        return {"source": self.source, "title": self.title, "quote": self.quote,
                "start": self.start, "end": self.end, "score": round(self.score, 4)}


@dataclass(frozen=True)
class Answer:
    """An answer. `citations[0]` quotes the answer text itself; later citations in other
    sources state the same fact ("also reported by"). Empty when not answerable."""

    question: str
    answer: str
    answerable: bool
    confidence: float
    citations: tuple[Citation, ...]
    passages: tuple[Passage, ...]
    searched_for: str = ""
    timings_ms: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        """The answer object of the CLI's --json and the API."""
        return {
            "answer": self.answer,
            "answerable": self.answerable,
            "confidence": round(self.confidence, 4),
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
        }


@lru_cache(maxsize=4)
def load_calibration(path: Path = CALIBRATION_FILE) -> dict:
    """The logistic model over FEATURES (weights, bias, threshold); defaults if no file."""
    try:
        model = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return dict(_DEFAULT_MODEL)
    if model.get("features") != list(FEATURES) or len(model.get("weights", ())) != len(FEATURES):
        raise ValueError(f"{path}: features do not match this version; refit it")
    return model


@dataclass(frozen=True)
class Candidate:
    sentence: int
    passage: int  # index into the hits
    features: tuple[float, ...]
    z: float


class QuestionTerms:
    """The question's content words with IDF weights (unknown words get the largest IDF)."""

    def __init__(self, tokens: list[str], bm25: BM25) -> None:
        self.terms = list(dict.fromkeys(tokens))
        top = math.log(1 + (bm25.n_docs + 0.5) / 0.5)
        self.idf = {t: (bm25.idf(t) or top) for t in self.terms}
        self.known = {t for t in self.terms if bm25.idf(t) > 0}
        self.mass = sum(self.idf.values())

    def coverage(self, tokens: set[str]) -> float:
        if not self.mass:
            return 0.0
        return sum(w for t, w in self.idf.items() if t in tokens) / self.mass

    def unknown(self) -> float:
        if not self.mass:
            return 0.0
        return sum(w for t, w in self.idf.items() if t not in self.known) / self.mass


class SentenceTokens:
    """Token sets of the index's sentences, computed on first use."""

    def __init__(self, data: IndexData) -> None:
        self._data = data
        self._cache: dict[int, frozenset[str]] = {}

    def __call__(self, i: int) -> frozenset[str]:
        got = self._cache.get(i)
        if got is None:
            got = frozenset(tokenize(self._data.sentences[i].text))
            self._cache[i] = got
        return got


_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))


def _neighbours(data: IndexData, i: int) -> list[int]:
    src = data.sentences[i].source
    return [j for j in (i - 1, i + 1)
            if 0 <= j < len(data.sentences) and data.sentences[j].source == src]


def score_candidates(
    data: IndexData,
    hits: list[Hit],
    passages: list[Passage],
    query_vector: np.ndarray,
    terms: QuestionTerms,
    sentence_tokens: SentenceTokens,
    model: dict,
    n_passages: int,
) -> list[Candidate]:
    """Score every sentence of the best `n_passages` hits; return candidates, best first."""
    weights = np.asarray(model["weights"], dtype=np.float64)
    bias = float(model["bias"])
    seen: dict[int, int] = {}
    for p, hit in enumerate(hits[:n_passages]):
        chunk = data.chunks[hit.chunk]
        for s in range(chunk.first, chunk.last + 1):
            seen.setdefault(s, p)
    if not seen:
        return []
    ids = list(seen)
    dense = data.sentence_vectors[ids] @ query_vector
    unknown = terms.unknown()
    out = []
    for k, s in enumerate(ids):
        p = seen[s]
        own = sentence_tokens(s)
        ctx = set(own)
        for j in _neighbours(data, s):
            ctx |= sentence_tokens(j)
        text = data.sentences[s].text
        headline = 0.0 if _SENTENCE_END.search(text) else 1.0
        f = (float(dense[k]), hits[p].dense, terms.coverage(own), terms.coverage(ctx),
             passages[p].score, unknown, headline)
        out.append(Candidate(s, p, f, float(weights @ np.asarray(f)) + bias))
    out.sort(key=lambda c: (-c.z, c.sentence))
    return out


def abstention(question: str, confidence: float, passages: tuple[Passage, ...],
               searched_for: str = "") -> Answer:
    """The answer that says the documents don't answer; passages stay as related material."""
    return Answer(question, ABSTAIN_TEXT, False, confidence, (), passages, searched_for)


def apply_threshold(answer: Answer, threshold: float) -> Answer:
    """`answer` if its confidence reaches `threshold` (0..1), else the abstention."""
    if not answer.answerable or answer.confidence >= threshold:
        return answer
    return abstention(answer.question, answer.confidence, answer.passages, answer.searched_for)


def _span_quote(data: IndexData, first: int, last: int) -> tuple[int, int, str] | None:
    """(start, end, quote) covering sentences first..last, if one chunk holds them all."""
    a, b = data.sentences[first], data.sentences[last]
    for c in data.chunks:  # small scan only happens for two-sentence answers
        if c.source == a.source and c.start <= a.start and b.end <= c.end:
            return a.start, b.end, c.text[a.start - c.start : b.end - c.start]
    return None


def _extend(data: IndexData, best: Candidate, terms: QuestionTerms,
            sentence_tokens: SentenceTokens) -> tuple[int, int]:
    """Sentences (first, last) of the answer: the best one, plus a neighbour when the
    pair covers clearly more of the question than the sentence alone."""
    own = sentence_tokens(best.sentence)
    alone = terms.coverage(set(own))
    choice = (best.sentence, best.sentence)
    gain_needed = 0.25
    for j in _neighbours(data, best.sentence):
        pair = terms.coverage(set(own) | sentence_tokens(j))
        if pair - alone >= gain_needed:
            gain_needed = pair - alone
            choice = (min(j, best.sentence), max(j, best.sentence))
    return choice


def compose(
    question: str,
    data: IndexData,
    hits: list[Hit],
    passages: list[Passage],
    query_vector: np.ndarray,
    terms: QuestionTerms,
    sentence_tokens: SentenceTokens,
    *,
    top_k: int,
    n_passages: int,
    min_confidence: float | None,
    corroborate_similarity: float,
    titles: dict[str, str],
    model: dict | None = None,
    searched_for: str = "",
) -> Answer:
    """Build the Answer for a question from its retrieval hits (see module doc).

    min_confidence: abstention threshold in 0..1 (None: the calibration's threshold).
    """
    model = model or load_calibration()
    threshold = model["threshold"] if min_confidence is None else min_confidence
    shown = tuple(passages[:top_k])
    candidates = score_candidates(data, hits, passages, query_vector, terms, sentence_tokens,
                                  model, n_passages)
    if not candidates or not terms.terms:
        return Answer(question, ABSTAIN_TEXT, False, 0.0, (), shown, searched_for)
    best = candidates[0]
    confidence = _sigmoid(best.z)
    if confidence < threshold:
        return abstention(question, confidence, shown, searched_for)
    first, last = _extend(data, best, terms, sentence_tokens)
    span = _span_quote(data, first, last) if first != last else None
    if span is None:
        s = data.sentences[best.sentence]
        span = (s.start, s.end, s.text)
    source = data.sentences[best.sentence].source
    start, end, quote = span
    citations = [Citation(source, titles.get(source, source), quote, start, end, confidence)]
    # Other documents stating the same fact: similar sentences in any retrieved passage.
    pool = dict.fromkeys(
        s for hit in hits for chunk in (hit.chunk, *hit.also)
        for s in range(data.chunks[chunk].first, data.chunks[chunk].last + 1)
        if data.sentences[s].source != source)
    if pool:
        ids = list(pool)
        sims = data.sentence_vectors[ids] @ data.sentence_vectors[best.sentence]
        best_per_source: dict[str, tuple[float, int]] = {}
        for s, sim in zip(ids, sims.tolist(), strict=True):
            src = data.sentences[s].source
            if sim >= corroborate_similarity and sim > best_per_source.get(src, (0.0, -1))[0]:
                best_per_source[src] = (sim, s)
        for src, (sim, s) in sorted(best_per_source.items(), key=lambda kv: -kv[1][0]):
            sent = data.sentences[s]
            citations.append(Citation(src, titles.get(src, src), sent.text, sent.start,
                                      sent.end, sim))
    return Answer(question, quote, True, confidence, tuple(citations), shown, searched_for)
