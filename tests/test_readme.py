"""The README's example outputs are what the code answers today (regenerate them with
`python benchmarks/readme_examples.py --write`). Confidences may differ by 0.02: the
fp32 parts of the models round differently on other CPUs."""

from __future__ import annotations

import importlib.util
import json
import re

import pytest

from support import ROOT

spec = importlib.util.spec_from_file_location("readme_examples",
                                              ROOT / "benchmarks" / "readme_examples.py")
examples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(examples)
README = (ROOT / "README.md").read_text(encoding="utf-8")
FOUND = examples.EXAMPLE.findall(README)
CONFIDENCE = re.compile(r"(confidence[\"]?:? )(\d\.\d+)")


def _split_confidences(text: str) -> tuple[str, list[float]]:
    values = [float(m.group(2)) for m in CONFIDENCE.finditer(text)]
    return CONFIDENCE.sub(r"\1#", text), values


def test_the_readme_has_examples_of_both_kinds():
    assert {kind for _, kind, *_ in FOUND} == {"ask", "api"} and len(FOUND) >= 3


@pytest.mark.parametrize("kind, arg, shown", [(k, a, s) for _, k, a, _, s, _ in FOUND],
                         ids=[f"{k} {a[:40]}" for _, k, a, *_ in FOUND])
def test_each_example_shows_what_the_code_answers(seeds_assistant, kind, arg, shown):
    now = examples.render(kind, arg, seeds_assistant)
    if kind == "api":
        want, got = json.loads(shown), json.loads(now)
        assert abs(want.pop("confidence") - got.pop("confidence")) <= 0.02
        for a, b in zip(want["citations"], got["citations"], strict=True):
            assert abs(a.pop("score") - b.pop("score")) <= 0.02
        assert want == got
        return
    shown_text, shown_conf = _split_confidences(shown)
    now_text, now_conf = _split_confidences(now)
    assert shown_text == now_text
    assert all(abs(a - b) <= 0.02 for a, b in zip(shown_conf, now_conf, strict=True))
