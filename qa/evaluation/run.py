"""Score the assistant on a question set: per-question rows streamed, then a summary.

Question-set format (JSON lines, one question a line)::

    {"id": "q1", "question": "...", "answers": ["..."], "sources": ["file.txt"],
     "answerable": true}

An answer is correct when it is not an abstention, contains one of `answers`
(case-insensitive, white space and quote style normalised) and cites one of `sources`
(any file, when the question names none). Unanswerable questions are right when the
assistant abstains. SQuAD-format files are read too (`qa.evaluation.squad_sets`), and every set is
also scored with SQuAD's exact match and F1 (`qa.evaluation.squad`). The summary's figures
are the named measures of `qa.evaluation.measures`.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from qa.answering.answer import Answer, apply_threshold
from qa.evaluation import machine, measures, squad
from qa.evaluation.measures import coverage_curve

# Metrics where lower is better (for --fail-under, the bound is a ceiling).
LOWER_IS_BETTER = {"false_abstention", "latency_p50_ms", "latency_p95_ms"}


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: tuple[str, ...]
    sources: tuple[str, ...]
    answerable: bool


def load_questions(path: Path) -> list[Question]:
    """Read a question set; raise ValueError naming the file and line of the first problem."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read question set {path}: {exc}") from None
    out: list[Question] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{where}: expected an object")
        missing = [k for k in ("id", "question", "answerable") if k not in row]
        if missing:
            raise ValueError(f"{where}: missing field(s) {', '.join(missing)}")
        qid, text, answerable = row["id"], row["question"], row["answerable"]
        answers, sources = row.get("answers", []), row.get("sources", [])
        if not isinstance(qid, (str, int)) or isinstance(qid, bool):
            raise ValueError(f"{where}: id must be a string")
        qid = str(qid)
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{where}: question must be a non-empty string")
        if not isinstance(answerable, bool):
            raise ValueError(f"{where}: answerable must be true or false")
        for name, value in (("answers", answers), ("sources", sources)):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{where}: {name} must be a list of strings")
        if answerable and not answers:
            raise ValueError(f"{where}: an answerable question needs at least one answer")
        if qid in seen:
            raise ValueError(f"{where}: duplicate id {qid!r} (first on line {seen[qid]})")
        seen[qid] = number
        out.append(Question(qid, text, tuple(answers), tuple(sources), answerable))
    if not out:
        raise ValueError(f"{path}: no questions")
    return out


_QUOTES = str.maketrans({"‘": "'", "’": "'", "‚": "'", "‛": "'", "“": '"', "”": '"',
                         "„": '"', "‟": '"', "`": "'", "´": "'"})


