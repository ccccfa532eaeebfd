"""Answer quality on the two question sets, against the targets of docs/benchmarks.md.

    python benchmarks/quality.py            # seeds set + ../shared/bench/squad-dev
    python benchmarks/quality.py --set seeds

Runs `qa eval` (the same engine as the API) on each set into benchmarks/out/<set>/ and
prints one table: accuracy@1, hit@5, abstention on unanswerable questions, false
abstention, citations verbatim, and the target beside each.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "bench"
SETS = {
    "seeds": (ROOT / "seeds", ROOT / "benchmarks" / "questions" / "seeds.jsonl"),
    "squad-dev": (SHARED / "squad-dev" / "corpus", SHARED / "squad-dev" / "questions.jsonl"),
}
TARGETS = {  # metric: (target, higher is better)
    "seeds": {"accuracy_at_1": 0.95, "hit_at_5": 0.98, "abstain_unanswerable": 0.90,
              "false_abstention": 0.05},
    "squad-dev": {"accuracy_at_1": 0.85, "hit_at_5": 0.97, "abstain_unanswerable": 0.60,
                  "false_abstention": 0.10},
}
COLUMNS = ("accuracy_at_1", "hit_at_5", "abstain_unanswerable", "false_abstention",
           "citations_verbatim", "total_p50_ms")


def run(name: str, out_root: Path) -> dict:
    corpus, questions = SETS[name]
    if not questions.exists():
        raise SystemExit(f"missing {questions}")
    out = out_root / name
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qa.cli", "eval", str(questions), "--corpus",
                    str(corpus), "--out", str(out)], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["seconds"] = round(time.perf_counter() - began, 1)
    return metrics


def table(results: dict[str, dict]) -> str:
    lines = ["| set | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, m in results.items():
        cells = []
        for col in COLUMNS:
            value = m.get(col)
            target = TARGETS[name].get(col)
            cell = "–" if value is None else f"{value:.3f}" if col != "total_p50_ms" \
                else f"{value:.1f}"
            if target is not None:
                cmp = "≤" if col == "false_abstention" else "≥"
                cell += f" (target {cmp} {target})"
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", action="append", choices=sorted(SETS),
                        help="which set(s) to run (default: all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"),
                        help="output folder (default benchmarks/out)")
    args = parser.parse_args()
    results = {name: run(name, Path(args.out)) for name in (args.set or list(SETS))}
    print(table(results))
    print(json.dumps({"quality": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
