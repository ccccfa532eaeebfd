"""SQuAD's exact match and F1, as `qa eval` reports them for every question set.

As the official evaluation script computes them (Rajpurkar et al. 2016, "SQuAD: 100,000+
Questions for Machine Comprehension of Text"; normalisation of evaluate-v2.0.py: lower
case, ASCII punctuation and the articles a/an/the removed, white space collapsed). Each
question scores its best over the gold answers; an unanswerable question's gold is the
empty answer, so abstaining on it scores 1 and answering it 0, and abstaining on an
answerable question scores 0.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from qa.answering.answer import Answer

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def overlap_f1(prediction: Sequence[str], gold: Sequence[str]) -> float:
    """F1 of two token lists by their common tokens (counted with multiplicity); two empty
    lists agree (1.0), one empty list against a non-empty one scores 0."""
    if not prediction or not gold:
        return float(prediction == gold)
    common = sum((Counter(prediction) & Counter(gold)).values())
    if not common:
        return 0.0
    precision, recall = common / len(prediction), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    return overlap_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def scores(prediction: str, answers: Sequence[str]) -> tuple[float, float]:
    """(exact match, F1) of `prediction` ("" for an abstention) against the best of the
    gold `answers`; none (or none that normalises to a word): the question is
    unanswerable and its gold is the empty answer."""
    gold = [a for a in answers if normalize_answer(a)] or [""]
    return (max(exact_match(prediction, g) for g in gold),
            max(f1(prediction, g) for g in gold))


def prediction_of(answer: Answer) -> str:
    """What SQuAD scores of an answer: the marked answer phrase, else the quote; "" for
    an abstention."""
    if not answer.answerable:
        return ""
    if answer.answer_span is not None and answer.citations:
        first = answer.citations[0]
        a, b = answer.answer_span[0] - first.start, answer.answer_span[1] - first.start
        if 0 <= a < b <= len(first.quote):
            return first.quote[a:b]
    return answer.answer
