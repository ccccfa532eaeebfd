"""Indexing and answering speed in one run, against the targets of docs/benchmarks.md.

    python benchmarks/speed.py                          # bbc-news, <= 8 min on 2 idle cores
    python benchmarks/speed.py --limit-articles 100 --questions 30   # development, ~2 min
    python benchmarks/speed.py --skip-build             # reuse the index of an earlier run

Works on a copy of the corpus (default bbc-news under the benchmark data folder, --data,
docs/data.md: ../shared/bench/bbc-news/articles), never on the original. Without that data
it says so in one line and times only what runs on seeds/ (3 and 6; the other rows "-").
It measures, in this order:

1. full build: the `qa index --rebuild` code path in-process into a fresh index folder,
   the model loaded beforehand (its load time is reported apart): wall seconds, chunks/s,
   model tokens/s (wordpiece tokens of the distinct chunk texts, [CLS]/[SEP] included,
   capped at the model's input limit, counted after the build) and that rate as a share of
   the fp32 ceiling measured in the same run (benchmarks/ceiling.py: best matmul GFLOP/s divided by
   the FLOPs per token at the chunks' own lengths). Target <= 120 s on bbc-news.
2. incremental update: one article gets a sentence appended, then the index is updated
   with the model already loaded. Target <= 5 s.
3. warm latency in-process, one question at a time after a warm-up, p50/p95 of each stage
   of Answer.timings_ms (encode, retrieve, answer, total) on seeds/
   (benchmarks/questions/seeds.jsonl, cycled up to --questions) and on the corpus
   (headline questions "What happened: <first line>?", as benchmarks/soak.py makes them).
   Targets (with the reader): p50 <= 50 ms, p95 <= 120 on seeds and on bbc-news
   (the ranker alone, QA_READER=off: seeds 15 / 30, bbc-news 25 / 50).
4. a bare reference on the same questions and index, timed per question: exact FAISS
   search (IndexFlatIP over the same chunk vectors, one thread, k = the answerer's
   candidates, 30) plus bm25s' own top-30 retrieval on the index's BM25, given the
   question's vector and tokens computed beforehand. The ratios of our total and retrieve
   p50 to its p50 show what the answerer adds on top of the two searches.
5. HTTP: `qa serve` on the corpus copy (subprocess, free loopback port), the same
   questions one at a time over one keep-alive connection (http.client): client latency
   p50/p95 and the HTTP overhead, client latency minus the server's timings_ms.total
   (p50; target <= 5 ms). Then the server's peak resident memory, VmHWM (target <= 1.5 GB).
6. cold start: `qa ask "<question>" --corpus seeds` in a fresh process with the seeds index
   built, wall time to exit, 3 runs (target: median <= 3 s).
7. index size on disk: `du` of the live generation folder, per chunk.

Prints one table (measure | ours | reference / target | met?) and, last, one JSON line
(`speed_common.emit`). Exits 1 if a stage failed (the others still run; the table shows
"-" for what is missing) or the server answered with errors.

Where things go: a full run copies the corpus into a temporary folder and indexes it under
$QA_HOME/indexes (the default index folder of that copy); both are removed at the end.
--skip-build keeps a copy in $QA_HOME/speed/ with its index across runs (built untimed
the first time), times the incremental update on it and then undoes it. The first use of
a QA_HOME exports the ONNX model (~30 s, shown as the model load). Point QA_HOME at a
folder of your own so these indexes don't mix with others'.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ceiling import flops_per_token, matmul_gflops  # noqa: E402
from load import load_questions, percentile, start_server, stop_server  # noqa: E402
from soak import headline_questions  # noqa: E402
from speed_common import (  # noqa: E402
    ROOT,
    Deadline,
    add_data_argument,
    emit,
    table,
    warn_if_busy,
)

SEEDS = ROOT / "seeds"
SEED_QUESTIONS = ROOT / "benchmarks" / "questions" / "seeds.jsonl"
STAGES = ("encode", "retrieve", "answer", "total")
TARGETS = {  # docs/benchmarks.md; the build, update and bbc figures are for all of bbc-news.
    # Answering targets with the reader (issue 10; without it they were 15 / 30 and 25 / 50)
    "build_s": 120.0, "incremental_s": 5.0, "seeds_p50_ms": 50.0, "seeds_p95_ms": 120.0,
    "bbc_p50_ms": 50.0, "bbc_p95_ms": 120.0, "http_overhead_ms": 5.0, "rss_mb": 1536.0,
    "cold_start_s": 3.0,
}


def say(message: str) -> None:
    """Progress on stderr (the table and the JSON line go to stdout)."""
    print(f"[speed] {message}", file=sys.stderr, flush=True)


def p50_p95(values: list[float]) -> dict:
    """{"p50", "p95"} rounded to 0.01, None when there are no values."""
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(percentile(values, 50), 2), "p95": round(percentile(values, 95), 2)}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a is not None and b else None


# --- the corpus copy ------------------------------------------------------------------------


def copy_corpus(source: Path, dest: Path, limit: int | None) -> int:
    """Copy the corpus files under `source` (the first `limit` in name order) to `dest` as
    regular files, keeping sub-folders; return how many."""
    from embeddings.documents import list_files

    files = list_files(source)
    if limit:
        files = files[:limit]
    if not files:
        raise SystemExit(f"no corpus files under {source}")
    for path, name in files:
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    return len(files)


def copy_name(source: Path, limit: int | None) -> str:
    """"bbc-news-articles" for .../bbc-news/articles, plus "-first<N>" for a subset."""
    name = f"{source.parent.name}-{source.name}" if source.parent.name else source.name
    return name + (f"-first{limit}" if limit else "")


def kept_copy(source: Path, limit: int | None) -> Path:
    """The corpus copy --skip-build reuses: $QA_HOME/speed/<name>-<8 hex of the source
    path>, made once (a hidden marker file says it is complete)."""
    from embeddings.files import qa_home

    digest = hashlib.sha1(str(source.resolve()).encode()).hexdigest()[:8]
    dest = qa_home() / "speed" / f"{copy_name(source, limit)}-{digest}"
    marker = dest / ".complete"
    if not marker.exists():
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        copy_corpus(source, dest, limit)
        marker.write_text(str(source) + "\n")
    return dest


# --- 1. build, 2. incremental update, 7. size ---------------------------------------------------


def measure_ceiling(budget: float) -> dict:
    """Best fp32 matmul GFLOP/s of this machine now (ceiling.py's measurement, shortened)."""
    deadline = Deadline(budget)
    rows = [matmul_gflops(n, 3, deadline) for n in (1024, 2048, 4096) if not deadline.over()]
    return {"matmul": rows, "peak_gflops": max(r["gflops"] for r in rows)}


def full_build(settings, model, peak_gflops: float | None) -> dict:
    """Rebuild the index of settings.corpus from scratch with `model` loaded; time it."""
    from embeddings import store
    from embeddings.texts import distinct_texts
    from qa.engine import ensure_index

    began = time.perf_counter()
    report = ensure_index(settings, model=model, rebuild=True)
    wall = time.perf_counter() - began
    # counted outside the timed part: the tokens the model saw for the chunk texts (a
    # text two chunks share runs once)
    data, _, _ = store.load_index(settings.index_dir)
    texts = distinct_texts([c.text for c in data.chunks])
    counts = [min(n, model.max_tokens) for n in model.count_tokens(texts)]
    tokens = sum(counts)
    flops = sum(n * flops_per_token(n) for n in counts)
    out = {"seconds": round(wall, 2), "report_seconds": round(report.seconds, 2),
           "files": report.files, "chunks": report.chunks, "sentences": report.sentences,
           "embedded_texts": report.embedded, "chunks_per_s": round(report.chunks / wall, 1),
           "model_tokens": tokens, "tokens_per_chunk": round(tokens / max(len(counts), 1), 1),
           "model_tokens_per_s": round(tokens / wall), "backend": getattr(model, "backend", None),
           "achieved_gflops": round(flops / wall / 1e9, 1)}
    if peak_gflops and tokens:
        ceiling = peak_gflops * 1e9 / (flops / tokens)
        out.update({"ceiling_gflops": peak_gflops,
                    "mflop_per_token": round(flops / tokens / 1e6, 2),
                    "ceiling_tokens_per_s": round(ceiling),
                    "ceiling_share": round(tokens / wall / ceiling, 3)})
    return out


def incremental_update(settings, model, original: Path | None) -> dict:
    """Append a sentence to one article of the copy and time the index update.

    With `original` (the corpus the copy came from), the article is copied back afterwards
    and the index updated again, untimed, so the next run starts from the same state.
    """
    from embeddings.documents import list_files
    from qa.engine import ensure_index

    sources = [name for _, name in list_files(settings.corpus, settings.exclude)]
    name = sources[len(sources) // 2]
    path = settings.corpus / name
    if path.is_symlink():  # writing would change the file the link points at
        raise RuntimeError(f"{path} is a symbolic link; the corpus copy must hold real files")
    text = path.read_text(encoding="utf-8", errors="replace").rstrip()
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    path.write_text(f"{text}\n\nThe speed benchmark appended this sentence at {stamp}.\n",
                    encoding="utf-8")
    began = time.perf_counter()
    report = ensure_index(settings, model=model)
    wall = time.perf_counter() - began
    out = {"seconds": round(wall, 2), "report_seconds": round(report.seconds, 2),
           "article": name, "changed": len(report.changed), "added": len(report.added),
           "removed": len(report.removed), "embedded_texts": report.embedded,
           "chunks": report.chunks}
    if report.changed != (name,) or report.added or report.removed:
        out["unexpected"] = report.summary()
    if original is not None:
        shutil.copyfile(original / name, path)
        ensure_index(settings, model=model)
    return out


def index_size(index_dir: Path) -> dict:
    """Disk use (as `du`: allocated blocks) of the live generation, in all and per chunk."""
    from embeddings import store

    gen = store.current_generation(index_dir)
    if gen is None:
        raise RuntimeError(f"no index at {index_dir}")
    manifest = store.read_manifest(index_dir) or {}
    chunks = int((manifest.get("counts") or {}).get("chunks") or 0)
    parts: dict[str, int] = {}
    apparent = 0
    for root, _, files in os.walk(gen):
        for f in files:
            st = os.lstat(os.path.join(root, f))
            part = Path(root, f).relative_to(gen).parts[0]
            parts[part] = parts.get(part, 0) + st.st_blocks * 512
            apparent += st.st_size
    disk = sum(parts.values())
    return {"generation": gen.name, "chunks": chunks, "mb": round(disk / 2**20, 1),
            "apparent_mb": round(apparent / 2**20, 1),
            "kb_per_chunk": round(disk / 1024 / chunks, 2) if chunks else None,
            "parts_kb_per_chunk": {k: round(v / 1024 / chunks, 2) if chunks else None
                                   for k, v in sorted(parts.items(), key=lambda kv: -kv[1])}}


# --- 3. warm latency and 4. the bare reference ------------------------------------------------


def query_latency(assistant, questions: list[str], warmup: list[str],
                  deadline: Deadline) -> dict:
    """Per-stage latency of assistant.ask over `questions`, one at a time, and the bare
    FAISS + bm25s reference for each (see the module docstring, 3 and 4)."""
    import faiss
    import numpy as np

    from embeddings.lexical import tokenize
    from qa.engine import clean_question

    index = assistant.index
    data = index.data
    flat = faiss.IndexFlatIP(data.chunk_vectors.shape[1])
    flat.add(np.ascontiguousarray(data.chunk_vectors, dtype=np.float32))
    k = min(assistant.settings.candidates, len(data.chunks))
    bare_bm25 = index.bm25._retriever  # the bm25s.BM25 behind the project's wrapper
    faiss.omp_set_num_threads(1)

    def reference(question: str) -> tuple[float, float]:
        text = clean_question(question, assistant.settings.max_question_chars)
        qvec = assistant.model.encode([text])[0].reshape(1, -1).astype(np.float32)
        tokens = tokenize(text)
        t0 = time.perf_counter()
        flat.search(qvec, k)
        t1 = time.perf_counter()
        bare_bm25.retrieve([tokens], k=k, show_progress=False, n_threads=1)
        t2 = time.perf_counter()
        return (t1 - t0) * 1000, (t2 - t1) * 1000

    for q in warmup:
        assistant.ask(q)
        reference(q)
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    wall, dense, lexical, bare = [], [], [], []
    answered = 0
    for n, q in enumerate(questions):
        if n >= 10 and deadline.over():
            say(f"time budget spent: stopped after {n} of {len(questions)} questions")
            break
        t = time.perf_counter()
        answer = assistant.ask(q)
        wall.append((time.perf_counter() - t) * 1000)
        answered += bool(answer.answerable)
        for s in STAGES:
            stages[s].append(float(answer.timings_ms[s]))
        d, b = reference(q)
        dense.append(d)
        lexical.append(b)
        bare.append(d + b)
    out = {"questions": len(wall), "distinct": len(set(questions[: len(wall)])),
           "warmup": len(warmup), "chunks": len(data.chunks), "k": k,
           "answered": answered, "vector_index": type(index.vectors).__name__,
           "stages": {s: p50_p95(v) for s, v in stages.items()}, "ask_wall": p50_p95(wall),
           "reference": {"faiss": p50_p95(dense), "bm25s": p50_p95(lexical),
                         "both": p50_p95(bare)}}
    ref = out["reference"]["both"]["p50"]
    out["total_vs_reference"] = ratio(out["stages"]["total"]["p50"], ref)
    out["retrieve_vs_reference"] = ratio(out["stages"]["retrieve"]["p50"], ref)
    return out


def questions_for(pool: list[str], n: int, warmup: int) -> tuple[list[str], list[str]]:
    """(n measured questions, `warmup` warm-up questions) from `pool`, cycling when it is
    short; the warm-up ones are the next after the measured ones."""
    measured = [pool[i % len(pool)] for i in range(n)]
    warm = [pool[(n + i) % len(pool)] for i in range(warmup)]
    return measured, warm


# --- 5. HTTP, 6. cold start -----------------------------------------------------------------


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def http_latency(corpus: Path, questions: list[str], warmup: list[str],
                 startup_timeout: float, deadline: Deadline) -> dict:
    """Start `qa serve` on `corpus`, ask the questions one at a time over one keep-alive
    connection, read the server's peak memory, and stop the server (always)."""
    began = time.perf_counter()
    try:
        proc, url = start_server(str(corpus), startup_timeout)
    except SystemExit as exc:  # load.start_server's way of failing
        raise RuntimeError(str(exc)) from None
    startup = time.perf_counter() - began
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        def post(question: str) -> tuple[float, dict]:
            body = json.dumps({"question": question}).encode()
            t = time.perf_counter()
            conn.request("POST", "/api/answer", body=body,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            ms = (time.perf_counter() - t) * 1000
            if response.status != 200:
                raise RuntimeError(f"HTTP {response.status}: {payload[:200]!r}")
            return ms, json.loads(payload)

        for q in warmup:
            post(q)
        client, overhead, in_server, framework = [], [], [], []
        errors: dict[str, int] = {}
        for n, q in enumerate(questions):
            if n >= 10 and deadline.over():
                say(f"time budget spent: stopped after {n} of {len(questions)} requests")
                break
            try:
                ms, answer = post(q)
            except (OSError, http.client.HTTPException, RuntimeError, ValueError) as exc:
                kind = type(exc).__name__
                errors[kind] = errors.get(kind, 0) + 1
                conn.close()  # the next request opens a new connection
                continue
            timings = answer.get("timings_ms") or {}
            client.append(ms)
            total = timings.get("total")
            if isinstance(total, (int, float)):
                overhead.append(ms - total)
                in_server.append(float(total))
            server = timings.get("server")
            if isinstance(server, (int, float)):
                framework.append(ms - server)
        rss = peak_rss_mb(proc.pid)
    finally:
        conn.close()
        stop_server(proc)
    return {"url": url, "startup_s": round(startup, 2), "requests": len(client),
            "errors": sum(errors.values()), "error_kinds": errors, "warmup": len(warmup),
            "client": p50_p95(client), "server_total": p50_p95(in_server),
            "overhead": p50_p95(overhead), "outside_handler": p50_p95(framework),
            "peak_rss_mb": rss}


def qa_command() -> list[str]:
    """The `qa` console script of this interpreter's environment (or `python -m qa.cli`)."""
    script = Path(sys.executable).with_name("qa")
    return [str(script)] if script.exists() else [sys.executable, "-m", "qa.cli"]


def cold_start(question: str, runs: int, deadline: Deadline) -> dict:
    """Wall time of `qa ask QUESTION --corpus seeds/` in a fresh process, `runs` times."""
    cmd = [*qa_command(), "ask", question, "--corpus", str(SEEDS)]
    seconds = []
    for _ in range(runs):
        if seconds and deadline.over():
            say("time budget spent: fewer cold-start runs")
            break
        t = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, timeout=300)
        seconds.append(round(time.perf_counter() - t, 3))
        if proc.returncode != 0:
            raise RuntimeError(f"`qa ask` exited {proc.returncode}: {proc.stderr[-500:]}")
    ordered = sorted(seconds)
    return {"runs": seconds, "median_s": ordered[len(ordered) // 2], "question": question}


# --- the run --------------------------------------------------------------------------------


def attempt(results: dict, name: str, fn: Callable, *args) -> object | None:
    """results[name] = fn(*args); on an exception record it under results["errors"] and
    go on with the next stage."""
    say(f"{name}…")
    try:
        value = fn(*args)
    except Exception as exc:
        traceback.print_exc()
        results["errors"][name] = f"{type(exc).__name__}: {exc}"
        say(f"{name} failed: {exc}")
        return None
    results[name] = value
    return value


def prepare_corpus(args: argparse.Namespace, source: Path, work: Path, results: dict,
                   remove_after: list[Path]):
    """(the corpus copy, its Settings): a fresh copy, or the kept one under --skip-build."""
    from qa.settings import Settings

    if args.skip_build:
        corpus = kept_copy(source, args.limit_articles)
    else:
        corpus = work / copy_name(source, args.limit_articles)
        corpus.mkdir(parents=True)
        copy_corpus(source, corpus, args.limit_articles)
    settings = Settings.load(corpus=corpus)
    if not args.skip_build:
        remove_after.append(settings.index_dir)
        shutil.rmtree(settings.index_dir, ignore_errors=True)
    results["corpus"] = {"source": str(source), "copy": str(corpus),
                         "index": str(settings.index_dir),
                         "articles": sum(1 for p in corpus.rglob("*") if p.is_file()
                                         and not p.name.startswith(".")),
                         "limit_articles": args.limit_articles}
    say(f"corpus copy {corpus} ({results['corpus']['articles']} files), index "
        f"{settings.index_dir}")
    return corpus, settings


def run(args: argparse.Namespace, source: Path | None, work: Path, results: dict,
        remove_after: list[Path]) -> None:
    """Every stage; with `source` None (no corpus data) only those on seeds/: the seeds
    latency and the cold start."""
    from qa.engine import Assistant, ensure_index, load_encoder_for
    from qa.settings import Settings

    deadline = Deadline(args.budget)
    seeds = Settings.load(corpus=SEEDS)
    corpus = settings = None
    if source is not None:
        corpus, settings = prepare_corpus(args, source, work, results, remove_after)
    else:
        say("no corpus data: timing seeds/ and the cold start only")

    ceiling = None
    if settings is not None and not args.skip_build:
        ceiling = attempt(results, "ceiling", measure_ceiling, 30.0)
    began = time.perf_counter()
    model = load_encoder_for(settings or seeds)
    results["model_load"] = {"seconds": round(time.perf_counter() - began, 2),
                             "backend": getattr(model, "backend", None)}
    if settings is not None:
        if args.skip_build:
            say("reusing the index (bringing it up to date, untimed)…")
            results["reused_index"] = ensure_index(settings, model=model).summary()
        else:
            attempt(results, "build", full_build, settings, model,
                    ceiling["peak_gflops"] if ceiling else None)
        attempt(results, "incremental", incremental_update, settings, model,
                source if args.skip_build else None)
        attempt(results, "index_size", index_size, settings.index_dir)

    def latency(corpus_settings, pool: list[str]) -> dict:
        ensure_index(corpus_settings, model=model)  # untimed; a no-op when up to date
        began = time.perf_counter()
        assistant = Assistant.load(settings=corpus_settings, update=False)
        load_s = time.perf_counter() - began
        measured, warm = questions_for(pool, args.questions, args.warmup)
        out = query_latency(assistant, measured, warm, deadline)
        out["assistant_load_s"] = round(load_s, 2)
        return out

    seed_pool = load_questions(SEED_QUESTIONS)
    attempt(results, "seeds", latency, seeds, seed_pool)
    if settings is not None:
        bbc_pool = headline_questions(corpus, args.questions + args.warmup)
        attempt(results, "bbc", latency, settings, bbc_pool)
        gc.collect()
        measured, warm = questions_for(bbc_pool, args.questions, args.warmup)
        attempt(results, "http", http_latency, corpus, measured, warm, args.startup_timeout,
                deadline)
    attempt(results, "cold_start", cold_start, seed_pool[0], args.cold_runs, deadline)


# --- the summary ----------------------------------------------------------------------------


def _num(value: float | None, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}".rstrip()


def _met(value: float | None, target: float, star: bool = False) -> str:
    if value is None:
        return "-"
    return ("yes" if value <= target else "no") + ("*" if star else "")


def summary_rows(results: dict, subset: bool, label: str = "bbc-news") -> list[dict]:
    """The rows of the final table: measure | ours | reference / target | met?
    `label` names the corpus; `subset` stars the targets set for all of bbc-news."""
    t = TARGETS
    rows: list[dict] = []

    def add(measure: str, ours: str, ref: str = "-", met: str = "-") -> None:
        rows.append({"measure": measure, "ours": ours, "target": ref, "met": met})

    get = results.get
    load = get("model_load") or {}
    add("model load (not in the build)", _num(load.get("seconds"), "s", 2),
        f"backend {load.get('backend') or '-'}")
    build = get("build") or {}
    add("full build, wall", "skipped (--skip-build)" if "reused_index" in results
        else _num(build.get("seconds"), "s"), f"<= {t['build_s']:.0f} s",
        _met(build.get("seconds"), t["build_s"], subset))
    add("  chunks, chunks/s", f"{_num(build.get('chunks'), digits=0)}, "
        f"{_num(build.get('chunks_per_s'))}/s" if build else "-")
    share = build.get("ceiling_share")
    add("  model tokens/s", _num(build.get("model_tokens_per_s"), digits=0)
        + (f" ({share:.2f} of ceiling)" if share is not None else ""),
        f"fp32 ceiling {_num(build.get('ceiling_tokens_per_s'), digits=0)} tokens/s "
        f"({_num(build.get('ceiling_gflops'), 'GFLOP/s', 0)})" if share is not None else "-")
    inc = get("incremental") or {}
    add("incremental update, 1 article", _num(inc.get("seconds"), "s", 2),
        f"<= {t['incremental_s']:.0f} s", _met(inc.get("seconds"), t["incremental_s"], subset))
    for key, name, star in (("seeds", "seeds", False), ("bbc", label, subset)):
        q = get(key) or {}
        st = q.get("stages") or {}
        p = {s: (st.get(s) or {}) for s in STAGES}
        ref = (q.get("reference") or {}).get("both") or {}
        n = q.get("questions")
        add(f"{name} encode / retrieve / answer p50",
            " / ".join(_num(p[s].get("p50"), digits=2) for s in STAGES[:3]) + " ms"
            if q else "-", f"{n} questions, {q.get('chunks')} chunks" if q else "-")
        add(f"{name} total p50", _num(p["total"].get("p50"), "ms", 2),
            f"<= {t[key + '_p50_ms']:.0f} ms", _met(p["total"].get("p50"),
                                                      t[key + "_p50_ms"], star))
        add(f"{name} total p95", _num(p["total"].get("p95"), "ms", 2),
            f"<= {t[key + '_p95_ms']:.0f} ms", _met(p["total"].get("p95"),
                                                      t[key + "_p95_ms"], star))
        add(f"{name} bare FAISS + bm25s p50", _num(ref.get("p50"), "ms", 2),
            "ours: total {}x, retrieve {}x".format(
                _num(q.get("total_vs_reference")), _num(q.get("retrieve_vs_reference")))
            if q else "-")
    h = get("http") or {}
    add("HTTP client latency p50 / p95", f"{_num((h.get('client') or {}).get('p50'))} / "
        f"{_num((h.get('client') or {}).get('p95'), 'ms')}" if h else "-",
        f"{h.get('requests')} requests, {h.get('errors')} errors" if h else "-")
    over = (h.get("overhead") or {}).get("p50")
    add("HTTP overhead p50 (client - total)", _num(over, "ms", 2),
        f"<= {t['http_overhead_ms']:.0f} ms", _met(over, t["http_overhead_ms"]))
    add("server peak RSS (VmHWM)", _num(h.get("peak_rss_mb"), "MB", 0),
        f"<= {t['rss_mb']:,.0f} MB", _met(h.get("peak_rss_mb"), t["rss_mb"]))
    cold = get("cold_start") or {}
    add("cold start, qa ask on seeds (median)", _num(cold.get("median_s"), "s", 2)
        + (f" ({', '.join(f'{s:.2f}' for s in cold['runs'])})" if cold else ""),
        f"<= {t['cold_start_s']:.0f} s", _met(cold.get("median_s"), t["cold_start_s"]))
    size = get("index_size") or {}
    add("index size per chunk", _num(size.get("kb_per_chunk"), "KB", 2)
        + (f" ({size['mb']} MB)" if size else ""), "-")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Run it on a quiet machine for figures worth keeping: on a busy one every "
               "latency grows. Targets marked * are set for all of bbc-news and this run "
               "used a subset.")
    parser.add_argument("--corpus",
                        help="corpus folder to copy and index (default: bbc-news under "
                             "--data, DATA/bench/bbc-news/articles)")
    parser.add_argument("--questions", type=int, default=200, metavar="N",
                        help="questions timed per corpus, in-process and over HTTP "
                             "(default %(default)s; seeds' 98 are cycled)")
    parser.add_argument("--warmup", type=int, default=10, metavar="N",
                        help="untimed questions first (default %(default)s)")
    parser.add_argument("--skip-build", action="store_true",
                        help="no full build: reuse (or make once, untimed) a kept copy of the "
                             "corpus and its index under $QA_HOME/speed/")
    parser.add_argument("--limit-articles", type=int, metavar="N",
                        help="only the first N articles (by file name), for development")
    parser.add_argument("--cold-runs", type=int, default=3, metavar="N",
                        help="fresh `qa ask` processes timed (default %(default)s)")
    parser.add_argument("--startup-timeout", type=float, default=300.0, metavar="S",
                        help="seconds to wait for `qa serve` (default %(default)s)")
    parser.add_argument("--budget", type=float, default=480.0, metavar="S",
                        help="seconds after which the query loops stop early (at least 10 "
                             "questions each; default %(default)s)")
    add_data_argument(parser)
    args = parser.parse_args(argv)
    if args.questions < 1 or args.warmup < 0 or args.cold_runs < 1:
        parser.error("--questions and --cold-runs must be at least 1, --warmup at least 0")
    if args.limit_articles is not None and args.limit_articles < 1:
        parser.error("--limit-articles must be at least 1")
    if os.environ.get("QA_INDEX"):
        parser.error("QA_INDEX is set: every index would go there; unset it")
    bbc = args.data.bbc.resolve()
    skipped: dict[str, str] = {}
    if args.corpus:
        source: Path | None = Path(args.corpus).expanduser().resolve()
        if not source.is_dir():
            parser.error(f"corpus folder not found: {source}")
    elif args.data.missing("bbc-news"):
        source = None  # what needs no corpus still runs: seeds latency, cold start
        skipped["bbc-news"] = str(args.data.missing("bbc-news"))
    else:
        source = bbc

    warn_if_busy()
    results: dict = {"errors": {}, "load1_before": round(os.getloadavg()[0], 2),
                     "options": {**vars(args), "data": str(args.data),
                                 "corpus": str(source) if source else None}}
    if skipped:
        results["skipped"] = skipped
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="qa-speed-"))
    remove_after: list[Path] = []
    try:
        run(args, source, work, results, remove_after)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        for folder in remove_after:
            shutil.rmtree(folder, ignore_errors=True)
    results["seconds"] = round(time.perf_counter() - began, 1)

    limit = args.limit_articles
    subset = source is not None and (bool(limit) or source != bbc)
    label = "bbc-news" if source in (bbc, None) else source.name
    rows = summary_rows(results, subset, label + (f" first {limit}" if limit and source
                                                  else ""))
    results["summary"] = rows
    print()
    print(table(rows, [("measure", "measure"), ("ours", "ours"),
                       ("target", "reference / target"), ("met", "met?")],
                left=("measure", "ours", "target")))
    if subset:
        print(f"* target set for all of bbc-news; this run used "
              f"{results['corpus']['articles']} files of {source}")
    print(f"load average {results['load1_before']} before, {os.getloadavg()[0]:.2f} after; "
          f"{results['seconds']:.0f} s in all")
    if skipped:
        print(args.data.skip_line("bbc-news", instead="--corpus DIR"))
    for name, error in results["errors"].items():
        print(f"FAILED {name}: {error}")
    emit("speed", results)
    http_errors = (results.get("http") or {}).get("errors")
    return 1 if results["errors"] or http_errors else 0


if __name__ == "__main__":
    sys.exit(main())
