"""Why the encoder's export keeps the residual Add and LayerNormalization apart.

    python benchmarks/onnx_ops.py                 # ~2 min on 2 cores
    python benchmarks/onnx_ops.py --rounds 8 --texts 300

kernel: onnxruntime's SkipLayerNormalization (what its optimiser fuses a residual Add and
a LayerNormalization into) against the unfused ops, in both patterns: fp32's (the dense
layer's bias inside: Add + Add(bias) + LayerNormalization) and the int8 encoder's (the
bias already taken into the quantized matrix product: Add + LayerNormalization), on one
(1, 107, 384) tensor (107 wordpieces: a bbc-news chunk's mean), one thread, microseconds
per call (best of 3 rounds).

encoder: the shipped int8 encoder file opened twice in one process, once as
`embeddings.onnx_convert.open_session` opens it (no SkipLayerNormFusion) and once with
onnxruntime's default optimisations (which fuse the pairs back), one thread each;
rounds alternate A B / B A, and the ratio of model tokens/s is taken round by round
(this box's speed drifts by ±15% between rounds; the median ratio is the figure). Also
the cosine between the two's vectors and each one's against fp32 ONNX. Texts: bbc-news
chunks cut by the project's chunker, or the seeds' when bbc-news is missing.

batching: the same int8 session on the same texts one per run and eight per run (sorted
by length, padded), alternating rounds, model tokens/s and their ratio round by round.
The encoder runs one text per run because dynamic int8 quantises activations per batch;
this shows what batching (e.g. with static int8's fixed scales) would buy here.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_common import add_data_argument, corpus_chunks, emit, sample, warn_if_busy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MODEL = "all-MiniLM-L6-v2"
DIM, SEQ = 384, 107


def _options():
    """One thread, every optimisation, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return options


def _per_call(session, feed: dict, calls: int = 1500) -> float:
    for _ in range(50):
        session.run(None, feed)
    best = []
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(calls):
            session.run(None, feed)
        best.append((time.perf_counter() - start) / calls * 1e6)
    return min(best)


