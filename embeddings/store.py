"""The index folder: plain files a person can inspect, written atomically.

Layout of an index folder::

    INDEX/
      current -> gen-20261123T101500-4242   symbolic link to the live generation
      gen-20261123T101500-4242/
        manifest.json          format version, model, dimension, chunker, files + hashes
        documents.jsonl        one line per file: source, title, date, sha256, counts
        chunks.jsonl           one line per chunk: source, start, end, tokens, sentences, text
        sentences.jsonl        one line per sentence: source, start, end, text
        texts.jsonl            one line per file: source, text (what offsets point into)
        vectors.faiss          FAISS index of the chunk vectors (inner product = cosine):
                               exact (IndexFlatIP), IVF-Flat above APPROXIMATE_ABOVE,
                               IVF-PQ above COMPRESS_ABOVE; beside the last two also
                               chunk_vectors.npy, the exact float32 vectors (memory-mapped)
        sentence_vectors.npy   float32 (n_sentences, dim), unit length
        bm25/                  bm25s files (json + npy) over the chunk texts
      .lock                    held by a running `qa index`

A build writes a complete new generation beside the live one (`embeddings.generation`,
part by part) and then swaps the
`current` link with one atomic rename, so a crash at any point leaves the previous
index usable; leftovers are removed by the next build.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from embeddings import files, lazy
from embeddings.chunking import Chunk, Sentence
from embeddings.compressed import (  # noqa: F401  (store.ivfpq_shape etc.)
    COMPRESS_ABOVE,
    EXACT_FILE,
    PQ_BYTES,
    Reranked,
    ivfpq,
    ivfpq_shape,
    load_exact,
)
from embeddings.errors import BadInput, Busy, Unusable
from embeddings.lexical import BM25
from embeddings.manifest import (  # noqa: F401  (store.make_manifest etc.)
    FORMAT_VERSION,
    SHARDED_LAYOUT,
    is_sharded,
    make_manifest,
    program_version,
    rebuild_hint,
    version_problem,
)
from embeddings.records import DocumentRecord, IndexData

CURRENT = "current"
TEXTS_FILE = "texts.jsonl"
LOCK = ".lock"
# Above this many chunk vectors the store switches from exact search to IVF-Flat: exact
# search costs ~0.12 ms per 1,000 vectors per question here (11.6 ms at 100k, ~125 ms at
# 1M), IVF-Flat ~2 ms at 1M with recall@10 >= 0.99 (docs/benchmarks.md, vector_scale.py).
APPROXIMATE_ABOVE = 100_000
# Above COMPRESS_ABOVE the store compresses them: IVF-PQ codes in memory (PQ_BYTES a
# vector), the exact vectors memory-mapped to re-rank the codes' top candidates
# (embeddings/compressed.py, measured at 10 M in docs/cluster.md).


class IndexUnusable(Unusable):
    """The index folder is missing, incomplete or damaged; the message says what to run."""


class IndexSharded(IndexUnusable):
    """A sharded index (`qa index --ray`) handed to code that reads one plain generation;
    the sharded view reads it (`qa.retrieval.folder.open_index`)."""


class ShardedNotPlain(BadInput):
    """A single-machine build (`qa index`, `/api/reload`) asked to update a sharded index:
    that is `qa index --ray`'s job (or `--rebuild`, to replace it by a plain one)."""


class IndexBusy(Busy):
    """Another process holds the index lock."""


# Names of the points where a crash trial may kill a build (see `checkpoint`).
FAULT_POINTS = (
    "locked", "read", "embedded", "wrote-documents", "wrote-chunks", "wrote-sentences",
    "wrote-vectors", "wrote-sentence-vectors", "wrote-bm25", "wrote-manifest", "renamed",
    "linked", "switched", "cleaned",
)


# Called with each checkpoint's name as a build passes it (a server's upload job shows
# its progress this way); add and remove with `watch`.
_watchers: list = []


@contextlib.contextmanager
def watch(callback) -> Iterator[None]:
    """Call `callback(name)` at every checkpoint a build of this process passes, for the
    block."""
    _watchers.append(callback)
    try:
        yield
    finally:
        _watchers.remove(callback)