def normalize(text: str) -> str:
    """Case-folded text with quote styles unified and white space collapsed."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    return " ".join(text.split())


def contains_answer(text: str, answers: Iterable[str]) -> bool:
    haystack = normalize(text)
    return any(normalize(a) and normalize(a) in haystack for a in answers)


def token_f1(prediction: str, gold: Iterable[str]) -> float:
    """Best SQuAD-style token F1 (0..1) of `prediction` against any gold answer."""
    def toks(s: str) -> list[str]:
        s = re.sub(r"\b(a|an|the)\b", " ", re.sub(r"[^\w\s]", " ", normalize(s)))
        return s.split()

    pred = toks(prediction)
    return max((squad.overlap_f1(pred, ref) for ref in map(toks, gold) if pred and ref),
               default=0.0)


class CorpusTexts:
    """File texts as the indexer reads them, for checking citation offsets."""

    def __init__(self, corpus: Path) -> None:
        self.corpus = Path(corpus)
        self._cache: dict[str, str | None] = {}

    def __call__(self, source: str) -> str | None:
        if source not in self._cache:
            from embeddings.documents import read_document

            doc = read_document(self.corpus / source, source)
            self._cache[source] = doc.text if doc else None
        return self._cache[source]


def judge(q: Question, raw: Answer, final: Answer, texts: CorpusTexts) -> dict:
    """One result row: the API's answer object + id + the judgement of it.

    `raw` is the answer before the abstention threshold (for the coverage curve),
    `final` what the assistant returns.
    """
    allowed = set(q.sources)

    def cited(*sources: str) -> bool:  # any file counts when the question names none
        return not allowed or bool(allowed.intersection(sources))

    ranks = [i for i, p in enumerate(final.passages, 1)
             if cited(p.source, *p.also) and contains_answer(p.text, q.answers)]
    first_rank = ranks[0] if ranks else None
    verbatim = [texts(c.source) is not None and texts(c.source)[c.start:c.end] == c.quote
                for c in final.citations]
    raw_ok = (raw.answerable and contains_answer(raw.answer, q.answers)
              and any(cited(c.source) for c in raw.citations))
    prediction = squad.prediction_of(final)
    em, f1 = squad.scores(prediction, q.answers if q.answerable else ())
    answered = final.answerable
    if q.answerable:
        correct = answered and raw_ok
    else:
        correct = not answered
    row = {"id": q.id, **final.to_dict()}
    row["judgement"] = {
        "answerable": q.answerable,
        "correct": correct,
        "abstained": not answered,
        "raw_correct": raw_ok if q.answerable else False,
        "raw_confidence": round(raw.confidence, 4),
        "first_hit_rank": first_rank if q.answerable else None,
        "citations_verbatim": all(verbatim),
        "n_citations": len(verbatim),
        "cited_source_ok": (bool(final.citations) and cited(final.citations[0].source))
        if q.answerable and answered else None,
        "token_f1": token_f1(final.answer, q.answers) if q.answerable and answered else 0.0,
        "prediction": prediction,  # what SQuAD's measures score: the phrase, else the quote
        "squad_em": em,
        "squad_f1": round(f1, 4),
        "timings_ms": raw.timings_ms,
    }
    return row


def run(assistant, questions: list[Question], progress: bool = False) -> Iterator[dict]:
    """Ask every question (top 10 passages) and yield one judged row per question."""
    texts = CorpusTexts(assistant.settings.corpus)
    threshold = assistant.threshold()
    iterator: Iterable[Question] = questions
    if progress:
        from tqdm import tqdm

        iterator = tqdm(questions, desc="questions", unit="q")
    for q in iterator:
        raw = assistant.ask(q.question, top_k=10, abstain=False)
        final = apply_threshold(raw, threshold)
        yield judge(q, raw, final, texts)


def summarize(rows: list[dict], threshold: float) -> dict:
    """Metrics from judged rows (all fractions 0..1, latencies in milliseconds): the named
    measures of `qa.evaluation.measures`, in its table's order, with the threshold and the
    machine between the figures and the latencies."""
    J = [r["judgement"] for r in rows]
    metrics: dict = {m.name: m(J) for m in measures.MEASURES}
    metrics["threshold"] = threshold
    metrics["machine"] = machine.describe()
    metrics.update((m.name, m(J)) for m in measures.LATENCY)
    return metrics


def plot_curve(rows: list[dict], threshold: float, path: Path) -> None:
    """Write a PNG of accuracy against coverage, the chosen threshold marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = coverage_curve(rows)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot([p[1] for p in points], [p[2] for p in points], "-", color="#2563eb")
    chosen = min(points, key=lambda p: abs(p[0] - threshold))
    ax.plot([chosen[1]], [chosen[2]], "o", color="#dc2626",
            label=f"threshold {threshold:.2f}: coverage {chosen[1]:.2f}, "
                  f"accuracy {chosen[2]:.2f}")
    ax.set_xlabel("coverage (share of questions answered)")
    ax.set_ylabel("accuracy of the answers given")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title("Accuracy against coverage as the confidence threshold varies", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


SUMMARY_KEYS = ("questions", "accuracy", "accuracy_at_1", "hit_at_1", "hit_at_5", "hit_at_10",
                "mrr", "abstain_unanswerable", "false_abstention", "precision_when_answered",
                "citations_verbatim", "cited_source_ok", "token_f1", "squad_em", "squad_f1",
                "latency_p50_ms", "latency_p95_ms")


def summary_table(metrics: dict) -> str:
    width = max(len(k) for k in SUMMARY_KEYS)
    rows = [f"{k:<{width}}  {fmt(metrics.get(k))}" for k in SUMMARY_KEYS]
    m = metrics.get("machine")
    if m:
        rows.append(f"{'machine':<{width}}  {m['cpu']}, {m['isa']}, {m['cores']} cores")
    if metrics.get("run"):
        rows.append(f"{'ran':<{width}}  {run_line(metrics['run'])}")
    return "\n".join(rows)


def run_line(run: dict) -> str:
    """Where the questions were answered and how fast (metrics.json's "run")."""
    text = (f"{run.get('where')}: {run.get('questions_per_second')} questions/s "
            f"({run.get('seconds')} s)")
    if run.get("workers"):
        text += (f", {run['workers']} workers holding {run.get('workers_hold')}, "
                 f"each up to {run.get('worker_rss_mb_max')} MB resident, loaded in up "
                 f"to {run.get('worker_load_seconds_max')} s (counted in the time)")
    return text


def write_report(rows: list[dict], questions: list[Question], metrics: dict, out: Path,
                 title: str) -> None:
    """report.md: the metrics, latency per stage, the plot, and the worst misses."""
    by_id = {q.id: q for q in questions}
    lines = [f"# Evaluation: {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(metrics.get(k))} |" for k in SUMMARY_KEYS]
    lines += ["", "## Latency per stage (ms)", "", "| stage | p50 | p95 |", "|---|---|---|"]
    for stage in ("encode", "retrieve", "answer", "total"):
        lines.append(f"| {stage} | {metrics[f'{stage}_p50_ms']} | {metrics[f'{stage}_p95_ms']} |")
    if metrics.get("run"):
        lines += ["", f"Answered on {run_line(metrics['run'])}."]
    lines += ["", "## Accuracy against coverage", "",
              f"![accuracy against coverage](coverage.png) (threshold {metrics['threshold']:.2f})",
              "", "## Worst misses", "", "| id | question | expected | got |", "|---|---|---|---|"]
    misses = [r for r in rows if not r["judgement"]["correct"]]
    misses.sort(key=lambda r: -r["judgement"]["raw_confidence"] if r["answerable"]
                else r["judgement"]["raw_confidence"])

    def cell(text: str, n: int = 140) -> str:
        text = " ".join(str(text).split()).replace("|", "\\|")
        return text if len(text) <= n else text[: n - 1] + "…"

    for r in misses[:15]:
        q = by_id[r["id"]]
        expected = " / ".join(q.answers) + f" ({', '.join(q.sources)})" if q.answerable \
            else "(abstain)"
        got = r["answer"] + (f" ({r['citations'][0]['source']})" if r["citations"] else "")
        lines.append(f"| {q.id} | {cell(q.question)} | {cell(expected)} | {cell(got)} |")
    if not misses:
        lines.append("| – | no misses | | |")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def parse_bounds(specs: list[str]) -> dict[str, float]:
    """Parse --fail-under METRIC=VALUE items; raise ValueError on an unknown metric."""
    bounds = {}
    for spec in specs:
        name, _, value = spec.partition("=")
        name = name.strip().replace("-", "_").replace("@", "_at_")
        if name not in SUMMARY_KEYS:
            raise ValueError(f"--fail-under: unknown metric {name!r} "
                             f"(one of: {', '.join(SUMMARY_KEYS)})")
        try:
            bounds[name] = float(value)
        except ValueError:
            raise ValueError(f"--fail-under: {spec!r} needs a number after '='") from None
    return bounds


def failures(metrics: dict, bounds: dict[str, float]) -> list[str]:
    out = []
    for name, bound in bounds.items():
        value = metrics.get(name)
        if value is None:
            continue
        if name in LOWER_IS_BETTER and value > bound:
            out.append(f"{name} = {value:.4f} is above {bound}")
        elif name not in LOWER_IS_BETTER and value < bound:
            out.append(f"{name} = {value:.4f} is below {bound}")
    return out
