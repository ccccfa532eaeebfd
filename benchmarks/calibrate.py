"""Refit the answerer's confidence model (qa/data/calibration.json) on dev question sets.

    python benchmarks/calibrate.py                      # seeds set + ../shared/bench/squad-dev
    python benchmarks/calibrate.py --set CORPUS=QUESTIONS.jsonl ... --dry-run

Every candidate sentence of every question is one training example, labelled 1 when it
contains a gold answer and comes from an allowed source. A logistic regression (numpy,
L2-regularised) over `qa.answer.FEATURES` gives the weights; the abstention threshold is
then the one that maximises overall accuracy (answerable questions answered correctly +
unanswerable ones abstained on), averaged over the sets so each set counts equally.
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

from qa.answer import CALIBRATION_FILE, FEATURES  # noqa: E402
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


def outcomes(sets, w: np.ndarray):
    """Per set, per question: (confidence of the top candidate, answerable, top correct)."""
    result = []
    for questions in sets:
        rows = []
        for answerable, cands in questions:
            if not cands:
                rows.append((0.0, answerable, False))
                continue
            X = np.array([f for f, _ in cands])
            z = X @ w[:-1] + w[-1]
            k = int(np.argmax(z))
            rows.append((float(1 / (1 + np.exp(-z[k]))), answerable, bool(cands[k][1])))
        result.append(rows)
    return result


def accuracy(rows, t: float) -> float:
    right = sum(1 for c, a, ok in rows if (a and ok and c >= t) or (not a and c < t))
    return right / len(rows)


def fit_and_choose(sets, keep: list[int] | None = None):
    """Fit on all sets (each weighing the same) and pick the threshold; `keep` lists the
    feature columns to use (others are zeroed). Returns (weights, threshold, outcomes)."""
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
    per_set = outcomes(sets, w)
    grid = [i / 100 for i in range(1, 100)]
    best_t = max(grid, key=lambda t: sum(accuracy(rows, t) for rows in per_set))
    return w, best_t, per_set


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
        _, t, per_set = fit_and_choose(sets, keep)
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
    w, best_t, per_set = fit_and_choose(sets)
    if args.ablate:
        print(ablation_table(sets, specs))
        return 0
    report = {
        "features": list(FEATURES),
        "weights": [round(float(v), 4) for v in w[:-1]],
        "bias": round(float(w[-1]), 4),
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
