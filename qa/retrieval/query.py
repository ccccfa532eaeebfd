"""A question as the engine works with it, built once per question.

`Query` holds the question as asked, the text actually searched (the question completed
from earlier turns for a follow-up), its vector, its tokens and its `Terms`: the content
words with their IDF over the index, the kind of answer asked for, negation. Retrieval,
the features, the reader and the answer all read this one record.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embeddings.lexical import tokenize

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
NEGATION = re.compile(r"\b(?:not|never|no|none|nothing|nor|neither|without)\b|n[’']t\b", re.I)


def question_type(question: str) -> str | None:
    """What kind of answer a question asks for: number, date, person, place, or None."""
    for kind, pattern in (("number", _NUMBER_Q), ("date", _DATE_Q), ("person", _PERSON_Q),
                          ("place", _PLACE_Q)):
        if pattern.search(question):
            return kind
    return None


def unknown_idf(n_docs: int) -> float:
    """The IDF given to a word the index never saw: that of a word in half a document
    (BM25's Lucene formula with df = 0), the largest any word can have."""
    return math.log(1 + (n_docs + 0.5) / 0.5)


@dataclass(frozen=True)
class Terms:
    """The question's content words, in order of first use, with their IDF weights.

    known: the words the index has; mass: the sum of the weights; top_idf: the largest;
    bigrams: adjacent token pairs; kind: `question_type`; negated: the question says
    "not", "never", "n't"...
    """

    words: tuple[str, ...]
    idf: dict[str, float]
    known: frozenset[str]
    bigrams: frozenset[tuple[str, str]]
    kind: str | None
    negated: bool
    token_set: frozenset[str]
    mass: float
    top_idf: float


def make_terms(text: str, tokens: list[str], idf: Callable[[str], float],
               n_docs: int) -> Terms:
    """Terms of `text` (tokenized as `tokens`) with IDF from `idf(token)` (0 when the
    index doesn't have the word, which then gets `unknown_idf`)."""
    words = tuple(dict.fromkeys(tokens))
    top = unknown_idf(n_docs)
    raw = {t: idf(t) for t in words}
    weights = {t: (w or top) for t, w in raw.items()}
    return Terms(words, weights, frozenset(t for t, w in raw.items() if w > 0),
                 frozenset(zip(tokens, tokens[1:], strict=False)), question_type(text),
                 bool(NEGATION.search(text)), frozenset(words), sum(weights.values()),
                 max(weights.values(), default=0.0))


@dataclass(frozen=True, eq=False)
class Query:
    """One question. text: as asked (white space normalised); searched_for: what is
    searched (text, completed from earlier turns for a follow-up); vector: unit-length
    float32 embedding of searched_for; tokens: `embeddings.lexical.tokenize` of it."""

    text: str
    searched_for: str
    vector: np.ndarray
    tokens: tuple[str, ...]
    terms: Terms


def make_query(text: str, searched_for: str, vector: np.ndarray,
               idf: Callable[[str], float], n_docs: int) -> Query:
    """The Query of a question; `idf`/`n_docs` come from the index searched."""
    tokens = tokenize(searched_for)
    return Query(text, searched_for, vector, tuple(tokens),
                 make_terms(searched_for, tokens, idf, n_docs))
