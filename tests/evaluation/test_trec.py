"""qa/evaluation/trec.py and `qa eval --run-file`: the retrieval as a TREC run with its
qrels, read back by ir_measures and checked against the rows it came from."""

from __future__ import annotations

import json

import pytest

from qa.answering.answer import Answer
from qa.evaluation import measures, trec
from qa.evaluation.command import check_one_row_each
from qa.evaluation.run import Question, judge
from qa.retrieval.retrieve import Passage


def _ir_measures():
    import ir_measures  # the [test] extra installs it: a missing one fails, not skips

    return ir_measures


def _q(qid, sources, answers=("Xi",), answerable=True):
    return Question(qid, f"question {qid}?", tuple(answers) if answerable else (),
                    tuple(sources), answerable)


def _p(source, text, score, also=()):
    return Passage(source, text, 0, len(text), score, also=tuple(also))


QUESTIONS = [
    # gold b.txt: second file, fifth passage (the first b.txt passage holds no answer)
    _q("q1", ["b.txt"]),
    # the gold file is a passage's `also`: second file, first passage
    _q("q2", ["c d.txt"]),
    # gold second, tied in score with the first: one tie each side of the gold docid, so
    # whichever way a tool breaks ties by docid, one of them would move
    _q("q3", ["b.txt"]),
    _q("q4", ["b.txt"]),
    _q("u1", [], answerable=False),  # in the run, not in the qrels
    _q("q6", ["f.txt"]),  # gold never retrieved
    _q("q7", ["b.txt"]),  # nothing retrieved at all
]
PASSAGES = {
    "q1": [_p("a.txt", "Xi", 0.9), _p("b.txt", "no", 0.85), _p("e.txt", "no", 0.8),
           _p("a.txt", "no", 0.7), _p("b.txt", "Xi said", 0.6)],
    "q2": [_p("a.txt", "Xi", 0.5, also=["c d.txt"]), _p("e.txt", "no", 0.4)],
    "q3": [_p("z.txt", "no", 0.7), _p("b.txt", "Xi", 0.7)],
    "q4": [_p("a.txt", "no", 0.6), _p("b.txt", "Xi", 0.6)],
    "u1": [_p("a.txt", "no", 0.9)],
    "q6": [_p("a.txt", "Xi", 0.9), _p("e.txt", "Xi", 0.8)],
    "q7": [],
}


def _rows() -> list[dict]:
    rows = []
    for q in QUESTIONS:
        answer = Answer(q.question, "", False, 0.1, (), tuple(PASSAGES[q.id]))
        rows.append(judge(q, answer, answer, lambda source: None))
    return rows


def _source_level(rows, questions, k):
    """(mean RR@k, Success@k) at the source level, straight from the rows: a question's
    ranking is its passages' files (each passage's own, then its `also`), each file once;
    over the answerable questions naming gold sources."""
    gold = {q.id: set(q.sources) for q in questions if q.answerable and q.sources}
    rr, success = [], []
    for row in rows:
        if row["id"] not in gold:
            continue
        files = []
        for p in row["passages"]:
            files += [s for s in (p["source"], *p.get("also", [])) if s not in files]
        rank = next((i for i, f in enumerate(files, 1) if f in gold[row["id"]]), None)
        rr.append(1 / rank if rank and rank <= k else 0.0)
        success.append(1.0 if rank and rank <= k else 0.0)
    return sum(rr) / len(rr), sum(success) / len(success)


