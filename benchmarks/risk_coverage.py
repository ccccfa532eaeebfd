"""Accuracy against coverage of two answerers on one question set, and whether the first
dominates: `python benchmarks/risk_coverage.py A B --out plot.png`.

A and B are `qa eval` results.jsonl files, or a calibrate_reader.py report (--out JSON)
with held-out rows (`FILE.json:SET`, e.g. out/reader.json:squad-dev). As the threshold
falls, questions are answered in order of confidence; at each coverage (share of all
questions answered) accuracy@1 is the share of answerable questions answered right.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def rows_of(spec: str) -> list[tuple[float, bool, bool]]:
    """(confidence, answerable, top answer right) per question."""
    path, name = (spec.rsplit(":", 1) if ".json:" in spec else (spec, ""))
    if name:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
        return [(c, a, ok) for c, a, ok, _ in report["held_out_rows"][name]]
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        j = json.loads(line)["judgement"]
        out.append((j["raw_confidence"], j["answerable"], bool(j["raw_correct"])))
    return out


def curve(rows) -> list[tuple[float, float]]:
    """(coverage, accuracy@1) after each question answered, most confident first."""
    answerable = sum(1 for _, a, _ in rows if a) or 1
    right, out = 0, []
    for n, (_, a, ok) in enumerate(sorted(rows, key=lambda r: -r[0]), 1):
        right += int(a and ok)
        out.append((n / len(rows), right / answerable))
    return out


def at(points, coverage: float) -> float:
    """accuracy@1 at a coverage (the last point at or below it)."""
    best = 0.0
    for c, acc in points:
        if c <= coverage + 1e-12:
            best = acc
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--labels", default="reader,ranker")
    p.add_argument("--out", help="write the plot (PNG) here")
    args = p.parse_args()
    a, b = curve(rows_of(args.first)), curve(rows_of(args.second))
    grid = [i / 100 for i in range(1, 101)]
    worse = [c for c in grid if at(a, c) < at(b, c)]
    la, lb = args.labels.split(",")
    for c in (0.1, 0.25, 0.5, 0.75, 1.0):
        print(f"coverage {c:.2f}: {la} {at(a, c):.3f}  {lb} {at(b, c):.3f}")
    print(f"{la} dominates {lb} at every coverage step of 0.01: {not worse}"
          + (f" (not at {len(worse)}: {worse[:5]}...)" if worse else ""))
    if args.out:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4))
        for pts, label in ((a, la), (b, lb)):
            ax.plot([c for c, _ in pts], [x for _, x in pts], label=label)
        ax.set_xlabel("coverage (share of questions answered)")
        ax.set_ylabel("accuracy@1 (answerable questions right)")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(args.out, dpi=110)
    return 0 if not worse else 1


if __name__ == "__main__":
    sys.exit(main())
