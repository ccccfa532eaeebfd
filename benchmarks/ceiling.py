"""This machine's fp32 matrix-multiply speed and the encoder throughput it allows.

    python benchmarks/ceiling.py          # ~30 s

Times numpy's float32 matmul (the BLAS numpy ships, all cores) on large square matrices
and reports the best GFLOP/s (2*n^3 floating-point operations per n x n product). Then
divides by the FLOPs one token costs in all-MiniLM-L6-v2 to get a ceiling on model
tokens/s: what an encoder could reach if all its work ran at matmul speed.

FLOPs per token (one multiply-add = 2 FLOPs), from the model's config (hidden h = 384,
feed-forward f = 1536, L = 6 layers), at sequence length s:

    per layer:  Q, K, V, output projections   4 * h*h      multiply-adds
                feed-forward up + down        2 * h*f
                attention scores QK^T + A.V   2 * s*h
    per token = 2 * L * (4*h*h + 2*h*f + 2*s*h)
              = 21.2 MFLOP + 9.2 kFLOP * s   (22.4 MFLOP at s = 128, 23.6 at s = 256)

Embedding lookups, LayerNorm, GELU, softmax and pooling are O(h) per token and left out:
the ceiling is an upper bound. int8 (AVX-512 VNNI: 4 int8 multiply-adds per fp32 lane) can
go past this fp32 ceiling.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_common import Deadline, add_data_argument, emit, table, warn_if_busy  # noqa: E402

HIDDEN, FFN, LAYERS = 384, 1536, 6


def flops_per_token(seq: int, hidden: int = HIDDEN, ffn: int = FFN,
                    layers: int = LAYERS) -> float:
    """FLOPs of one token through the encoder at sequence length `seq` (see module doc)."""
    return 2.0 * layers * (4 * hidden * hidden + 2 * hidden * ffn + 2 * seq * hidden)


def matmul_gflops(n: int, repeats: int, deadline: Deadline) -> dict:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    np.matmul(a, b, out=out)  # warm up: thread pool, page faults
    times = []
    for _ in range(repeats):
        if deadline.over():
            break
        t = time.perf_counter()
        np.matmul(a, b, out=out)
        times.append(time.perf_counter() - t)
    best = min(times)
    return {"n": n, "runs": len(times), "best_s": round(best, 4),
            "gflops": round(2 * n**3 / best / 1e9, 1),
            "median_gflops": round(2 * n**3 / float(np.median(times)) / 1e9, 1)}


def blas_info() -> list[dict]:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for i in threadpool_info()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--budget", type=float, default=120)
    add_data_argument(parser, used=False)
    args = parser.parse_args(argv)
    warn_if_busy()
    deadline = Deadline(args.budget)
    blas = blas_info()
    for lib in blas:
        print(f"BLAS: {lib['internal_api']} {lib['version']} ({lib['architecture']}), "
              f"{lib['num_threads']} threads")
    rows = [matmul_gflops(n, args.repeats, deadline) for n in args.sizes
            if not deadline.over()]
    print(table(rows, [("n", "n"), ("runs", "runs"), ("best_s", "best s"),
                       ("gflops", "GFLOP/s best"), ("median_gflops", "GFLOP/s median")]))
    peak = max(r["gflops"] for r in rows)
    ceilings = []
    for seq in (128, 256):
        f = flops_per_token(seq)
        ceilings.append({"seq": seq, "mflop_per_token": round(f / 1e6, 2),
                         "ceiling_tokens_per_s": round(peak * 1e9 / f)})
    print(f"\nMiniLM-L6 (h={HIDDEN}, ffn={FFN}, {LAYERS} layers) at the best "
          f"{peak:.0f} GFLOP/s:")
    print(table(ceilings, [("seq", "sequence length"), ("mflop_per_token", "MFLOP/token"),
                           ("ceiling_tokens_per_s", "ceiling tokens/s")]))
    at24 = round(peak * 1e9 / 24e6)
    print(f"at a round 24 MFLOP/token: {at24:,} tokens/s")
    emit("ceiling", {"matmul": rows, "peak_gflops": peak, "blas": blas,
                     "flops_per_token": {str(c["seq"]): c["mflop_per_token"] for c in ceilings},
                     "ceiling_tokens_per_s": {str(c["seq"]): c["ceiling_tokens_per_s"]
                                              for c in ceilings},
                     "ceiling_tokens_per_s_at_24mflop": at24})


if __name__ == "__main__":
    main()
