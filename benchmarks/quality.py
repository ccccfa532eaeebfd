"""Answer quality on the two question sets, against the targets of docs/benchmarks.md.

    python benchmarks/quality.py            # seeds set + ../shared/bench/squad-dev
    python benchmarks/quality.py --set seeds
    python benchmarks/quality.py --data DIR # squad-dev from DIR/bench/squad-dev

Runs `qa eval` (the same engine as the API) on each set into benchmarks/out/<set>/ and
prints one table: accuracy@1, hit@5, abstention on unanswerable questions, false
abstention, citations verbatim, and the target beside each. The seeds set ships with the
project; a set whose data is missing (docs/data.md) is reported as skipped, one line, and
the others still run. Exit status 2 when no set could run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_common import NO_DATA, ROOT, Data, add_data_argument  # noqa: E402

SETS = ("seeds", "squad-dev")
TARGETS = {  # metric: (target, higher is better)
    "seeds": {"accuracy_at_1": 0.95, "hit_at_5": 0.98, "abstain_unanswerable": 0.90,
              "false_abstention": 0.05},
    "squad-dev": {"accuracy_at_1": 0.85, "hit_at_5": 0.97, "abstain_unanswerable": 0.60,
                  "false_abstention": 0.10},
}
COLUMNS = ("accuracy_at_1", "hit_at_5", "abstain_unanswerable", "false_abstention",
           "citations_verbatim", "total_p50_ms")


def set_paths(name: str, data: Data) -> tuple[Path, Path]:
    """(corpus folder, question file) of a set; seeds ships with the project."""
    if name == "seeds":
        return ROOT / "seeds", ROOT / "benchmarks" / "questions" / "seeds.jsonl"
    return data.squad_corpus, data.squad_questions


def missing(name: str, data: Data) -> tuple[Path, str] | None:
    """(missing path, the one line saying set `name` is skipped), or None if it can run."""
    if name != "seeds":
        path = data.missing(name)
        return (path, data.skip_line(name)) if path else None
    for path in set_paths(name, data):
        if not path.exists():
            return path, (f"{name}: skipped, no data at {path} (it ships with the project: "
                          "is the checkout complete?)")
    return None


def run(name: str, data: Data, out_root: Path) -> dict:
    corpus, questions = set_paths(name, data)
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
    add_data_argument(parser)
    args = parser.parse_args()
    results, skipped = {}, {}
    for name in dict.fromkeys(args.set or SETS):
        absent = missing(name, args.data)
        if absent:
            print(absent[1], flush=True)
            skipped[name] = str(absent[0])
            continue
        results[name] = run(name, args.data, Path(args.out))
    if not results:
        return NO_DATA
    print(table(results))
    print(json.dumps({"quality": results, **({"skipped": skipped} if skipped else {})}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
