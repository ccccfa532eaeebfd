"""Any index folder, plain (`qa index`) or sharded (`qa index --ray`): open it for
answering in this process, and say what it is (`qa index --status`).

    index = open_index(index_dir)     # qa.retrieval.index.Index, or a ShardedIndex over every shard
    print(status_text(describe(index_dir)))

A sharded index is read without Ray: `qa.retrieval.sharded.view.ShardedIndex` over one in-process
`ShardReader` per shard searches every shard with the corpus-wide BM25 statistics the
build stored and merges, so the answers are those of a single-machine build.
"""

from __future__ import annotations

from pathlib import Path

from embeddings import store
from qa.retrieval.index import Index
from qa.retrieval.sharded.view import ShardedIndex

# The files of one plain generation (a shard is one too); their absence is damage.
GENERATION_FILES = ("manifest.json", "documents.jsonl", "chunks.jsonl", "sentences.jsonl",
                    "vectors.faiss", "sentence_vectors.npy", "bm25")


def open_index(index_dir: Path | str) -> Index | ShardedIndex:
    """The live index at `index_dir`, loaded and checked: an `Index` for a plain one, a
    `ShardedIndex` (every shard in this process) for a sharded one. Raises IndexUnusable
    naming the fix: no index, another format version or layout, a damaged file."""
    index_dir = Path(index_dir)
    for _ in range(3):  # a build may switch layouts between the look and the load
        if store.is_sharded(store.read_manifest(index_dir)):
            return ShardedIndex.open_local(index_dir)
        try:
            return Index.load(index_dir)
        except store.IndexSharded:
            continue
    return ShardedIndex.open_local(index_dir)


def _missing(gen: Path) -> list[str]:
    return [name for name in GENERATION_FILES if not (gen / name).exists()]


def describe(index_dir: Path | str) -> dict:
    """What the index folder holds, from its manifests and a look at its files (nothing is
    loaded): layout, shards, counts, model, when and by which version it was built, and
    `problem`, why this program can't answer from it (None when it can). Raises
    IndexUnusable when there is no index at all."""
    index_dir = Path(index_dir)
    gen = store.current_generation(index_dir)
    if gen is None:
        raise store.IndexUnusable(
            f"no index at {index_dir}; build it with: qa index --index {index_dir} "
            f"(or on a cluster: qa index --ray --index {index_dir})")
    out: dict = {"index": str(index_dir), "generation": gen.name, "layout": None,
                 "problem": None, "readable_format": store.FORMAT_VERSION,
                 "program": store.program_version()}
    manifest = store.generation_manifest(gen)
    if manifest is None:
        out["problem"] = (f"index at {index_dir} is damaged: {gen.name}/manifest.json is "
                          f"missing or not JSON; {store.rebuild_hint(index_dir)}")
        return out
    sharded = store.is_sharded(manifest)
    counts = manifest.get("counts") or {}
    out.update(
        layout="sharded" if sharded else "plain",
        format_version=manifest.get("format_version"),
        sharded_layout=(manifest.get("layout") or {}).get("version", 1) if sharded else None,
        documents=counts.get("documents"), chunks=counts.get("chunks"),
        sentences=counts.get("sentences"), model=manifest.get("model"),
        encoder=manifest.get("encoder"), backend=manifest.get("backend"),
        dimension=manifest.get("dimension"), built_at=manifest.get("built_at"),
        build_seconds=manifest.get("build_seconds"),
        built_by=manifest.get("built_by") or "a cited-qa from before indexes said so",
        vector_index=(manifest.get("vector_index") or {}).get("type"),
        skipped=len(manifest.get("skipped") or {}))
    out["problem"] = store.version_problem(manifest, index_dir)
    if out["problem"]:
        return out
    if not sharded:
        missing = _missing(gen)
        if missing:
            out["problem"] = (f"index at {index_dir} is damaged: {gen.name} lacks "
                              f"{', '.join(missing)}; {store.rebuild_hint(index_dir)}")
        return out
    shards, broken = [], []
    for s in manifest["shards"]:
        folder = gen / str(s.get("name"))
        shard_gen = store.current_generation(folder)
        missing = _missing(shard_gen) if shard_gen is not None else ["its live generation"]
        if missing:
            broken.append(f"{s.get('name')} lacks {', '.join(missing)}")
        shards.append({k: s.get(k) for k in ("name", "documents", "chunks", "sentences",
                                               "first_source", "last_source")}
                      | {"vector_index": (s.get("vector_index") or {}).get("type")})
    if not (gen / "lexicon.json").exists():
        broken.append("the corpus-wide BM25 statistics (lexicon.json) are missing")
    out["shards"] = shards
    kinds = sorted({s["vector_index"] or "?" for s in shards})
    out["vector_index"] = "/".join(kinds)
    if broken:
        out["problem"] = (f"index at {index_dir} is damaged: {'; '.join(broken)}; "
                          f"{store.rebuild_hint(index_dir, True)}")
    return out


def status_text(d: dict) -> str:
    """`describe`'s dict as the lines `qa index --status` prints."""
    rows = [("index", f"{d['index']} (live generation {d['generation']})")]
    if d.get("layout") == "sharded":
        rows.append(("layout", f"sharded: {len(d.get('shards') or [])} shards (as qa index "
                               "--ray writes; plain qa ask / eval / serve read it too)"))
    elif d.get("layout") == "plain":
        rows.append(("layout", "plain (one machine: qa index)"))
    if d.get("layout"):
        rows += [("documents", d.get("documents")), ("chunks", d.get("chunks")),
                 ("sentences", d.get("sentences")),
                 ("model", f"{d.get('model')} ({d.get('dimension')}-d; encoder "
                           f"{d.get('encoder')}, vectors by {d.get('backend')})"),
                 ("vectors", {"flat": "exact (flat)", "ivf-flat": "approximate (IVF-Flat)",
                              "ivf-pq": "compressed (IVF-PQ, exact re-rank)"}.get(
                                  d.get("vector_index"), d.get("vector_index"))),
                 ("built", f"{d.get('built_at')} in {d.get('build_seconds')} s by "
                           f"{d.get('built_by')}"),
                 ("format", f"version {d.get('format_version')}"
                            + (f", sharded layout {d.get('sharded_layout')}"
                               if d.get("layout") == "sharded" else "")
                            + f" ({d['program']} reads version {d['readable_format']})")]
        if d.get("skipped"):
            rows.append(("skipped", f"{d['skipped']} files (scans, encrypted PDFs)"))
    rows.append(("status", "usable" if not d.get("problem") else f"NOT USABLE: {d['problem']}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    for s in d.get("shards") or []:
        lines.append(f"  {s['name']}: {s['documents']} documents, {s['chunks']} chunks, "
                     f"{s['sentences']} sentences, {s['vector_index']}; "
                     f"{s['first_source']} .. {s['last_source']}")
    return "\n".join(lines)
