"""Refit the ranker and confidence model (qa/data/calibration.json) on dev question sets.

    python benchmarks/calibrate.py                      # seeds set + ../shared/bench/squad-dev
    python benchmarks/calibrate.py --set CORPUS=QUESTIONS.jsonl ... --dry-run
    python benchmarks/calibrate.py --ablate             # refit without each feature in turn

The models, the fit and the threshold rule are the product's own (`qa.answering.calibration`);
this script only collects every candidate of every question and prints the figures.
With the reader on (the default), these models only pick the sentences the reader
reads; the reader's own calibration is fitted by `benchmarks/calibrate_reader.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from qa.answering import calibration
from qa.answering.features import FEATURES
from qa.evaluation.run import contains_answer, load_questions

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_SETS = [
    f"{ROOT / 'seeds'}={ROOT / 'benchmarks/questions/seeds.jsonl'}",
    f"{ROOT.parent / 'shared/bench/squad-dev/corpus'}="
    f"{ROOT.parent / 'shared/bench/squad-dev/questions.jsonl'}",
]


def collect(corpus: Path, questions_file: Path, limit: int | None) -> calibration.QuestionRows:
    """Per question: (answerable, [(features, label)]) for every candidate sentence."""
    from qa.engine import Assistant

    assistant = Assistant.load(corpus=corpus)
    questions = load_questions(questions_file)[:limit]
    out = []
    for q in questions:
        cands = assistant.candidates(q.question)
        rows = [(f, int(q.answerable and s.source in q.sources
                        and contains_answer(s.text, q.answers))) for s, f in cands]
        out.append((q.answerable, rows))
    return out


def ablation_table(sets, specs) -> str:
    """Markdown table: each set's scores with all features and with each one left out."""
    names = [Path(s.split("=")[1]).parent.name for s in specs]
    head = "| features | " + " | ".join(
        f"{n}: acc@1 / abstain / false abst. / top right" for n in names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    variants = [("all", None)] + [(f"without {f}", [i for i in range(len(FEATURES)) if i != k])
                                  for k, f in enumerate(FEATURES)]
    for label, keep in variants:
        cal, per_set = calibration.fit_and_choose(sets, keep)
        t = cal.threshold
        cells = [" / ".join(f"{v:.3f}" for v in calibration.set_scores(rows, t))
                 for rows in per_set]
        lines.append(f"| {label} (t={t:.2f}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", metavar="CORPUS=QUESTIONS",
                        help="a corpus folder and its question set (repeatable)")
    parser.add_argument("--limit", type=int, help="first N questions of each set")
    parser.add_argument("--dry-run", action="store_true", help="report, don't write")
    parser.add_argument("--ablate", action="store_true",
                        help="refit without each feature in turn and print a table (no write)")
    args = parser.parse_args()
    specs = args.set or DEFAULT_SETS
    began = time.time()
    sets = []
    for spec in specs:
        corpus, _, questions = spec.partition("=")
        sets.append(collect(Path(corpus), Path(questions), args.limit))
        print(f"collected {len(sets[-1])} questions from {questions}", file=sys.stderr)
    if args.ablate:
        print(ablation_table(sets, specs))
        return 0
    cal, per_set = calibration.fit_and_choose(sets)
    cal = dataclasses.replace(cal, meta={
        "fitted_on": [s.split("=")[1].replace(str(ROOT.parent), "..") for s in specs],
        "fitted_at": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/calibrate.py" + (f" --limit {args.limit}"
                                                        if args.limit else "")})
    for spec, rows in zip(specs, per_set, strict=True):
        name = Path(spec.split("=")[1]).parent.name + "/" + Path(spec.split("=")[1]).name
        acc1, abstained, false_abst, top_right = calibration.set_scores(rows, cal.threshold)
        print(f"{name}: accuracy {calibration.accuracy(rows, cal.threshold):.3f}, "
              f"accuracy@1 {acc1:.3f}, abstain on unanswerable {abstained:.3f}, false "
              f"abstention {false_abst:.3f}, top candidate right {top_right:.3f}")
    print(json.dumps(cal.to_json(), indent=2))
    print(f"({time.time() - began:.0f} s)", file=sys.stderr)
    if not args.dry_run:
        calibration.save(cal)
        print(f"wrote {calibration.CALIBRATION_FILE}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
