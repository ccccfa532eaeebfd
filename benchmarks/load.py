"""Load test of the HTTP API: N concurrent clients on loopback, POST /api/answer.

    python benchmarks/load.py                             # starts `qa serve` over seeds/
    python benchmarks/load.py --clients 1,2,4,8 --requests 200 --duration 60
    python benchmarks/load.py --url http://127.0.0.1:7860 # against a running server
    python benchmarks/load.py --corpus ~/articles --json

Each run is bounded by a request count and a time limit (whichever comes first). The
questions cycle through a JSON-lines question set (default
benchmarks/questions/seeds.jsonl, field "question"). Reports requests/s, latency
percentiles (client-side, wall time per request), the server's own median time per
request (timings_ms.server) and errors (any non-200 answer or failed connection).
Exit status 1 when any request failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_common import add_data_argument  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_QUESTIONS = ROOT / "benchmarks" / "questions" / "seeds.jsonl"
FALLBACK_QUESTIONS = [
    "Does the US support Taiwan independence?",
    "What did Blinken say about North Korea?",
    "Who did Blinken meet in Beijing?",
    "How many troops does China have near Taiwan?",
]


def load_questions(path: Path | None) -> list[str]:
    if path is None:
        if not DEFAULT_QUESTIONS.exists():
            return list(FALLBACK_QUESTIONS)
        path = DEFAULT_QUESTIONS
    questions = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise SystemExit(f"{path}:{n}: not JSON") from None
            q = row.get("question") if isinstance(row, dict) else None
            if isinstance(q, str) and q.strip():
                questions.append(q)
    if not questions:
        raise SystemExit(f"{path}: no questions")
    return questions


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation; nan if empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class Result:
    clients: int
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies_ms) + sum(self.errors.values())

    def row(self) -> dict:
        ok = self.latencies_ms
        return {
            "clients": self.clients,
            "requests": self.requests,
            "errors": sum(self.errors.values()),
            "seconds": round(self.seconds, 2),
            "req_per_s": round(self.requests / self.seconds, 2) if self.seconds else 0.0,
            "p50_ms": round(percentile(ok, 50), 1),
            "p95_ms": round(percentile(ok, 95), 1),
            "p99_ms": round(percentile(ok, 99), 1),
            "max_ms": round(max(ok), 1) if ok else float("nan"),
            "server_p50_ms": round(percentile(self.server_ms, 50), 1),
            "error_kinds": dict(self.errors),
        }


def run(url: str, questions: list[str], clients: int, max_requests: int,
        duration: float, top_k: int | None, timeout: float) -> Result:
    """`clients` threads, each with its own connection, share `max_requests` requests."""
    result = Result(clients)
    lock = threading.Lock()
    issued = 0
    deadline = time.monotonic() + duration

    def next_question() -> str | None:
        nonlocal issued
        with lock:
            if issued >= max_requests or time.monotonic() >= deadline:
                return None
            issued += 1
            return questions[(issued - 1) % len(questions)]

    def client() -> None:
        with httpx.Client(base_url=url, timeout=timeout) as c:
            while (q := next_question()) is not None:
                body: dict = {"question": q}
                if top_k is not None:
                    body["top_k"] = top_k
                t0 = time.perf_counter()
                try:
                    r = c.post("/api/answer", json=body)
                    ms = (time.perf_counter() - t0) * 1000
                    if r.status_code == 200:
                        server = r.json().get("timings_ms", {}).get("server")
                        with lock:
                            result.latencies_ms.append(ms)
                            if isinstance(server, (int, float)):
                                result.server_ms.append(float(server))
                        continue
                    kind = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                with lock:
                    result.errors[kind] = result.errors.get(kind, 0) + 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.seconds = time.perf_counter() - start
    return result


def start_server(corpus: str | None, startup_timeout: float) -> tuple[subprocess.Popen, str]:
    """Start `qa serve --port 0` (a free loopback port); return (process, base URL)."""
    cmd = [sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", "0"]
    if corpus:
        cmd += ["--corpus", corpus]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    found: dict[str, str] = {}

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.search(r"(http://[\w.\[\]:-]+:\d+)", line)
            if m and "url" not in found:
                found["url"] = m.group(1)

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + startup_timeout
    while "url" not in found:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise SystemExit(f"could not start the server ({' '.join(cmd)}); run it by "
                             "hand to see why")
        time.sleep(0.1)
    url = found["url"]
    while True:  # the URL is printed just before uvicorn starts accepting
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise SystemExit("the server did not become healthy")
        time.sleep(0.1)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def print_table(rows: list[dict], info: str) -> None:
    cols = [("clients", "clients"), ("requests", "requests"), ("errors", "errors"),
            ("seconds", "time s"), ("req_per_s", "req/s"), ("p50_ms", "p50 ms"),
            ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
            ("server_p50_ms", "server p50 ms")]
    print(info)
    widths = [max(len(title), *(len(str(r[key])) for r in rows)) for key, title in cols]
    print("  ".join(title.rjust(w) for (_, title), w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r[key]).rjust(w) for (key, _), w in zip(cols, widths, strict=True)))
    for r in rows:
        if r["error_kinds"]:
            print(f"errors with {r['clients']} clients: {r['error_kinds']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="base URL of a running server (default: start one)")
    p.add_argument("--corpus", help="corpus for the server this script starts "
                                    "(default: the project's seeds/)")
    p.add_argument("--clients", default="8",
                   help="concurrent clients; a comma-separated list runs one round each "
                        "(default 8)")
    p.add_argument("--requests", type=int, default=200,
                   help="requests per round, at most (default 200)")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds per round, at most (default 60)")
    p.add_argument("--questions", type=Path,
                   help="JSON-lines question set (default benchmarks/questions/seeds.jsonl)")
    p.add_argument("--top-k", type=int, help="top_k sent with every request")
    p.add_argument("--warmup", type=int,
                   help="sequential requests before measuring (default: every distinct "
                        "question once, at most 100: the model's first pass over a new "
                        "input length is slow)")
    p.add_argument("--timeout", type=float, default=120.0, help="per-request timeout, s")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_data_argument(p, used=False)
    args = p.parse_args(argv)
    try:
        client_counts = [int(x) for x in args.clients.split(",") if x.strip()]
    except ValueError:
        p.error("--clients takes integers, e.g. 8 or 1,2,4,8")
    if not client_counts or min(client_counts) < 1 or args.requests < 1 or args.duration <= 0:
        p.error("--clients, --requests and --duration must be positive")

    questions = load_questions(args.questions)
    proc = None
    if args.url:
        url = args.url.rstrip("/")
    else:
        print("starting qa serve…", file=sys.stderr)
        proc, url = start_server(args.corpus, startup_timeout=600)
    try:
        health = httpx.get(f"{url}/api/health", timeout=30).json()
        with httpx.Client(base_url=url, timeout=args.timeout) as c:
            warmup = min(len(questions), 100) if args.warmup is None else args.warmup
            for q in questions[:warmup]:
                c.post("/api/answer", json={"question": q})
        rows = [run(url, questions, n, args.requests, args.duration, args.top_k,
                    args.timeout).row() for n in client_counts]
    finally:
        if proc is not None:
            stop_server(proc)
    info = (f"{url}: {health.get('documents')} documents, {health.get('chunks')} chunks; "
            f"{len(questions)} distinct questions; {os.cpu_count()} CPU cores")
    if args.json:
        print(json.dumps({"info": info, "results": rows}, indent=2))
    else:
        print_table(rows, info)
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
