"""The same answers on every x86-64 CPU (docs/reliability.md, "The same answer on every
CPU"): the product runs natively and under qemu-user emulating an older CPU than the
host's (Haswell, AVX2, on an AVX-512 host; Nehalem, SSE4.2, on an AVX2 host), each
building its own index of the seeds and answering the same questions, and every byte
of the results must agree: stored vectors, answers, abstentions, citations, answer
spans and confidences.

qemu cannot emulate AVX-512, so this is the evidence, not the cure: the cure is the
arithmetic of `embeddings.exact`, whose results cannot depend on the CPU. Skipped when
qemu-x86_64 is missing, unless QA_REQUIRE_QEMU=1 (`make test` installs it) makes that a
failure. The emulated CPU runs this code 300-500x slower than the host, so the corpus is
one seeds article and the questions six: ~3-4 minutes in all.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, SEEDS
from tests.cpu_probe import QUESTIONS

PROBE = ROOT / "tests" / "cpu_probe.py"
ARTICLE = "001_340206877254da52.txt"


def _flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def older_cpu(flags: set[str]) -> str | None:
    """The qemu CPU model older than the host: Haswell under AVX-512, Nehalem under AVX2."""
    if "avx512f" in flags:
        return "Haswell"
    if "avx2" in flags:
        return "Nehalem"
    return None


# qemu 7.2 (Debian 12) runs numpy's own AVX2 kernels wrongly: a BM25 index built under
# `-cpu Haswell` scores differently with every PYTHONHASHSEED, while the same kernels run
# natively (AVX-512 switched off with NPY_DISABLE_CPU_FEATURES) agree with the AVX-512
# ones (docs/benchmarks.md, 2026-12-04). So under emulation numpy keeps to its SSE4.2
# kernels; torch, FAISS and numba still run their AVX2 code there.
EMULATED_ENV = {"NPY_DISABLE_CPU_FEATURES": "X86_V3"}


def _run(command: list[str], home: Path, extra: dict | None = None) -> list[dict]:
    env = {**os.environ, "QA_HOME": str(home), "PYTHONPATH": str(ROOT), **(extra or {})}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_older_cpu_model_is_chosen_from_the_host_flags():
    assert older_cpu({"avx2", "avx512f", "avx512_vnni"}) == "Haswell"
    assert older_cpu({"sse4_2", "avx2"}) == "Nehalem"
    assert older_cpu({"sse4_2"}) is None


def test_answers_are_identical_under_an_emulated_older_cpu(tmp_path):
    qemu = shutil.which("qemu-x86_64")
    cpu = older_cpu(_flags())
    if platform.machine() != "x86_64" or cpu is None:
        pytest.skip("needs an x86-64 host with AVX2 or AVX-512")
    if qemu is None:
        if os.environ.get("QA_REQUIRE_QEMU"):
            pytest.fail("qemu-x86_64 is missing: `make test` installs Debian's qemu-user")
        pytest.skip("qemu-x86_64 is missing (apt-get install qemu-user)")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(SEEDS / ARTICLE, corpus / ARTICLE)
    native = _run([sys.executable, str(PROBE), str(corpus), str(tmp_path / "native")],
                  tmp_path / "home-native")
    emulated = _run([qemu, "-cpu", cpu, sys.executable, str(PROBE), str(corpus),
                     str(tmp_path / "emulated")], tmp_path / "home-emulated",
                    EMULATED_ENV if cpu == "Haswell" else None)
    assert len(native) == 1 + len(QUESTIONS) and native[0]["chunks"] > 0
    answered = [r for r in native[1:] if r["answerable"]]
    assert answered and len(answered) < len(QUESTIONS)  # both kinds are compared
    for mine, theirs in zip(native, emulated, strict=True):
        assert mine == theirs
