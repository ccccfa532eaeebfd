"""Every figure `qa eval` reports, one small named function each, over the judgements of
the per-question rows (`row["judgement"]`, `qa.evaluation.run.judge`).

A measure takes the list of judgements and returns the exact value (a fraction 0..1, a
count, milliseconds; None where the questions it averages over are none). `MEASURES`
names them with their parameters and the digits metrics.json rounds them to, in
metrics.json's order; `qa.evaluation.run.summarize` computes its dict from that table.
Modelled on ir_measures (measures as named objects, `RR@10`) and ranx (one metric, one
function).

Retrieval measures here are the project's own: a passage is a hit when it comes from a
gold source (or, for a question naming none, any file) *and* contains an answer; ranks
are passage ranks. `qa eval --run-file` (`qa.evaluation.trec`) writes the retrieval for
trec_eval, ir_measures or ranx, judged by gold source alone.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Judgements = Sequence[dict]
STAGES = ("encode", "retrieve", "answer", "total")


def _answerable(J: Judgements) -> list[dict]:
    return [j for j in J if j["answerable"]]


def _unanswerable(J: Judgements) -> list[dict]:
    return [j for j in J if not j["answerable"]]


def _answered_answerable(J: Judgements) -> list[dict]:
    return [j for j in _answerable(J) if not j["abstained"]]


def _share(items: Sequence[dict], pred: Callable[[dict], bool]) -> float | None:
    return sum(1 for j in items if pred(j)) / len(items) if items else None


def _mean(items: Sequence[dict], key: str) -> float | None:
    return sum(j[key] for j in items) / len(items) if items else None


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile, interpolated linearly between closest ranks (numpy's default).

    0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# --- counts ---------------------------------------------------------------------------

def questions(J: Judgements) -> int:
    """Questions asked (one row each)."""
    return len(J)


def answerable(J: Judgements) -> int:
    """Questions the set marks answerable."""
    return len(_answerable(J))


def unanswerable(J: Judgements) -> int:
    """Questions the set marks unanswerable (the right response: abstain)."""
    return len(_unanswerable(J))


# --- answers --------------------------------------------------------------------------

def accuracy(J: Judgements) -> float | None:
    """Share of all questions handled right: answered correctly, or abstained on if unanswerable."""
    return _share(J, lambda j: j["correct"])


def accuracy_at_1(J: Judgements) -> float | None:
    """Share of answerable questions whose answer holds a gold answer and cites a gold source."""
    return _share(_answerable(J), lambda j: j["correct"])


def abstain_unanswerable(J: Judgements) -> float | None:
    """Share of unanswerable questions abstained on."""
    return _share(_unanswerable(J), lambda j: j["abstained"])


def false_abstention(J: Judgements) -> float | None:
    """Share of answerable questions abstained on (lower is better)."""
    return _share(_answerable(J), lambda j: j["abstained"])


def precision_when_answered(J: Judgements) -> float | None:
    """Share of the answered answerable questions answered correctly."""
    return _share(_answered_answerable(J), lambda j: j["correct"])


def citations_verbatim(J: Judgements) -> float | None:
    """Share of questions with citations whose every quote is its file's text at its offsets."""
    return _share([j for j in J if j["n_citations"]], lambda j: j["citations_verbatim"])


def cited_source_ok(J: Judgements) -> float | None:
    """Share of the answered answerable questions whose first citation is a gold source."""
    return _share(_answered_answerable(J), lambda j: j["cited_source_ok"])


def token_f1(J: Judgements) -> float | None:
    """Mean over answerable questions of the quote's best token F1 against the gold answers."""
    return _mean(_answerable(J), "token_f1")


def squad_em(J: Judgements) -> float | None:
    """Mean SQuAD exact match over all questions (an abstention is the empty answer).
    Source: Rajpurkar et al. 2016/2018, SQuAD official evaluation script v2.0."""
    return _mean(J, "squad_em")


def squad_f1(J: Judgements) -> float | None:
    """Mean SQuAD F1 over all questions (an abstention is the empty answer).
    Source: Rajpurkar et al. 2016/2018, SQuAD official evaluation script v2.0."""
    return _mean(J, "squad_f1")


def squad_em_answerable(J: Judgements) -> float | None:
    """Mean SQuAD exact match over answerable questions (the script's HasAns_exact).
    Source: Rajpurkar et al. 2016/2018, SQuAD official evaluation script v2.0."""
    return _mean(_answerable(J), "squad_em")


