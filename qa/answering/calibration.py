"""The answerer's fitted models: load, fit and save `qa/data/calibration.json`.

Two logistic models (numpy, L2-regularised, each question set weighing the same):

1. the ranker over `qa.answering.features.FEATURES`: every candidate sentence of every question is
   one example, labelled 1 when it holds a gold answer and comes from an allowed source;
2. the confidence model over `CONFIDENCE_FEATURES` of the ranker's best candidate (its
   logit, its margin over the runner-up, a few of its signals), labelled 1 when the
   question is answerable and that candidate is right.

The abstention threshold is the one that maximises overall accuracy (answerable
questions answered right + unanswerable ones abstained on), averaged over the sets and
over thresholds within ±0.03, so it sits on a plateau rather than at the edge of a drop.
Source: ours, no paper (`plateau_threshold`); the logistic models are plain L2-regularised
logistic regression fitted by gradient descent.
`benchmarks/calibrate.py` collects the examples and calls `fit_and_choose` / `save`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from embeddings.exact import dot, exact_sigmoid
from qa.answering.features import DEFAULT_BIAS, DEFAULT_WEIGHTS, FEATURES
from qa.errors import Unusable

CALIBRATION_FILE = Path(__file__).resolve().parent.parent / "data" / "calibration.json"
CONFIDENCE_FEATURES = (
    "score",  # the ranker's logit
    "margin",  # score minus the runner-up's, capped at MAX_MARGIN (one candidate: MAX_MARGIN)
    "passage_dense",  # as in FEATURES
    "type_mismatch",
    "negation",
)
MAX_MARGIN = 3.0
_FROM_FEATURES = [FEATURES.index(f) for f in CONFIDENCE_FEATURES[2:]]


class CalibrationUnusable(Unusable):
    """The calibration file is of other features than this version computes."""


def sigmoid(z: float) -> float:
    return exact_sigmoid(max(-40.0, min(40.0, z)))


def confidence_input(features: tuple[float, ...], score: float,
                     margin: float) -> tuple[float, ...]:
    """The CONFIDENCE_FEATURES of a candidate with FEATURES `features`, ranker logit
    `score` and `margin` (logits) over the runner-up."""
    return (score, min(margin, MAX_MARGIN), *(features[i] for i in _FROM_FEATURES))


@dataclass(frozen=True)
class Calibration:
    """The ranker (weights over FEATURES, bias), the abstention threshold, and the
    confidence model (None: the confidence is the ranker's sigmoid)."""

    weights: np.ndarray
    bias: float
    threshold: float
    confidence_weights: np.ndarray | None = None
    confidence_bias: float = 0.0
    meta: dict = field(default_factory=dict, compare=False)

    def score(self, features: tuple[float, ...]) -> float:
        """The ranker's logit of a candidate."""
        return dot(self.weights, features) + self.bias

    def confidence(self, features: tuple[float, ...], score: float, margin: float) -> float:
        """Confidence in 0..1 that the best candidate (its features, logit and margin over
        the runner-up) answers the question."""
        if self.confidence_weights is None:
            return sigmoid(score)
        x = confidence_input(features, score, margin)
        return sigmoid(dot(self.confidence_weights, x) + self.confidence_bias)

    def to_json(self) -> dict:
        out = {"features": list(FEATURES),
               "weights": [round(float(v), 4) for v in self.weights],
               "bias": round(float(self.bias), 4)}
        if self.confidence_weights is not None:
            out["confidence"] = {
                "features": list(CONFIDENCE_FEATURES),
                "weights": [round(float(v), 4) for v in self.confidence_weights],
                "bias": round(float(self.confidence_bias), 4)}
        out["threshold"] = self.threshold
        return {**out, **self.meta}


def margin(candidates) -> float:
    """The best candidate's logit minus the runner-up's (0..MAX_MARGIN); candidates
    (`qa.answering.ranker.Candidate`, best first) have a logit `z`."""
    if not candidates:
        return 0.0
    if len(candidates) == 1:
        return MAX_MARGIN
    return min(candidates[0].z - candidates[1].z, MAX_MARGIN)


def confidence_of(candidates, calibration: Calibration) -> float:
    """Confidence in 0..1 that the best candidate answers (0 without candidates)."""
    if not candidates:
        return 0.0
    best = candidates[0]
    return calibration.confidence(best.features, best.z, margin(candidates))


def default() -> Calibration:
    """Hand-set ranker weights and threshold (no confidence model), for when none is fitted."""
    return Calibration(np.array([DEFAULT_WEIGHTS[f] for f in FEATURES], dtype=np.float64),
                       DEFAULT_BIAS, 0.5)


def from_json(model: dict, where: str = "calibration") -> Calibration:
    """A Calibration from its JSON form; CalibrationUnusable if of other features."""
    if model.get("features") != list(FEATURES) or len(model.get("weights", ())) != len(FEATURES):
        raise CalibrationUnusable(f"{where}: features do not match this version; refit it with "
                                  "python benchmarks/calibrate.py")
    conf = model.get("confidence")
    if conf is not None and (conf.get("features") != list(CONFIDENCE_FEATURES)
                             or len(conf.get("weights", ())) != len(CONFIDENCE_FEATURES)):
        raise CalibrationUnusable(f"{where}: confidence features do not match this version; "
                                  "refit it with python benchmarks/calibrate.py")
    known = {"features", "weights", "bias", "threshold", "confidence"}
    return Calibration(
        np.asarray(model["weights"], dtype=np.float64), float(model["bias"]),
        float(model.get("threshold", 0.5)),
        None if conf is None else np.asarray(conf["weights"], dtype=np.float64),
        0.0 if conf is None else float(conf["bias"]),
        {k: v for k, v in model.items() if k not in known})


@lru_cache(maxsize=4)
def load(path: Path = CALIBRATION_FILE) -> Calibration:
    """The calibration in `path`; `default()` if there is no such file."""
    try:
        model = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default()
    except (OSError, ValueError) as exc:
        raise CalibrationUnusable(f"{path}: unreadable ({exc}); reinstall the project or refit "
                                  "it with python benchmarks/calibrate.py") from None
    return from_json(model, str(path))


def save(calibration: Calibration, path: Path = CALIBRATION_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(calibration.to_json(), indent=2) + "\n", encoding="utf-8")
    load.cache_clear()


# --- fitting ------------------------------------------------------------------------------


def fit_logistic(X: np.ndarray, y: np.ndarray, weights: np.ndarray, l2: float = 1e-3,
                 steps: int = 3000, standardize: bool = False) -> np.ndarray:
    """Weighted logistic regression by gradient descent; returns weights, bias last.

    `weights` (one per example) are rescaled so that the two classes weigh the same.
    With `standardize`, the descent runs on z-scored columns (it converges on features of
    unlike scales) and the weights returned apply to the raw ones.
    """
    if standardize:
        mu, sd = X.mean(axis=0), X.std(axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        w = fit_logistic((X - mu) / sd, y, weights, l2, steps)
        raw = w[:-1] / sd
        return np.r_[raw, w[-1] - float(mu @ raw)]
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


# A question set for fitting: per question (answerable, [(features, label)] per candidate).
QuestionRows = list[tuple[bool, list[tuple[tuple[float, ...], int]]]]


def tops(sets: list[QuestionRows], w: np.ndarray):
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
    return fit_logistic(np.array(X), np.array(y), np.array(wts))


def outcomes(top_rows, w2: np.ndarray):
    """Per set, per question: (confidence, answerable, top correct)."""
    return [[(0.0 if x is None else float(1 / (1 + np.exp(-(x @ w2[:-1] + w2[-1])))), a, ok)
             for x, a, ok in rows] for rows in top_rows]


def accuracy(rows, t: float) -> float:
    """Overall accuracy at threshold t of (confidence, answerable, top correct) rows."""
    right = sum(1 for c, a, ok in rows if (a and ok and c >= t) or (not a and c < t))
    return right / len(rows)


def plateau_threshold(per_set, grid=None) -> float:
    """The threshold with the best overall accuracy summed over the sets, averaged over
    t ± 0.03 (the curve of a small set is jagged: a plateau, not the edge of a drop)."""
    grid = grid or [i / 100 for i in range(1, 100)]
    mean = {t: sum(accuracy(rows, t) for rows in per_set) for t in grid}
    return max(grid, key=lambda t: np.mean([mean[u] for u in grid if abs(u - t) <= 0.031]))


def fit_and_choose(sets: list[QuestionRows], keep: list[int] | None = None):
    """Fit both models on all sets (each weighing the same) and pick the threshold; `keep`
    lists the feature columns to use (others are zeroed). Returns (Calibration, outcomes
    per set)."""
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
    w = fit_logistic(X, y, np.array(wts))
    top_rows = tops(sets, w)
    w2 = fit_confidence(top_rows)
    per_set = outcomes(top_rows, w2)
    cal = Calibration(np.round(w[:-1], 4), round(float(w[-1]), 4), plateau_threshold(per_set),
                      np.round(w2[:-1], 4), round(float(w2[-1]), 4))
    return cal, per_set


def set_scores(rows, t: float) -> tuple[float, float, float, float]:
    """(accuracy@1, abstain on unanswerable, false abstention, top candidate right)."""
    a = [r for r in rows if r[1]]
    u = [r for r in rows if not r[1]]
    return (sum(1 for c, _, ok in a if ok and c >= t) / max(len(a), 1),
            sum(1 for c, *_ in u if c < t) / max(len(u), 1),
            sum(1 for c, *_ in a if c < t) / max(len(a), 1),
            sum(1 for _, _, ok in a if ok) / max(len(a), 1))
