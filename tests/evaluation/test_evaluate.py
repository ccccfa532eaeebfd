"""qa/evaluation/run.py: question-set parsing, judging, metrics and the `qa eval` command."""

from __future__ import annotations

import json

import pytest

from qa.evaluation.run import (
    contains_answer,
    failures,
    load_questions,
    parse_bounds,
    summarize,
    token_f1,
)


def _write(tmp_path, lines):
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


GOOD = ('{"id": "q1", "question": "Who?", "answers": ["Xi"], "sources": ["a.txt"], '
        '"answerable": true}')


@pytest.mark.parametrize("bad,message", [
    ("{oops", "q.jsonl:2: invalid JSON"),
    ('{"id": "q2", "question": "Who?"}', "q.jsonl:2: missing field(s) answerable"),
    ('{"id": "q1", "question": "Again?", "answerable": false}', "q.jsonl:2: duplicate id 'q1'"),
    ('{"id": "q2", "question": "Who?", "answerable": true, "answers": []}',
     "q.jsonl:2: an answerable question needs at least one answer"),
    ('{"id": "q2", "question": "", "answerable": false}', "q.jsonl:2: question must be"),
    ('{"id": "q2", "question": "W", "answerable": "yes"}', "q.jsonl:2: answerable must be"),
    ('[1, 2]', "q.jsonl:2: expected an object"),
])
def test_bad_question_files_name_the_line(tmp_path, bad, message):
    with pytest.raises(ValueError) as err:
        load_questions(_write(tmp_path, [GOOD, bad]))
    assert message in str(err.value)


