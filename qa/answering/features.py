"""The signals of a candidate sentence, each a plain function, named in one table.

The ranker (`qa.answering.ranker`) is a logistic model over `FEATURES`, in that order; its weights
live in the calibration file (`qa.answering.calibration`), `DEFAULT_WEIGHTS` serve when there is
none. Every function here is pure: it takes the question's `Terms`, vectors or texts
and returns a number, mostly in 0..1 (cosines may dip below 0).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import numpy as np

from embeddings.lexical import tokenize
from qa.retrieval.query import NEGATION, Terms

# name: what it measures. The order is the order of the ranker's weights.
FEATURES_DOC = {
    "dense": "cosine(question, sentence)",
    "passage_dense": "cosine(question, the best retrieved passage holding the sentence)",
    "coverage": "share of the question's IDF mass found in the sentence",
    "context_coverage": "... in the sentence with its neighbours",
    "passage_score": "fused retrieval score of that passage, 0..1",
    "unknown": "share of the question's IDF mass on words the corpus never uses",
    "headline": "1 if the sentence lacks closing punctuation (a title or a caption)",
    "type_mismatch": "1 if the question wants a number/date/name the sentence lacks",
    "novelty": "share of the sentence's words that are not in the question",
    "missing_rarest": "IDF of the rarest question word absent from the sentence and its "
                      "neighbours, over the largest IDF of the question's words",
    "context_dense": "cosine(question, mean vector of the sentence and its neighbours)",
    "bigrams": "share of the question's adjacent word pairs found as pairs in the sentence",
    "negation": "1 if the question is negated and the sentence isn't",
}
FEATURES = tuple(FEATURES_DOC)
DEFAULT_WEIGHTS = dict(zip(FEATURES, (4.0, 2.0, 4.0, 2.0, 1.0, -6.0, -1.0, -1.0, 1.0, -1.0,
                                      1.0, 1.0, -2.0), strict=True))
DEFAULT_BIAS = -6.0

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
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")


def has_type(kind: str | None, text: str, question_tokens: Iterable[str]) -> bool:
    """Whether `text` holds something of `kind` (number, date, person/place as a
    capitalised word) that the question doesn't already say."""
    if kind is None:
        return True
    said = set(question_tokens)
    if kind == "number":
        return any(not set(tokenize(m.group())) <= said or m.group().isdigit()
                   for m in _NUMBER_S.finditer(text))
    pattern = _DATE_S if kind == "date" else _CAPITALISED
    return any(not set(tokenize(m.group())) <= said for m in pattern.finditer(text))


def coverage(terms: Terms, tokens: Iterable[str]) -> float:
    """Share of the question's IDF mass on words among `tokens`."""
    if not terms.mass:
        return 0.0
    have = tokens if isinstance(tokens, (set, frozenset)) else set(tokens)
    return sum(w for t, w in terms.idf.items() if t in have) / terms.mass


def missing_rarest(terms: Terms, tokens: Iterable[str]) -> float:
    """IDF of the rarest question word not among `tokens`, over the question's top IDF."""
    have = tokens if isinstance(tokens, (set, frozenset)) else set(tokens)
    missing = [w for t, w in terms.idf.items() if t not in have]
    return max(missing) / terms.top_idf if missing and terms.top_idf else 0.0


def bigram_share(terms: Terms, words: tuple[str, ...]) -> float:
    """Share of the question's adjacent word pairs found as pairs in `words` (a sentence's
    tokens in order)."""
    if not terms.bigrams:
        return 0.0
    return len(terms.bigrams & set(zip(words, words[1:], strict=False))) / len(terms.bigrams)


def novelty(terms: Terms, tokens: frozenset[str]) -> float:
    """Share of a sentence's distinct words the question doesn't use."""
    return len(tokens - terms.token_set) / len(tokens) if tokens else 0.0


def unknown_share(terms: Terms) -> float:
    """Share of the question's IDF mass on words the index doesn't have."""
    if not terms.mass:
        return 0.0
    return sum(w for t, w in terms.idf.items() if t not in terms.known) / terms.mass


def is_headline(text: str) -> float:
    return 0.0 if _SENTENCE_END.search(text) else 1.0


def type_mismatch(terms: Terms, text: str) -> float:
    return 0.0 if has_type(terms.kind, text, terms.token_set) else 1.0


def negation_mismatch(terms: Terms, text: str) -> float:
    return 1.0 if terms.negated and not NEGATION.search(text) else 0.0


def window_cosine(query_vector: np.ndarray, vectors: np.ndarray) -> float:
    """Cosine of the question with the sum of `vectors` (a sentence and its neighbours).
    In float64: the vectors are multiples of 2**-11 (`embeddings.exact.on_grid`), so every
    sum and product here is exact, the same on every CPU (in float32 the squares of a
    sum of three vectors can pass 2**24 units and round in the BLAS's order)."""
    window = np.asarray(vectors, dtype=np.float64).sum(axis=0)
    norm = math.sqrt(float(window @ window))
    return float(window @ np.asarray(query_vector, dtype=np.float64)) / (norm or 1.0)


def sentence_features(terms: Terms, query_vector: np.ndarray, *, dense: float,
                      passage_dense: float, passage_score: float, text: str,
                      tokens: frozenset[str], words: tuple[str, ...],
                      context_tokens: set[str], window_vectors: np.ndarray,
                      unknown: float) -> tuple[float, ...]:
    """The FEATURES of one candidate sentence, in order. `dense` is its cosine with the
    question, `context_tokens` its tokens with its neighbours', `window_vectors` its vector
    and its neighbours', `unknown` the question's `unknown_share` (the same for all)."""
    return (dense, passage_dense, coverage(terms, tokens), coverage(terms, context_tokens),
            passage_score, unknown, is_headline(text), type_mismatch(terms, text),
            novelty(terms, tokens), missing_rarest(terms, context_tokens),
            window_cosine(query_vector, window_vectors), bigram_share(terms, words),
            negation_mismatch(terms, text))


_LEANS_BACK = re.compile(r"^[\"“‘']?(?:he|she|it|they|this|these|those|his|her|its|their|"
                         r"there|such|both|but|however|instead|yet)\b", re.I)


def extent(terms: Terms, i: int, text: str, tokens: frozenset[str],
           neighbours: list[tuple[int, str, frozenset[str]]], mismatch: bool) -> tuple[int, int]:
    """Sentences (first, last) of the quote for sentence i (`text`, `tokens`) among its
    `neighbours` (j, text, tokens): i alone, or with one neighbour when i alone doesn't
    answer: it lacks the kind of answer asked for (`mismatch`: a number, date, name) and
    the neighbour has it (the next sentence first); or it leans on the sentence before
    ("He said…", "But…"); or the pair covers clearly more of the question."""
    if mismatch:
        for j, other, _ in sorted(neighbours, key=lambda n: (n[0] < i, n[0])):
            if has_type(terms.kind, other, terms.token_set):
                return min(i, j), max(i, j)
    if any(j == i - 1 for j, _, _ in neighbours) and _LEANS_BACK.match(text):
        return i - 1, i
    alone = coverage(terms, tokens)
    best, gain_needed = (i, i), 0.25
    for j, _, other in neighbours:
        pair = coverage(terms, tokens | other)
        if pair - alone >= gain_needed:
            gain_needed = pair - alone
            best = (min(i, j), max(i, j))
    return best

