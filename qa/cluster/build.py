"""`qa index --ray`: build the index on a Ray cluster, as N shards.

    report = build_on_ray(settings, address="auto", shards=4)

The driver lists the corpus (embeddings.documents.list_files, the product's rules) and
holds the index lock; everything heavy runs on the cluster:

1. Ray Data hashes the files (CPU tasks); a file whose SHA-256 the live index already has
   keeps its rows, as in a single-machine build, and is not read.
2. New and changed files are read, cleaned and chunked in the same CPU tasks
   (read_document, sentences_of, chunk_sentences), embedded in an actor pool (each actor loads the
   encoder once and calls embeddings.indexer._embed, so the vectors are those of a
   single-machine build), and staged as plain files (JSON lines + .npy, no pickle) under
   the new generation's folder, one set per batch and shard.
3. One Ray task per shard counts its chunks' BM25 statistics; the driver sums them (the
   corpus-wide lexicon); one Ray task per shard then writes the shard as a complete index
   folder (qa.retrieval.sharded.layout.write_shard), from its staged documents and the unchanged
   documents of the previous generation.
4. The driver writes the top manifest and switches `current`, as generation.write_index does:
   a build that dies at any point leaves the last good index live.

Failures: a task or actor that dies is retried by Ray (Ray Data restarts its actors and
retries their batches; the shard tasks retry max_retries times); staged files are named by
content, so a retried batch writes the same files again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np

from embeddings import indexer, lazy, store
from embeddings.documents import SUFFIXES, list_files
from embeddings.errors import BadInput
from embeddings.indexer import BuildReport, IndexConfig
from embeddings.onnx_export import EXPORT_FORMAT
from qa.cluster import connect, stages
from qa.cluster.stages import DOCS_PER_BATCH, PAUSE_ENV, parse_doc  # noqa: F401 (PAUSE_ENV)
from qa.retrieval.sharded import layout
from qa.retrieval.sharded.lexicon import Lexicon, chunk_tokens

log = logging.getLogger(__name__)

ACTOR_CPUS = 1  # CPUs (and encoder threads) of one embedding actor


# --- the shard tasks ----------------------------------------------------------------------


def _staged_parts(folder: Path, name: str, dim: int) -> dict:
    """source -> assemble-ready part of every document in one staged set."""
    docs = [parse_doc(line) for line in
            (folder / f"{name}.jsonl").read_text(encoding="utf-8").splitlines() if line]
    cv = np.load(folder / f"{name}.chunks.npy", allow_pickle=False).reshape(-1, dim)
    sv = np.load(folder / f"{name}.sentences.npy", allow_pickle=False).reshape(-1, dim)
    out, c, s = {}, 0, 0
    for record, sentences, chunks in docs:
        out[record.source] = (record, sentences, chunks, cv[c: c + len(chunks)],
                              sv[s: s + len(sentences)])
        c, s = c + len(chunks), s + len(sentences)
    return out


def _shard_tables(plan: dict, dim: int) -> tuple:
    """The shard's tables (`layout.assemble`) from its plan: sources in order, each
    ["staged", folder, name] or ["old", index folder]."""
    parts: dict = {}
    staged = {(f, n) for kind, *where in plan["sources"].values() if kind == "staged"
              for f, n in [where]}
    for folder, name in staged:
        parts.update(_staged_parts(Path(folder), name, dim))
    old: dict[str, set] = {}
    for source, (kind, *where) in plan["sources"].items():
        if kind == "old":
            old.setdefault(where[0], set()).add(source)
    for folder, wanted in old.items():
        data, _, _ = store.load_index(Path(folder))
        parts.update(layout.parts_by_source(data, wanted))
    return layout.assemble([parts[s] for s in plan["sources"]], dim)


def shard_lexicon(plan: dict, dim: int) -> Lexicon:
    """A shard's BM25 statistics (its chunks' document frequencies and lengths)."""
    return Lexicon.of(chunk_tokens(c.text for c in _shard_tables(plan, dim)[1]))


def write_planned_shard(plan: dict, dim: int, identity: layout.Identity, lexicon: Lexicon,
                        approximate_above: int, compress_above: int) -> dict:
    """Write one shard's index folder from its plan; its summary for the top manifest."""
    tables = _shard_tables(plan, dim)
    tokens = chunk_tokens(c.text for c in tables[1])
    return layout.write_shard(Path(plan["folder"]), plan["number"], plan["of"], identity,
                              tables, tokens, lexicon, approximate_above, compress_above)


