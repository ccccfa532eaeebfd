"""Run every benchmark script in turn and print one summary (`make bench`).

    python benchmarks/run_all.py              # quality, ceiling, encoder speed, vector scale
    python benchmarks/run_all.py --quick      # quality and ceiling only

Each script prints its own table and a final JSON line; this collects those lines into
benchmarks/out/summary.json and prints them. Bounded by the scripts' own budgets (about
20 minutes in all on 2 cores). Figures worth keeping go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [
    ("quality", ["benchmarks/quality.py"]),
    ("ceiling", ["benchmarks/ceiling.py"]),
    ("encoder speed", ["benchmarks/encoder_speed.py"]),
    ("vector scale", ["benchmarks/vector_scale.py"]),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="quality and ceiling only")
    args = parser.parse_args()
    scripts = SCRIPTS[:2] if args.quick else SCRIPTS
    summary: dict[str, object] = {}
    failed = []
    for name, cmd in scripts:
        print(f"\n=== {name}: python {' '.join(cmd)}", flush=True)
        began = time.perf_counter()
        proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True,
                              text=True)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-2000:], file=sys.stderr)
        last = next((line for line in reversed(proc.stdout.splitlines())
                     if line.startswith("{")), None)
        summary[name] = {"seconds": round(time.perf_counter() - began, 1),
                         "exit": proc.returncode,
                         "result": json.loads(last) if last else None}
    out = ROOT / "benchmarks" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n=== summary")
    for name, row in summary.items():
        print(f"{name:>14}: {row['seconds']:>7.1f} s, exit {row['exit']}")
    print(f"wrote {out / 'summary.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
