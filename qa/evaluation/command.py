"""`qa eval`: read a question set (JSON lines or SQuAD), judge every question (in this
process, or on a Ray cluster: qa.cluster.answering), and write results.jsonl,
metrics.json (with where and how fast the questions were answered), report.md, the plot
and report.html, and with --run-file the retrieval as a TREC run and its qrels
(qa.evaluation.trec). The judging is qa.evaluation.run's, the figures
qa.evaluation.measures'.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from qa.evaluation.run import (
    Question,
    failures,
    load_questions,
    parse_bounds,
    plot_curve,
    run,
    summarize,
    summary_table,
    write_report,
)

if TYPE_CHECKING:  # pragma: no cover
    from qa.settings import Settings


def load_set(args, settings: Settings) -> tuple[list[Question], Settings]:
    """The questions of `args.questions` and the settings to ask them with. A SQuAD file
    (`qa.evaluation.squad_sets`) is asked of its own articles, written as a corpus with an index of
    its own, unless --corpus names a folder."""
    from qa.evaluation import squad_sets

    path = Path(args.questions)
    found = squad_sets.read(path)
    if found is None:
        return load_questions(path), settings
    print(found.describe(), file=sys.stderr)
    if args.corpus:
        return squad_sets.against(found.questions, settings.corpus), settings
    corpus = squad_sets.write_corpus(found)
    print(f"asking them of its {len(found.articles)} articles, written to {corpus}",
          file=sys.stderr)
    index = Path(args.index).expanduser() if args.index else None  # QA_INDEX is another's
    return list(found.questions), settings.replace(corpus=corpus, index=index)


def run_local(settings, questions: list[Question]):
    """Judge every question in this process: (rows, threshold, the run's description,
    filled in once the rows are all read)."""
    from qa.engine import Assistant

    assistant = Assistant.load(settings=settings, progress=sys.stderr.isatty())
    run_info: dict = {"where": "this machine"}

    def rows() -> Iterator[dict]:
        began = time.perf_counter()
        yield from run(assistant, questions, progress=sys.stderr.isatty())
        seconds = time.perf_counter() - began
        run_info.update(seconds=round(seconds, 2), questions_per_second=round(
            len(questions) / seconds, 3) if seconds else None)

    return rows(), assistant.threshold(), run_info


def check_one_row_each(rows: list[dict], questions: list[Question]) -> None:
    """Raise RuntimeError unless the rows are one per question, in the questions' order."""
    got, wanted = [r["id"] for r in rows], [q.id for q in questions]
    if got != wanted:
        raise RuntimeError(f"results.jsonl: {len(got)} rows for {len(wanted)} questions, "
                           "not one per question in order")


def run_cli(args, settings, runner=run_local) -> int:
    """`qa eval`: run, write results.jsonl / metrics.json / report.md / coverage.png /
    report.html, and with --run-file the TREC run and its qrels. `runner(settings,
    questions)` judges the questions: `run_local`, or the cluster's
    (qa.cluster.answering.eval_on_ray)."""
    from qa.evaluation.report_html import write_html

    if getattr(args, "qrels_file", None) and not getattr(args, "run_file", None):
        raise ValueError("--qrels-file needs --run-file")
    questions, settings = load_set(args, settings)
    if args.limit:
        questions = questions[: args.limit]
    bounds = parse_bounds(args.fail_under)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    judged, threshold, run_info = runner(settings, questions)
    rows = []
    with open(out / "results.jsonl", "w", encoding="utf-8") as f:
        for row in judged:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            rows.append(row)
    check_one_row_each(rows, questions)
    metrics = summarize(rows, threshold)
    metrics["run"] = run_info
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_curve(rows, threshold, out / "coverage.png")
    title = Path(args.questions).name
    write_report(rows, questions, metrics, out, title)
    write_html(rows, questions, metrics, out, title)
    print(summary_table(metrics))
    print(f"\nwrote {out}/results.jsonl, metrics.json, report.md, coverage.png, report.html")
    if getattr(args, "run_file", None):
        from qa.evaluation import trec

        run_path, qrels_at = trec.write(rows, questions, args.run_file,
                                        getattr(args, "qrels_file", None))
        print(f"wrote the retrieval as a TREC run {run_path} and its qrels {qrels_at}")
    failed = failures(metrics, bounds)
    for line in failed:
        print(f"qa eval: FAIL {line}", file=sys.stderr)
    return 1 if failed else 0
