"""The reader's learning curve in the product: every checkpoint of a `qa reader train`
run exported and scored on squad-dev with held-out folds.

    python benchmarks/reader_curve.py RUN_DIR [--limit 700] [--windows 4]

For each `RUN_DIR/checkpoints/examples-N.pt` (and the final model in RUN_DIR) this runs
`qa reader export` into a temporary folder and `benchmarks/calibrate_reader.py --dry-run`
on the first `--limit` squad-dev questions, and prints one table row: training windows
seen, questions seen, held-out accuracy@1, top sentence right, abstention on unanswerable
questions, false abstention. Slow (an export and a full reading of the questions per
checkpoint): run it when the machine is otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", type=Path, help="folder written by qa reader train")
    p.add_argument("--limit", type=int, default=700, help="first N squad-dev questions")
    p.add_argument("--windows", default="4")
    p.add_argument("--folds", type=int, default=4)
    p.add_argument("--out", type=Path, help="write the rows as JSON lines here")
    p.add_argument("--meta", type=Path, help="reader.json with the run's training curve "
                   "(default RUN/reader.json; of an export when the run stopped early)")
    args = p.parse_args()
    meta_file = args.meta or args.run / "reader.json"
    meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
    seen = {c["examples"]: c for c in meta.get("curve", [])}
    points = sorted((int(re.search(r"(\d+)", f.stem).group(1)), f)
                    for f in (args.run / "checkpoints").glob("examples-*.pt"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        # the final model too, unless the run stopped before writing it
        final = [(max(seen), None)] if seen and (args.run / "model-int8.onnx").is_file() else []
        for mark, ckpt in [*points, *final]:
            folder = args.run if ckpt is None else Path(tmp) / f"ck{mark}"
            if ckpt is not None:
                subprocess.run([sys.executable, "-m", "qa.cli", "reader", "export", str(ckpt),
                                "--out", str(folder)], check=True, capture_output=True)
            report = Path(tmp) / f"report{mark}.json"
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "calibrate_reader.py"),
                            "--reader", str(folder), "--limit", str(args.limit),
                            "--windows", args.windows, "--folds", str(args.folds),
                            "--dry-run", "--out", str(report)], check=True,
                           capture_output=True)
            point = json.loads(report.read_text())["curve"][-1]["squad-dev"]["held_out"]
            near = min(seen, key=lambda n: abs(n - mark)) if seen else None
            row = {"windows_seen": mark, "questions_seen": seen[near]["questions"]
                   if near is not None else None, **point}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("| training windows | questions | accuracy@1 | top sentence right | abstain on "
          "unanswerable | false abstention |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['windows_seen']:,} | {r['questions_seen'] or 0:,} | {r['accuracy_at_1']:.3f}"
              f" | {r['top_right']:.3f} | {r['abstain_unanswerable']:.3f} | "
              f"{r['false_abstention']:.3f} |")
    if args.out:
        args.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