def checkpoint(name: str) -> None:
    """Crash-trial hook: with QA_FAULT_POINT=name the process SIGKILLs itself here.

    Costs one environment lookup (and tells the `watch`ers); does nothing otherwise.
    """
    if os.environ.get("QA_FAULT_POINT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
    for callback in tuple(_watchers):
        callback(name)


# --- locking ---------------------------------------------------------------------------


@contextlib.contextmanager
def locked(index_dir: Path) -> Iterator[None]:
    """Hold the index's write lock; raise IndexBusy at once if another process has it."""
    index_dir = Path(index_dir)
    with files.locked(index_dir / LOCK, wait=False, busy=lambda pid: IndexBusy(
            f"another 'qa index' (pid {pid}) is writing {index_dir}; "
            "wait for it to finish and run again")):
        yield


# --- writing ---------------------------------------------------------------------------


def clean_leftovers(index_dir: Path) -> list[str]:
    """Remove unfinished and superseded generations; return the names removed.

    Call only while holding the lock.
    """
    live = current_generation(index_dir)
    removed = []
    for entry in index_dir.iterdir() if index_dir.is_dir() else []:
        if entry.name.startswith("gen-") and entry != live:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
        elif entry.name.startswith(".current-"):
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return removed


def ivf_shape(n: int) -> tuple[int, int]:
    """(lists, lists probed per query) of the IVF-Flat index for n vectors: about
    4·sqrt(n) lists (a power of two, 256..2048), 1/64 of them probed (at least 16)."""
    nlist = int(min(2048, max(256, 2 ** round(np.log2(4 * np.sqrt(max(n, 1)))))))
    return nlist, max(16, nlist // 64)


def vector_index(vectors: np.ndarray, dim: int,
                 approximate_above: int = APPROXIMATE_ABOVE,
                 compress_above: int = COMPRESS_ABOVE) -> tuple[object, dict]:
    """A FAISS inner-product index over `vectors` (n, dim) float32 unit rows, and its
    description for the manifest: exact IndexFlatIP up to `approximate_above` vectors,
    IVF-Flat (`ivf_shape`, k-means on at most 64 vectors per list, seeded) above, and
    IVF-PQ (`ivfpq_shape`, trained the same way) above `compress_above`.

    IVF-PQ is a plain faiss.IndexIVFPQ (no OPQ rotation in front); `write_index` keeps
    the exact vectors beside it (compressed.EXACT_FILE) for the loader's re-ranking."""
    faiss = lazy.load("faiss")

    n = len(vectors)
    if n <= approximate_above:
        index = faiss.IndexFlatIP(dim)
        _add(index, vectors)
        return index, {"type": "flat"}
    if n > compress_above:
        index, kind = ivfpq(dim, n)
        nlist, nprobe = kind["lists"], kind["probes"]
    else:
        nlist, nprobe = ivf_shape(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist,
                                   faiss.METRIC_INNER_PRODUCT)
        kind = {"type": "ivf-flat", "lists": nlist, "probes": nprobe}
    index.cp.niter = 10
    index.cp.seed = 1
    sample = np.random.default_rng(1).choice(n, min(n, 64 * nlist), replace=False)
    index.train(vectors[np.sort(sample)])
    _add(index, vectors)
    index.nprobe = nprobe
    return index, kind


def _add(index, vectors) -> None:
    """Add the rows to a FAISS index: at once, or a block at a time when `vectors` reads
    them from a file (`generation._Blocks`: the same index, without all rows in memory)."""
    for block in vectors.blocks() if hasattr(vectors, "blocks") else [vectors]:
        if len(block):
            index.add(block)


def switch_to(index_dir: Path, tmp: Path, name: str) -> Path:
    """Make the complete generation folder `tmp` the live one as `index_dir/name`: fsync,
    rename, point a new link at it and rename that over `current` (the one atomic
    switch), then remove what it superseded. Returns the generation's folder."""
    files.fsync_dir(tmp)
    final = index_dir / name
    os.rename(tmp, final)
    checkpoint("renamed")
    link = index_dir / f".current-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(name, link)
    checkpoint("linked")
    os.replace(link, index_dir / CURRENT)  # the one atomic switch
    files.fsync_dir(index_dir)
    checkpoint("switched")
    clean_leftovers(index_dir)
    checkpoint("cleaned")
    return final


# --- reading ---------------------------------------------------------------------------


def current_generation(index_dir: Path) -> Path | None:
    """The live generation folder of an index, or None if there is none yet."""
    link = Path(index_dir) / CURRENT
    if not link.is_symlink() and not link.exists():
        return None
    target = link.resolve()
    return target if target.is_dir() else None


def read_manifest(index_dir: Path) -> dict | None:
    """The live generation's manifest, or None if the index has no usable generation."""
    return generation_manifest(current_generation(index_dir))


def generation_manifest(gen: Path | None) -> dict | None:
    """The manifest of generation folder `gen`, or None if there is none or it is not a
    readable JSON object."""
    if gen is None:
        return None
    try:
        manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _read_jsonl(path: Path) -> list[dict]:
    return list(_iter_jsonl(path))


def _iter_jsonl(path: Path) -> Iterator[dict]:
    """The rows of a JSON lines file, one at a time (a large index's sentences are not
    all held as dicts at once while they are loaded)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def read_texts(gen: Path | None) -> dict[str, str]:
    """source -> the text citations' offsets point into (the extracted text of PDF, Word
    and HTML files), from a generation's texts.jsonl; empty when it has none (an index
    built before texts were kept)."""
    path = (gen / TEXTS_FILE) if gen is not None else None
    if path is None or not path.exists():
        return {}
    try:
        return {r["source"]: r["text"] for r in _read_jsonl(path)}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IndexUnusable(f"{path} is damaged ({type(exc).__name__}: {exc}); "
                            f"{rebuild_hint(gen.parent)}") from exc


def load_index(index_dir: Path) -> tuple[IndexData, BM25, object]:
    """Load the live generation: (data, BM25 index, FAISS index).

    Raises IndexUnusable with the reason and the command to rebuild when the folder
    has no index, or any file is missing, truncated or inconsistent.
    """
    index_dir = Path(index_dir)
    for attempt in range(3):
        gen = current_generation(index_dir)
        try:
            return _load_generation(index_dir, gen)
        except IndexUnusable:
            # A build may have switched generations and removed this one while we read it.
            if attempt == 2 or current_generation(index_dir) == gen:
                raise
    raise IndexUnusable(f"index at {index_dir} kept changing while it was read")


def _load_generation(index_dir: Path, gen: Path | None) -> tuple[IndexData, BM25, object]:
    faiss = lazy.load("faiss")

    if gen is None:
        raise IndexUnusable(f"no index at {index_dir}; build it with: qa index --index {index_dir}")
    try:
        manifest = json.loads((gen / "manifest.json").read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("manifest.json is not a JSON object")
        problem = version_problem(manifest, index_dir)
        if problem:
            raise IndexUnusable(problem)
        if is_sharded(manifest):
            raise IndexSharded(
                f"index at {index_dir} is sharded ({len(manifest['shards'])} shards, built "
                f"with qa index --ray): read it with qa.retrieval.folder.open_index, or make it "
                f"a single-machine index with: qa index --rebuild --index {index_dir}")
        documents = tuple(DocumentRecord.from_row(row)
                          for row in _read_jsonl(gen / "documents.jsonl"))
        names = {d.source: d.source for d in documents}  # one string per source
        chunks = tuple(
            Chunk(names.get(r["source"], r["source"]), r["start"], r["end"], r["text"],
                  r["sentences"][0], r["sentences"][1], r["tokens"])
            for r in _iter_jsonl(gen / "chunks.jsonl"))
        sentences = tuple(Sentence(names.get(r["source"], r["source"]), r["start"], r["end"],
                                   r["text"]) for r in _iter_jsonl(gen / "sentences.jsonl"))
        vectors = faiss.read_index(str(gen / "vectors.faiss"))
        compressed = manifest.get("vector_index", {}).get("type") == "ivf-pq"
        # the exact chunk vectors beside an approximate index: memory-mapped, not copied
        # out of it (an IVF-Flat generation from before they were kept has none)
        exact = load_exact(gen) if (gen / EXACT_FILE).exists() else None
        if compressed:  # codes in memory; exact vectors (and sentences') memory-mapped
            vectors.nprobe = int(manifest["vector_index"]["probes"])
            vectors = Reranked(vectors, load_exact(gen),
                               int(manifest["vector_index"].get("rerank", 200)))
        elif isinstance(vectors, faiss.IndexIVF):
            vectors.nprobe = int(manifest.get("vector_index", {}).get("probes",
                                                                      vectors.nprobe))
            if exact is None:
                vectors.make_direct_map()  # so reconstruct_n below works
        # memory-mapped: answering reads a few rows, so a large index costs little memory
        sentence_vectors = np.load(gen / "sentence_vectors.npy", allow_pickle=False,
                                   mmap_mode="r")
        bm25 = BM25.load(gen / "bm25")
    except IndexUnusable:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, RuntimeError) as exc:
        raise IndexUnusable(
            f"index at {index_dir} is damaged ({type(exc).__name__}: {exc}); "
            f"{rebuild_hint(index_dir)}"
        ) from exc
    counts = manifest.get("counts", {})
    dim = manifest.get("dimension")
    problems = []
    if vectors.ntotal != len(chunks) or counts.get("chunks") != len(chunks):
        problems.append(f"{vectors.ntotal} vectors for {len(chunks)} chunks")
    if sentence_vectors.shape != (len(sentences), dim) or counts.get("sentences") != len(
            sentences):
        problems.append(f"sentence vectors {sentence_vectors.shape} for {len(sentences)}")
    if vectors.d != dim:
        problems.append(f"vector dimension {vectors.d}, manifest says {dim}")
    if bm25.n_docs != max(len(chunks), 1):
        problems.append(f"BM25 has {bm25.n_docs} texts for {len(chunks)} chunks")
    if any(not (0 <= c.first <= c.last < len(sentences)) for c in chunks):
        problems.append("chunk rows point outside the sentence table")
    if problems:
        raise IndexUnusable(
            f"index at {index_dir} is inconsistent ({'; '.join(problems)}); "
            f"{rebuild_hint(index_dir)}"
        )
    if compressed:
        chunk_vectors = vectors.exact
    elif exact is not None and exact.shape == (vectors.ntotal, dim):
        chunk_vectors = exact
    elif isinstance(vectors, faiss.IndexFlat) and vectors.ntotal:
        chunk_vectors = _flat_rows(vectors)
    else:
        if isinstance(vectors, faiss.IndexIVF) and vectors.ntotal:
            vectors.make_direct_map()
        chunk_vectors = (vectors.reconstruct_n(0, vectors.ntotal) if vectors.ntotal
                         else np.zeros((0, dim), dtype=np.float32))
    data = IndexData(manifest, documents, chunks, sentences,
                     np.ascontiguousarray(chunk_vectors, dtype=np.float32),
                     np.ascontiguousarray(sentence_vectors, dtype=np.float32), gen)
    return data, bm25, vectors


class _Rows:
    """Keeps a FAISS flat index alive under the numpy view of its rows."""

    def __init__(self, index, rows: np.ndarray) -> None:
        self.index = index
        self.__array_interface__ = rows.__array_interface__


def _flat_rows(index) -> np.ndarray:
    """The (n, d) float32 rows a FAISS flat index holds, as a read-only view (no copy):
    the exact search reads them, and a copy would double their memory."""
    faiss = lazy.faiss()

    n, d = index.ntotal, index.d
    rows = np.asarray(_Rows(index, faiss.rev_swig_ptr(index.get_xb(), n * d).reshape(n, d)))
    rows.flags.writeable = False
    return rows