def squad_f1_answerable(J: Judgements) -> float | None:
    """Mean SQuAD F1 over answerable questions (the script's HasAns_f1).
    Source: Rajpurkar et al. 2016/2018, SQuAD official evaluation script v2.0."""
    return _mean(_answerable(J), "squad_f1")


# --- retrieval ------------------------------------------------------------------------

def hit_at(J: Judgements, k: int) -> float | None:
    """Share of answerable questions with an answer-bearing gold-source passage in the top k."""
    return _share(_answerable(J),
                  lambda j: j["first_hit_rank"] is not None and j["first_hit_rank"] <= k)


def mrr(J: Judgements) -> float | None:
    """Mean over answerable questions of 1 / passage rank of the first hit (0 without one).
    Source: Voorhees, "The TREC-8 Question Answering Track Report", TREC-8, 1999."""
    ans = _answerable(J)
    return sum(1 / j["first_hit_rank"] for j in ans if j["first_hit_rank"]) / len(ans) \
        if ans else None


# --- latency --------------------------------------------------------------------------

def stage_ms(J: Judgements, stage: str, pct: float) -> float:
    """The pct-th percentile over questions of a stage's milliseconds (missing stage: 0)."""
    return percentile([j["timings_ms"].get(stage, 0.0) for j in J], pct)


# --- the table ------------------------------------------------------------------------

@dataclass(frozen=True)
class Measure:
    """A named figure: `compute(judgements, **params)`, rounded to `digits` (None: as is)
    in metrics.json."""

    name: str
    compute: Callable[..., float | int | None]
    params: tuple[tuple[str, object], ...] = ()
    digits: int | None = 4

    def exact(self, judgements: Judgements) -> float | int | None:
        return self.compute(judgements, **dict(self.params))

    def __call__(self, judgements: Judgements) -> float | int | None:
        value = self.exact(judgements)
        return value if value is None or self.digits is None else round(value, self.digits)

    @property
    def description(self) -> str:
        """The first line of the function's docstring: what it measures."""
        return (self.compute.__doc__ or "").strip().splitlines()[0]


def _named(compute, digits: int | None = 4) -> Measure:
    return Measure(compute.__name__, compute, digits=digits)


# Before the threshold and the machine in metrics.json.
MEASURES: tuple[Measure, ...] = (
    _named(questions, None), _named(answerable, None), _named(unanswerable, None),
    _named(accuracy), _named(accuracy_at_1),
    *(Measure(f"hit_at_{k}", hit_at, (("k", k),)) for k in (1, 5, 10)),
    _named(mrr), _named(abstain_unanswerable), _named(false_abstention),
    _named(precision_when_answered), _named(citations_verbatim), _named(cited_source_ok),
    _named(token_f1), _named(squad_em), _named(squad_f1), _named(squad_em_answerable),
    _named(squad_f1_answerable),
)

# After them: each stage's p50 and p95, then latency_p50_ms / latency_p95_ms (= total's).
LATENCY: tuple[Measure, ...] = (
    *(Measure(f"{stage}_p{pct}_ms", stage_ms, (("stage", stage), ("pct", pct)), 2)
      for stage in STAGES for pct in (50, 95)),
    *(Measure(f"latency_p{pct}_ms", stage_ms, (("stage", "total"), ("pct", pct)), 2)
      for pct in (50, 95)),
)


def by_name() -> dict[str, Measure]:
    """Every measure of metrics.json by its key."""
    return {m.name: m for m in (*MEASURES, *LATENCY)}


def coverage_curve(rows: list[dict]) -> list[tuple[float, float, float]]:
    """(threshold, coverage, accuracy) for thresholds 0, 0.01, ... 1: the risk–coverage curve.
    Source: El-Yaniv & Wiener 2010, "On the foundations of noise-free selective
    classification", JMLR 11.

    coverage: share of all questions answered; accuracy: share of answered ones right
    (an answered unanswerable question counts as wrong; none answered: 1.0).
    """
    J = [r["judgement"] for r in rows]
    points = []
    for t in [i / 100 for i in range(0, 101)]:
        answered = [j for j in J if j["raw_confidence"] >= t]
        if not answered:
            points.append((t, 0.0, 1.0))
            continue
        right = sum(1 for j in answered if j["answerable"] and j["raw_correct"])
        points.append((t, len(answered) / len(J), right / len(answered)))
    return points
