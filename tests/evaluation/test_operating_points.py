"""benchmarks/operating_points.py: readers compared at equal abstention."""

from __future__ import annotations

import importlib.util

import pytest

from support import ROOT

pytestmark = pytest.mark.quick


def _module():
    spec = importlib.util.spec_from_file_location(
        "operating_points", ROOT / "benchmarks" / "operating_points.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_threshold_abstains_on_the_asked_share_and_scores_the_answerable():
    at = _module().at_abstention
    # (confidence, answerable, best sentence right, fold threshold)
    rows = [(0.1, False, False, 0.5), (0.2, False, False, 0.5), (0.3, False, False, 0.5),
            (0.9, False, False, 0.5),
            (0.15, True, True, 0.5), (0.25, True, False, 0.5), (0.8, True, True, 0.5),
            (0.7, True, False, 0.5)]
    half = at(rows, 0.5)  # abstain on the two least confident unanswerable: t just over 0.2
    assert half["abstain_unanswerable"] == 0.5
    assert half["false_abstention"] == 0.25  # 0.15 falls under it
    assert half["accuracy_at_1"] == 0.25  # only 0.8 answered and right of four
    most = at(rows, 0.75)  # t just over 0.3
    assert most["abstain_unanswerable"] == 0.75
    assert most["false_abstention"] == 0.5 and most["accuracy_at_1"] == 0.25
    with pytest.raises(ValueError):
        at([r for r in rows if r[1]], 0.5)
