"""Refit the answerer's confidence model (qa/data/calibration.json) on dev question sets.

    python benchmarks/calibrate.py                      # seeds set + ../shared/bench/squad-dev
    python benchmarks/calibrate.py --set CORPUS=QUESTIONS.jsonl ... --dry-run

Two logistic regressions (numpy, L2-regularised), each set weighing the same:

1. the ranker: every candidate sentence of every question is one example, labelled 1 when
   it contains a gold answer and comes from an allowed source; features `qa.answer.FEATURES`.
2. the confidence model: one example per question, the ranker's best candidate, labelled 1
   when the question is answerable and that candidate is right; features
   `qa.answer.CONFIDENCE_FEATURES` (the candidate's ranker score, its margin over the
   runner-up, a few of its signals).

The abstention threshold is then the one that maximises overall accuracy (answerable
questions answered correctly + unanswerable ones abstained on), averaged over the sets
and over thresholds within ±0.03 (so it sits on a plateau, not at the edge of a drop).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qa.answer import (  # noqa: E402
    CALIBRATION_FILE,
    CONFIDENCE_FEATURES,
    FEATURES,
    MAX_MARGIN,
    confidence_input,
)
from qa.evaluate import contains_answer, load_questions  # noqa: E402

DEFAULT_SETS = [
    f"{ROOT / 'seeds'}={ROOT / 'benchmarks/questions/seeds.jsonl'}",
    f"{ROOT.parent / 'shared/bench/squad-dev/corpus'}="
    f"{ROOT.parent / 'shared/bench/squad-dev/questions.jsonl'}",
]


def collect(corpus: Path, questions_file: Path, limit: int | None):
    """Per question: (answerable, [(features, label)]) for every candidate sentence."""
    from qa.engine import Assistant

    assistant = Assistant.load(corpus=corpus)
    questions = load_questions(questions_file)[:limit]
    out = []
    for q in questions:
        cands = assistant.candidates(q.question)
        rows = [(f, int(q.answerable and s.source in q.sources
                        and contains_answer(s.text, q.answers))) for s, f in cands]
        out.append((q.answerable, rows))
    return out


def fit(X: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float = 1e-3,
        steps: int = 3000) -> np.ndarray:
    """Weighted logistic regression by gradient descent; returns weights, bias last.

    `weights` (one per example) are rescaled so that the two classes weigh the same.
    """
    Xb = np.hstack([X, np.ones((len(X), 1))])
    w = np.zeros(Xb.shape[1])
    pos = weights[y == 1].sum() / weights.sum()
    sample = weights / weights.mean() * np.where(y == 1, 0.5 / pos, 0.5 / (1 - pos))
    lr = 0.5
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(Xb @ w)))
        grad = Xb.T @ ((p - y) * sample) / len(y) + l2 * np.r_[w[:-1], 0.0]
        w -= lr * grad
    return w


def tops(sets, w: np.ndarray):
    """Per set, per question: (confidence-model input or None if no candidate, answerable,
    top candidate correct), the top candidate and margin as the ranker `w` sees them."""
    result = []
    for questions in sets:
        rows = []
        for answerable, cands in questions:
            if not cands:
                rows.append((None, answerable, False))
                continue
            X = np.array([f for f, _ in cands])
            z = X @ w[:-1] + w[-1]
            k = int(np.argmax(z))
            margin = float(z[k] - np.partition(z, -2)[-2]) if len(z) > 1 else MAX_MARGIN
            x = np.array(confidence_input(tuple(X[k]), float(z[k]), margin))
            rows.append((x, answerable, bool(cands[k][1])))
        result.append(rows)
    return result


def fit_confidence(top_rows) -> np.ndarray:
    """The confidence model (weights, bias last) on `tops()` rows, each set weighing the same."""
    X, y, wts = [], [], []
    for rows in top_rows:
        n = sum(1 for x, *_ in rows if x is not None) or 1
        for x, answerable, ok in rows:
            if x is not None:
                X.append(x)
                y.append(float(answerable and ok))
                wts.append(1.0 / n)
    return fit(np.array(X), np.array(y), np.array(wts))


def outcomes(top_rows, w2: np.ndarray):
    """Per set, per question: (confidence, answerable, top correct)."""
    return [[(0.0 if x is None else float(1 / (1 + np.exp(-(x @ w2[:-1] + w2[-1])))), a, ok)
             for x, a, ok in rows] for rows in top_rows]


def accuracy(rows, t: float) -> float:
    right = sum(1 for c, a, ok in rows if (a and ok and c >= t) or (not a and c < t))
    return right / len(rows)


def fit_and_choose(sets, keep: list[int] | None = None):
    """Fit both models on all sets (each weighing the same) and pick the threshold; `keep`
    lists the feature columns to use (others are zeroed). Returns (ranker weights,
    confidence weights, threshold, outcomes)."""
    X, y, wts = [], [], []
    for questions in sets:
        n = sum(len(c) for _, c in questions) or 1
        for _, cands in questions:
            for f, label in cands:
                X.append(f)
                y.append(label)
                wts.append(1.0 / n)
    X, y = np.array(X, dtype=np.float64), np.array(y, dtype=np.float64)
    if keep is not None:
        mask = np.zeros(X.shape[1])
        mask[keep] = 1.0
        X = X * mask
        sets = [[(a, [(np.asarray(f) * mask, lab) for f, lab in c]) for a, c in qs]
                for qs in sets]
    w = fit(X, y, np.array(wts))
    top_rows = tops(sets, w)
    w2 = fit_confidence(top_rows)
    per_set = outcomes(top_rows, w2)
    grid = [i / 100 for i in range(1, 100)]
    mean = {t: sum(accuracy(rows, t) for rows in per_set) for t in grid}
    # The curve of a small set is jagged: take the best average over t ± 0.03, so the
    # threshold sits on a plateau rather than at the edge of a drop.
    best_t = max(grid, key=lambda t: np.mean([mean[u] for u in grid if abs(u - t) <= 0.031]))
    return w, w2, best_t, per_set


def _scores(rows, t: float) -> tuple[float, float, float, float]:
    """(accuracy@1, abstain on unanswerable, false abstention, top candidate right)."""
    a = [r for r in rows if r[1]]
    u = [r for r in rows if not r[1]]
    return (sum(1 for c, _, ok in a if ok and c >= t) / max(len(a), 1),
            sum(1 for c, *_ in u if c < t) / max(len(u), 1),
            sum(1 for c, *_ in a if c < t) / max(len(a), 1),
            sum(1 for _, _, ok in a if ok) / max(len(a), 1))


def ablation_table(sets, specs) -> str:
    """Markdown table: each set's scores with all features and with each one left out."""
    names = [Path(s.split("=")[1]).parent.name for s in specs]
    head = "| features | " + " | ".join(
        f"{n}: acc@1 / abstain / false abst. / top right" for n in names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    variants = [("all", None)] + [(f"without {f}", [i for i in range(len(FEATURES)) if i != k])
                                  for k, f in enumerate(FEATURES)]
    for label, keep in variants:
        _, _, t, per_set = fit_and_choose(sets, keep)
        cells = [" / ".join(f"{v:.3f}" for v in _scores(rows, t)) for rows in per_set]
        lines.append(f"| {label} (t={t:.2f}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", metavar="CORPUS=QUESTIONS",
                        help="a corpus folder and its question set (repeatable)")
    parser.add_argument("--limit", type=int, help="first N questions of each set")
    parser.add_argument("--dry-run", action="store_true", help="report, don't write")
    parser.add_argument("--ablate", action="store_true",
                        help="refit without each feature in turn and print a table (no write)")
    args = parser.parse_args()
    specs = args.set or DEFAULT_SETS
    began = time.time()
    sets = []
    for spec in specs:
        corpus, _, questions = spec.partition("=")
        sets.append(collect(Path(corpus), Path(questions), args.limit))
        print(f"collected {len(sets[-1])} questions from {questions}", file=sys.stderr)
    w, w2, best_t, per_set = fit_and_choose(sets)
    if args.ablate:
        print(ablation_table(sets, specs))
        return 0
    report = {
        "features": list(FEATURES),
        "weights": [round(float(v), 4) for v in w[:-1]],
        "bias": round(float(w[-1]), 4),
        "confidence": {"features": list(CONFIDENCE_FEATURES),
                       "weights": [round(float(v), 4) for v in w2[:-1]],
                       "bias": round(float(w2[-1]), 4)},
        "threshold": best_t,
        "fitted_on": [s.split("=")[1].replace(str(ROOT.parent), "..") for s in specs],
        "fitted_at": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/calibrate.py" + (f" --limit {args.limit}"
                                                        if args.limit else ""),
    }
    for spec, rows in zip(specs, per_set, strict=True):
        name = Path(spec.split("=")[1]).parent.name + "/" + Path(spec.split("=")[1]).name
        acc1, abstained, false_abst, top_right = _scores(rows, best_t)
        print(f"{name}: accuracy {accuracy(rows, best_t):.3f}, accuracy@1 {acc1:.3f}, "
              f"abstain on unanswerable {abstained:.3f}, false abstention "
              f"{false_abst:.3f}, top candidate right {top_right:.3f}")
    print(json.dumps(report, indent=2))
    print(f"({time.time() - began:.0f} s)", file=sys.stderr)
    if not args.dry_run:
        CALIBRATION_FILE.parent.mkdir(parents=True, exist_ok=True)
        CALIBRATION_FILE.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {CALIBRATION_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
