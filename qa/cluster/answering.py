"""`qa ask --ray` and `qa eval --ray`: questions answered on a Ray cluster.

    answer = ask_on_ray(settings, "Who declined to meet Lloyd Austin?", address="auto")
    rows, threshold, run = eval_on_ray(settings, questions, address="auto")

Both first build the index on the cluster when it doesn't reflect the corpus (as
`qa serve --ray` does), then answer with today's `Assistant` (qa.engine) in Ray workers:

- `ask_on_ray`: one Ray task loads the encoder, the reader and the index and answers.
- `eval_on_ray`: Ray Data over the questions; an actor pool of `workers` actors (one CPU
  each), each of which loads the encoder, the reader and every shard of the index in its
  own process (`qa.retrieval.folder.open_index`: no Ray Serve needed) and judges its batches
  with `qa.evaluation.run.judge`. Each worker holds the whole index in memory (its shards'
  vectors, BM25 and tables, about the size of the index folder) plus the models; the
  run's `metrics.json` says how much each worker's process held at most.

The index folder and the corpus must be on storage every node sees, as for the build.
Nothing here imports Ray at module level (qa.cluster.connect does, at call time).
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from dataclasses import asdict

from embeddings import lazy
from qa.cluster import connect
from qa.evaluation.run import CorpusTexts, Question, judge

log = logging.getLogger(__name__)

QUESTIONS_PER_BATCH = 8
WORKER_CPUS = 1


def ensure_built(settings) -> None:
    """Build the index on the cluster (qa index --ray) if it doesn't reflect the corpus."""
    from embeddings.indexer import staleness

    stale = staleness(settings.corpus, settings.index_dir, settings.index_config(),
                      settings.exclude)
    if stale:
        from qa.cluster.build import build_on_ray

        log.warning("building the index on the cluster: %s", stale)
        print(build_on_ray(settings).summary(), file=sys.stderr, flush=True)


def _ask(settings, question: str):
    from qa.engine import Assistant

    return Assistant.load(settings=settings, update=False).ask(question)


def ask_on_ray(settings, question: str, *, address: str | None = None):
    """The Answer to `question`, answered by a Ray task on the cluster."""
    ray = connect(address)
    ensure_built(settings)
    task = ray.remote(num_cpus=WORKER_CPUS, max_retries=1)(_ask)
    return ray.get(task.remote(settings, question))


class QuestionWorker:
    """A Ray Data actor: the assistant over the whole index, loaded once; judges batches
    of questions (rows {"order", "question": JSON of a Question})."""

    def __init__(self, settings) -> None:
        from qa.engine import Assistant

        began = time.perf_counter()
        self.assistant = Assistant.load(settings=settings, update=False)
        self.load_seconds = time.perf_counter() - began
        self.texts = CorpusTexts(settings.corpus)
        self.threshold = self.assistant.threshold()

    def __call__(self, batch: dict) -> dict:
        from qa.answering.answer import apply_threshold

        rows = []
        for payload in batch["question"]:
            raw = json.loads(payload)
            q = Question(raw["id"], raw["question"], tuple(raw["answers"]),
                         tuple(raw["sources"]), raw["answerable"])
            answer = self.assistant.ask(q.question, top_k=10, abstain=False)
            rows.append(json.dumps(judge(q, answer, apply_threshold(answer, self.threshold),
                                         self.texts), ensure_ascii=False))
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        n = len(rows)
        return {"order": batch["order"], "row": rows, "threshold": [self.threshold] * n,
                "rss_mb": [rss_mb] * n, "load_seconds": [self.load_seconds] * n}


def eval_on_ray(settings, questions: list[Question], *, address: str | None = None,
                workers: int | None = None, progress: bool = False):
    """Judge every question on the cluster: (judged rows in the questions' order, the
    abstention threshold, what the run was: workers, seconds, questions per second,
    the most memory a worker held)."""
    ray = connect(address)
    ActorPoolStrategy = lazy.load("ray.data").ActorPoolStrategy
    DataContext = lazy.load("ray.data").DataContext

    DataContext.get_current().enable_progress_bars = bool(progress)
    ensure_built(settings)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    pool = workers or max(1, min(cpus - 1 if cpus > 1 else 1,
                                 -(-len(questions) // (4 * QUESTIONS_PER_BATCH))))
    items = [{"order": i, "question": json.dumps(asdict(q), ensure_ascii=False)}
             for i, q in enumerate(questions)]
    began = time.perf_counter()
    ds = ray.data.from_items(items, override_num_blocks=max(1, min(
        -(-len(items) // QUESTIONS_PER_BATCH), 8 * pool)))
    ds = ds.map_batches(QuestionWorker, fn_constructor_kwargs={"settings": settings},
                        batch_size=QUESTIONS_PER_BATCH, batch_format="numpy",
                        num_cpus=WORKER_CPUS, compute=ActorPoolStrategy(size=pool))
    out = sorted(ds.take_all(), key=lambda r: int(r["order"]))
    seconds = time.perf_counter() - began
    if len(out) != len(questions):
        raise RuntimeError(f"the cluster answered {len(out)} of {len(questions)} questions")
    rows = [json.loads(str(r["row"])) for r in out]
    run = {"where": "ray", "workers": pool,
           "workers_hold": "every shard, in their own process (no Ray Serve)",
           "seconds": round(seconds, 2),
           "questions_per_second": round(len(rows) / seconds, 3) if seconds else None,
           "worker_load_seconds_max": round(max(float(r["load_seconds"]) for r in out), 2),
           "worker_rss_mb_max": round(max(float(r["rss_mb"]) for r in out), 1)}
    return rows, float(out[0]["threshold"]), run
