"""Crash trials: a build SIGKILLed at every checkpoint leaves the previous index usable,
and the next build completes and removes the leftovers.

The killed builds run in subprocesses with a fast deterministic fake encoder (storage is
what's on trial); one trial kills a real `qa index` mid-embedding and then asks with the
real model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from embeddings import store
from support import ROOT, write_corpus

FAKE_BUILD = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from embeddings.indexer import IndexConfig, build_index

    class Fake:  # not an Encoder: chunks and sentences are embedded on their own
        dim = 16
        def encode(self, texts, **kw):
            out = np.array([np.frombuffer(hashlib.sha256(t.encode()).digest()[:16], np.uint8)
                            for t in texts], dtype=np.float32) + 1
            return out / np.linalg.norm(out, axis=1, keepdims=True)

    report = build_index(sys.argv[1], sys.argv[2], IndexConfig(model="fake"), Fake)
    print(report.summary())
""")



V1 = {"a.txt": "Alpha reports rain. Alpha expects sun.", "b.txt": "Beta saw snow on Monday."}
V2 = {"a.txt": "Alpha now reports hail.", "c/d.txt": "Delta opened a new port."}


def _fake_build(corpus, index, fault=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("QA_FAULT_POINT", None)
    if fault:
        env["QA_FAULT_POINT"] = fault
    return subprocess.run([sys.executable, "-c", FAKE_BUILD, str(corpus), str(index)],
                          capture_output=True, text=True, timeout=120, env=env)


def _sources(index):
    data, _, _ = store.load_index(index)
    return sorted(d.source for d in data.documents)


@pytest.mark.parametrize("phase", ["build", "update"])
def test_kill_at_every_checkpoint_keeps_the_last_good_index(tmp_path, phase):
    for n, point in enumerate(store.FAULT_POINTS):
        corpus = write_corpus(tmp_path / f"c{n}", V1)
        index = tmp_path / f"i{n}"
        if phase == "update":
            assert _fake_build(corpus, index).returncode == 0
            for name in V1:
                (corpus / name).unlink()
            write_corpus(corpus, V2)
        killed = _fake_build(corpus, index, fault=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr)
        live = store.current_generation(index)
        if phase == "build" and point not in ("switched", "cleaned"):
            assert live is None, point  # nothing half-built is ever live
        else:
            before_switch = store.FAULT_POINTS.index(point) < store.FAULT_POINTS.index(
                "switched")
            expected = V1 if phase == "update" and before_switch else V2 if phase == "update" \
                else V1
            assert _sources(index) == sorted(expected), point
        done = _fake_build(corpus, index)
        assert done.returncode == 0, (point, done.stderr)
        assert _sources(index) == sorted(V2 if phase == "update" else V1), point
        leftovers = [p.name for p in index.iterdir()
                     if p.name not in ("current", ".lock") and p != store.current_generation(index)]
        assert leftovers == [], (point, leftovers)


def test_real_qa_index_killed_mid_embedding_then_ask_works(tmp_path, seeds_copy, model):
    from qa.engine import Assistant
    from qa.settings import Settings

    index = tmp_path / "index"
    settings = Settings.load(env={}, corpus=seeds_copy, index=index)
    Assistant.load(settings=settings)  # a complete index of seeds
    before = store.current_generation(index)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "QA_PROGRESS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "qa.cli", "index", "--rebuild", "--corpus",
                             str(seeds_copy), "--index", str(index)], env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    line = ""
    while time.time() < deadline and "embedding" not in line:
        line = proc.stderr.read(40) or line
        if proc.poll() is not None:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert store.current_generation(index) == before  # the old generation is still live
    answer = Assistant.load(settings=settings).ask("Who declined to meet Lloyd Austin?")
    assert answer.answerable and "Li Shangfu" in answer.answer
