"""The compressed vector index of a big generation: IVF-PQ codes in memory, the exact
vectors memory-mapped on disk, and the top candidates of the codes re-scored with them.

Above COMPRESS_ABOVE chunk vectors `embeddings.store.vector_index` builds a
faiss.IndexIVFPQ (`ivfpq_shape`: about sqrt(n) lists, PQ_BYTES bytes a vector), and the
generation gets one more file, `chunk_vectors.npy` (the exact float32 vectors), which the
loader opens memory-mapped. `Reranked` is what the loader then hands `qa.retrieval.index.Index` as
its FAISS index: `search(queries, k)` asks the codes for RERANK_DEPTH candidates, re-scores
them with the exact vectors (read from the map: ~200 rows, 300 KB, a question) and keeps
the best k, ties by id as FAISS orders them.

Measured at 10 M x 384 synthetic vectors (benchmarks/ivfpq.py, docs/cluster.md): the codes
alone find 0.38 of the exact top 10; re-scoring their top 200 finds 0.92 (p50 43 ms on a
busy 2-core box). OPQ (0.60 against 0.54 at 200 k) and a 16-byte residual code (IVFPQR,
0.64) did not pay next to the exact re-rank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embeddings import lazy

COMPRESS_ABOVE = 10_000_000
PQ_BYTES = 48  # product-quantiser bytes per vector (at most 64): 48 sub-vectors of 8 bits
RERANK_DEPTH = 200  # candidates of the codes re-scored with the exact vectors
EXACT_FILE = "chunk_vectors.npy"


def ivfpq_shape(n: int, dim: int) -> tuple[int, int, int]:
    """(lists, lists probed per query, bytes a vector) of the IVF-PQ index for n vectors
    of `dim`: about sqrt(n) lists (a power of two, 1024..16384: 4,096 at 10 M), 1/64 of
    them probed, and PQ_BYTES sub-quantisers of 8 bits (fewer if they don't divide dim).

    Fewer lists than IVF-Flat's 4·sqrt(n): each added vector is compared with every list
    centre, and at 10 M that assignment is the build's main cost on two cores."""
    nlist = int(min(16384, max(1024, 2 ** round(np.log2(np.sqrt(max(n, 1)))))))
    m = next(m for m in (PQ_BYTES, 32, 24, 16, 12, 8, 4, 2, 1) if dim % m == 0)
    return nlist, max(16, nlist // 64), m


def ivfpq(dim: int, n: int):
    """An untrained faiss.IndexIVFPQ for n vectors and its manifest description."""
    faiss = lazy.load("faiss")

    nlist, nprobe, m = ivfpq_shape(n, dim)
    index = faiss.IndexIVFPQ(faiss.IndexFlatIP(dim), dim, nlist, m, 8,
                             faiss.METRIC_INNER_PRODUCT)
    return index, {"type": "ivf-pq", "lists": nlist, "probes": nprobe,
                   "bytes_per_vector": m, "rerank": RERANK_DEPTH, "exact": EXACT_FILE}


def load_exact(gen: Path) -> np.ndarray:
    """The exact chunk vectors of a compressed generation, memory-mapped (read-only)."""
    return np.load(Path(gen) / EXACT_FILE, mmap_mode="r", allow_pickle=False)


class Reranked:
    """A FAISS-like index (`search`, `ntotal`, `d`, `nprobe`): the compressed `index`
    proposes `depth` candidates, `exact` (n, d) float32 unit rows re-score them."""

    def __init__(self, index, exact: np.ndarray, depth: int = RERANK_DEPTH) -> None:
        if index.ntotal != len(exact):
            raise ValueError(f"{index.ntotal} codes for {len(exact)} exact vectors")
        self.index, self.exact, self.depth = index, exact, int(depth)
        self.d, self.ntotal = index.d, index.ntotal

    @property
    def nprobe(self) -> int:
        return self.index.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self.index.nprobe = value

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids), each (n queries, k), best first; -1 ids pad short rows."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.d)
        _, candidates = self.index.search(queries, max(k, self.depth))
        sims = np.full((len(queries), k), -np.finfo(np.float32).max, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for row, (q, found) in enumerate(zip(queries, candidates, strict=True)):
            found = np.sort(found[found >= 0])  # sorted: sequential reads from the map
            if not len(found):
                continue
            exact = np.asarray(self.exact[found], dtype=np.float32) @ q
            best = np.argsort(-exact, kind="stable")[:k]  # equal scores: lower id first
            sims[row, : len(best)] = exact[best]
            ids[row, : len(best)] = found[best]
        return sims, ids
