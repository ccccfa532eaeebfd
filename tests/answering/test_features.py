"""qa/answering/features.py: every signal of a candidate sentence, on hand-made terms and
vectors."""

from __future__ import annotations

import numpy as np
import pytest

from qa.answering import features as F
from qa.retrieval.query import make_terms

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


# "bridge" idf 1, "cost" idf 3 (unknown words get the largest: log(1 + 10.5/0.5))
def idf(table):
    return lambda t: table.get(t, 0.0)


TERMS = make_terms("How much did the bridge cost?", ["bridg", "cost"],
                   idf({"bridg": 1.0, "cost": 3.0}), 10)


def test_feature_table_names_every_weight():
    assert F.FEATURES == tuple(F.FEATURES_DOC)
    assert set(F.DEFAULT_WEIGHTS) == set(F.FEATURES) and len(F.FEATURES) == 13


def test_coverage_weighs_words_by_idf():
    assert F.coverage(TERMS, {"bridg"}) == pytest.approx(1 / 4)
    assert F.coverage(TERMS, {"cost", "other"}) == pytest.approx(3 / 4)
    assert F.coverage(TERMS, set()) == 0.0
    assert F.coverage(make_terms("", [], lambda t: 1.0, 1), {"x"}) == 0.0


def test_missing_rarest():
    assert F.missing_rarest(TERMS, {"bridg"}) == pytest.approx(3 / 3)
    assert F.missing_rarest(TERMS, {"cost"}) == pytest.approx(1 / 3)
    assert F.missing_rarest(TERMS, {"bridg", "cost"}) == 0.0


def test_bigrams_novelty_unknown():
    assert F.bigram_share(TERMS, ("the", "bridg", "cost", "money")) == 1.0
    assert F.bigram_share(TERMS, ("cost", "bridg")) == 0.0
    assert F.novelty(TERMS, frozenset({"bridg", "euro", "million"})) == pytest.approx(2 / 3)
    assert F.novelty(TERMS, frozenset()) == 0.0
    unknown = make_terms("q", ["bridg", "zzz"], idf({"bridg": 1.0}), 10)
    top = unknown.idf["zzz"]
    assert F.unknown_share(unknown) == pytest.approx(top / (1 + top))
    assert F.unknown_share(TERMS) == 0.0


@pytest.mark.parametrize("text, headline", [
    ("It cost 38 million euros.", 0.0), ('"We do not support it."', 0.0),
    ("Bridge opens in Lyon", 1.0), ("Who pays?", 0.0)])
def test_headline(text, headline):
    assert F.is_headline(text) == headline


def test_type_mismatch_wants_something_the_question_lacks():
    assert F.type_mismatch(TERMS, "It cost 38 million euros.") == 0.0
    assert F.type_mismatch(TERMS, "The bridge was opened on Monday.") == 1.0
    who = make_terms("Who opened the bridge?", ["open", "bridg"], lambda t: 1.0, 5)
    assert F.type_mismatch(who, "Mayor Anne Hidalgo opened it.") == 0.0
    assert F.type_mismatch(who, "the bridge was opened.") == 1.0
    assert F.has_type(None, "anything", ())


def test_negation_mismatch():
    negated = make_terms("Who did not come?", ["come"], lambda t: 1.0, 5)
    assert F.negation_mismatch(negated, "Blinken came.") == 1.0
    assert F.negation_mismatch(negated, "Blinken did not come.") == 0.0
    assert F.negation_mismatch(TERMS, "Blinken came.") == 0.0


def test_window_cosine_of_the_summed_vectors():
    q = np.array([1.0, 0.0], dtype=np.float32)
    window = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    assert F.window_cosine(q, window) == pytest.approx(1 / np.sqrt(2))
    assert F.window_cosine(q, np.zeros((1, 2), np.float32)) == 0.0


def test_sentence_features_in_table_order():
    q = np.array([1.0, 0.0], dtype=np.float32)
    f = F.sentence_features(
        TERMS, q, dense=0.5, passage_dense=0.4, passage_score=0.9,
        text="It cost 38 million euros.", tokens=frozenset({"cost", "million", "euro"}),
        words=("cost", "million", "euro"), context_tokens={"cost", "bridg"},
        window_vectors=np.array([[1.0, 0.0]], np.float32), unknown=0.0)
    named = dict(zip(F.FEATURES, f, strict=True))
    assert named == pytest.approx({
        "dense": 0.5, "passage_dense": 0.4, "coverage": 3 / 4, "context_coverage": 1.0,
        "passage_score": 0.9, "unknown": 0.0, "headline": 0.0, "type_mismatch": 0.0,
        "novelty": 2 / 3, "missing_rarest": 0.0, "context_dense": 1.0, "bigrams": 0.0,
        "negation": 0.0})


def _sent(i, text):
    from embeddings.lexical import tokenize

    return i, text, frozenset(tokenize(text))


def test_extent_takes_the_neighbour_with_the_asked_type_next_one_first():
    before, chosen, after = (_sent(4, "Costs were 12 million in 2020."),
                             _sent(5, "The bridge opened on Monday."),
                             _sent(6, "It cost 38 million euros."))
    neighbours = [before, after]
    assert F.extent(TERMS, 5, chosen[1], chosen[2], neighbours, mismatch=True) == (5, 6)
    assert F.extent(TERMS, 5, chosen[1], chosen[2], [before], mismatch=True) == (4, 5)
    # without the mismatch flag only a clear gain in coverage extends it: "cost" (idf 3
    # of 4) is new in the next sentence, 3/4 - 1/4 = 0.5 >= 0.25
    assert F.extent(TERMS, 5, chosen[1], chosen[2], neighbours, mismatch=False) == (5, 6)
    assert F.extent(TERMS, 5, chosen[1], chosen[2], [], mismatch=True) == (5, 5)


def test_extent_of_a_sentence_leaning_back_takes_the_one_before():
    lean = _sent(8, "He said it was worth every cent of the cost of the bridge.")
    before = _sent(7, "The mayor spoke.")
    assert F.extent(TERMS, 8, lean[1], lean[2], [before], mismatch=False) == (7, 8)
    # not when the sentence before is in another file (not a neighbour)
    assert F.extent(TERMS, 8, lean[1], lean[2], [], mismatch=False) == (8, 8)
