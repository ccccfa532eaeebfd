"""qa/answering/reading.py: which windows are read, how readings are stacked and chosen, on a
hand-made index with a stand-in reader (the real one is tested in test_reader.py and end
to end)."""

from __future__ import annotations

import pytest

from corpora import query_of, tiny_index
from qa.answering.calibration import default
from qa.answering.ranker import score_candidates
from qa.answering.reading import (
    LEGACY_READER_FEATURES,
    SPAN_FLOOR,
    Reading,
    ReadingStage,
    Stack,
    read,
    windows_for,
)
from qa.reader.runtime import ReaderUnusable, SentenceReading, WindowReading
from qa.retrieval.retrieve import SearchSettings

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)

TEXTS = {"bridge.txt": "The Lyon bridge opened on Monday. It cost 38 million euros. "
                       "Traffic is expected to ease. The mayor was pleased.",
         "weather.txt": "Paris had mild weather all week. Rain is forecast."}


class FakeReader:
    """Scores sentences holding `word` high and marks the word as the phrase."""

    def __init__(self, word: str) -> None:
        self.word, self.calls = word, []

    def read(self, question, windows):
        self.calls.append([list(w) for w in windows])
        out = []
        for w in windows:
            sents = []
            for text in w:
                at = text.find(self.word)
                hit = at >= 0
                sents.append(SentenceReading(3.0 if hit else -1.0, 2.0 if hit else -2.0,
                                             (at, at + len(self.word)) if hit else None,
                                             7.5 if hit else float("-inf")))
            out.append(WindowReading(1.0, tuple(sents)))
        return out


@pytest.fixture(scope="module")
def index():
    return tiny_index(TEXTS, chunk_tokens=200, overlap=0)


def test_windows_take_neighbours_and_merge_runs_of_one_document(index):
    b = [i for i, s in enumerate(index.sentences) if s.source == "bridge.txt"]
    w = [i for i, s in enumerate(index.sentences) if s.source == "weather.txt"]
    q = query_of(index, "How much did the bridge cost?")
    passages = index.search(q, SearchSettings(candidates=10))
    by_sentence = {c.sentence: c for c in score_candidates(q, index, passages,
                                                           default(), 10)}

    def of(*rows):
        return [by_sentence[i] for i in rows]

    assert by_sentence[b[1]].window == (b[0], b[2])  # the sentence with its neighbours
    assert windows_for(index, of(b[0])) == [[b[0], b[1]]]
    assert windows_for(index, of(b[0], b[3])) == [b]  # [0,1] and [2,3] touch: one window
    assert windows_for(index, of(b[1], w[0])) == [b[:3], w]
    # a longer window grows within its document only (--widen of calibrate_reader.py)
    assert windows_for(index, of(b[0]), widen=1) == [b[:3]]
    assert windows_for(index, of(b[1], w[0]), widen=5) == [b, w]


def test_readings_carry_reader_scores_ranker_logits_and_file_offsets(index):
    q = query_of(index, "How much did the bridge cost?")
    passages = index.search(q, SearchSettings(candidates=10))
    cands = score_candidates(q, index, passages, default(), 6)
    fake = FakeReader("38 million euros")
    readings = read(fake, q, index, cands, 2)
    assert len(fake.calls) == 1
    hit = [r for r in readings if r.phrase is not None]
    assert len(hit) == 1
    start, end = hit[0].phrase
    assert TEXTS["bridge.txt"][start:end] == "38 million euros" and hit[0].reader == 2.0
    # the phrase's start + end logit, and the floor for a sentence with no phrase
    assert hit[0].span == 7.5
    assert all(r.span == SPAN_FLOOR for r in readings if r.phrase is None)
    z = {c.sentence: c.z for c in cands}
    assert all(r.ranker == z[r.sentence] for r in readings if r.candidate)


def test_the_stage_picks_the_stacked_best_and_calibrates_it(index):
    q = query_of(index, "How much did the bridge cost?")
    passages = index.search(q, SearchSettings(candidates=10))
    cands = score_candidates(q, index, passages, default(), 6)
    stage = ReadingStage(FakeReader("38 million euros"), Stack(threshold=0.4), 3)
    choice = stage.choose(q, index, passages, cands, 0.5)
    assert index.sentences[choice.sentence].text == "It cost 38 million euros."
    assert choice.confidence == pytest.approx(1 / (1 + 2.718281828 ** -2.0), rel=1e-6)
    assert stage.threshold == 0.4 and choice.phrase is not None


def test_stack_files_of_other_features_are_refused():
    good = Stack().to_json()
    assert Stack.from_json(good, "x") == Stack()
    with pytest.raises(ReaderUnusable, match="refit"):
        Stack.from_json({**good, "features": ["reader"]}, "x")


def test_the_stack_weighs_the_phrase_logit_and_old_two_feature_stacks_still_load():
    a = Reading(1, reader=1.0, null=0.0, ranker=0.0, phrase=(0, 3), candidate=True, span=9.0)
    b = Reading(2, reader=1.5, null=0.0, ranker=0.0, phrase=(0, 3), candidate=True, span=1.0)
    new = Stack(weights=(1.0, 0.0, 0.2))
    assert new.score(a) > new.score(b)  # the phrase's logit turns the order
    old = Stack.from_json({**new.to_json(), "features": list(LEGACY_READER_FEATURES),
                           "weights": [1.0, 0.0]}, "x")
    assert old.features == LEGACY_READER_FEATURES and old.score(b) > old.score(a)
    assert Stack.from_json(old.to_json(), "x") == old
    with pytest.raises(ReaderUnusable, match="refit"):  # weights of another length
        Stack.from_json({**new.to_json(), "weights": [1.0, 0.0]}, "x")
