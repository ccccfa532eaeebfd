"""What `tests/test_cpu_independence.py` compares between CPUs: run as
`python tests/cpu_probe.py CORPUS INDEX_DIR`, it builds a fresh index of CORPUS, asks
fixed questions (answered, abstained, and two near the threshold) and prints one JSON
line per result: digests of the stored vectors, then each answer as `qa ask --json`
gives it, less its timings (those go to stderr)."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np

# Asked of one seeds article (001_…txt, 3.7 kB: the emulated CPU runs 300-500x slower).
# Confidences of 2026-12-05 (the reader-init reader) against the threshold 0.38 in brackets.
QUESTIONS = (
    "Who declined to meet Lloyd Austin?",  # answered (0.78)
    "Does the US support Taiwan independence?",  # answered (0.63), the README's example
    "Which act guides the One China policy?",  # answered (0.55)
    "Who lifted sanctions?",  # answered just above the threshold (0.380)
    "Who did Blinken meet in Beijing?",  # abstains just below it (0.372) on this one article
    "What is the capital of France?",  # abstains (0.02)
)


def digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def main(corpus: str, index: str) -> None:
    import time

    from qa.engine import Assistant

    start = time.perf_counter()
    assistant = Assistant.load(corpus=corpus, index=index)
    print(f"built and loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    data = assistant.index
    print(json.dumps({"chunk_vectors": digest(data.chunk_vectors),
                      "sentence_vectors": digest(data.sentence_vectors),
                      "chunks": len(data.chunk_vectors)}))
    for question in QUESTIONS:
        answer = assistant.ask(question).to_dict()
        print(question, answer.pop("timings_ms", None), file=sys.stderr)
        print(json.dumps(answer, sort_keys=True, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
