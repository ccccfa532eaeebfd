"""Property-based fuzzing of `Assistant.ask`: any input gives an Answer or a clear error."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.answering.answer import Answer
from qa.engine import QuestionError

QUESTIONS = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.characters(blacklist_categories=()), max_size=60),
    st.text(min_size=990, max_size=1100),
    st.from_regex(r"[\x00-\x1f\u202e\u200b\ufeff]{0,20}(who|what|how many)[ \w?]{0,40}",
                  fullmatch=True),
)
OTHER = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True), st.binary(max_size=20),
                  st.lists(st.integers(), max_size=3), st.dictionaries(st.text(), st.integers()))


def _valid(answer: Answer, assistant) -> None:
    assert isinstance(answer, Answer)
    assert 0.0 <= answer.confidence <= 1.0
    assert answer.answerable == bool(answer.citations)
    texts = {}
    for c in answer.citations:
        if c.source not in texts:
            texts[c.source] = (assistant.settings.corpus / c.source).read_text(encoding="utf-8")
        assert texts[c.source][c.start:c.end] == c.quote


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(question=QUESTIONS)
def test_any_text_gives_an_answer_or_a_question_error(seeds_assistant, question):
    try:
        answer = seeds_assistant.ask(question)
    except QuestionError:
        return
    _valid(answer, seeds_assistant)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(question=OTHER)
def test_wrong_types_are_question_errors(seeds_assistant, question):
    try:
        seeds_assistant.ask(question)
    except QuestionError as exc:
        assert "string" in str(exc)
    else:
        raise AssertionError("a non-string question was accepted")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.one_of(st.none(), st.lists(st.one_of(
    st.dictionaries(st.sampled_from(["question", "answer", "x"]),
                    st.one_of(st.text(max_size=50), st.integers(), st.none())),
    st.text(max_size=10), st.integers()), max_size=4)))
def test_odd_histories_never_crash(seeds_assistant, history):
    _valid(seeds_assistant.ask("What did he say about North Korea?", history=history),
           seeds_assistant)
