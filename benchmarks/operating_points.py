"""Compare readers at equal abstention: the held-out confidences of
`calibrate_reader.py --out FILE` runs, each set's threshold moved until the reader abstains
on a given share of the unanswerable questions, and the accuracy@1 and false abstention
it then gives.

    python benchmarks/operating_points.py NAME=FILE.json NAME=FILE.json ...
    python benchmarks/operating_points.py init=cal/init.json v2=cal/v2.json \
        --abstain squad-dev=0.55,0.608,0.65,0.70 --abstain seeds=0.70,0.74

Each reader's own thresholds trade abstention against false abstention differently, so
comparing the figures at each reader's fitted threshold mixes two things; at equal
abstention on unanswerable questions only the ordering of the confidences counts. The
confidences are the held-out ones (every question scored by a stack fitted on the other
folds), pooled over the folds; the threshold chosen here is for comparing, not shipped.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

DEFAULT_ABSTAIN = {"squad-dev": (0.55, 0.608, 0.65, 0.70), "seeds": (0.70, 0.74, 0.78)}


def at_abstention(rows: list, share: float) -> dict:
    """acc@1 and false abstention (over answerable questions) when the threshold is the
    lowest that abstains on at least `share` of the unanswerable ones."""
    conf = np.array([r[0] for r in rows], dtype=float)
    answerable = np.array([bool(r[1]) for r in rows])
    ok = np.array([bool(r[2]) for r in rows])
    unans = np.sort(conf[~answerable])
    if not len(unans) or not answerable.any():
        raise ValueError("need answerable and unanswerable questions")
    k = int(np.ceil(share * len(unans)))  # abstain on the k least confident
    t = float(unans[k - 1]) + 1e-9 if k else float(unans[0])
    answered = conf >= t
    return {"threshold": round(t, 5),
            "abstain_unanswerable": round(float((~answered[~answerable]).mean()), 4),
            "accuracy_at_1": round(float((answered & ok)[answerable].mean()), 4),
            "false_abstention": round(float((~answered[answerable]).mean()), 4)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", metavar="NAME=FILE",
                   help="a calibrate_reader.py --out file, named")
    p.add_argument("--abstain", action="append", default=[], metavar="SET=S,S,...",
                   help="abstention shares on a set's unanswerable questions (default "
                   + "; ".join(f"{k}={','.join(map(str, v))}" for k, v in
                               DEFAULT_ABSTAIN.items()) + ")")
    args = p.parse_args()
    shares = dict(DEFAULT_ABSTAIN)
    for spec in args.abstain:
        name, _, vals = spec.partition("=")
        try:
            shares[name] = tuple(float(v) for v in vals.split(","))
        except ValueError:
            p.error(f"--abstain {spec!r}: SET=0.6,0.7,...")
    names = [spec.partition("=")[0] for spec in args.runs]
    table: dict[tuple[str, str, float], dict] = {}  # (reader, set, share) -> figures
    for spec in args.runs:
        name, _, file = spec.partition("=")
        path = Path(file)
        if not path.is_file():
            p.error(f"{file}: no such file (a calibrate_reader.py --out file)")
        report = json.loads(path.read_text(encoding="utf-8"))
        for set_name, rows in report.get("held_out_rows", {}).items():
            for s in shares.get(set_name, ()):
                table[name, set_name, s] = at_abstention(rows, s)
                print(json.dumps({"reader": name, "set": set_name, "abstain_target": s,
                                  **table[name, set_name, s]}))
    print("\n| set | abstains on unanswerable | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for set_name, s in dict.fromkeys((k[1], k[2]) for k in table):
        cells = [f"{r['accuracy_at_1']:.3f} / {r['false_abstention']:.3f}"
                 if (r := table.get((n, set_name, s))) else "-" for n in names]
        print(f"| {set_name} | {s} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
