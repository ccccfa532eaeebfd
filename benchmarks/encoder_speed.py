"""Encoder throughput and accuracy: torch fp32 vs ONNX fp32 vs ONNX int8.

    python benchmarks/encoder_speed.py               # speed on bbc-news chunks (~2.5 min)
    python benchmarks/encoder_speed.py accuracy      # agreement with torch (~2 min)

speed: a fixed random sample of bbc-news chunks cut by the project's chunker (~128 cl100k
tokens each, as the indexer makes them), encoded by each backend at each batch size.
Model tokens/s counts real (non-padding) wordpiece tokens, [CLS]/[SEP] included; the
encoder sorts texts by token count so batches pad little ("pad" column). The best batch
size per backend gives the projected time to embed all bbc-news chunks, and all chunks +
all sentences (what the indexer embeds today).

accuracy: cosine of each backend's vectors with torch's on every SQuAD-dev sentence and a
sample of bbc-news sentences (mean, 1st percentile, min); sentence retrieval for SQuAD
questions (top-10 over all SQuAD sentences): overlap@10 with torch's top 10, and
answer@10, the share of questions with an answer string in a top-10 sentence. Rows
"late" use sentence vectors pooled from their chunk's token embeddings (late chunking,
`Encoder.encode_spans`) instead of encoding each sentence alone.

Data: bbc-news (speed) and squad-dev too (accuracy) under the benchmark data folder
(--data, docs/data.md); when a needed set is missing, one line says so and the script
exits 2. Exports the ONNX models into $QA_HOME/models on first use (~15 s, not timed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_common import (  # noqa: E402
    NO_DATA,
    Deadline,
    add_data_argument,
    corpus_chunks,
    corpus_documents,
    emit,
    sample,
    squad_questions,
    table,
    warn_if_busy,
)

MODEL = "all-MiniLM-L6-v2"
BACKENDS = ("torch", "onnx", "onnx-int8")


def padded_tokens(counts: list[int], batch_size: int) -> int:
    """Tokens the model computes when texts are sorted by length and batched."""
    ordered = sorted(counts, reverse=True)
    return sum(ordered[i] * len(ordered[i : i + batch_size])
               for i in range(0, len(ordered), batch_size))


def speed(args) -> None:
    from embeddings.encoder import load_encoder

    deadline = Deadline(args.budget)
    warn_if_busy()
    t = time.perf_counter()
    chunks, sentences = corpus_chunks(args.data.bbc)
    prep = time.perf_counter() - t
    texts = sample(chunks, args.texts)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    t = time.perf_counter()
    counter = load_encoder(MODEL, "onnx", threads=args.threads, parallel=args.parallel)
    load_seconds = {"onnx": time.perf_counter() - t}
    counts = counter.count_tokens(texts)
    n_tokens = sum(counts)
    all_chunk_tokens = sum(counter.count_tokens(chunks))
    all_sentence_tokens = sum(counter.count_tokens(sentences))
    print(f"bbc-news: {len(chunks)} chunks ({all_chunk_tokens:,} model tokens), "
          f"{len(sentences)} sentences ({all_sentence_tokens:,}); chunked in {prep:.1f} s")
    print(f"sample: {len(texts)} chunks, {n_tokens:,} model tokens "
          f"({n_tokens / len(texts):.0f} per chunk, max {max(counts)})\n")
    rows, best = [], {}
    for backend in args.backends:
        t = time.perf_counter()
        encoder = load_encoder(MODEL, backend, threads=args.threads, parallel=args.parallel)
        loaded = load_seconds.get(backend, time.perf_counter() - t)
        encoder.encode(texts[:32], batch_size=32)  # warm up (allocations, thread pool)
        # the int8 backend always runs one text per batch (embeddings.encoder): time it once
        for bs in ([1] if backend == "onnx-int8" else args.batch_sizes):
            if deadline.over():
                print(f"(budget spent: skipped {backend} batch {bs})", file=sys.stderr)
                continue
            t = time.perf_counter()
            encoder.encode(texts, batch_size=bs)
            seconds = time.perf_counter() - t
            row = {"backend": backend, "batch": bs, "seconds": round(seconds, 2),
                   "texts_per_s": round(len(texts) / seconds, 1),
                   "tokens_per_s": round(n_tokens / seconds),
                   "pad_pct": round(100 * (padded_tokens(counts, bs) / n_tokens - 1), 1),
                   "load_s": round(loaded, 2)}
            rows.append(row)
            if row["tokens_per_s"] > best.get(backend, {}).get("tokens_per_s", 0):
                best[backend] = row
    print(table(rows, [("backend", "backend"), ("batch", "batch"), ("seconds", "s"),
                       ("texts_per_s", "texts/s"), ("tokens_per_s", "tokens/s"),
                       ("pad_pct", "pad %"), ("load_s", "load s")]))
    print()
    projection = []
    for backend, row in best.items():
        rate = row["tokens_per_s"]
        projection.append({
            "backend": backend, "batch": row["batch"], "tokens_per_s": rate,
            "chunks_s": round(all_chunk_tokens / rate, 1),
            "chunks_sentences_s": round((all_chunk_tokens + all_sentence_tokens) / rate, 1)})
    print("projected embedding time for all of bbc-news at the best batch size:")
    print(table(projection, [("backend", "backend"), ("batch", "batch"),
                             ("tokens_per_s", "tokens/s"), ("chunks_s", "chunks only s"),
                             ("chunks_sentences_s", "chunks+sentences s")]))
    base = best.get("torch", {}).get("tokens_per_s")
    speedup = {b: round(r["tokens_per_s"] / base, 2) for b, r in best.items()} if base else {}
    emit("encoder_speed", {"threads": args.threads, "parallel": args.parallel,
                           "sample_texts": len(texts), "sample_tokens": n_tokens,
                           "corpus_chunk_tokens": all_chunk_tokens,
                           "corpus_sentence_tokens": all_sentence_tokens, "rows": rows,
                           "best": projection, "speedup_vs_torch": speedup})


def _top(queries: np.ndarray, corpus: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ corpus.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, top, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(top, order, axis=1)


def _late_sentence_vectors(encoder, docs, n_sentences: int, batch_size: int) -> np.ndarray:
    """Sentence vectors pooled from chunk token embeddings; a sentence in two
    overlapping chunks gets the normalised mean of both."""
    texts, spans, owners = [], [], []
    base = 0
    for _doc, sents, chunks in docs:
        for c in chunks:
            ids = list(range(c.first, c.last + 1))
            texts.append(c.text)
            spans.append([(sents[i].start - c.start, sents[i].end - c.start) for i in ids])
            owners.append([base + i for i in ids])
        base += len(sents)
    _, pooled = encoder.encode_spans(texts, spans, batch_size=batch_size)
    out = np.zeros((n_sentences, encoder.dim), dtype=np.float32)
    for rows, vecs in zip(owners, pooled, strict=True):
        out[rows] += vecs
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def accuracy(args) -> None:
    from embeddings.encoder import load_encoder

    warn_if_busy()
    docs = corpus_documents(args.data.squad_corpus)
    sentences = [s.text for _, ss, _ in docs for s in ss]
    _, bbc_sentences = corpus_chunks(args.data.bbc)
    bbc = sample(bbc_sentences, args.bbc_sentences)
    questions = squad_questions(args.questions, folder=args.data.squad)
    qtexts = [q["question"] for q in questions]
    print(f"{len(sentences)} SQuAD sentences, {len(bbc)} bbc-news sentences, "
          f"{len(questions)} questions\n")
    vec, qvec, late = {}, {}, {}
    for backend in BACKENDS:
        encoder = load_encoder(MODEL, backend)
        t = time.perf_counter()
        vec[backend] = encoder.encode(sentences + bbc, batch_size=args.batch_size)
        qvec[backend] = encoder.encode(qtexts, batch_size=1)
        if backend != "torch":
            late[backend] = _late_sentence_vectors(encoder, docs, len(sentences),
                                                   args.batch_size)
        print(f"{backend}: encoded in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    n = len(sentences)
    ref_top = _top(qvec["torch"], vec["torch"][:n], 10)
    lowered = [s.lower() for s in sentences]

    def answer_at_10(top: np.ndarray) -> float:
        hits = 0
        for q, row in zip(questions, top, strict=True):
            answers = [a.lower() for a in q["answers"]]
            hits += any(a in lowered[i] for i in row for a in answers)
        return hits / len(questions)

    def overlap(top: np.ndarray) -> float:
        return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, ref_top,
                                                                         strict=True)]))

    rows = []
    for backend in BACKENDS:
        cos = (vec[backend] * vec["torch"]).sum(axis=1)
        qcos = (qvec[backend] * qvec["torch"]).sum(axis=1)
        top = _top(qvec[backend], vec[backend][:n], 10)
        rows.append({"vectors": backend, "cos_mean": float(cos.mean()),
                     "cos_p1": float(np.percentile(cos, 1)), "cos_min": float(cos.min()),
                     "q_cos_min": float(qcos.min()), "overlap10": overlap(top),
                     "answer10": answer_at_10(top)})
    # an int8-built index searched with fp32 (or torch) question vectors
    top = _top(qvec["onnx"], vec["onnx-int8"][:n], 10)
    rows.append({"vectors": "int8 index, fp32 queries", "overlap10": overlap(top),
                 "answer10": answer_at_10(top)})
    for backend, vectors in late.items():
        cos = (vectors * vec["torch"][:n]).sum(axis=1)
        top = _top(qvec[backend], vectors, 10)
        rows.append({"vectors": f"late {backend}", "cos_mean": float(cos.mean()),
                     "cos_p1": float(np.percentile(cos, 1)), "cos_min": float(cos.min()),
                     "overlap10": overlap(top), "answer10": answer_at_10(top)})
    print(table(rows, [("vectors", "sentence vectors"), ("cos_mean", "cos mean"),
                       ("cos_p1", "cos p1"), ("cos_min", "cos min"),
                       ("q_cos_min", "question cos min"), ("overlap10", "overlap@10"),
                       ("answer10", "answer@10")]))
    print("\ncos: with torch's vector of the same text (late: with torch's vector of the "
          "sentence encoded alone); overlap@10: share of torch's top 10 sentences found")
    emit("encoder_accuracy", {"batch_size": args.batch_size, "squad_sentences": n,
                              "bbc_sentences": len(bbc),
                              "questions": len(questions), "rows": rows})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", choices=("speed", "accuracy"), default="speed")
    parser.add_argument("--texts", type=int, default=600, help="bbc chunks timed (speed)")
    parser.add_argument("--backends", type=lambda s: s.split(","), default=list(BACKENDS))
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")],
                        default=[32, 64, 128])
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for torch and onnxruntime (default: all CPUs)")
    parser.add_argument("--parallel", choices=("batches", "ops"), default="batches",
                        help="ONNX: batches side by side (default) or operators split")
    parser.add_argument("--budget", type=float, default=150,
                        help="seconds of timing after which remaining runs are skipped")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--bbc-sentences", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=8,
                        help="accuracy: batch size for sentences and chunks (questions: 1)")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    for b in args.backends:
        if b not in BACKENDS:
            parser.error(f"unknown backend {b!r}")
    needs = ("bbc-news",) if args.mode == "speed" else ("squad-dev", "bbc-news")
    missing = [line for line in map(args.data.skip_line, needs) if line]
    if missing:
        print("\n".join(missing))
        return NO_DATA
    speed(args) if args.mode == "speed" else accuracy(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
