"""qa/evaluation/squad.py (SQuAD's exact match and F1) and qa/evaluation/squad_sets.py
(SQuAD-format files as
question sets with their own corpus). No model."""

from __future__ import annotations

import json

import pytest

from qa.answering.answer import ABSTAIN_TEXT, Answer, Citation
from qa.evaluation.squad import exact_match, f1, normalize_answer, prediction_of, scores
from qa.evaluation.squad_sets import against, corpus_dir, file_name, read, write_corpus


def test_official_normalisation():
    assert normalize_answer("The  Norman conquest!") == "norman conquest"
    assert normalize_answer("an apple, a pear and THE plum.") == "apple pear and plum"
    assert normalize_answer("Anne's thesis") == "annes thesis"  # "an"/"the" only as words
    assert normalize_answer("10–12") == "10–12"  # as the script: ASCII punctuation only


def test_exact_match_and_f1_as_the_official_script():
    assert exact_match("the Normans", "Normans") == 1.0
    assert exact_match("Normans in France", "Normans") == 0.0
    assert f1("in the 10th century", "10th century") == pytest.approx(0.8)  # p 2/3, r 1
    assert f1("Paris Paris", "Paris") == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert f1("London", "Paris") == 0.0


def test_scores_take_the_best_gold_and_score_abstentions():
    assert scores("10th century", ["the 10th century", "10th"]) == (1.0, 1.0)
    assert scores("in the 10th century", ["10th", "10th century"]) == (0.0, pytest.approx(0.8))
    assert scores("", []) == (1.0, 1.0)  # abstained on an unanswerable question: right
    assert scores("Paris", []) == (0.0, 0.0)  # answered it: wrong
    assert scores("", ["Paris"]) == (0.0, 0.0)  # abstained on an answerable one: wrong
    assert scores("", ["the", "a"]) == (1.0, 1.0)  # gold that normalises to nothing: none


def _answer(span, answerable=True) -> Answer:
    quote = Citation("a.txt", "A", "Li Shangfu declined to meet Austin.", 100, 135, 0.8)
    if not answerable:
        return Answer("Who?", ABSTAIN_TEXT, False, 0.1, (), ())
    return Answer("Who?", quote.quote, True, 0.8, (quote,), (), "Who?", answer_span=span)


def test_the_prediction_is_the_marked_phrase_else_the_quote():
    assert prediction_of(_answer((100, 110))) == "Li Shangfu"
    assert prediction_of(_answer(None)) == "Li Shangfu declined to meet Austin."
    assert prediction_of(_answer((90, 110))) == "Li Shangfu declined to meet Austin."
    assert prediction_of(_answer(None, answerable=False)) == ""


def squad_v2() -> dict:
    """A SQuAD 2.0 file as published: two articles of the same title, an unanswerable
    question with plausible answers, duplicate gold answers."""
    return {"version": "v2.0", "data": [
        {"title": "Normans", "paragraphs": [
            {"context": "The Normans were the people who in the 10th and 11th centuries "
                        "gave their name to Normandy,\na region in France.",
             "qas": [{"id": "n1", "question": "In what country is Normandy located?",
                      "answers": [{"text": "France", "answer_start": 97},
                                  {"text": "France", "answer_start": 97},
                                  {"text": " France ", "answer_start": 96}],
                      "is_impossible": False},
                     {"id": "n2", "question": "Who gave their name to Paris?",
                      "answers": [], "plausible_answers": [{"text": "Normans",
                                                            "answer_start": 4}],
                      "is_impossible": True}]},
            {"context": "Rollo was their first ruler.", "qas": []}]},
        {"title": "Normans", "paragraphs": [
            {"context": "A second article of that title.",
             "qas": [{"id": "n3", "question": "What is this?",
                      "answers": [{"text": "A second article", "answer_start": 0}],
                      "is_impossible": False}]}]},
        {"title": "a/b: c?", "paragraphs": [{"context": "Odd title.", "qas": []}]},
    ]}


