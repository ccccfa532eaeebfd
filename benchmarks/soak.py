"""Soak test: many concurrent clients for minutes against `qa serve`, watching memory.

    python benchmarks/soak.py                         # 32 clients, 120 s, on bbc-news
    python benchmarks/soak.py --clients 8 --duration 30 --corpus seeds

Starts `qa serve` on a free loopback port over the corpus (building or updating its
index first if needed: allow several minutes for bbc-news the first time), samples the
server's resident memory every second, and runs the clients for `--duration` seconds
(bounded by `--requests` too). Questions are built from the corpus' own headlines
("What happened: <first line>?"), cycling. Reports requests/s, latency percentiles,
errors, and the server's RSS in the first and the last minute; exits 1 on any error
or when RSS grew by more than `--max-growth` (default 10%). The default corpus is
bbc-news under the benchmark data folder (--data, docs/data.md); without it the script
says so in one line and exits 2 (`--corpus seeds` needs no data).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from load import percentile, run, start_server, stop_server  # noqa: E402
from speed_common import NO_DATA, ROOT, add_data_argument  # noqa: E402


def headline_questions(corpus: Path, n: int = 300, seed: int = 7) -> list[str]:
    """Questions made from the first line of up to `n` files of the corpus."""
    files = sorted(p for p in corpus.rglob("*") if p.suffix in (".txt", ".md"))
    random.Random(seed).shuffle(files)
    out = []
    for path in files[:n]:
        try:
            first = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[0]
        except (OSError, IndexError):
            continue
        out.append(f"What happened: {first.strip()[:150]}?")
    return out or ["What happened?"]


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus",
                        help="corpus folder, or 'seeds' (default: bbc-news under --data, "
                             "DATA/bench/bbc-news/articles)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds (default 120)")
    parser.add_argument("--requests", type=int, default=100_000, help="request cap")
    parser.add_argument("--max-growth", type=float, default=0.10,
                        help="largest allowed RSS growth, first to last minute (0.10 = 10%%)")
    parser.add_argument("--startup-timeout", type=float, default=1800.0)
    add_data_argument(parser)
    args = parser.parse_args()
    if args.corpus is None:
        if args.data.missing("bbc-news"):
            print(args.data.skip_line("bbc-news", instead="--corpus seeds"))
            return NO_DATA
        corpus = args.data.bbc
    else:
        corpus = ROOT / "seeds" if args.corpus == "seeds" else Path(args.corpus)
        if not corpus.is_dir():
            parser.error(f"corpus folder not found: {corpus}")
    questions = headline_questions(corpus)
    proc, url = start_server(str(corpus), args.startup_timeout)
    samples: list[tuple[float, float]] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.monotonic()
        while not stop.is_set():
            mb = rss_mb(proc.pid)
            if mb is not None:
                samples.append((time.monotonic() - t0, mb))
            stop.wait(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    try:
        sampler.start()
        result = run(url, questions, args.clients, args.requests, args.duration, None, 120.0)
    finally:
        stop.set()
        sampler.join(5)
        stop_server(proc)
    total = max((t for t, _ in samples), default=0.0)
    window = min(60.0, total / 2)
    first = [mb for t, mb in samples if t <= window]
    last = [mb for t, mb in samples if t >= total - window]
    first_mb = sum(first) / len(first) if first else 0.0
    last_mb = sum(last) / len(last) if last else 0.0
    growth = (last_mb - first_mb) / first_mb if first_mb else 0.0
    row = {
        "corpus": str(corpus), "clients": args.clients, "seconds": round(result.seconds, 1),
        "requests": len(result.latencies_ms), "errors": sum(result.errors.values()),
        "error_kinds": result.errors,
        "req_per_s": round(len(result.latencies_ms) / result.seconds, 1) if result.seconds
        else 0.0,
        "p50_ms": round(percentile(result.latencies_ms, 50), 1),
        "p95_ms": round(percentile(result.latencies_ms, 95), 1),
        "rss_first_mb": round(first_mb, 1), "rss_last_mb": round(last_mb, 1),
        "rss_peak_mb": round(max((mb for _, mb in samples), default=0.0), 1),
        "rss_growth": round(growth, 4), "window_s": round(window, 1),
    }
    for key, value in row.items():
        print(f"{key:>14}  {value}")
    print(json.dumps({"soak": row}))
    failed = row["errors"] > 0 or growth > args.max_growth
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
