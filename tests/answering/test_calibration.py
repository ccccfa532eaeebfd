"""qa/answering/calibration.py: the two logistic models, the plateau threshold, the file format."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from qa.answering import calibration as C
from qa.answering.features import FEATURES
from qa.answering.ranker import Candidate

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


def test_confidence_input_and_the_confidence_model():
    f = tuple(float(i) / 10 for i in range(len(FEATURES)))
    x = C.confidence_input(f, 2.5, 9.0)
    assert len(x) == len(C.CONFIDENCE_FEATURES)
    assert x[:2] == (2.5, C.MAX_MARGIN) and x[2] == f[FEATURES.index("passage_dense")]
    cal = C.Calibration(np.zeros(len(FEATURES)), 0.0, 0.5,
                        np.array([1.0, 0.0, 0.0, 0.0, 0.0]), 0.5)
    assert cal.confidence(f, 2.0, 1.0) == pytest.approx(1 / (1 + math.exp(-2.5)))
    no_model = C.Calibration(np.zeros(len(FEATURES)), 0.0, 0.5)
    assert no_model.confidence(f, 2.0, 1.0) == pytest.approx(C.sigmoid(2.0))


def test_fit_logistic_separates_and_balances_classes():
    X = np.array([[0.0], [0.1], [0.9], [1.0], [0.95]])
    y = np.array([0, 0, 1, 1, 1], dtype=float)
    w = C.fit_logistic(X, y, np.ones(5))
    z = X[:, 0] * w[0] + w[1]
    assert (z[:2] < 0).all() and (z[2:] > 0).all()


def test_plateau_threshold_prefers_a_plateau_to_an_edge():
    # confidence, answerable, top right: answerable ones at 0.8, unanswerable at 0.2
    rows = [(0.8, True, True)] * 5 + [(0.2, False, False)] * 5
    t = C.plateau_threshold([rows])
    assert 0.2 < t <= 0.8 and C.accuracy(rows, t) == 1.0
    assert C.set_scores(rows, t) == (1.0, 1.0, 0.0, 1.0)


def test_fit_and_choose_on_two_tiny_sets():
    def q(answerable, good):  # one right and one wrong candidate (or two wrong)
        f_good = tuple(1.0 if i == 0 else 0.0 for i in range(len(FEATURES)))
        f_bad = tuple(0.0 for _ in FEATURES)
        return (answerable, [(f_good, int(good)), (f_bad, 0)])
    sets = [[q(True, True)] * 6 + [q(False, False)] * 4, [q(True, True)] * 3]
    cal, per_set = C.fit_and_choose(sets)
    assert cal.weights[0] > 0 and len(per_set) == 2 and len(per_set[0]) == 10
    assert cal.confidence_weights is not None and 0 < cal.threshold < 1


def test_file_roundtrip_and_stale_files(tmp_path):
    path = tmp_path / "calibration.json"
    cal = C.Calibration(np.arange(len(FEATURES), dtype=float), -1.0, 0.4,
                        np.ones(len(C.CONFIDENCE_FEATURES)), 0.25, {"fitted_on": ["x"]})
    C.save(cal, path)
    back = C.load(path)
    assert np.array_equal(back.weights, cal.weights) and back.threshold == 0.4
    assert back.confidence_bias == 0.25 and back.meta == {"fitted_on": ["x"]}
    missing = C.load(tmp_path / "missing.json")
    assert np.array_equal(missing.weights, C.default().weights) and missing.threshold == 0.5
    stale = json.loads(path.read_text())
    stale["features"] = stale["features"][:-1]
    path.write_text(json.dumps(stale))
    C.load.cache_clear()
    with pytest.raises(C.CalibrationUnusable, match="refit"):
        C.load(path)
    with pytest.raises(C.CalibrationUnusable):
        C.from_json({**cal.to_json(), "confidence": {"features": ["x"], "weights": [1]}})


def test_the_shipped_calibration_loads():
    cal = C.load()
    assert len(cal.weights) == len(FEATURES) and 0 < cal.threshold < 1


def test_standardized_fit_gives_weights_for_the_raw_columns():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(float)
    scale = np.array([1000.0, 0.001])  # columns of unlike scales
    w_raw = C.fit_logistic(X * scale, y, np.ones(len(y)), standardize=True)
    w_unit = C.fit_logistic(X, y, np.ones(len(y)), standardize=True)
    # the same model, expressed for the scaled columns
    assert np.allclose(w_raw[:-1] * scale, w_unit[:-1], rtol=1e-6)
    assert abs(w_raw[-1] - w_unit[-1]) < 1e-6
    p = 1 / (1 + np.exp(-((X * scale) @ w_raw[:-1] + w_raw[-1])))
    assert ((p > 0.5) == (y == 1)).mean() > 0.95


def test_margin_and_confidence():
    f = tuple(0.0 for _ in FEATURES)
    best, second = Candidate(1, 0, f, 2.0), Candidate(2, 0, f, 1.5)  # logits 2.0 and 1.5
    assert C.margin([best, second]) == 2.0 - 1.5
    assert C.margin([best]) == C.MAX_MARGIN and C.margin([]) == 0
    plain = C.Calibration(np.zeros(len(FEATURES)), 0.0, 0.5)
    assert C.confidence_of([best, second], plain) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert C.confidence_of([], plain) == 0.0
