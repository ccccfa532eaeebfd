"""qa/retrieval/query.py: question types, negation, IDF weights of the question's words."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qa.retrieval.query import make_query, make_terms, question_type, unknown_idf

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


@pytest.mark.parametrize("question, kind", [
    ("How much did the bridge cost?", "number"),
    ("How many troops does China have?", "number"),
    ("When was the treaty signed?", "date"),
    ("In what year did the war end?", "date"),
    ("Who did Blinken meet in Beijing?", "person"),
    ("Which minister declined to meet Austin?", "person"),
    ("Where did the talks take place?", "place"),
    ("Which city hosted the summit?", "place"),
    ("Why did the talks fail?", None),
])
def test_question_type(question, kind):
    assert question_type(question) == kind


def test_terms_weigh_words_by_idf_and_unknown_words_most():
    idf = {"bridg": 1.0, "cost": 2.0}.get
    terms = make_terms("How much did the bridge cost?", ["bridg", "cost", "zzz"],
                       lambda t: idf(t, 0.0), n_docs=3)
    top = math.log(1 + 3.5 / 0.5)
    assert terms.idf == {"bridg": 1.0, "cost": 2.0, "zzz": top} == {
        "bridg": 1.0, "cost": 2.0, "zzz": unknown_idf(3)}
    assert terms.known == {"bridg", "cost"}
    assert terms.mass == pytest.approx(3.0 + top) and terms.top_idf == top
    assert terms.kind == "number" and not terms.negated
    assert terms.bigrams == {("bridg", "cost"), ("cost", "zzz")}


def test_negation_and_repeated_words():
    terms = make_terms("Who did not go, and who did n't stay?", ["go", "go", "stay"],
                       lambda t: 1.0, 10)
    assert terms.negated and terms.words == ("go", "stay")
    assert terms.bigrams == {("go", "go"), ("go", "stay")}


def test_query_keeps_what_was_asked_and_what_was_searched():
    vec = np.ones(4, dtype=np.float32) / 2
    q = make_query("What did he say?", "What did he say? (Blinken)", vec, lambda t: 1.0, 5)
    assert q.text == "What did he say?" and q.searched_for.endswith("(Blinken)")
    assert q.tokens == ("blinken",) and q.terms.words == ("blinken",)
    assert q.vector is vec
