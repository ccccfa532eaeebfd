"""Run every benchmark script in turn and print one summary (`make bench`).

    python benchmarks/run_all.py              # quality, ceiling, speed, encoder speed,
                                              # vector scale (about 25 minutes on 2 cores)
    python benchmarks/run_all.py --quick      # quality, ceiling, and speed on 100 articles
    python benchmarks/run_all.py --only speed --only ceiling

Each script prints its own table and a final JSON line; this collects those lines into
benchmarks/out/summary.json (or --out) and ends with one combined table of the headline
figures: quality (accuracy@1, hit@5, abstention, false abstention per question set),
speed (its own summary table), the ceiling (GFLOP/s), encoder speed (best tokens/s per
backend) and vector scale (the store's index at each size). A script that fails or
prints no JSON line shows "-". Bounded by the scripts' own budgets. Figures worth
keeping go into docs/benchmarks.md.

Data: the benchmark data folder (--data DIR, else $QA_BENCH_DATA, else ../shared next to
the project; docs/data.md), handed to every script as QA_BENCH_DATA. A script whose data
is missing is not run, and a question set or corpus a script skipped for want of data is
listed as skipped in the final table; the rest runs as usual.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import SETS as QUALITY_SETS  # noqa: E402
from quality import TARGETS as QUALITY_TARGETS  # noqa: E402
from speed_common import DATA_ENV, NO_DATA, Data, add_data_argument, table  # noqa: E402

# (name, command, command under --quick or None to leave the script out, the data sets
# without which it cannot run at all). quality runs seeds without squad-dev and speed
# times seeds without bbc-news: they report what they skipped themselves.
SCRIPTS = [
    ("quality", ["benchmarks/quality.py"], ["benchmarks/quality.py"], ()),
    ("ceiling", ["benchmarks/ceiling.py"], ["benchmarks/ceiling.py"], ()),
    ("speed", ["benchmarks/speed.py"],
     ["benchmarks/speed.py", "--limit-articles", "100", "--questions", "30"], ()),
    ("encoder speed", ["benchmarks/encoder_speed.py"], None, ("bbc-news",)),
    ("vector scale", ["benchmarks/vector_scale.py", "--budget", "420", "--hnsw-cap", "90"], None,
     ()),
]
QUALITY_COLUMNS = (("accuracy_at_1", "acc@1"), ("hit_at_5", "hit@5"),
                   ("abstain_unanswerable", "abstain"), ("false_abstention", "false abstention"))
LOWER_IS_BETTER = {"false_abstention"}


def _f(value, digits: int = 3) -> str:
    return "-" if not isinstance(value, (int, float)) else f"{value:,.{digits}f}"


def quality_rows(result: dict | None) -> list[dict]:
    """acc@1 / hit@5 / abstain / false abstention per question set, against the targets."""
    sets = (result or {}).get("quality") or {}
    skipped = (result or {}).get("skipped") or {}
    names = list(dict.fromkeys([*QUALITY_SETS, *sets]))
    labels = " / ".join(label for _, label in QUALITY_COLUMNS)
    rows = []
    for name in names:
        metrics = sets.get(name) or {}
        targets = QUALITY_TARGETS.get(name, {})
        values, missed = [], []
        for key, label in QUALITY_COLUMNS:
            value = metrics.get(key)
            values.append(_f(value))
            target = targets.get(key)
            if isinstance(value, (int, float)) and target is not None and (
                    value > target if key in LOWER_IS_BETTER else value < target):
                missed.append(label)
        target_text = " / ".join(
            "-" if targets.get(k) is None else ("<=" if k in LOWER_IS_BETTER else ">=")
            + f"{targets[k]:.2f}" for k, _ in QUALITY_COLUMNS)
        met = "-" if not metrics else ("no: " + ", ".join(missed)) if missed else "yes"
        value = f"skipped, no data at {skipped[name]}" if name in skipped \
            else " / ".join(values)
        rows.append({"figure": f"{name}: {labels}", "value": value,
                     "target": target_text, "met": met})
    return rows


def speed_rows(result: dict | None) -> list[dict]:
    """speed.py's own summary table."""
    rows = [{"figure": r.get("measure", "-").strip(), "value": r.get("ours", "-"),
             "target": r.get("target", "-"), "met": r.get("met", "-")}
            for r in (result or {}).get("summary") or []]
    rows += [{"figure": f"{name}: build, update, latency, HTTP",
              "value": f"skipped, no data at {path}"}
             for name, path in ((result or {}).get("skipped") or {}).items()]
    return rows or [{"figure": "summary", "value": "-"}]


def ceiling_rows(result: dict | None) -> list[dict]:
    result = result or {}
    per_token = (result.get("ceiling_tokens_per_s") or {}).get("128")
    return [{"figure": "fp32 matmul GFLOP/s, best", "value": _f(result.get("peak_gflops"), 1)},
            {"figure": "model tokens/s ceiling at s=128", "value": _f(per_token, 0)}]


