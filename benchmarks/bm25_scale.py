"""BM25 scoring time per question as a shard grows (docs/scale.md's fan-out budget).

    nice -n 10 python benchmarks/bm25_scale.py                  # 100 k and 400 k chunks

A shard scores every question against all its chunks (`BM25.scores`, bm25s underneath:
time linear in the postings of the question's tokens). This replicates the bbc-news
chunks (the project's own chunker, tokenised once by `embeddings.lexical.tokenize`) to
--sizes chunks, builds the shard's BM25 from the token lists with corpus-wide statistics
(qa.retrieval.sharded.lexicon.shard_bm25: what a shard of `qa index --ray` stores), and times
`scores` plus the top 31 (`qa.retrieval.retrieve.top_n`, as a shard's `rank` asks) for headline
questions ("What happened: <first line>?", as soak.py makes them),
one at a time: p50 / p95 ms, and ms per million chunks. Replicating keeps every token's
document frequency share, so posting lengths grow linearly with the size, as in a bigger
corpus of the same kind of text.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from speed_common import add_data_argument, corpus_documents, emit, table, warn_if_busy  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    from embeddings.lexical import tokenize
    from qa.evaluation import machine
    from qa.retrieval.retrieve import top_n
    from qa.retrieval.sharded.lexicon import Lexicon, shard_bm25

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument("--sizes", type=lambda s: [int(float(x)) for x in s.split(",")],
                        default=[100_000, 400_000])
    parser.add_argument("--questions", type=int, default=100)
    args = parser.parse_args(argv)
    warn_if_busy()
    docs = corpus_documents(args.data.bbc)
    tokens = [tokenize(c.text) for _, _, cs in docs for c in cs]
    questions = [tokenize(f"What happened: {d.text.splitlines()[0]}?")
                 for d, _, _ in docs[:: max(1, len(docs) // args.questions)]][: args.questions]
    rows = []
    for size in args.sizes:
        corpus = (tokens * (size // len(tokens) + 1))[:size]
        began = time.perf_counter()
        bm25 = shard_bm25(corpus, Lexicon.of(corpus))
        build_s = time.perf_counter() - began
        bm25.scores(questions[0])
        times = []
        for q in questions:
            t = time.perf_counter()
            top_n(bm25.scores(q), 31)
            times.append((time.perf_counter() - t) * 1000)
        p50, p95 = float(np.percentile(times, 50)), float(np.percentile(times, 95))
        rows.append({"chunks": size, "build_s": round(build_s, 1), "p50_ms": round(p50, 2),
                     "p95_ms": round(p95, 2), "p50_ms_per_million": round(p50 / size * 1e6, 1)})
        print(rows[-1], flush=True)
        del bm25, corpus
    print(table(rows, [("chunks", "chunks"), ("build_s", "build s"), ("p50_ms", "p50 ms"),
                       ("p95_ms", "p95 ms"), ("p50_ms_per_million", "p50 ms / M chunks")]))
    emit("bm25_scale", {"rows": rows, "bbc_chunks": len(tokens),
                        "questions": len(questions), "machine": machine.line(),
                        "date": time.strftime("%Y-%m-%d"),
                        "command": "python benchmarks/bm25_scale.py " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
