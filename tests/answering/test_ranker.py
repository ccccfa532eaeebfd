"""qa/answering/ranker.py: candidates from the best passages, scored by a hand-set calibration."""

from __future__ import annotations

import numpy as np
import pytest

from corpora import query_of, tiny_index
from qa.answering.calibration import Calibration
from qa.answering.features import FEATURES
from qa.answering.ranker import passage_sentences, score_candidates
from qa.retrieval.retrieve import SearchSettings

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)

TEXTS = {"bridge.txt": "The new bridge opened in Lyon on Monday. It cost 38 million euros. "
                       "Traffic is expected to ease.",
         "weather.txt": "Paris had mild weather all week. Rain is forecast for Sunday."}


def only(feature: str, weight: float = 1.0, bias: float = 0.0) -> Calibration:
    w = np.zeros(len(FEATURES))
    w[FEATURES.index(feature)] = weight
    return Calibration(w, bias, 0.5)


@pytest.fixture(scope="module")
def index():
    return tiny_index(TEXTS)


def test_every_sentence_of_the_best_passages_competes(index):
    q = query_of(index, "How much did the bridge cost?")
    passages = index.search(q, SearchSettings(candidates=10))
    one = score_candidates(q, index, passages, only("coverage"), 1)
    chunk = index.chunks[passages[0].chunk]
    assert {c.sentence for c in one} == set(range(chunk.first, chunk.last + 1))
    both = score_candidates(q, index, passages, only("coverage"), 2)
    assert len(both) == len(index.sentences)


def test_the_logit_is_the_weighted_features_plus_bias(index):
    q = query_of(index, "How much did the bridge cost?")
    passages = index.search(q, SearchSettings(candidates=10))
    found = score_candidates(q, index, passages, only("coverage", 2.0, -1.0), 2)
    k = FEATURES.index("coverage")
    assert all(c.z == pytest.approx(2.0 * c.features[k] - 1.0) for c in found)
    assert [c.z for c in found] == sorted((c.z for c in found), reverse=True)
    best = index.sentences[found[0].sentence].text
    assert best in ("The new bridge opened in Lyon on Monday.", "It cost 38 million euros.")
    # the type signal prefers the sentence with the amount
    typed = score_candidates(q, index, passages, only("type_mismatch", -5.0), 1)
    assert index.sentences[typed[0].sentence].text == "It cost 38 million euros."


def test_passage_sentences_maps_each_sentence_to_its_first_passage():
    from types import SimpleNamespace as NS

    chunks = [NS(first=0, last=2), NS(first=2, last=4), NS(first=5, last=5)]
    passages = [NS(chunk=1), NS(chunk=0), NS(chunk=2)]
    # sentence 2 is in both chunks 0 and 1: the better passage (0, chunk 1) keeps it
    assert passage_sentences(chunks, passages, 2) == {2: 0, 3: 0, 4: 0, 0: 1, 1: 1}
    assert passage_sentences(chunks, passages, 1) == {2: 0, 3: 0, 4: 0}
    assert passage_sentences(chunks, [], 3) == {}