# --- the driver ---------------------------------------------------------------------------


def build_on_ray(settings, *, address: str | None = None, shards: int | None = None,
                 rebuild: bool = False, actors: int | None = None,
                 progress: bool = False) -> BuildReport:
    """Bring the sharded index at `settings.index_dir` up to date with the corpus, on the
    Ray cluster at `address` (see qa.cluster.connect). `shards`: how many (default
    $QA_SHARDS, else one per layout.SHARD_BYTES of corpus); `actors`: embedding actors
    (default: the cluster's CPUs less one, at most one per 4 documents to embed).

    Raises BadInput for a corpus without readable documents, store.IndexBusy while
    another build holds the lock."""
    began = time.perf_counter()
    ray = connect(address)
    DataContext = lazy.load("ray.data").DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = bool(progress)
    corpus, index_dir, config = Path(settings.corpus), Path(settings.index_dir), \
        settings.index_config()
    listed = list_files(corpus, settings.exclude)  # BadInput first for a missing corpus
    created = not index_dir.exists()
    try:
        with store.locked(index_dir):
            return _build(ray, settings, corpus, index_dir, config, listed, shards, rebuild,
                          actors, began)
    except BadInput:
        if created:
            shutil.rmtree(index_dir, ignore_errors=True)
        raise


def _build(ray, settings, corpus: Path, index_dir: Path, config: IndexConfig, listed,
           shards, rebuild, actors, began) -> BuildReport:
    store.clean_leftovers(index_dir)
    generation = store.current_generation(index_dir)
    manifest = store.generation_manifest(generation)
    rebuilt = "rebuild requested" if rebuild else None
    if manifest is None and generation is not None:
        rebuilt = "the existing index has no readable manifest"
    elif not rebuild and manifest is not None:
        rebuilt = indexer._mismatch(manifest, config, None)
    if rebuilt and not rebuild:
        log.warning("rebuilding the whole index: %s", rebuilt)
    usable = manifest is not None and not rebuilt
    old_files: dict = dict(manifest.get("files") or {}) if usable else {}
    where_old: dict[str, str] = {}
    if usable:
        for info in layout.shards_of(generation, manifest):
            folder = layout.shard_folder(info)
            gen = store.current_generation(folder)
            for row in _jsonl(gen / "documents.jsonl"):
                where_old[row["source"]] = str(folder)

    rows = [{"path": str(p), "source": s, "bytes": _size(p),
             "old_sha256": old_files.get(s, "") if s in where_old else ""}
            for p, s in listed]
    n = shards or int(os.environ.get("QA_SHARDS") or 0) or layout.default_shards(
        sum(r["bytes"] for r in rows))
    runs = layout.split([(r["source"], r["bytes"]) for r in rows], n) if rows else []
    shard_of = {s: k for k, run in enumerate(runs) for s in run}
    for r in rows:
        r["shard"] = shard_of[r["source"]]

    tmp = layout.new_generation(index_dir)
    staging = tmp / "staging"
    meta: list[dict] = []
    if rows:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        pool = actors or max(1, min(cpus - 1 if cpus > 1 else 1,
                                    -(-len(rows) // (4 * DOCS_PER_BATCH))))
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(
            -(-len(rows) // DOCS_PER_BATCH), 8 * pool)))
        # CPU tasks (half a CPU each, so Ray Data doesn't fuse them into the actors)
        ds = ds.map_batches(stages.hash_read_and_chunk, fn_kwargs={"config": config},
                            batch_format="pandas", batch_size=DOCS_PER_BATCH, num_cpus=0.5)
        ds = ds.map_batches(stages.Embedder, fn_constructor_kwargs={
            "model": settings.model, "encoder": settings.encoder,
            "batch_size": settings.batch_size, "threads": ACTOR_CPUS}, batch_format="pandas",
            batch_size=DOCS_PER_BATCH, num_cpus=ACTOR_CPUS,
            compute=ray.data.ActorPoolStrategy(size=pool), **stages.fault_env())
        ds = ds.map_batches(stages.stage, fn_kwargs={"folder": str(staging)},
                            batch_format="pandas", batch_size=None, num_cpus=0.25)
        meta = ds.take_all()
    hashed = {m["source"]: m["sha256"] for m in meta}
    keep = {m["source"] for m in meta if m["kept"]}
    store.checkpoint("ray-embedded")
    read = {m["source"]: m for m in meta if not m["skipped"] and not m["kept"]}
    skipped = sum(1 for m in meta if m["skipped"])
    if not keep and not read:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BadInput(f"no readable documents in {corpus} (looked for "
                       f"{', '.join(SUFFIXES)} files)"
                       + ("; the existing index was left as it was" if old_files else ""))
    added = tuple(sorted(s for s in read if s not in old_files))
    changed = tuple(sorted(s for s in read if s in old_files))
    removed = tuple(sorted((set(old_files) - set(hashed))
                           | {s for s in old_files if s in hashed and s not in keep
                              and s not in read}))
    if usable and not added and not changed and not removed:
        shutil.rmtree(tmp, ignore_errors=True)
        counts = manifest.get("counts") or {}
        return BuildReport(len(listed), (), (), (), skipped, int(counts.get("chunks", 0)),
                           int(counts.get("sentences", 0)), 0, time.perf_counter() - began,
                           None, False)

    embedded = sum(int(m["embedded"]) for m in meta)
    if read:
        first = next(iter(read.values()))
        dim, backend = int(first["dimension"]), first["backend"]
    else:
        dim, backend = int(manifest["dimension"]), manifest.get("backend")
    identity = layout.Identity(config.model, dim, config.chunker(), config.encoder, backend,
                               EXPORT_FORMAT if embedded else manifest.get("encoder_format"))
    plans = []
    for k, run in enumerate(runs):
        sources = {}
        for s in run:
            if s in read:
                sources[s] = ["staged", str(staging / f"shard-{k:03d}"), read[s]["staged"]]
            elif s in keep:
                sources[s] = ["old", where_old[s]]
        if sources:
            plans.append({"sources": sources})
    for k, plan in enumerate(plans):
        plan.update(number=k, of=len(plans), folder=str(tmp / f"shard-{k:03d}"))
    lexicon_task = ray.remote(max_retries=3)(shard_lexicon)
    write_task = ray.remote(max_retries=3)(write_planned_shard)
    lexicon = Lexicon.merge(ray.get([lexicon_task.remote(p, dim) for p in plans]))
    lexicon.save(tmp)
    lexicon_ref = ray.put(lexicon)
    summaries = ray.get([write_task.remote(p, dim, identity, lexicon_ref,
                                           settings.approximate_above, compress_above(settings))
                         for p in plans])
    store.checkpoint("ray-wrote-shards")
    # staged folders were named for the runs; a shard left empty shifts the folder names
    shutil.rmtree(staging, ignore_errors=True)
    seconds = time.perf_counter() - began
    top = layout.top_manifest(identity, summaries, seconds)
    layout.switch(index_dir, tmp, top)
    n_chunks, n_sentences = top["counts"]["chunks"], top["counts"]["sentences"]
    return BuildReport(len(listed), added, changed, removed, skipped, n_chunks, n_sentences,
                       embedded, time.perf_counter() - began, rebuilt, True)


def compress_above(settings) -> int:
    """Chunks above which a shard's vectors are IVF-PQ with the exact ones memory-mapped
    (embeddings/compressed.py): $QA_COMPRESS_ABOVE, else the store's 10 M. A cluster of
    24 GB nodes wants it lower (docs/scale.md: a 5 M-chunk shard fits only compressed)."""
    value = os.environ.get("QA_COMPRESS_ABOVE")
    return int(value) if value else store.COMPRESS_ABOVE


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
