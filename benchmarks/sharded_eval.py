"""squad-dev's figures from a plain index and from the same corpus sharded (issue 26).

    python benchmarks/sharded_eval.py                      # all 2,828 questions, 3 shards
    python benchmarks/sharded_eval.py --limit 300 --shards 3 --ray

Builds the plain index of squad-dev's corpus (`qa index`), writes it again as N shards
(`qa.retrieval.sharded.layout.reshard`: the layout `qa index --ray` writes, from the same vectors;
with --ray-build, `qa index --ray` on a local Ray builds it instead), then runs `qa eval`
on each: plain on the plain index, plain on the sharded one, and with --ray `qa eval
--ray` (a local Ray, Ray Data workers each loading every shard). Prints one table of the
figures and how many of the judged rows (answer, passages, confidence, judgement) are the
same as the plain build's; exit 1 when a figure or a row differs. Outputs under
--out (default benchmarks/out/sharded-eval).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_common import NO_DATA, ROOT, add_data_argument  # noqa: E402

FIGURES = ("accuracy_at_1", "hit_at_5", "abstain_unanswerable", "false_abstention",
           "squad_em", "squad_f1", "citations_verbatim")


def qa(*args: str, quiet: bool = True) -> float:
    """Run the qa command; its wall seconds."""
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qa.cli", *args], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL if quiet else None)
    return time.perf_counter() - began


def judged(out: Path) -> tuple[dict, list[dict]]:
    metrics = json.loads((out / "metrics.json").read_text())
    rows = []
    for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        row.pop("timings_ms", None)
        row["judgement"].pop("timings_ms", None)
        rows.append(row)
    return metrics, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=3)
    parser.add_argument("--limit", type=int, help="only the first N questions")
    parser.add_argument("--ray", action="store_true", help="also qa eval --ray (local Ray)")
    parser.add_argument("--ray-build", action="store_true",
                        help="build the sharded index with qa index --ray (local Ray)")
    parser.add_argument("--workers", type=int, default=2, help="qa eval --ray workers")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "sharded-eval"))
    add_data_argument(parser)
    args = parser.parse_args()
    if args.data.missing("squad-dev"):
        print(args.data.skip_line("squad-dev"))
        return NO_DATA
    corpus, questions = args.data.squad_corpus, args.data.squad_questions
    out = Path(args.out)
    plain, sharded = out / "index-plain", out / f"index-{args.shards}-shards"
    build = {"plain": qa("index", "--quiet", "--corpus", str(corpus), "--index", str(plain))}
    began = time.perf_counter()
    if args.ray_build:
        qa("index", "--ray", "--quiet", "--rebuild", "--shards", str(args.shards),
           "--corpus", str(corpus), "--index", str(sharded))
    else:
        code = ("import sys\nfrom embeddings import store\n"
                "from qa.retrieval.sharded import layout as shards\n"
                "data, _, _ = store.load_index(sys.argv[1])\n"
                "shards.reshard(data, sys.argv[2], int(sys.argv[3]))\n")
        subprocess.run([sys.executable, "-c", code, str(plain), str(sharded),
                        str(args.shards)], check=True, cwd=ROOT)
    build["sharded"] = time.perf_counter() - began
    limit = ["--limit", str(args.limit)] if args.limit else []
    runs = {"plain index": ["--index", str(plain)],
            f"{args.shards} shards, plain qa eval": ["--index", str(sharded)]}
    if args.ray:
        runs[f"{args.shards} shards, qa eval --ray"] = [
            "--index", str(sharded), "--ray", "--workers", str(args.workers)]
    results = {}
    for name, extra in runs.items():
        target = out / name.replace(" ", "-").replace(",", "")
        seconds = qa("eval", str(questions), "--corpus", str(corpus), "--out", str(target),
                     *limit, *extra)
        results[name] = (*judged(target), seconds)
    base_metrics, base_rows, _ = results["plain index"]
    print(f"squad-dev, {len(base_rows)} questions; builds: plain {build['plain']:.1f} s, "
          f"sharded {build['sharded']:.1f} s ({'qa index --ray' if args.ray_build else 'reshard'})")
    print("| run | " + " | ".join(FIGURES) + " | rows as plain | questions/s | wall s |")
    print("|---" * (len(FIGURES) + 4) + "|")
    differ = False
    for name, (metrics, rows, seconds) in results.items():
        same = sum(a == b for a, b in zip(rows, base_rows, strict=True))
        differ |= same != len(base_rows) or any(metrics[f] != base_metrics[f]
                                                 for f in FIGURES)
        cells = [f"{metrics[f]:.4f}" if metrics[f] is not None else "–" for f in FIGURES]
        qps = (metrics.get("run") or {}).get("questions_per_second")
        print(f"| {name} | " + " | ".join(cells) + f" | {same}/{len(base_rows)} | {qps} | "
              f"{seconds:.0f} |")
    machine = base_metrics.get("machine") or {}
    print(f"machine: {machine.get('cpu')}, {machine.get('cores')} cores; "
          f"nice {os.nice(0)}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