def test_matching_is_case_space_and_quote_insensitive():
    assert contains_answer("Blinken said the US does “not  support”\nit", ['"NOT SUPPORT"'])
    assert not contains_answer("nothing here", ["Xi"])
    assert token_f1("The Anchorage talks", ["Anchorage"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("", ["x"]) == 0.0


def _row(answerable, correct, abstained, rank, conf=0.9):
    return {"answerable": answerable, "judgement": {
        "answerable": answerable, "correct": correct, "abstained": abstained,
        "raw_correct": correct and answerable, "raw_confidence": conf,
        "first_hit_rank": rank, "citations_verbatim": True, "n_citations": 0 if abstained else 1,
        "cited_source_ok": True if answerable and not abstained else None,
        "token_f1": 0.5 if correct and answerable else 0.0,
        "prediction": "" if abstained else "x",
        "squad_em": 1.0 if correct else 0.0, "squad_f1": 1.0 if correct else 0.0,
        "timings_ms": {"encode": 1.0, "retrieve": 2.0, "answer": 3.0, "total": 6.0}}}


def test_summary_metrics_exact():
    rows = [_row(True, True, False, 1), _row(True, False, False, 3), _row(True, False, True, None),
            _row(False, True, True, None), _row(False, False, False, None)]
    m = summarize(rows, 0.5)
    assert m["accuracy_at_1"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["hit_at_1"] == pytest.approx(1 / 3, abs=1e-4)
    assert m["hit_at_5"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3) / 3, abs=1e-4)
    assert m["abstain_unanswerable"] == 0.5 and m["false_abstention"] == pytest.approx(1 / 3,
                                                                                      abs=1e-4)
    assert m["total_p50_ms"] == 6.0
    assert m["squad_em"] == m["squad_f1"] == pytest.approx(2 / 5)
    assert m["squad_em_answerable"] == pytest.approx(1 / 3, abs=1e-4)
    bounds = parse_bounds(["accuracy_at_1=0.9", "false-abstention=0.5"])
    assert failures(m, bounds) == ["accuracy_at_1 = 0.3333 is below 0.9"]
    with pytest.raises(ValueError, match="unknown metric"):
        parse_bounds(["speed=1"])



# metrics.json of the rows below as summarize wrote it before the measures moved into
# qa.evaluation.measures (machine left out): keys, order, values and rounding.
METRICS_JSON = (
    '{"questions": 6, "answerable": 4, "unanswerable": 2, "accuracy": 0.5, "accuracy_at_1": '
    '0.5, "hit_at_1": 0.25, "hit_at_5": 0.75, "hit_at_10": 0.75, "mrr": 0.4583, '
    '"abstain_unanswerable": 0.5, "false_abstention": 0.25, "precision_when_answered": '
    '0.6667, "citations_verbatim": 1.0, "cited_source_ok": 1.0, "token_f1": 0.25, "squad_em":'
    ' 0.5, "squad_f1": 0.5, "squad_em_answerable": 0.5, "squad_f1_answerable": 0.5, '
    '"threshold": 0.5, "encode_p50_ms": 1.83, "encode_p95_ms": 2.58, "retrieve_p50_ms": 5.0,'
    ' "retrieve_p95_ms": 9.5, "answer_p50_ms": 5.78, "answer_p95_ms": 8.28, "total_p50_ms": '
    '6.71, "total_p95_ms": 9.25, "latency_p50_ms": 6.71, "latency_p95_ms": 9.25}')


def test_summary_is_metrics_json_as_before():
    rows = [_row(True, True, False, 1, 0.8), _row(True, False, False, 3),
            _row(True, False, True, None, 0.2), _row(False, True, True, None, 0.1),
            _row(False, False, False, None), _row(True, True, False, 2, 0.7)]
    for i, r in enumerate(rows):  # a stage missing from one row counts 0
        r["judgement"]["timings_ms"] = {"encode": 1.0 + i / 3, "retrieve": 2.0 * i,
                                        "answer": 3.0 + i * 1.111,
                                        **({"total": 6.0 + i * i / 7} if i != 2 else {})}
    m = summarize(rows, 0.5)
    assert list(m)[list(m).index("threshold") + 1] == "machine"
    m.pop("machine")
    assert json.dumps(m) == METRICS_JSON


def test_every_measure_is_named_and_says_what_it_measures():
    from qa.evaluation import measures

    table = (*measures.MEASURES, *measures.LATENCY)
    assert len({m.name for m in table}) == len(table) == len(measures.by_name())
    for m in table:
        assert m.description and m.compute.__doc__.strip(), m.name
    assert "Voorhees" in measures.mrr.__doc__
    assert all("Rajpurkar" in f.__doc__ for f in (
        measures.squad_em, measures.squad_f1, measures.squad_em_answerable,
        measures.squad_f1_answerable))
    assert "El-Yaniv" in measures.coverage_curve.__doc__
    assert measures.by_name()["hit_at_5"].exact(
        [{"answerable": True, "first_hit_rank": 5}, {"answerable": True,
                                                      "first_hit_rank": 6}]) == 0.5

def test_qa_eval_end_to_end(tmp_path, seeds_copy, seeds_assistant):
    from test_cli import qa

    questions = _write(tmp_path, [
        '{"id": "a", "question": "Who declined to meet Lloyd Austin?", "answers": '
        '["Li Shangfu"], "sources": ["001_340206877254da52.txt"], "answerable": true}',
        '{"id": "b", "question": "Who won the 2024 Super Bowl?", "answers": [], "sources": [],'
        ' "answerable": false}'])
    out_dir = tmp_path / "out"
    index = seeds_assistant.settings.index_dir
    run = qa("eval", str(questions), "--corpus", str(seeds_copy), "--index", str(index),
             "--out", str(out_dir), "--fail-under", "accuracy=1.0")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b"]
    assert {"answer", "answerable", "confidence", "citations", "passages"} <= set(rows[0])
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["accuracy"] == 1.0 and metrics["citations_verbatim"] == 1.0
    report = (out_dir / "report.md").read_text()
    assert "coverage.png" in report and (out_dir / "coverage.png").stat().st_size > 1000
    assert "accuracy_at_1" in run.stdout
    bad = qa("eval", str(questions), "--corpus", str(seeds_copy), "--index", str(index),
             "--out", str(out_dir), "--fail-under", "hit_at_1=1.01")
    assert bad.returncode == 1 and "FAIL hit_at_1" in bad.stderr
    broken = _write(tmp_path, ["{nope"])
    err = qa("eval", str(broken), "--corpus", str(seeds_copy), "--index", str(index))
    assert err.returncode == 2 and "q.jsonl:1: invalid JSON" in err.stderr
    assert "Traceback" not in err.stderr


# --- SQuAD-format files and report.html -----------------------------------------------

AUSTIN_PARAGRAPH = (
    "Foreign Minister Qin Gang accepted an invitation on Sunday to visit Washington after "
    "seven and a half hours of talks. Chinese Defense Minister Li Shangfu, however, has "
    "declined to meet with US counterpart Lloyd Austin until Washington lifts sanctions "
    "against him.")
HARBOUR_PARAGRAPH = (
    "The Zephyr harbour reopened on Tuesday after a storm closed it for nine days. Harbour "
    "master Ilse Varga said the cranes were undamaged and that shipping would resume "
    "within a week.")


def three_questions() -> dict:
    """A SQuAD 2.0 file of three questions, two answerable and one not."""
    def answers(*texts, context):
        return [{"text": t, "answer_start": context.index(t)} for t in texts]

    return {"version": "v2.0", "data": [
        {"title": "Defense_talks", "paragraphs": [{"context": AUSTIN_PARAGRAPH, "qas": [
            {"id": "a1", "question": "Who declined to meet Lloyd Austin?", "is_impossible": False,
             "answers": answers("Chinese Defense Minister Li Shangfu", "Li Shangfu",
                                context=AUSTIN_PARAGRAPH)},
            {"id": "u1", "question": "Who won the 2024 Super Bowl?", "is_impossible": True,
             "answers": [], "plausible_answers": answers("Qin Gang",
                                                         context=AUSTIN_PARAGRAPH)}]}]},
        {"title": "Zephyr_harbour", "paragraphs": [{"context": HARBOUR_PARAGRAPH, "qas": [
            {"id": "h1", "question": "When did the Zephyr harbour reopen?",
             "is_impossible": False,
             "answers": answers("on Tuesday", "Tuesday", context=HARBOUR_PARAGRAPH)}]}]},
    ]}


def test_qa_eval_of_a_squad_file_asks_its_own_articles(tmp_path, _isolated_home):
    from test_cli import qa

    path = tmp_path / "three.json"
    path.write_text(json.dumps(three_questions()), encoding="utf-8")
    out_dir = tmp_path / "out"
    run = qa("eval", str(path), "--out", str(out_dir), timeout=600)
    assert run.returncode == 0, run.stderr
    assert "three.json: SQuAD v2.0, 2 articles, 3 questions (1 unanswerable)" in run.stderr
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert (metrics["questions"], metrics["answerable"], metrics["unanswerable"]) == (3, 2, 1)
    for key in ("squad_em", "squad_f1", "squad_em_answerable", "squad_f1_answerable"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert "squad_em" in run.stdout and "squad_f1" in run.stdout
    rows = {r["id"]: r for r in map(json.loads,
                                    (out_dir / "results.jsonl").read_text().splitlines())}
    a1 = rows["a1"]
    assert a1["judgement"]["correct"] and a1["citations"][0]["source"] == "Defense_talks.txt"
    assert "Li Shangfu" in a1["judgement"]["prediction"]
    assert a1["judgement"]["squad_f1"] > 0
    # the corpus and its index are the file's own, under QA_HOME
    corpus = next((_isolated_home / "squad").glob("three-*"))
    assert sorted(p.name for p in corpus.iterdir()) == ["Defense_talks.txt",
                                                        "Zephyr_harbour.txt"]
    assert any(p.name.startswith("three-") for p in (_isolated_home / "indexes").iterdir())
    page = (out_dir / "report.html").read_text(encoding="utf-8")
    assert "squad_f1" in page and "data:image/png;base64," in page


def test_qa_eval_of_a_squad_file_against_a_corpus_of_ones_own(tmp_path, seeds_copy,
                                                              seeds_assistant):
    from test_cli import qa

    path = tmp_path / "three.json"
    data = three_questions()
    data["data"] = data["data"][:1]  # the Austin question and the unanswerable one
    path.write_text(json.dumps(data), encoding="utf-8")
    out_dir = tmp_path / "out"
    run = qa("eval", str(path), "--corpus", str(seeds_copy), "--index",
             str(seeds_assistant.settings.index_dir), "--out", str(out_dir))
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in (out_dir / "results.jsonl").read_text().splitlines()]
    a1 = rows[0]  # asked of seeds/: its article is not there, so any file may be cited
    assert a1["citations"][0]["source"] == "001_340206877254da52.txt"
    assert a1["judgement"]["correct"] and a1["judgement"]["cited_source_ok"]
    assert json.loads((out_dir / "metrics.json").read_text())["questions"] == 2
