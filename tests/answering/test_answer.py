"""qa/answering/answer.py on hand-made indexes: the quote and its extension, citations and their
offsets, corroboration from other files, abstention, the answer object."""

from __future__ import annotations

import pytest

from corpora import query_of, tiny_index
from qa.answering.answer import ABSTAIN_TEXT, Choice, apply_threshold, balance_quotes, compose
from qa.answering.features import FEATURES, extent
from qa.retrieval.retrieve import SearchSettings

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)

NO_MISMATCH = tuple(0.0 for _ in FEATURES)
MISMATCH = tuple(1.0 if f == "type_mismatch" else 0.0 for f in FEATURES)
TEXTS = {
    "bridge.txt": "The Lyon bridge opened on Monday. It cost 38 million euros. "
                  "He said it was worth it. Traffic is expected to ease.",
    "agency.txt": "The bridge in Lyon cost 38 million euros, the city said.",
    "weather.txt": "Paris had mild weather all week.",
}


@pytest.fixture(scope="module")
def index():
    return tiny_index(TEXTS, chunk_tokens=200, overlap=0)


def sentence(index, text):
    return next(i for i, s in enumerate(index.sentences) if s.text == text)


def extent_of(q, index, i, mismatch):
    """The quote's sentences for sentence i, as the ranker gives them its candidates."""
    return extent(q.terms, i, index.sentences[i].text, index.tokens(i),
                  [(j, index.sentences[j].text, index.tokens(j)) for j in index.neighbours(i)],
                  mismatch)


def answer(index, question, text, confidence=0.9, features=NO_MISMATCH, threshold=0.5,
           phrase=None):
    q = query_of(index, question)
    passages = index.search(q, SearchSettings(candidates=10))
    i = sentence(index, text)
    mismatch = bool(features[FEATURES.index("type_mismatch")])
    span = None if phrase else extent_of(q, index, i, mismatch)
    choice = Choice(i, confidence, features, phrase, span)
    quoted = index.quote(*span) if span and span[0] != span[1] else None
    return compose(q, index, passages, choice, quoted, top_k=2, threshold=threshold,
                   corroborate_similarity=0.7)


def test_a_chosen_sentence_is_quoted_verbatim_with_file_offsets(index):
    a = answer(index, "Will traffic ease?", "Traffic is expected to ease.")
    assert a.answerable and a.answer == "Traffic is expected to ease."
    c = a.citations[0]
    assert (c.source, c.quote, c.score) == ("bridge.txt", a.answer, 0.9)
    assert TEXTS["bridge.txt"][c.start:c.end] == c.quote and c.title == "Bridge"
    assert len(a.passages) == 2 and a.answer_span is None


def test_a_sentence_without_the_asked_type_takes_the_neighbour_that_has_it(index):
    a = answer(index, "How much did the Lyon bridge cost?", "The Lyon bridge opened on Monday.",
               features=MISMATCH)
    assert a.answer == "The Lyon bridge opened on Monday. It cost 38 million euros."
    c = a.citations[0]
    assert TEXTS["bridge.txt"][c.start:c.end] == a.answer


def test_a_sentence_leaning_back_takes_the_one_before(index):
    a = answer(index, "Was the bridge worth it?", "He said it was worth it.")
    assert a.answer == "It cost 38 million euros. He said it was worth it."
    # a marked answer phrase pins the quote to its sentence
    c = sentence(index, "He said it was worth it.")
    start = index.sentences[c].start
    pinned = answer(index, "Was the bridge worth it?", "He said it was worth it.",
                    phrase=(start, start + 2))
    assert pinned.answer == "He said it was worth it."


def test_other_files_stating_the_same_fact_are_cited_too(index):
    a = answer(index, "How much did the Lyon bridge cost?", "It cost 38 million euros.")
    assert [c.source for c in a.citations] == ["bridge.txt", "agency.txt"]
    also = a.citations[1]
    assert also.quote == TEXTS["agency.txt"] and 0.7 <= also.score <= 1.0


def test_below_the_threshold_it_abstains_and_keeps_the_passages(index):
    a = answer(index, "How much did the bridge cost?", "It cost 38 million euros.",
               confidence=0.3, threshold=0.5)
    assert not a.answerable and a.answer == ABSTAIN_TEXT and a.citations == ()
    assert a.confidence == 0.3 and a.passages
    raw = answer(index, "How much did the bridge cost?", "It cost 38 million euros.",
                 confidence=0.3, threshold=0.0)
    assert raw.answerable and apply_threshold(raw, 0.5).answer == ABSTAIN_TEXT
    assert apply_threshold(raw, 0.3) is raw


def test_no_candidate_or_no_content_word_abstains(index):
    q = query_of(index, "How much did the bridge cost?")
    passages = index.search(q, SearchSettings())
    none = compose(q, index, passages, None, top_k=5, threshold=0.0,
                   corroborate_similarity=0.7)
    assert not none.answerable and none.confidence == 0.0
    empty = query_of(index, "What is it?")  # stop words only
    assert not compose(empty, index, passages, Choice(0, 0.99, NO_MISMATCH), top_k=5,
                       threshold=0.0, corroborate_similarity=0.7).answerable


def test_the_answer_object(index):
    start = TEXTS["bridge.txt"].index("38 million euros")
    a = answer(index, "How much did the bridge cost?", "It cost 38 million euros.",
               phrase=(start, start + 16))
    d = a.to_dict()
    assert d["answer_span"] == {"start": start, "end": start + 16}
    assert TEXTS["bridge.txt"][start:start + 16] == "38 million euros"
    assert set(d) == {"question", "answer", "answerable", "confidence", "citations",
                      "answer_span", "passages", "searched_for", "timings_ms"}
    assert d["question"] == d["searched_for"] == "How much did the bridge cost?"


def test_a_pair_covering_clearly_more_of_the_question_is_quoted(index):
    a = answer(index, "What was the bridge worth?", "Traffic is expected to ease.")
    assert a.answer == "He said it was worth it. Traffic is expected to ease."


@pytest.mark.parametrize("text, want", [
    ('"We do not support Taiwan independence.', "We do not support Taiwan independence."),
    ('We remain opposed to any changes by either side."', "We remain opposed to any changes "
                                                        "by either side."),
    ("“It was very good,” Xi said.", "“It was very good,” Xi said."),
    ("“We want to see development.", "We want to see development."),
    ('He said "yes" twice.', 'He said "yes" twice.'),
])
def test_unbalanced_quotation_marks_are_left_out_of_the_quote(text, want):
    file_text = "Intro. " + text + " Outro."
    start = file_text.index(text)
    s, e, quote = balance_quotes(start, start + len(text), text)
    assert quote == want == file_text[s:e]


def test_flowed_text_keeps_its_length_paragraphs_and_table_rows():
    from qa.answering.answer import flowed

    wrapped = "The harbour handled a record\nnumber of ships. Its traffic infor-\nmation."
    assert flowed(wrapped) == ("The harbour handled a record number of ships. Its traffic "
                               "infor-\u200bmation.")
    table = "Table 1.\n\nCargo | 2024\nGrain | 4.1"
    assert flowed(table) == table  # paragraphs and a table's rows keep their lines
    for text in (wrapped, table, "one line"):
        assert len(flowed(text)) == len(text)
