"""The memory of a server indexing one large uploaded file (issue 23: under 1.5 GB RSS for
a 50 MB text file is the goal).

    python benchmarks/upload_memory.py --mb 2          # minutes
    python benchmarks/upload_memory.py --mb 50         # the goal's size: over half an hour

Starts `qa serve` over a two-file corpus (its own index, uploads folder and QA_HOME in a
temporary folder), uploads one generated N MB `.txt` file (corpus_stress.py's "huge"
article) through `POST /api/documents?background=true`, follows the job to its end, and
samples the server process's memory from /proc every 0.2 s meanwhile: `VmRSS` (now) and
`VmHWM` (its peak since start). Prints one JSON line: the server's RSS before the upload
(model and index loaded), its peak while indexing, after, the job's seconds, and the
chunks and sentences indexed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_stress import huge_corpus  # noqa: E402

CORPUS = {"bakery.txt": "Village bakery wins regional prize\n\nThe Elmstead village bakery "
                        "won the regional bread prize on Saturday for its rye sourdough.\n",
          "railway.txt": "New railway bridge opens\n\nThe new railway bridge over the Arden "
                         "river cost 240 million euros and carries 180 trains a day.\n"}


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process, in MB (MiB)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=50, help="size of the uploaded file")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds at most")
    args = parser.parse_args()
    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        corpus = tmp / "corpus"
        corpus.mkdir()
        for name, text in CORPUS.items():
            (corpus / name).write_text(text, encoding="utf-8")
        huge_corpus(tmp / "upload", max(1, int(args.mb)))
        big = tmp / "upload" / "huge.txt"
        if args.mb < 1:  # a fraction of a MB: cut at a paragraph
            data = big.read_bytes()[: int(args.mb * 1024 * 1024)]
            big.write_bytes(data[: data.rfind(b"\n\n") + 2])
        env = {**os.environ, "QA_HOME": str(tmp / "home")}
        env.pop("QA_API_KEY", None)
        server = subprocess.Popen(
            [sys.executable, "-m", "qa.cli", "serve", "--corpus", str(corpus), "--index",
             str(tmp / "index"), "--uploads", str(tmp / "uploads"), "--port", "0",
             "--max-upload-mb", str(int(args.mb) + 1)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        try:
            line = ""
            while "Chat page" not in line and "API:" not in line:
                line = server.stdout.readline()
                if not line and server.poll() is not None:
                    print("qa serve did not start", file=sys.stderr)
                    return 1
            url = line.split(": ", 1)[1].split("/  ")[0].split("/api/")[0].rstrip("/")
            before = memory_mb(server.pid)
            began = time.perf_counter()
            with httpx.Client(base_url=url, timeout=600) as client, big.open("rb") as f:
                r = client.post("/api/documents", params={"background": "true"},
                                files={"files": ("huge.txt", f, "text/plain")})
                if r.status_code != 202:
                    print(r.status_code, r.text, file=sys.stderr)
                    return 1
                job_url = r.json()["url"]
                job, peak_rss, samples = r.json()["job"], before["VmRSS"], 0
                while job["state"] not in ("done", "failed"):
                    if time.perf_counter() - began > args.timeout:
                        print("timed out", file=sys.stderr)
                        return 1
                    time.sleep(0.2)
                    peak_rss = max(peak_rss, memory_mb(server.pid)["VmRSS"])
                    samples += 1
                    if samples % 25 == 0:
                        job = client.get(job_url).json()
                seconds = time.perf_counter() - began
                after = memory_mb(server.pid)
                result = job.get("result") or {}
            doc = (result.get("documents") or [{}])[0]
            row = {"mb": round(big.stat().st_size / 2**20, 2), "state": job["state"],
                   "error": job.get("error"), "seconds": round(seconds, 1),
                   "chunks": doc.get("chunks"), "sentences": doc.get("sentences"),
                   "rss_before_mb": round(before["VmRSS"], 1),
                   "peak_rss_sampled_mb": round(peak_rss, 1),
                   "peak_rss_mb": round(after["VmHWM"], 1),
                   "rss_after_mb": round(after["VmRSS"], 1), "goal_mb": 1536,
                   "under_goal": after["VmHWM"] < 1536}
            print(json.dumps({"upload_memory": row}))
            return 0 if job["state"] == "done" else 1
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    sys.exit(main())