def encoder_rows(result: dict | None) -> list[dict]:
    best = (result or {}).get("best") or []
    rows = [{"figure": f"best tokens/s, {b.get('backend')} (batch {b.get('batch')})",
             "value": _f(b.get("tokens_per_s"), 0)} for b in best]
    return rows or [{"figure": "best tokens/s", "value": "-"}]


def vector_rows(result: dict | None) -> list[dict]:
    """The store's own index (rows whose "index" starts with "store") at each size."""
    result = result or {}
    target = result.get("target_ms")
    rows = []
    for r in result.get("rows") or []:
        if not str(r.get("index", "")).startswith("store"):
            continue
        p50, rec = r.get("p50_ms"), r.get("recall10")
        met = "-"
        if isinstance(p50, (int, float)) and isinstance(rec, (int, float)) and target:
            met = "yes" if p50 <= target and rec >= 0.95 else "no"
        rows.append({"figure": f"{r['index']} at {r.get('n', 0):,} ({r.get('params')})",
                     "value": f"p50 {_f(p50, 2)} ms, recall@10 {_f(rec)}, "
                              f"{_f(r.get('mb'), 0)} MB, build {_f(r.get('build_s'), 1)} s",
                     "target": f"p50 <= {target} ms, recall@10 >= 0.95" if target else "-",
                     "met": met})
    return rows or [{"figure": "store index", "value": "-"}]


HEADLINES = {"quality": quality_rows, "ceiling": ceiling_rows, "speed": speed_rows,
             "encoder speed": encoder_rows, "vector scale": vector_rows}


def combined_table(summary: dict[str, dict]) -> str:
    """One table of every script's headline figures; "-" where a script failed, printed
    no JSON line or was not run."""
    rows = []
    for name, _, _, _ in SCRIPTS:
        entry = summary.get(name)
        result = entry.get("result") if entry else None
        try:
            group = HEADLINES[name](result)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            group = [{"figure": f"unreadable result ({type(exc).__name__}: {exc})"}]
        if entry is None:
            status = "not run"
        elif entry.get("skipped"):
            status = "skipped"
            group = [{"figure": f"{data}: no data at {path}", "value": "-"}
                     for data, path in entry["skipped"].items()]
        elif entry.get("exit") != 0:
            status = f"exit {entry.get('exit')}"
        else:
            status = ""
        for i, row in enumerate(group):
            label = (f"{name} ({status})" if status else name) if i == 0 else ""
            rows.append({"benchmark": label, **row})
    return table(rows, [("benchmark", "benchmark"), ("figure", "figure"), ("value", "value"),
                        ("target", "target"), ("met", "met?")],
                 left=("benchmark", "figure", "value", "target", "met"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="quality, ceiling and a small speed run (100 articles, 30 "
                             "questions) only")
    parser.add_argument("--only", action="append", metavar="NAME",
                        choices=[name for name, _, _, _ in SCRIPTS],
                        help="run only this script (repeatable): "
                             + ", ".join(name for name, _, _, _ in SCRIPTS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out"), metavar="DIR",
                        help="folder for summary.json (default benchmarks/out)")
    add_data_argument(parser)
    args = parser.parse_args()
    data: Data = args.data
    scripts = [(name, quick if args.quick else cmd, needs) for name, cmd, quick, needs in SCRIPTS
               if (quick or not args.quick) and (not args.only or name in args.only)]
    env = {**os.environ, DATA_ENV: str(data.root)}
    print(f"benchmark data: {data.root}", flush=True)
    summary: dict[str, dict] = {}
    failed = []
    for name, cmd, needs in scripts:
        absent = {need: str(data.missing(need)) for need in needs if data.missing(need)}
        if absent:
            print(f"\n=== {name}: " + "; ".join(data.skip_line(need) for need in absent),
                  flush=True)
            summary[name] = {"seconds": 0.0, "exit": None, "result": None,
                             "skipped": absent}
            continue
        print(f"\n=== {name}: python {' '.join(cmd)}", flush=True)
        began = time.perf_counter()
        proc = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True,
                              text=True, env=env)
        print(proc.stdout, end="")
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-2000:], file=sys.stderr)
        last = next((line for line in reversed(proc.stdout.splitlines())
                     if line.startswith("{")), None)
        try:
            result = json.loads(last) if last else None
        except ValueError:
            result = None
        summary[name] = {"seconds": round(time.perf_counter() - began, 1),
                         "exit": proc.returncode, "result": result}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\n=== summary")
    for name, row in summary.items():
        if row.get("skipped"):
            print(f"{name:>14}: skipped, no data at " + ", ".join(row["skipped"].values()))
        else:
            print(f"{name:>14}: {row['seconds']:>7.1f} s, exit {row['exit']}")
    print(f"wrote {out / 'summary.json'}")
    print("\n=== headline figures")
    print(combined_table(summary))
    if failed:
        return 1
    return NO_DATA if summary and all(row.get("skipped") for row in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
