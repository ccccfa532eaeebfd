"""qa/settings.py: defaults, QA_* variables, overrides and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.settings import DEFAULT_CORPUS, Settings, default_index_dir

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


def test_environment_then_overrides():
    s = Settings.load(env={"QA_TOP_K": "8", "QA_MODEL": "/m", "QA_EXCLUDE": "a.txt, b/c.md"})
    assert s.top_k == 8 and s.model == "/m" and s.exclude == ("a.txt", "b/c.md")
    s = Settings.load(env={"QA_TOP_K": "8"}, top_k=3, corpus="/tmp/x")
    assert s.top_k == 3 and s.corpus == Path("/tmp/x")


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="QA_TOP_K"):
        Settings.load(env={"QA_TOP_K": "many"})
    with pytest.raises(ValueError, match="chunk_overlap"):
        Settings.load(env={}, chunk_tokens=10, chunk_overlap=10)
    with pytest.raises(ValueError, match="min_confidence"):
        Settings.load(env={}, min_confidence=2.0)
    with pytest.raises(ValueError, match="unknown setting"):
        Settings.load(env={}, colour="red")


def test_default_index_is_outside_the_repo_and_per_corpus(monkeypatch, tmp_path):
    monkeypatch.setenv("QA_HOME", str(tmp_path))
    a = default_index_dir(DEFAULT_CORPUS)
    assert a.parent == tmp_path / "indexes" and a.name.startswith("seeds-")
    assert default_index_dir(tmp_path / "other" / "seeds") != a
    assert Settings.load(env={}).index_dir == a


def test_api_key_from_the_environment_is_kept_out_of_reprs():
    s = Settings.load(env={"QA_API_KEY": "sk-secret-1"})
    assert s.api_key == "sk-secret-1" and "sk-secret-1" not in repr(s)
    assert Settings.load(env={"QA_API_KEY": ""}).api_key is None  # empty: unset, /v1 open
    with pytest.raises(ValueError, match="api_key"):
        Settings.load(env={"QA_API_KEY": "  "})
