"""Compressed vector search at 10 M vectors: IVF-PQ (and OPQ + IVF-PQ) against exact search.

    nice -n 10 python benchmarks/ivfpq.py                      # 10 M x 384, ~1 h on 2 busy cores
    python benchmarks/ivfpq.py --n 500000 --work /tmp/ivfpq    # a quick look

Why: past ~10 M chunk vectors one box can no longer hold them as float32 (10 M x 384 x 4 =
15 GB) nor scan them per question; embeddings.store.vector_index then builds IVF-PQ
(`store.ivfpq_shape`: ~sqrt(n) lists, 48 bytes a vector). This measures what that costs
in recall and what it buys in latency and memory, and whether an OPQ rotation or a
re-ranking of the top candidates with the exact vectors pays.

Data: the clustered synthetic unit vectors of benchmarks/vector_scale.py (calibrated there
against real all-MiniLM-L6-v2 vectors), generated in blocks of 131,072 so that memory stays
flat: the exact vectors go once to a float32 memory-mapped file under --work (15 GB at 10 M;
the page cache holds what fits), which the exact top 10 of every query, the index adds and
the re-ranking read back. Queries are fresh draws from the same mixture.

Indexes (inner product = cosine), each trained on the first `64 x lists` vectors (a
random sample: the mixture is i.i.d.): "ivf-pq" exactly as the store builds it
(faiss.IndexIVFPQ, `ivfpq_shape`), "opq+ivf-pq" (an OPQ rotation in front, trained on
--opq-sample vectors for --opq-iterations rounds; same lists and bytes), "ivf-pqr"
(faiss.IndexIVFPQR: the same codes plus a 16-byte PQ of each residual, 64 bytes in all,
with which FAISS re-ranks --k-factor x 10 candidates), and "ivf-pq+rerank R": the ivf-pq
index asked for R candidates, which are re-scored with their exact vectors (read from the
memory map) and cut to 10. For each: training and add seconds, code bytes a vector,
single-query latency p50/p95 (one query per call, one FAISS thread as the product
searches), recall@10 against the exact top 10.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from speed_common import emit, table, warn_if_busy  # noqa: E402

BLOCK = 131_072


class Mixture:
    """vector_scale.synthetic's mixture, drawn block by block: block b of the data is the
    same whatever the total size (its generator is seeded with (seed, b))."""

    def __init__(self, dim: int, seed: int = 0, topics: int = 100, clusters: int = 10_000,
                 rank: int = 64, spread: float = 0.07, noise: float = 0.03) -> None:
        rng = np.random.default_rng(seed)
        topic = rng.standard_normal((topics, dim), dtype=np.float32)
        centres = topic[rng.integers(0, topics, clusters)] + 0.8 * rng.standard_normal(
            (clusters, dim), dtype=np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.basis = rng.standard_normal((rank, dim), dtype=np.float32) / np.sqrt(rank)
        self.seed, self.dim, self.rank, self.spread, self.noise = seed, dim, rank, spread, noise

    def block(self, b: int, m: int = BLOCK) -> np.ndarray:
        rng = np.random.default_rng([self.seed, b])
        x = self.centres[rng.integers(0, len(self.centres), m)]
        x += (self.spread * rng.standard_normal((m, self.rank), dtype=np.float32)) @ self.basis
        x += self.noise * rng.standard_normal((m, self.dim), dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def generate(mix: Mixture, n: int, path: Path, queries: np.ndarray,
             k: int = 10) -> tuple[np.memmap, np.ndarray, float]:
    """Write n vectors to a float32 memory map at `path` and find every query's exact
    top k on the way (a running merge per block). Returns (memmap, ids (q, k), seconds)."""
    t = time.perf_counter()
    data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, mix.dim))
    best_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for b, lo in enumerate(range(0, n, BLOCK)):
        m = min(BLOCK, n - lo)
        x = mix.block(b, BLOCK)[:m]
        data[lo: lo + m] = x
        sims = queries @ x.T
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.concatenate([best_s, np.take_along_axis(sims, top, 1)], axis=1)
        i = np.concatenate([best_i, top + lo], axis=1)
        keep = np.argsort(-s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(s, keep, 1), np.take_along_axis(i, keep, 1)
    data.flush()
    return data, best_i, time.perf_counter() - t


def add_in_blocks(index, data: np.ndarray) -> None:
    for lo in range(0, len(data), BLOCK):
        index.add(np.ascontiguousarray(data[lo: lo + BLOCK]))


def timed_search(index, queries: np.ndarray, k: int, rerank: np.ndarray | None = None,
                 final: int = 10) -> tuple[float, float, np.ndarray]:
    """(p50 ms, p95 ms, ids (q, final)): one query per call; with `rerank` (the exact
    vectors), the k candidates are re-scored exactly and the best `final` kept."""
    times, out = [], []
    for q in queries:
        t = time.perf_counter()
        _, ids = index.search(q[None, :], k)
        ids = ids[0][ids[0] >= 0]
        if rerank is not None and len(ids):
            order = np.sort(ids)  # sorted reads from the memory map
            exact = rerank[order] @ q
            ids = order[np.argsort(-exact, kind="stable")]
        times.append(time.perf_counter() - t)
        out.append(np.pad(ids[:final], (0, max(0, final - len(ids[:final]))),
                          constant_values=-1))
    ms = np.array(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), np.array(out)


def recall(found: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k
                          for f, e in zip(found, exact, strict=True)]))


def run(args) -> dict:
    import faiss

    from embeddings.store import ivfpq_shape
    from qa.evaluation import machine

    warn_if_busy()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    faiss.omp_set_num_threads(args.threads)
    mix = Mixture(args.dim)
    queries = Mixture(args.dim).block(10**6, args.queries)  # a block no data block uses
    data, exact, gen_s = generate(mix, args.n, work / "vectors.npy", queries)
    print(f"generated {args.n:,} x {args.dim} vectors ({args.n * args.dim * 4 / 2**30:.1f} GB "
          f"memory-mapped) and the exact top 10 of {args.queries} queries in {gen_s:.0f} s",
          flush=True)
    nlist, store_probes, m = ivfpq_shape(args.n, args.dim)
    if args.lists:
        nlist = args.lists
    if args.bytes:
        m = args.bytes
    sample = np.ascontiguousarray(data[: min(args.n, 64 * nlist)])
    probes = sorted({16, 32, 64, 128, store_probes})
    rows: list[dict] = []
    built: dict = {}

    def measure(name: str, index, train_s: float, add_s: float, code_bytes: int) -> None:
        faiss.omp_set_num_threads(1)  # answer-time search runs on one thread
        ivf = faiss.extract_index_ivf(index)
        for nprobe in probes:
            ivf.nprobe = nprobe
            tags = [("", None, 10)] + ([(f"+rerank {r}", data, r) for r in args.rerank]
                                       if name == "ivf-pq" else [])
            for tag, exact_vectors, k in tags:
                p50, p95, found = timed_search(index, queries, k, exact_vectors)
                rows.append({"index": name + tag, "lists": nlist, "nprobe": nprobe,
                             "bytes": code_bytes, "train_s": round(train_s, 1),
                             "add_s": round(add_s, 1), "p50_ms": round(p50, 3),
                             "p95_ms": round(p95, 3),
                             "recall10": round(recall(found, exact), 4),
                             "store": nprobe == store_probes and name == "ivf-pq"})
                print(json.dumps(rows[-1]), flush=True)
        faiss.omp_set_num_threads(args.threads)

    for name in args.variants:
        t = time.perf_counter()
        if name == "ivf-pq":
            index = faiss.IndexIVFPQ(faiss.IndexFlatIP(args.dim), args.dim, nlist, m, 8,
                                     faiss.METRIC_INNER_PRODUCT)
            index.cp.niter, index.cp.seed = 10, 1
            index.train(sample)
        elif name == "ivf-pqr":
            # PQ codes plus a second 16-byte PQ of the residual (64 bytes in all): FAISS
            # re-ranks k_factor x k candidates with the finer codes, inside the index
            index = faiss.IndexIVFPQR(faiss.IndexFlatIP(args.dim), args.dim, nlist, m, 8,
                                      16, 8)
            index.metric_type = faiss.METRIC_INNER_PRODUCT
            index.cp.niter, index.cp.seed = 10, 1
            index.k_factor = args.k_factor
            index.train(sample)
        elif name == "opq+ivf-pq":
            # OPQ's own training alternates PQ fits and rotations over all dimensions:
            # on its own sample and iteration budget, or it takes hours at 384-d
            opq = faiss.OPQMatrix(args.dim, m)
            opq.niter, opq.niter_pq = args.opq_iterations, 4
            opq.train(sample[: args.opq_sample])
            ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(args.dim), args.dim, nlist, m, 8,
                                   faiss.METRIC_INNER_PRODUCT)
            ivf.cp.niter, ivf.cp.seed = 10, 1
            ivf.train(opq.apply(sample))
            index = faiss.IndexPreTransform(opq, ivf)
        else:
            raise SystemExit(f"unknown variant {name!r}")
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        add_in_blocks(index, data)
        add_s = time.perf_counter() - t
        print(f"{name}: trained in {train_s:.0f} s, added {args.n:,} in {add_s:.0f} s",
              flush=True)
        built[name] = {"train_s": round(train_s, 1), "add_s": round(add_s, 1)}
        measure(name, index, train_s, add_s, m + (16 if name == "ivf-pqr" else 0))
        del index
    if not args.keep:
        del data
        os.unlink(work / "vectors.npy")
    payload = {"n": args.n, "dim": args.dim, "queries": args.queries, "lists": nlist,
               "store_probes": store_probes, "bytes_per_vector": m, "rows": rows,
               "generate_s": round(gen_s, 1), "machine": machine.line(),
               "date": time.strftime("%Y-%m-%d"), "faiss": faiss.__version__,
               "command": "python benchmarks/ivfpq.py " + " ".join(sys.argv[1:]),
               "float32_gb": round(args.n * args.dim * 4 / 2**30, 2),
               "codes_gb": round(args.n * (m + 8) / 2**30, 2)}
    print()
    print(table(rows, [("index", "index"), ("lists", "lists"), ("nprobe", "nprobe"),
                       ("bytes", "B/vector"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
                       ("recall10", "recall@10")]))
    emit("ivfpq", payload)
    return payload


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=lambda s: int(float(s)), default=10_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--lists", type=int, help="IVF lists (default: store.ivfpq_shape)")
    parser.add_argument("--bytes", type=int,
                        help="PQ bytes a vector (default: store.ivfpq_shape, 48)")
    parser.add_argument("--rerank", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[50, 200], help="candidates re-scored exactly, e.g. 50,200")
    parser.add_argument("--variants", type=lambda s: s.split(","),
                        default=["ivf-pq", "opq+ivf-pq"])
    parser.add_argument("--k-factor", type=int, default=20,
                        help="ivf-pqr: candidates re-ranked with the residual codes, per k")
    parser.add_argument("--opq-sample", type=int, default=50_000,
                        help="vectors the OPQ rotation is trained on")
    parser.add_argument("--opq-iterations", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2, help="FAISS threads for building")
    parser.add_argument("--work", default=os.environ.get("TMPDIR", "/tmp") + "/qa-ivfpq",
                        help="folder for the memory-mapped vectors (15 GB at 10 M)")
    parser.add_argument("--keep", action="store_true", help="keep the vector file")
    run(parser.parse_args(argv))


if __name__ == "__main__":
    main()
