"""qa/retrieval/conversation.py: follow-ups borrow context only when they need it (no model)."""

from __future__ import annotations

import pytest

from qa.retrieval.conversation import contextualize, is_elliptic, points_back

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)

TAIWAN = [{"question": "What did Blinken say about Taiwan?", "answer": "…"}]
NORTH_KOREA = [{"question": "What did Blinken say about North Korea?", "answer": "…"}]


def test_follow_up_borrows_names_from_the_previous_question():
    assert contextualize("What did he say about North Korea?", TAIWAN) == (
        "What did he say about North Korea? (Blinken)")
    # a self-contained question is searched as it is
    assert contextualize("What did Xi say about competition with the US?", TAIWAN) == (
        "What did Xi say about competition with the US?")
    assert contextualize("What did he say?", []) == "What did he say?"
    assert contextualize("What did he say?", [{"bogus": 1}]) == "What did he say?"


def test_personal_pronoun_skips_acronyms():
    history = [{"question": "Does the US support Blinken's statement?", "answer": "…"}]
    assert contextualize("What did he say about North Korea?", history).endswith("(Blinken)")


@pytest.mark.parametrize("question", [
    "What is the capital of France?",
    "Who is Xi?",
    "Who declined to meet Lloyd Austin?",
    "How much was the foreign aid package?",
    "Who said that the US supports Taiwan?",
    "Is there a ceasefire in Gaza?",
    "And what did Xi say about Taiwan?",
])
def test_a_complete_question_is_searched_as_it_is(question):
    assert not points_back(question) and not is_elliptic(question)
    assert contextualize(question, NORTH_KOREA) == question


@pytest.mark.parametrize("question,expected", [
    ("And Japan?", "And Japan? (Blinken, Taiwan)"),
    ("What about 2019?", "What about 2019? (Blinken, Taiwan)"),
    ("Why?", "Why? (Blinken, Taiwan)"),
    ("In which year?", "In which year? (Blinken, Taiwan)"),
    ("And what about the South China Sea?",
     "And what about the South China Sea? (Blinken, Taiwan)"),
])
def test_an_elliptic_question_gets_context(question, expected):
    assert is_elliptic(question)
    assert contextualize(question, TAIWAN) == expected


@pytest.mark.parametrize("question,expected", [
    ("What did she say about trade?", "What did she say about trade? (Blinken)"),
    ("Why did they disagree?", "Why did they disagree? (Blinken, Taiwan)"),
    ("When was that?", "When was that? (Blinken, Taiwan)"),
    ("Who else was there?", "Who else was there? (Blinken, Taiwan)"),
    ("Did China say the same?", "Did China say the same? (Blinken, Taiwan)"),
    ("Does the US still support it?", "Does the US still support it? (Blinken, Taiwan)"),
])
def test_a_reference_to_an_earlier_turn_gets_context(question, expected):
    assert points_back(question)
    assert contextualize(question, TAIWAN) == expected


def test_only_the_latest_question_gives_context():
    history = [*NORTH_KOREA, {"question": "   ", "answer": ""},
               {"question": "What is the capital of France?", "answer": ""}]
    assert contextualize("And Japan?", history) == "And Japan? (France)"
