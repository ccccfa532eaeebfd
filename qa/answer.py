"""The extractive answerer: pick the sentence (or two adjacent ones) that answers, cite it.

No text is generated. Candidate sentences come from the best retrieved passages; each is
scored from a few signals (features below) by a logistic ranker; a second logistic model
over the best candidate's score, its margin over the runner-up and a few of its signals
gives the confidence in 0..1, and below the abstention threshold the answer says the
documents don't contain one. Every citation's quote is `file_text[start:end]` of its source.
"""

from __future__ import annotations

import bisect
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
    "type_mismatch",  # 1 if the question wants a number/date/name the sentence lacks
    "novelty",  # share of the sentence's words that are not in the question
    "missing_rarest",  # IDF of the rarest question word absent from sentence + neighbours,
    #                    over the largest IDF of the question's words
    "context_dense",  # cosine(question, sentence and neighbours' mean vector)
    "bigrams",  # share of the question's adjacent word pairs found as pairs in the sentence
    "negation",  # 1 if the question is negated ("not", "never", "n't"...) and the sentence isn't
)
# Inputs of the confidence model, all of the best candidate.
CONFIDENCE_FEATURES = (
    "score",  # the ranker's logit
    "margin",  # score minus the runner-up's, capped at MAX_MARGIN (one candidate: MAX_MARGIN)
    "passage_dense",  # as in FEATURES
    "type_mismatch",
    "negation",
)
MAX_MARGIN = 3.0
_FROM_FEATURES = [FEATURES.index(f) for f in CONFIDENCE_FEATURES[2:]]
_DEFAULT_MODEL = {
    "features": list(FEATURES),
    "weights": [4.0, 2.0, 4.0, 2.0, 1.0, -6.0, -1.0, -1.0, 1.0, -1.0, 1.0, 1.0, -2.0],
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
        """The answer object: the one serialisation (CLI --json, API, eval rows)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "answerable": self.answerable,
            "confidence": round(self.confidence, 4),
            "citations": [c.to_dict() for c in self.citations],
            "passages": [p.to_dict() for p in self.passages],
            "searched_for": self.searched_for,
            "timings_ms": dict(self.timings_ms),
        }


def default_calibration() -> dict:
    """Hand-set ranker weights and threshold (no confidence model), for when none is fitted."""
    return dict(_DEFAULT_MODEL)


@lru_cache(maxsize=4)
def load_calibration(path: Path = CALIBRATION_FILE) -> dict:
    """The ranker over FEATURES (weights, bias), the abstention threshold, and optionally
    the confidence model ("confidence": features, weights, bias over CONFIDENCE_FEATURES;
    without it the confidence is the ranker's sigmoid); defaults if no file."""
    try:
        model = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default_calibration()
    if model.get("features") != list(FEATURES) or len(model.get("weights", ())) != len(FEATURES):
        raise ValueError(f"{path}: features do not match this version; refit it")
    conf = model.get("confidence")
    if conf is not None and (conf.get("features") != list(CONFIDENCE_FEATURES)
                             or len(conf.get("weights", ())) != len(CONFIDENCE_FEATURES)):
        raise ValueError(f"{path}: confidence features do not match this version; refit it")
    return model


@dataclass(frozen=True)
class Candidate:
    sentence: int
    passage: int  # index into the hits
    features: tuple[float, ...]
    z: float


_NUMBER_Q = re.compile(
    r"\bhow (?:many|much|long|far|old|large|big|tall|high|often|fast|heavy)\b"
    r"|\bwhat (?:number|percentage|percent|amount|proportion|share|fraction|size|population)\b",
    re.I)
_DATE_Q = re.compile(
    r"\bwhen\b|\b(?:what|which|in what) (?:year|years|date|day|month|century|decade|time|period"
    r"|era)\b|\bhow long ago\b", re.I)
_PERSON_Q = re.compile(
    r"\bwho(?:m|se)?\b|\bwhat (?:is|was|are|were) the names? of\b"
    r"|\b(?:which|what)(?:\s+\w+)?\s+(?:president|leader|minister|secretary"
    r"|official|spokesman|spokeswoman|spokesperson|king|queen|emperor|person|man|woman|general"
    r"|author|founder|ruler|duke|pope|bishop|diplomat|envoy|ambassador|politician|chancellor"
    r"|premier|governor|senator|mayor|commander|scientist|writer|composer|artist|player)s?\b",
    re.I)
_PLACE_Q = re.compile(
    r"\bwhere\b|\b(?:what|which|in what) (?:country|countries|city|cities|place|state|region"
    r"|town|continent|island|river|port|capital)\b", re.I)
_NUMBER_WORDS = (r"one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|fifteen|"
                 r"twenty|thirty|forty|fifty|hundred|hundreds|thousand|thousands|million|"
                 r"millions|billion|trillion|dozen|dozens|half|third|quarter|percent|single|"
                 r"double|twice|once")
_NUMBER_S = re.compile(rf"\d|\b(?:{_NUMBER_WORDS})\b", re.I)
_DATE_S = re.compile(
    r"\b1\d{3}\b|\b20\d{2}\b|\b\d{1,4}s\b|\b(?:january|february|march|april|may|june|july"
    r"|august|september|october|november|december|monday|tuesday|wednesday|thursday|friday"
    r"|saturday|sunday|yesterday|today|tomorrow|century|centuries|decade|ago|week|month|year"
    r"|years|spring|summer|autumn|winter|season|era|period|age|dynasty|reign|bc|ad)\b", re.I)
_CAPITALISED = re.compile(r"(?<!^)(?<![.!?]\s)\b[A-Z][\w’'-]+")
_NEGATION = re.compile(r"\b(?:not|never|no|none|nothing|nor|neither|without)\b|n[’']t\b", re.I)


def question_type(question: str) -> str | None:
    """What kind of answer a question asks for: number, date, person, place, or None."""
    for kind, pattern in (("number", _NUMBER_Q), ("date", _DATE_Q), ("person", _PERSON_Q),
                          ("place", _PLACE_Q)):
        if pattern.search(question):
            return kind
    return None


def has_type(kind: str | None, text: str, question_tokens: set[str]) -> bool:
    """Whether `text` holds something of `kind` that the question doesn't already say."""
    if kind is None:
        return True
    if kind == "number":
        return any(not set(tokenize(m.group())) <= question_tokens or m.group().isdigit()
                   for m in _NUMBER_S.finditer(text))
    if kind == "date":
        return any(not set(tokenize(m.group())) <= question_tokens
                   for m in _DATE_S.finditer(text))
    return any(not set(tokenize(m.group())) <= question_tokens
               for m in _CAPITALISED.finditer(text))


class QuestionTerms:
    """The question's content words with IDF weights (unknown words get the largest IDF),
    and the kind of answer it asks for."""

    def __init__(self, question: str, bm25: BM25, tokens: list[str] | None = None) -> None:
        tokens = tokenize(question) if tokens is None else tokens
        self.terms = list(dict.fromkeys(tokens))
        self.bigrams = set(zip(tokens, tokens[1:], strict=False))
        self.token_set = set(self.terms)
        self.kind = question_type(question)
        self.negated = bool(_NEGATION.search(question))
        top = math.log(1 + (bm25.n_docs + 0.5) / 0.5)
        self.idf = {t: (bm25.idf(t) or top) for t in self.terms}
        self.known = {t for t in self.terms if bm25.idf(t) > 0}
        self.mass = sum(self.idf.values())
        self.top_idf = max(self.idf.values(), default=0.0)

    def coverage(self, tokens: set[str]) -> float:
        if not self.mass:
            return 0.0
        return sum(w for t, w in self.idf.items() if t in tokens) / self.mass

    def missing_rarest(self, tokens: set[str]) -> float:
        missing = [w for t, w in self.idf.items() if t not in tokens]
        return max(missing) / self.top_idf if missing and self.top_idf else 0.0

    def bigram_share(self, words: tuple[str, ...]) -> float:
        """Share of the question's adjacent word pairs found as pairs in `words` (a
        sentence's tokens, in order)."""
        if not self.bigrams:
            return 0.0
        return len(self.bigrams & set(zip(words, words[1:], strict=False))) / len(self.bigrams)

    def novelty(self, tokens: frozenset[str]) -> float:
        return len(tokens - self.token_set) / len(tokens) if tokens else 0.0

    def unknown(self) -> float:
        if not self.mass:
            return 0.0
        return sum(w for t, w in self.idf.items() if t not in self.known) / self.mass


class SentenceTokens:
    """Tokens of the index's sentences, computed once on first use: `self(i)` is
    sentence i's token set, `self.words(i)` its tokens in order."""

    def __init__(self, data: IndexData) -> None:
        self._data = data
        self._cache: dict[int, tuple[tuple[str, ...], frozenset[str]]] = {}

    def _get(self, i: int) -> tuple[tuple[str, ...], frozenset[str]]:
        got = self._cache.get(i)
        if got is None:
            words = tuple(tokenize(self._data.sentences[i].text))
            got = self._cache[i] = (words, frozenset(words))
        return got

    def __call__(self, i: int) -> frozenset[str]:
        return self._get(i)[1]

    def words(self, i: int) -> tuple[str, ...]:
        return self._get(i)[0]


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
        mismatch = 0.0 if has_type(terms.kind, text, terms.token_set) else 1.0
        window = data.sentence_vectors[[s, *_neighbours(data, s)]].sum(axis=0)
        ctx_dense = float(window @ query_vector) / (float(np.linalg.norm(window)) or 1.0)
        negation = 1.0 if terms.negated and not _NEGATION.search(text) else 0.0
        f = (float(dense[k]), hits[p].dense, terms.coverage(own), terms.coverage(ctx),
             passages[p].score, unknown, headline, mismatch, terms.novelty(own),
             terms.missing_rarest(ctx), ctx_dense,
             terms.bigram_share(sentence_tokens.words(s)), negation)
        out.append(Candidate(s, p, f, float(weights @ np.asarray(f)) + bias))
    out.sort(key=lambda c: (-c.z, c.sentence))
    return out


def margin(candidates: list[Candidate]) -> float:
    """The best candidate's score minus the runner-up's (logits, 0..MAX_MARGIN)."""
    if not candidates:
        return 0.0
    if len(candidates) == 1:
        return MAX_MARGIN
    return min(candidates[0].z - candidates[1].z, MAX_MARGIN)


def confidence_input(features: tuple[float, ...], score: float,
                     margin: float) -> tuple[float, ...]:
    """The CONFIDENCE_FEATURES of a candidate with FEATURES `features`, ranker logit `score`
    and `margin` (logits) over the runner-up."""
    return (score, min(margin, MAX_MARGIN), *(features[i] for i in _FROM_FEATURES))


def confidence_of(candidates: list[Candidate], model: dict) -> float:
    """Confidence in 0..1 that the best candidate answers: the confidence model over
    `confidence_input`, or the ranker's sigmoid if the model has no such part."""
    if not candidates:
        return 0.0
    conf = model.get("confidence")
    if conf is None:
        return _sigmoid(candidates[0].z)
    x = confidence_input(candidates[0].features, candidates[0].z, margin(candidates))
    return _sigmoid(float(np.asarray(conf["weights"], dtype=np.float64) @ np.asarray(x))
                    + float(conf["bias"]))


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
    """(start, end, quote) covering sentences first..last, if one chunk holds them all.

    Chunks are stored in sentence order, so the candidates are found by bisection.
    """
    a, b = data.sentences[first], data.sentences[last]
    k = bisect.bisect_right(data.chunks, first, key=lambda c: c.first)
    for c in data.chunks[max(0, k - 3) : k]:
        if c.first <= first and last <= c.last:
            return a.start, b.end, c.text[a.start - c.start : b.end - c.start]
    return None


_LEANS_BACK = re.compile(r"^[\"“‘']?(?:he|she|it|they|this|these|those|his|her|its|their|"
                         r"there|such|both|but|however|instead|yet)\b", re.I)


def _extend(data: IndexData, best: Candidate, terms: QuestionTerms,
            sentence_tokens: SentenceTokens) -> tuple[int, int]:
    """Sentences (first, last) of the answer: the best one alone, or with one neighbour
    when the sentence alone doesn't answer: it lacks the kind of answer the question asks
    for (a number, date, name) and the neighbour has it; or it leans on the sentence
    before ("He said…", "But…"); or the pair covers clearly more of the question."""
    i = best.sentence
    text = data.sentences[i].text
    neighbours = _neighbours(data, i)
    if not has_type(terms.kind, text, terms.token_set):
        for j in sorted(neighbours, key=lambda j: (j < i, j)):  # next sentence first
            if has_type(terms.kind, data.sentences[j].text, terms.token_set):
                return min(i, j), max(i, j)
    if i - 1 in neighbours and _LEANS_BACK.match(text):
        return i - 1, i
    own = set(sentence_tokens(i))
    alone = terms.coverage(own)
    choice = (i, i)
    gain_needed = 0.25
    for j in neighbours:
        pair = terms.coverage(own | sentence_tokens(j))
        if pair - alone >= gain_needed:
            gain_needed = pair - alone
            choice = (min(i, j), max(i, j))
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
    confidence = confidence_of(candidates, model)
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
