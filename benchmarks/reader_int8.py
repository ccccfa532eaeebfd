"""The shipped int8 reader against its fp32 export on real questions: how often the two
pick the same sentence and the same side of "no answer", and how far their scores lie.

    python benchmarks/reader_int8.py [--reader DIR] [--set CORPUS=QUESTIONS] [--limit N]

DIR must hold both `model-int8.onnx` and the fp32 `model.onnx` (a folder written by
`qa reader train` or `qa reader export`; the shipped folder has only the int8 model).
Default set: seeds/ with benchmarks/questions/seeds.jsonl.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reader", required=True, type=Path, help="folder with both models")
    p.add_argument("--set", default=f"{ROOT / 'seeds'}={ROOT / 'benchmarks/questions/seeds.jsonl'}")
    p.add_argument("--limit", type=int)
    args = p.parse_args()
    from qa.answering import calibration
    from qa.answering.ranker import score_candidates
    from qa.answering.reading import read
    from qa.engine import Assistant
    from qa.evaluation import machine
    from qa.evaluation.run import load_questions
    from qa.reader.runtime import Reader
    from qa.settings import Settings

    corpus, _, questions = args.set.partition("=")
    settings = Settings.load(corpus=Path(corpus), reader="off")
    assistant = Assistant.load(settings=settings)
    index, ranker = assistant.index, calibration.load()
    int8, fp32 = Reader(args.reader), Reader(args.reader, fp32=True)
    same_best = same_side = n = 0
    worst, diffs = 0.0, []
    for q in load_questions(Path(questions))[: args.limit]:
        query = assistant.query(q.question)
        passages = index.search(query, assistant.search_settings, settings.top_k)
        cands = score_candidates(query, index, passages, ranker, settings.answer_passages)
        if not cands:
            continue
        a = read(int8, query, index, cands, Settings().reader_windows)
        b = read(fp32, query, index, cands, Settings().reader_windows)
        sa = {r.sentence: r.reader for r in a}
        sb = {r.sentence: r.reader for r in b}
        d = [abs(sa[s] - sb[s]) for s in sa]
        diffs.extend(d)
        worst = max(worst, max(d))
        n += 1
        same_best += max(sa, key=sa.get) == max(sb, key=sb.get)
        same_side += (max(sa.values()) > 0) == (max(sb.values()) > 0)
    print(json.dumps({"questions": n, "same_best_sentence": same_best,
                      "same_answer_or_no_answer_side": same_side,
                      "score_difference_mean": round(float(np.mean(diffs)), 4),
                      "score_difference_p99": round(float(np.percentile(diffs, 99)), 4),
                      "score_difference_max": round(worst, 4),
                      "machine": machine.describe()}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