def _write(tmp_path, data, name="dev.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data, encoding="utf-8")
    return path


def test_a_squad_2_file_is_read_as_published(tmp_path):
    found = read(_write(tmp_path, squad_v2()))
    assert found.version == "v2.0"
    assert [a.source for a in found.articles] == ["Normans.txt", "Normans-2.txt", "a_b_ c_.txt"]
    assert found.articles[0].text == (
        "The Normans were the people who in the 10th and 11th centuries gave their name to "
        "Normandy, a region in France.\n\nRollo was their first ruler.\n")
    n1, n2, n3 = found.questions
    assert (n1.answers, n1.sources, n1.answerable) == (("France",), ("Normans.txt",), True)
    assert (n2.answers, n2.sources, n2.answerable) == ((), (), False)
    assert n3.sources == ("Normans-2.txt",)
    assert found.describe() == "dev.json: SQuAD v2.0, 3 articles, 3 questions (1 unanswerable)"


def test_a_squad_1_1_file_has_no_unanswerable_questions(tmp_path):
    data = {"version": "1.1", "data": [{"title": "Paris", "paragraphs": [
        {"context": "Paris is the capital of France.",
         "qas": [{"id": "p1", "question": "What is the capital of France?",
                  "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}
    found = read(_write(tmp_path, data))
    assert [q.answerable for q in found.questions] == [True]


def test_json_lines_are_not_squad(tmp_path):
    line = '{"id": "q1", "question": "Who?", "answers": ["Xi"], "answerable": true}'
    assert read(_write(tmp_path, line + "\n", "q.jsonl")) is None
    assert read(_write(tmp_path, line + "\n" + line + "\n", "two.jsonl")) is None


@pytest.mark.parametrize("change,message", [
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].pop("question"),
     "data[0].paragraphs[0].qas[0]: question must be a non-empty string"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][0].update(answers=[]),
     "data[0].paragraphs[0].qas[0]: an answerable question needs at least one answer"),
    (lambda d: d["data"][1]["paragraphs"][0]["qas"][0].update(id="n1"),
     "data[1].paragraphs[0].qas[0]: id must be a string, once in the file"),
    (lambda d: d["data"][0]["paragraphs"][1].update(context=""),
     "data[0].paragraphs[1]: context must be a non-empty string"),
    (lambda d: d["data"][0].update(paragraphs={}), "data[0].paragraphs: expected a list"),
    (lambda d: d.update(data="x"), "not a SQuAD set"),
    (lambda d: d["data"][0]["paragraphs"][0]["qas"][1].update(is_impossible="yes"),
     "is_impossible must be true or false"),
])
def test_bad_squad_files_name_the_place(tmp_path, change, message):
    data = squad_v2()
    change(data)
    with pytest.raises(ValueError) as err:
        read(_write(tmp_path, data))
    assert message in str(err.value) and "dev.json" in str(err.value)


def test_the_corpus_is_written_once_under_qa_home(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    found = read(_write(tmp_path, squad_v2()))
    folder = corpus_dir(found)
    assert folder.parent == tmp_path / "home" / "squad" and folder.name.startswith("dev-")
    assert write_corpus(found) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["Normans-2.txt", "Normans.txt",
                                                        "a_b_ c_.txt"]
    assert (folder / "Normans-2.txt").read_text() == "A second article of that title.\n"
    stamp = (folder / "Normans.txt").stat().st_mtime_ns
    write_corpus(found)
    assert (folder / "Normans.txt").stat().st_mtime_ns == stamp  # unchanged: not rewritten


def test_asked_of_another_corpus_a_question_keeps_the_sources_it_holds(tmp_path):
    found = read(_write(tmp_path, squad_v2()))
    corpus = tmp_path / "mine"
    corpus.mkdir()
    (corpus / "Normans.txt").write_text("x", encoding="utf-8")
    n1, n2, n3 = against(found.questions, corpus)
    assert n1.sources == ("Normans.txt",) and n3.sources == () and n2.sources == ()
    assert n3.answers == ("A second article",)


def test_file_names():
    taken: set[str] = set()
    assert file_name("Super_Bowl_50", taken) == "Super_Bowl_50.txt"
    assert file_name("super_bowl_50", taken) == "super_bowl_50-2.txt"  # case-blind clash
    assert file_name("..", taken) == "article.txt"