@pytest.mark.quick
def test_run_file_lines(tmp_path):
    rows = _rows()
    run_path, qrels_path = trec.write(rows, QUESTIONS, tmp_path / "eval.run")
    assert qrels_path == tmp_path / "eval.run.qrels"
    lines = run_path.read_text().splitlines()
    assert [line for line in lines if line.startswith("q1 ")] == [
        "q1 Q0 a.txt 1 0.900000 cited-qa", "q1 Q0 b.txt 2 0.850000 cited-qa",
        "q1 Q0 e.txt 3 0.800000 cited-qa"]  # a.txt and b.txt once each, at their best
    assert [line for line in lines if line.startswith("q2 ")] == [
        "q2 Q0 a.txt 1 0.500000 cited-qa", "q2 Q0 c%20d.txt 2 0.499999 cited-qa",
        "q2 Q0 e.txt 3 0.400000 cited-qa"]
    assert "q3 Q0 b.txt 2 0.699999 cited-qa" in lines
    assert not any(line.startswith("q7 ") for line in lines)
    assert qrels_path.read_text().splitlines() == [
        "q1 0 b.txt 1", "q2 0 c%20d.txt 1", "q3 0 b.txt 1", "q4 0 b.txt 1", "q6 0 f.txt 1",
        "q7 0 b.txt 1"]
    for line in lines:
        qid, q0, _, rank, score, tag = line.split(" ")
        assert q0 == "Q0" and int(rank) >= 1 and float(score) >= 0 and tag == "cited-qa"


@pytest.mark.quick
def test_ids_with_white_space_number_every_question(tmp_path):
    questions = [_q("first one", ["a.txt"]), _q("q2", ["a.txt"])]
    rows = [{"id": "first one", "passages": [{"source": "a.txt", "score": 1.0}]},
            {"id": "q2", "passages": [{"source": "a.txt", "score": 1.0}]}]
    run_path, qrels_path = trec.write(rows, questions, tmp_path / "r", tmp_path / "gold")
    assert run_path.read_text().splitlines() == ["1 Q0 a.txt 1 1.000000 cited-qa",
                                                 "2 Q0 a.txt 1 1.000000 cited-qa"]
    assert qrels_path == tmp_path / "gold"
    assert qrels_path.read_text() == "1 0 a.txt 1\n2 0 a.txt 1\n"


@pytest.mark.quick
def test_ir_measures_reads_the_run_and_agrees_with_the_rows(tmp_path):
    """ir_measures' RR@10 / Success@k of the run equal the rows' own ranking at the source
    level, to the last digit; the project's passage-level MRR / hit@k of the same rows
    differ, and exactly where the docs say (answer text required, passage ranks)."""
    ir_measures = _ir_measures()
    from ir_measures import RR, Success

    rows = _rows()
    run_path, qrels_path = trec.write(rows, QUESTIONS, tmp_path / "eval.run")
    qrels = list(ir_measures.read_trec_qrels(str(qrels_path)))
    run = list(ir_measures.read_trec_run(str(run_path)))
    got = ir_measures.calc_aggregate([RR @ 10, Success @ 1, Success @ 5], qrels, run)
    rr10, success5 = _source_level(rows, QUESTIONS, 10)[0], _source_level(rows, QUESTIONS, 5)[1]
    assert got[RR @ 10] == pytest.approx(rr10, abs=1e-12)
    assert got[Success @ 5] == pytest.approx(success5, abs=1e-12)
    assert got[Success @ 1] == pytest.approx(_source_level(rows, QUESTIONS, 1)[1], abs=1e-12)
    # the figures themselves: q1 1/2, q2 1/2, q3 1/2, q4 1/2, q6 0, q7 0 (b.txt listed
    # again at 0.6 would overwrite q1's 0.85 and put it third)
    assert got[RR @ 10] == pytest.approx(4 / 2 / 6, abs=1e-12)
    assert got[Success @ 5] == pytest.approx(4 / 6) and got[Success @ 1] == 0.0
    per_query = {m.query_id: m.value for m in ir_measures.iter_calc([RR @ 10], qrels, run)}
    assert per_query == pytest.approx({"q1": 1 / 2, "q2": 1 / 2, "q3": 1 / 2, "q4": 1 / 2,
                                       "q6": 0.0, "q7": 0.0})

    # The project's own measures on the same rows: passage ranks of the first passage from
    # a gold file (or its `also`) that holds an answer: q1 5, q2 1, q3 2, q4 2.
    J = [r["judgement"] for r in rows]
    assert [j["first_hit_rank"] for j in J] == [5, 1, 2, 2, None, None, None]
    assert measures.mrr(J) == pytest.approx((1 / 5 + 1 + 1 / 2 + 1 / 2) / 6)
    assert measures.hit_at(J, 5) == pytest.approx(4 / 6)
    assert measures.hit_at(J, 1) == pytest.approx(1 / 6)


