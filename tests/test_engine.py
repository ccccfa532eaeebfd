"""qa/engine.py: question validation, follow-ups, the Python API."""

from __future__ import annotations

import pytest

from qa.engine import QuestionError, clean_question


@pytest.mark.parametrize("bad,message", [
    ("", "empty"), ("   \n\t ", "empty"), ("\x00\x01", "empty"), (None, "must be a string"),
    (42, "must be a string"), ("x" * 1001, "limit is 1000"),
])
def test_bad_questions_are_refused(bad, message):
    with pytest.raises(QuestionError, match=message):
        clean_question(bad, 1000)


def test_questions_are_normalised():
    assert clean_question("  Who\tmet\x07 Xi?\n", 100) == "Who met Xi?"


def test_assistant_ask_rejects_bad_input(seeds_assistant):
    with pytest.raises(QuestionError):
        seeds_assistant.ask("   ")
    with pytest.raises(QuestionError, match="limit"):
        seeds_assistant.ask("why " * 400)
    with pytest.raises(ValueError, match="top_k"):
        seeds_assistant.ask("Who met Xi?", top_k=0)


def test_follow_up_answer_is_about_the_earlier_subject(seeds_assistant):
    # the follow-up's subject, not the confidence: the reader of 2026-12-05 is less sure of
    # "What did he say about North Korea? (Blinken)" (0.35) than of the question written
    # out (0.48; threshold 0.38), so the best sentence is checked whatever its confidence
    history = [{"question": "What did Blinken say about Taiwan?", "answer": "…"}]
    answer = seeds_assistant.ask("What did he say about North Korea?", history=history,
                                 abstain=False)
    assert answer.searched_for.endswith("(Blinken)")
    assert "DPRK" in answer.answer or "North Korea" in answer.answer
    assert answer.timings_ms["total"] > 0


def test_python_api_loads_from_the_package(seeds_assistant):
    import qa

    assert qa.Assistant is type(seeds_assistant)
    answer = seeds_assistant.ask("Who declined to meet Lloyd Austin?")
    d = answer.to_dict()
    assert set(d) == {"question", "answer", "answerable", "confidence", "citations",
                      "answer_span", "passages", "searched_for", "timings_ms"}
    assert d["question"] == "Who declined to meet Lloyd Austin?" and d["timings_ms"]["total"] > 0
    assert set(d["citations"][0]) == {"source", "title", "quote", "start", "end", "score",
                                      "page", "heading"}
    assert set(d["passages"][0]) >= {"source", "text", "start", "end", "score"}