def kernel() -> dict:
    """µs per call of SkipLayerNormalization and of the ops it replaces."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(DIM).astype(np.float32), n)
             for n in ("gamma", "beta", "bias")]
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "s", DIM])
          for n in ("x", "skip", "y")]
    layer_norm = helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"],
                                  axis=-1, epsilon=1e-12)
    graphs = {  # fp32 pattern: the bias in the fused op; int8: the bias in the product
        "SkipLayerNormalization, with bias": [helper.make_node(
            "SkipLayerNormalization", ["x", "skip", "gamma", "beta", "bias"], ["y"],
            domain="com.microsoft", epsilon=1e-12)],
        "Add + Add + LayerNormalization": [
            helper.make_node("Add", ["x", "bias"], ["xb"]),
            helper.make_node("Add", ["xb", "skip"], ["sum"]), layer_norm],
        "SkipLayerNormalization, no bias (int8)": [helper.make_node(
            "SkipLayerNormalization", ["x", "skip", "gamma", "beta"], ["y"],
            domain="com.microsoft", epsilon=1e-12)],
        "Add + LayerNormalization (int8)": [
            helper.make_node("Add", ["x", "skip"], ["sum"]), layer_norm],
    }
    feed = {"x": rng.standard_normal((1, SEQ, DIM)).astype(np.float32),
            "skip": rng.standard_normal((1, SEQ, DIM)).astype(np.float32)}
    out = {}
    for name, nodes in graphs.items():
        model = helper.make_model(
            helper.make_graph(nodes, "g", io[:2], io[2:], inits),
            opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        options = _options()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model.SerializeToString(), options,
                                       providers=["CPUExecutionProvider"])
        out[name] = round(_per_call(session, feed), 1)
    return out


def _encode(session, tokenized: list[list[int]], batch: int = 1) -> tuple[float, np.ndarray]:
    """(model tokens/s, unit vectors pooled as the encoder pools them) for `batch` texts
    per run (sorted by length, padded)."""
    from embeddings.pooling import mean_pool

    names = {i.name for i in session.get_inputs()}
    vectors = np.zeros((len(tokenized), DIM), np.float32)
    order = sorted(range(len(tokenized)), key=lambda i: len(tokenized[i]))
    start = time.perf_counter()
    for b in range(0, len(order), batch):
        rows = order[b : b + batch]
        ids = np.zeros((len(rows), max(len(tokenized[i]) for i in rows)), np.int64)
        mask = np.zeros_like(ids)
        for j, i in enumerate(rows):
            ids[j, : len(tokenized[i])] = tokenized[i]
            mask[j, : len(tokenized[i])] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feed["token_type_ids"] = np.zeros_like(ids)
        vectors[rows] = mean_pool(session.run(["token_embeddings"], feed)[0], mask)
    seconds = time.perf_counter() - start
    return sum(map(len, tokenized)) / seconds, vectors


def encoder(texts: list[str], rounds: int) -> dict:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from embeddings.onnx_convert import open_session
    from embeddings.onnx_export import MODEL_FILES, TOKENIZER_FILE, ensure_export

    folder, meta = ensure_export(MODEL, "onnx-int8")
    ensure_export(MODEL, "onnx")
    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    tokenizer.enable_truncation(int(meta["max_tokens"]))
    tokenized = [e.ids for e in tokenizer.encode_batch(texts)]
    path = folder / MODEL_FILES["onnx-int8"]
    sessions = {
        "unfused (open_session)": open_session(path, _options()),
        "fused at load (onnxruntime default)": ort.InferenceSession(
            str(path), _options(), providers=["CPUExecutionProvider"]),
    }
    names = list(sessions)
    speeds: dict[str, list[float]] = {n: [] for n in names}
    vectors: dict[str, np.ndarray] = {}
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            tps, vectors[name] = _encode(sessions[name], tokenized)
            speeds[name].append(tps)
    _, fp32 = _encode(open_session(folder / MODEL_FILES["onnx"], _options()), tokenized)
    batched: dict[int, list[float]] = {1: [], 8: []}
    for r in range(rounds):
        for size in (1, 8) if r % 2 == 0 else (8, 1):
            batched[size].append(_encode(sessions[names[0]], tokenized, size)[0])
    batch_ratios = [b / a for a, b in zip(batched[1], batched[8], strict=True)]
    ratios = [a / b for a, b in zip(speeds[names[0]], speeds[names[1]], strict=True)]
    cos = (vectors[names[0]] * vectors[names[1]]).sum(axis=1)
    return {
        "texts": len(texts), "model_tokens": sum(map(len, tokenized)), "rounds": rounds,
        "tokens_per_s_per_core": {n: [round(x) for x in speeds[n]] for n in names},
        "ratio_unfused_to_fused": {"median": round(statistics.median(ratios), 3),
                                   "min": round(min(ratios), 3), "max": round(max(ratios), 3)},
        "cosine_unfused_vs_fused": {"min": round(float(cos.min()), 4),
                                    "mean": round(float(cos.mean()), 4)},
        "cosine_vs_fp32": {n: {"min": round(float((vectors[n] * fp32).sum(1).min()), 4),
                               "mean": round(float((vectors[n] * fp32).sum(1).mean()), 4)}
                           for n in names},
        "batching_tokens_per_s": {f"{k} per run": round(statistics.median(v))
                                  for k, v in batched.items()},
        "ratio_8_to_1_per_run": {"median": round(statistics.median(batch_ratios), 3),
                                 "min": round(min(batch_ratios), 3),
                                 "max": round(max(batch_ratios), 3)},
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6, help="A/B rounds (default 6)")
    p.add_argument("--texts", type=int, default=200, help="chunks per round (default 200)")
    add_data_argument(p)
    args = p.parse_args(argv)
    if args.rounds < 1 or args.texts < 1:
        p.error("--rounds and --texts must be at least 1")
    warn_if_busy()
    skip = args.data.skip_line("bbc-news")
    if skip:
        print(skip + "; using the seeds' chunks instead", file=sys.stderr)
        chunks, _ = corpus_chunks(ROOT / "seeds")
    else:
        chunks, _ = corpus_chunks(args.data.bbc)
    texts = sample(chunks, args.texts)
    us = kernel()
    print("kernel, µs per call on (1, 107, 384), one thread:")
    for name, value in us.items():
        print(f"  {name:40s} {value:8.1f}")
    enc = encoder(texts, args.rounds)
    print(f"int8 encoder, {enc['texts']} {'seeds' if skip else 'bbc-news'} chunks, "
          f"{enc['rounds']} rounds, model tokens/s on one core:")
    for name, values in enc["tokens_per_s_per_core"].items():
        print(f"  {name:38s} {values}")
    r = enc["ratio_unfused_to_fused"]
    print(f"  unfused / fused: median {r['median']:.3f} (min {r['min']:.3f}, max {r['max']:.3f});"
          f" cosine between them min {enc['cosine_unfused_vs_fused']['min']:.4f}")
    for name, c in enc["cosine_vs_fp32"].items():
        print(f"  vs fp32, {name}: min {c['min']:.4f} mean {c['mean']:.4f}")
    b = enc["batching_tokens_per_s"]
    br = enc["ratio_8_to_1_per_run"]
    print(f"  batching (unfused, median of rounds): 1 text per run {b['1 per run']:,} "
          f"tokens/s, 8 per run {b['8 per run']:,}; 8/1 median {br['median']:.3f} "
          f"(min {br['min']:.3f}, max {br['max']:.3f})")
    emit("onnx_ops", {"kernel_us": us, "encoder": enc, "data": "seeds" if skip else "bbc-news"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