@pytest.mark.quick
def test_one_row_per_question_is_checked():
    rows = _rows()
    check_one_row_each(rows, QUESTIONS)
    for wrong in (rows[:-1], rows + rows[:1], [rows[1], rows[0], *rows[2:]]):
        with pytest.raises(RuntimeError, match="not one per question"):
            check_one_row_each(wrong, QUESTIONS)


def test_qa_eval_writes_a_run_ir_measures_scores(tmp_path, seeds_copy, seeds_assistant):
    """`qa eval --run-file` end to end on a small set: one result row per question, and
    the run read back by ir_measures gives the source-level figures of those rows."""
    from test_cli import qa

    ir_measures = _ir_measures()
    from ir_measures import RR, Success

    lines = [
        '{"id": "a", "question": "Who declined to meet Lloyd Austin?", "answers": '
        '["Li Shangfu"], "sources": ["001_340206877254da52.txt"], "answerable": true}',
        '{"id": "b", "question": "Who won the 2024 Super Bowl?", "answers": [], "sources": [],'
        ' "answerable": false}',
        '{"id": "c", "question": "What stance did Blinken restate regarding independence for '
        'Taiwan?", "answers": ["not support"], "sources": ["002_03c80dfc9eda31c5.txt"], '
        '"answerable": true}']
    path = tmp_path / "q.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    result = qa("eval", str(path), "--corpus", str(seeds_copy), "--index",
                str(seeds_assistant.settings.index_dir), "--out", str(out),
                "--run-file", str(out / "seeds.run"))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == ["a", "b", "c"]  # exactly one row per question
    questions = [Question(**{**json.loads(line), "answers": tuple(json.loads(line)["answers"]),
                             "sources": tuple(json.loads(line)["sources"])})
                 for line in lines]
    assert (out / "seeds.run.qrels").read_text() == (
        "a 0 001_340206877254da52.txt 1\nc 0 002_03c80dfc9eda31c5.txt 1\n")
    run_lines = (out / "seeds.run").read_text().splitlines()
    assert {line.split()[0] for line in run_lines} == {"a", "b", "c"}
    for qid in "abc":
        mine = [line.split() for line in run_lines if line.split()[0] == qid]
        assert [int(m[3]) for m in mine] == list(range(1, len(mine) + 1))
        assert len({m[2] for m in mine}) == len(mine)
        scores = [float(m[4]) for m in mine]
        assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)
    qrels = list(ir_measures.read_trec_qrels(str(out / "seeds.run.qrels")))
    run = list(ir_measures.read_trec_run(str(out / "seeds.run")))
    got = ir_measures.calc_aggregate([RR @ 10, Success @ 5], qrels, run)
    assert got[RR @ 10] == pytest.approx(_source_level(rows, questions, 10)[0], abs=1e-12)
    assert got[Success @ 5] == pytest.approx(_source_level(rows, questions, 5)[1], abs=1e-12)
    assert "wrote the retrieval as a TREC run" in result.stdout


def test_qa_eval_help_describes_run_file():
    from test_cli import qa

    text = " ".join(qa("eval", "--help").stdout.split())
    assert "--run-file PATH" in text and "TREC run file" in text and "qrels" in text
    assert "--qrels-file PATH" in text


@pytest.mark.quick
def test_qrels_file_needs_run_file(tmp_path):
    import argparse

    from qa.evaluation.command import run_cli

    args = argparse.Namespace(questions=str(tmp_path / "none.jsonl"), corpus=None, index=None,
                              out=str(tmp_path / "out"), fail_under=[], limit=None,
                              run_file=None, qrels_file=str(tmp_path / "gold"))
    with pytest.raises(ValueError, match="--qrels-file needs --run-file"):
        run_cli(args, settings=None)
