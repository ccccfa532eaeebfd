"""`qa eval --run-file`: the retrieval of an evaluation as a TREC run file, and the question
set's gold sources as a qrels file beside it, for trec_eval, ir_measures or ranx.

Run file, one line per retrieved document per question, in rank order::

    qid Q0 docid rank score tag

- qid: the question's id (every id, when none holds white space; else every question's
  1-based number in the set, so that the columns still split).
- docid: a source file's name (white space and `%` percent-encoded), the unit the
  question set's gold `sources` name (a chunk-level id could not be matched against
  them). Each row's passages are read in rank order;
  a passage stands for its own file and then the files of the near-identical passages
  folded into it (`also`); a file already listed is not listed again, so a file ranks
  where its best passage does (document score = its best passage's, "MaxP"). trec_eval,
  ir_measures and ranx keep one score per (qid, docid), so repeating a file would
  overwrite its rank. Ranks are 1, 2, ... over these files.
- score: the first passage's fused retrieval score (results.jsonl's, 4 decimals), made
  strictly decreasing by taking a millionth below the line before where it is not
  already: those tools order by score, not by the rank column, and break ties by docid.
- tag: `cited-qa`.

Qrels (`PATH.qrels` unless named): `qid 0 docid 1` for every gold source of every
answerable question that names its sources. Unanswerable questions, and answerable ones
naming none (any file counts for them), are not in it, so those tools score only the
questions with named gold sources (a question there without a retrieved file scores 0 in
ir_measures; trec_eval needs `-c` to count it).

These figures judge retrieval by gold source alone. The project's own hit@k and MRR
(`qa.evaluation.measures`) need the passage to hold an answer too, count passage ranks,
and cover every answerable question (any file counting where none is named).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from qa.evaluation.run import Question

TAG = "cited-qa"


def qids(questions: Sequence[Question]) -> dict[str, str]:
    """The TREC qid of every question id: the id itself, or, when any id holds white
    space (or is empty), every question's 1-based number."""
    if all(q.id and not any(ch.isspace() for ch in q.id) for q in questions):
        return {q.id: q.id for q in questions}
    return {q.id: str(n) for n, q in enumerate(questions, 1)}


def ranked_sources(row: dict) -> list[tuple[str, float]]:
    """(source file, score) of a result row's passages in rank order, each file once, at
    its first (best) passage: the passage's own file, then the files in its `also`."""
    out: list[tuple[str, float]] = []
    seen: set[str] = set()
    for passage in row.get("passages", []):
        for source in (passage["source"], *passage.get("also", ())):
            if source not in seen:
                seen.add(source)
                out.append((source, float(passage["score"])))
    return out


def run_lines(rows: Sequence[dict], questions: Sequence[Question], tag: str = TAG) -> list[str]:
    """The run file's lines: every row's ranked source files."""
    qid = qids(questions)
    lines = []
    for row in rows:
        previous = None  # the line before's score, in millionths
        for rank, (source, score) in enumerate(ranked_sources(row), 1):
            units = round(score * 1_000_000)
            if previous is not None and units >= previous:
                units = previous - 1
            previous = units
            lines.append(f"{qid[row['id']]} Q0 {docid(source)} {rank} "
                         f"{units / 1_000_000:.6f} {tag}")
    return lines


def qrels_lines(questions: Sequence[Question]) -> list[str]:
    """The qrels file's lines: `qid 0 source 1` per gold source of each answerable
    question naming its sources."""
    qid = qids(questions)
    return [f"{qid[q.id]} 0 {docid(source)} 1" for q in questions if q.answerable
            for source in dict.fromkeys(q.sources)]


def docid(source: str) -> str:
    """A source file's name as a docid: white space and `%` percent-encoded (UTF-8), so
    that a name with spaces stays one column; other names unchanged."""
    return "".join("".join(f"%{b:02X}" for b in ch.encode()) if ch.isspace() or ch == "%"
                   else ch for ch in source)


def qrels_path(run_path: Path, qrels: str | Path | None = None) -> Path:
    """Where the qrels go: `qrels` when given, else the run file's path + `.qrels`."""
    run_path = Path(run_path)
    return Path(qrels) if qrels else run_path.with_name(run_path.name + ".qrels")


def write(rows: Sequence[dict], questions: Sequence[Question], run_path: str | Path,
          qrels: str | Path | None = None, tag: str = TAG) -> tuple[Path, Path]:
    """Write the run file and the qrels file; (run path, qrels path)."""
    run_path = Path(run_path)
    qrels_at = qrels_path(run_path, qrels)
    for path, lines in ((run_path, run_lines(rows, questions, tag)),
                        (qrels_at, qrels_lines(questions))):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return run_path, qrels_at
