"""qa/evaluate.py: question-set parsing, judging, metrics and the `qa eval` command."""

from __future__ import annotations

import json

import pytest

from qa.evaluate import (
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
    bounds = parse_bounds(["accuracy_at_1=0.9", "false-abstention=0.5"])
    assert failures(m, bounds) == ["accuracy_at_1 = 0.3333 is below 0.9"]
    with pytest.raises(ValueError, match="unknown metric"):
        parse_bounds(["speed=1"])


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
