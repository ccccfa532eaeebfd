"""The compressed vector index (embeddings.store.vector_index above COMPRESS_ABOVE):
IVF-PQ of at most 64 bytes a vector, chosen by size like IVF-Flat, readable by the
store's loader path (an IndexIVF: nprobe from the manifest, direct map, reconstruct)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from embeddings import generation, records, store

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


def test_ivfpq_shape_at_ten_million_and_beyond():
    assert store.ivfpq_shape(10_000_000, 384) == (4096, 64, 48)
    assert store.ivfpq_shape(100_000_000, 384)[0] == 8192
    for dim in (384, 768, 1024, 100, 32):
        lists, probes, m = store.ivfpq_shape(10_000_000, dim)
        assert dim % m == 0 and m <= 64 and probes == lists // 64


def test_above_compress_above_the_store_builds_ivf_pq(tmp_path):
    # one thread: OpenMP threads that wait on busy cores make training crawl
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((42_000, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    index, kind = store.vector_index(x, 8, approximate_above=1_000, compress_above=40_000)
    assert kind["type"] == "ivf-pq" and kind["bytes_per_vector"] <= 64
    assert isinstance(index, faiss.IndexIVFPQ) and index.ntotal == len(x)
    assert index.code_size == kind["bytes_per_vector"]
    faiss.write_index(index, str(tmp_path / "vectors.faiss"))
    back = faiss.read_index(str(tmp_path / "vectors.faiss"))
    assert isinstance(back, faiss.IndexIVF)  # what store._load_generation handles
    back.nprobe = kind["probes"]
    back.make_direct_map()
    approx = back.reconstruct_n(0, 10)
    assert approx.shape == (10, 8) and np.all(np.sum(approx * x[:10], axis=1) > 0.5)
    _, ids = back.search(x[:20], 10)
    assert np.mean(ids[:, 0] == np.arange(20)) >= 0.9  # each vector finds itself
    # below the switch the index stays as it was
    _, small = store.vector_index(x[:5_000], 8, approximate_above=1_000,
                                  compress_above=40_000)
    assert small["type"] == "ivf-flat"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_a_compressed_generation_re_ranks_with_its_exact_vectors(tmp_path):
    """write_index keeps the exact vectors beside the codes; load_index maps them and
    searches through Reranked: the codes' top candidates re-scored exactly."""
    from embeddings.chunking import Chunk, Sentence
    from embeddings.compressed import EXACT_FILE, Reranked
    from embeddings.lexical import BM25

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    n = 42_000
    centres = rng.standard_normal((300, 20))
    x = _unit(centres[rng.integers(0, 300, n)] + 0.3 * rng.standard_normal((n, 20)))
    doc = records.DocumentRecord("a.txt", "A", None, "sha-a", 5, n, 1)
    chunks = tuple(Chunk("a.txt", 0, 5, f"alpha {i % 97}", 0, 0, 2) for i in range(n))
    manifest = store.make_manifest("fake", 20, {"x": 1}, [doc], n, 1, 0.0)
    data = records.IndexData(manifest, (doc,), chunks, (Sentence("a.txt", 0, 5, "alpha"),),
                           x, _unit(rng.standard_normal((1, 20))))
    with store.locked(tmp_path):
        gen = generation.write_index(tmp_path, data, BM25.build([c.text for c in chunks]),
                                approximate_above=1_000, compress_above=40_000)
    assert (gen / EXACT_FILE).exists()
    loaded, _, vectors = store.load_index(tmp_path)
    assert loaded.manifest["vector_index"]["type"] == "ivf-pq"
    assert isinstance(vectors, Reranked) and isinstance(vectors.index, faiss.IndexIVFPQ)
    # the exact vectors, not the quantised ones, and mapped rather than copied
    assert np.array_equal(loaded.chunk_vectors, x) and not loaded.chunk_vectors.flags.owndata
    queries = _unit(x[:100] + 0.05 * rng.standard_normal((100, 20)))
    truth = np.argsort(-(queries @ x.T), axis=1, kind="stable")[:, :10]

    def recall(ids):
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)])

    sims, ids = vectors.search(queries, 10)
    _, coded = vectors.index.search(queries, 10)
    assert recall(ids) >= 0.95 and recall(ids) > recall(coded) + 0.05, (recall(ids),
                                                                       recall(coded))
    assert np.allclose(sims, np.einsum("qd,qkd->qk", queries, x[ids]), atol=1e-6)
    assert np.all(np.diff(sims, axis=1) <= 0)
