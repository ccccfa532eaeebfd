"""Build throughput on Ray (`qa index --ray`) against the plain single-process build, and
Ray's fixed overhead on a small corpus, in one run.

    nice -n 10 python benchmarks/cluster_build.py                   # 300 bbc-news articles
    python benchmarks/cluster_build.py --limit-articles 60          # a quick look

On a copy of the first --limit-articles files of the bbc-news corpus (docs/data.md), each
build into a fresh index folder, every one with the encoder's ONNX export already cached:

1. plain: the `qa index --rebuild` code path in this process (qa.engine.ensure_index), the
   encoder loaded beforehand, as benchmarks/speed.py times it (it uses every core: batches
   side by side, one thread each);
2. ray, 1 worker: `build_on_ray(..., actors=1)` on a local Ray (ray.init, num_cpus =
   workers + 1, so the hashing and chunking tasks find a CPU next to the actors), one
   embedding actor of one CPU / one encoder thread;
3. ray, 2 workers: the same with two actors;

then on seeds/ (a handful of documents): the plain build, and the Ray build with the
cluster already up (1 worker) and its Ray start-up time apart: what Ray costs whatever the
corpus size. Model tokens are counted as speed.py counts them (wordpiece tokens of the
chunk texts, [CLS]/[SEP] included, capped at the model's limit). Each Ray build is
checked against the plain one (the same chunk texts and vectors) before it counts.

Prints a table and one JSON line (speed_common.emit).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from speed_common import ROOT, add_data_argument, emit, table, warn_if_busy  # noqa: E402


def say(message: str) -> None:
    print(f"[cluster_build] {message}", file=sys.stderr, flush=True)


def copy_first(source: Path, dest: Path, limit: int) -> int:
    from embeddings.documents import list_files

    listed = list_files(source)[:limit]
    for path, name in listed:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, dest / name)
    return len(listed)


def model_tokens(index_dir: Path, model) -> int:
    from embeddings import store

    data, _, _ = store.load_index(index_dir)
    return sum(min(n, model.max_tokens) for n in model.count_tokens([c.text for c in data.chunks]))


def tables_of(index_dir: Path):
    """(chunk texts, chunk vectors) of a plain or sharded index, in global order."""
    from qa.retrieval.sharded.view import ShardedIndex

    view = ShardedIndex.open_local(index_dir)
    n = len(view.chunks)
    return [c.text for c in view.chunks], view.chunk_vectors[list(range(n))]


def loaded_bytes(index_dir: Path) -> dict:
    """Python-heap bytes of a loaded Index (tracemalloc, in a fresh process), apart from
    its vectors: what a shard holds per chunk besides them (docs/scale.md)."""
    import json
    import subprocess

    code = ("import json, tracemalloc, faiss, bm25s, scipy.sparse\n"
            "from qa.retrieval.index import Index\n"
            "from embeddings import store, lexical\n"
            "lexical._bm25s(); lexical._stemmer()\n"
            # a first load outside the trace: imports and caches are not the index's
            f"Index.load({str(index_dir)!r})\n"
            "import gc; gc.collect()\n"
            "tracemalloc.start()\n"
            f"ix = Index.load({str(index_dir)!r})\n"
            "heap = tracemalloc.get_traced_memory()[0]\n"
            "vec = ix.chunk_vectors.nbytes + ix.sentence_vectors.nbytes\n"
            "print(json.dumps({'chunks': len(ix.chunks), 'sentences': len(ix.sentences),"
            " 'heap_bytes': heap, 'vector_bytes': vec}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip().splitlines()[-1]
    got = json.loads(out)
    got["heap_bytes_per_chunk_besides_vectors"] = round(
        (got["heap_bytes"] - got["vector_bytes"]) / got["chunks"])
    return got


def plain_build(settings, model) -> float:
    from qa.engine import ensure_index

    began = time.perf_counter()
    ensure_index(settings, model=model, rebuild=True)
    return time.perf_counter() - began


def ray_build(settings, actors: int) -> tuple[float, object]:
    from qa.cluster.build import build_on_ray

    began = time.perf_counter()
    report = build_on_ray(settings, shards=2, rebuild=True, actors=actors)
    return time.perf_counter() - began, report


def http_p50(url: str, questions: list[str]) -> dict:
    """Client latency of /api/answer, one question at a time after two warm-ups."""
    import httpx

    times = []
    with httpx.Client(base_url=url, timeout=120) as client:
        for q in questions[:2] + questions:
            began = time.perf_counter()
            r = client.post("/api/answer", json={"question": q})
            r.raise_for_status()
            times.append((time.perf_counter() - began) * 1000)
    times = times[2:]
    return {"p50_ms": round(float(np.percentile(times, 50)), 1),
            "p95_ms": round(float(np.percentile(times, 95)), 1), "questions": len(times)}


def serve_latency(seeds_plain, seeds_sharded, model) -> dict:
    """The seeds questions over HTTP: `qa serve` (one process) against the Ray Serve app
    over the 2-shard seeds index (answerer -> 2 shard deployments -> merge)."""
    import json
    import socket

    from qa.api import create_app, serve_in_thread
    from qa.cluster.serve import APP, deploy
    from qa.engine import Assistant

    questions = [json.loads(line)["question"] for line in
                 (ROOT / "benchmarks/questions/seeds.jsonl").read_text().splitlines() if line]
    with serve_in_thread(create_app(Assistant.load(settings=seeds_plain))) as url:
        plain = http_p50(url, questions)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = deploy(seeds_sharded, port=port, replicas=1, build=False)
    try:
        import httpx

        for _ in range(240):
            try:
                if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        sharded = http_p50(url, questions)
    finally:
        from ray import serve

        serve.delete(APP)
        serve.shutdown()
    return {"plain": plain, "ray_serve_2_shards": sharded}


def run(args) -> dict:
    # Ray starts its workers at nice 15 (its worker_niceness default), below this process:
    # on a box shared with other jobs they would get a fraction of the CPU the plain
    # build gets. Both run at this process's priority instead.
    os.environ.setdefault("RAY_worker_niceness", "0")
    os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")  # busy box
    import ray

    from qa.cluster import runtime_env
    from qa.engine import load_encoder_for
    from qa.evaluation import machine
    from qa.settings import Settings

    warn_if_busy()
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="qa-cluster-bench-"))
    corpus = work / "corpus"
    n_files = copy_first(args.data.bbc, corpus,
                         args.limit_articles)
    base = Settings.load(corpus=corpus, index=work / "plain")
    model = load_encoder_for(base)
    model.encode(["warm up the encoder"])
    rows, checks, latency = [], {}, None
    corpus_bytes = sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file())

    say(f"plain build of {n_files} articles")
    plain_s = plain_build(base, model)
    tokens = model_tokens(base.index_dir, model)
    reference = tables_of(base.index_dir)
    memory = loaded_bytes(base.index_dir)
    rows.append({"build": "plain, one process", "workers": "all cores", "corpus":
                 f"bbc-news x{n_files}", "seconds": round(plain_s, 1),
                 "tokens_per_s": round(tokens / plain_s), "ratio": 1.0})
    startup = {}
    for workers in args.workers:
        began = time.perf_counter()
        ray.init(num_cpus=workers + 1, runtime_env=runtime_env(), log_to_driver=False,
                 include_dashboard=False)
        startup[workers] = time.perf_counter() - began
        settings = base.replace(index=work / f"ray-{workers}")
        say(f"ray build, {workers} worker(s) (Ray up in {startup[workers]:.1f} s)")
        seconds, report = ray_build(settings, workers)
        texts, vectors = tables_of(settings.index_dir)
        same = texts == reference[0] and np.array_equal(vectors, reference[1])
        checks[f"ray-{workers}"] = same
        if not same:
            say(f"ray build with {workers} workers differs from the plain one")
        rows.append({"build": f"ray, {workers} worker" + ("s" if workers > 1 else ""),
                     "workers": workers, "corpus": f"bbc-news x{n_files}",
                     "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds),
                     "ratio": round(plain_s / seconds, 2)})
        say(f"row: {rows[-1]}")
        if workers == args.workers[0]:
            say("seeds: ray build with the cluster up")
            seeds = base.replace(corpus=ROOT / "seeds", index=work / "seeds-ray")
            seeds_ray_s, _ = ray_build(seeds, 1)
            if not args.no_serve:
                say("seeds over HTTP: qa serve against the Ray Serve app (2 shards)")
                try:
                    latency = serve_latency(base.replace(corpus=ROOT / "seeds",
                                                         index=work / "seeds"), seeds, model)
                except Exception as exc:  # noqa: BLE001  the build figures still count
                    say(f"the HTTP comparison failed: {type(exc).__name__}: {exc}")
        ray.shutdown()
    say("seeds: plain build")
    seeds_plain_s = plain_build(base.replace(corpus=ROOT / "seeds", index=work / "seeds-2"),
                                model)
    seeds_tokens = model_tokens(work / "seeds-2", model)
    rows.append({"build": "plain, one process", "workers": "all cores", "corpus": "seeds",
                 "seconds": round(seeds_plain_s, 2),
                 "tokens_per_s": round(seeds_tokens / seeds_plain_s), "ratio": 1.0})
    rows.append({"build": "ray, 1 worker (cluster up)", "workers": 1, "corpus": "seeds",
                 "seconds": round(seeds_ray_s, 2),
                 "tokens_per_s": round(seeds_tokens / seeds_ray_s),
                 "ratio": round(seeds_plain_s / seeds_ray_s, 2)})
    overhead = {"ray_init_s": round(startup[args.workers[0]], 2),
                "seeds_ray_minus_plain_s": round(seeds_ray_s - seeds_plain_s, 2)}
    print(table(rows, [("build", "build"), ("workers", "workers"), ("corpus", "corpus"),
                       ("seconds", "seconds"), ("tokens_per_s", "model tokens/s"),
                       ("ratio", "speed vs plain")], left=("build", "corpus")))
    print(f"Ray fixed overhead: ray.init {overhead['ray_init_s']} s; a seeds build on a "
          f"running cluster {overhead['seeds_ray_minus_plain_s']} s slower than plain")
    if latency:
        print(f"seeds over HTTP, p50/p95 ms: qa serve {latency['plain']['p50_ms']}/"
              f"{latency['plain']['p95_ms']}, Ray Serve with 2 shard deployments "
              f"{latency['ray_serve_2_shards']['p50_ms']}/"
              f"{latency['ray_serve_2_shards']['p95_ms']}")
    from embeddings import store

    chunks = int(store.read_manifest(base.index_dir)["counts"]["chunks"])
    payload = {"rows": rows, "overhead": overhead, "model_tokens": tokens, "files": n_files,
               "corpus_bytes": corpus_bytes, "chunks": chunks,
               "model_tokens_per_byte": round(tokens / corpus_bytes, 4),
               "chunks_per_mb": round(chunks / (corpus_bytes / 2**20), 1),
               "serve_latency": latency, "loaded_index": memory,
               "seeds_model_tokens": seeds_tokens, "same_as_plain": checks,
               "machine": machine.line(), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                time.gmtime()),
               "load_average_before": round(load_before, 2),
               "load_average_after": round(os.getloadavg()[0], 2),
               "ray": ray.__version__,
               "ray_worker_niceness": os.environ.get("RAY_worker_niceness"),
               "command": "python benchmarks/cluster_build.py " + " ".join(sys.argv[1:])}
    emit("cluster_build", payload)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return payload


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_argument(parser)
    parser.add_argument("--limit-articles", type=int, default=300)
    parser.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")],
                        default=[1, 2], help="embedding actors of each Ray build, e.g. 1,2")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--no-serve", action="store_true",
                        help="skip the HTTP latency of qa serve against Ray Serve")
    payload = run(parser.parse_args(argv))
    return 0 if all(payload["same_as_plain"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
