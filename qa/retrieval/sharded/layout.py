"""The sharded index folder: a top generation naming N shards, each a complete index folder.

Layout::

    INDEX/
      current -> gen-20261201T101500-4242-123456     the same atomic switch as today
      gen-20261201T101500-4242-123456/
        manifest.json      today's manifest for the whole corpus (model, chunker, counts,
                           files + hashes, so `qa index`'s staleness check reads it as is)
                           plus "shards": [{name, documents, chunks, sentences, offsets,
                           first and last source}], "layout" (kind, version) and
                           "lexicon"
        lexicon.json       corpus-wide BM25 statistics (qa.retrieval.sharded.lexicon)
        shard-000/         an index folder of today's format (embeddings/store.py):
          current -> gen-...   its own generation, written by generation.write_index
        shard-001/ ...
      .lock                held by the build, as today

Shards hold contiguous runs of the sources in sorted order (split by bytes), so shard 0's
chunks come first, then shard 1's...: global chunk and sentence numbers are a shard's
offset plus its own, and equal the numbers of one index over the same corpus. A document
never spans two shards.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings import files, generation, records, store
from embeddings.chunking import Chunk, Sentence

SHARD_BYTES = 256 * 2**20  # corpus bytes per shard by default (~1-2 M chunks of news text)
TOP_NAME = "manifest.json"


@dataclass(frozen=True)
class ShardInfo:
    """One shard of a live sharded generation: its folder and where its rows start."""

    name: str
    path: Path
    documents: int
    chunks: int
    sentences: int
    chunk_offset: int
    sentence_offset: int


def default_shards(total_bytes: int) -> int:
    """How many shards a corpus of `total_bytes` gets without --shards: one per
    SHARD_BYTES, at least one."""
    return max(1, -(-int(total_bytes) // SHARD_BYTES))


def split(sizes: Sequence[tuple[str, int]], n: int) -> list[list[str]]:
    """Sources (sorted, with their byte sizes) cut into at most `n` contiguous runs of
    about equal bytes, none empty."""
    items = sorted(sizes)
    n = max(1, min(n, len(items)))
    total = sum(max(1, b) for _, b in items)
    runs: list[list[str]] = [[] for _ in range(n)]
    seen, shard = 0, 0
    for k, (source, size) in enumerate(items):
        # by bytes so far, one shard at a time (none left empty), never backwards, and
        # leaving a source for each shard still to come
        by_bytes = min(n - 1, int(seen * n / total), shard + 1 if k else 0)
        shard = max(shard, by_bytes, n - (len(items) - k))
        runs[shard].append(source)
        seen += max(1, size)
    return [r for r in runs if r]


is_sharded = store.is_sharded  # a sharded top manifest (its "shards" list)


def shards_of(generation: Path, manifest: dict) -> list[ShardInfo]:
    """The shards a top manifest names (for a plain index: the generation itself)."""
    if not is_sharded(manifest):
        counts = manifest.get("counts") or {}
        return [ShardInfo("", generation.parent, int(counts.get("documents", 0)),
                          int(counts.get("chunks", 0)), int(counts.get("sentences", 0)), 0, 0)]
    return [ShardInfo(s["name"], generation / s["name"], int(s["documents"]),
                      int(s["chunks"]), int(s["sentences"]), int(s["chunk_offset"]),
                      int(s["sentence_offset"])) for s in manifest["shards"]]


def shard_folder(info: ShardInfo) -> Path:
    """The index folder to `store.load_index` for a shard: the shard's folder, or for a
    plain index the index folder itself."""
    return info.path


def assemble(parts: Sequence[tuple[records.DocumentRecord, list[Sentence], list[Chunk],
                                   np.ndarray, np.ndarray]],
             dim: int) -> tuple[list[records.DocumentRecord], list[Chunk], list[Sentence],
                                np.ndarray, np.ndarray]:
    """One shard's tables from its documents in source order: (record, sentences,
    chunks with `first`/`last` into the document's own sentences, chunk vectors,
    sentence vectors). Chunks are re-based onto the shard's sentence table, as
    embeddings.indexer assembles a generation."""
    documents, chunks, sentences = [], [], []
    chunk_vectors, sentence_vectors = [], []
    for record, sents, chs, cv, sv in parts:
        base = len(sentences)
        sentences.extend(sents)
        chunks.extend(Chunk(c.source, c.start, c.end, c.text, c.first + base, c.last + base,
                            c.tokens) for c in chs)
        documents.append(record)
        chunk_vectors.append(np.asarray(cv, dtype=np.float32).reshape(len(chs), dim))
        sentence_vectors.append(np.asarray(sv, dtype=np.float32).reshape(len(sents), dim))
    def cat(xs: list[np.ndarray]) -> np.ndarray:
        return (np.ascontiguousarray(np.concatenate(xs), dtype=np.float32) if xs
                else np.zeros((0, dim), np.float32))

    return documents, chunks, sentences, cat(chunk_vectors), cat(sentence_vectors)


def parts_by_source(data: records.IndexData, wanted: set[str] | None = None) -> dict:
    """source -> (record, sentences, chunks numbered within the document, chunk vectors,
    sentence vectors) of a loaded index (only the `wanted` sources, if given): the
    pieces `assemble` puts together again."""
    by_source: dict[str, list] = {d.source: [d, [], [], [], []] for d in data.documents
                                  if wanted is None or d.source in wanted}
    first_sentence: dict[str, int] = {}
    for i, s in enumerate(data.sentences):
        if s.source in by_source:
            first_sentence.setdefault(s.source, i)
            by_source[s.source][1].append(s)
            by_source[s.source][4].append(data.sentence_vectors[i])
    for i, c in enumerate(data.chunks):
        if c.source in by_source:
            base = first_sentence[c.source]
            by_source[c.source][2].append(Chunk(c.source, c.start, c.end, c.text,
                                                c.first - base, c.last - base, c.tokens))
            by_source[c.source][3].append(data.chunk_vectors[i])
    return {k: tuple(v) for k, v in by_source.items()}


def new_generation(index_dir: Path) -> Path:
    """A fresh, empty top generation folder (`gen-....tmp`); call holding the lock.
    A crash leaves it behind for the next build's `store.clean_leftovers`."""
    name = f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
    tmp = Path(index_dir) / f"{name}.tmp"
    tmp.mkdir(parents=True)
    return tmp


def switch(index_dir: Path, tmp: Path, manifest: dict) -> Path:
    """Write the top manifest last into `tmp`, rename it to its final name and make it
    live with the one atomic rename of `current`, as generation.write_index does; remove the
    superseded generations. Returns the live folder."""
    with files.synced(tmp / TOP_NAME, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
    store.checkpoint("wrote-top-manifest")
    files.fsync_dir(tmp)
    final = tmp.with_name(tmp.name[: -len(".tmp")])
    os.rename(tmp, final)
    store.checkpoint("top-renamed")
    link = Path(index_dir) / f".current-{os.getpid()}"
    link.unlink(missing_ok=True)
    os.symlink(final.name, link)
    os.replace(link, Path(index_dir) / store.CURRENT)
    files.fsync_dir(index_dir)
    store.checkpoint("top-switched")
    store.clean_leftovers(Path(index_dir))
    return final


@dataclass(frozen=True)
class Identity:
    """What every manifest of one build shares (store.make_manifest's arguments)."""

    model: str
    dimension: int
    chunker: dict
    encoder: str
    backend: str | None
    encoder_format: int | None

    def manifest(self, documents: Sequence[records.DocumentRecord], n_chunks: int,
                 n_sentences: int, seconds: float) -> dict:
        return store.make_manifest(self.model, self.dimension, self.chunker, list(documents),
                                   n_chunks, n_sentences, seconds, encoder=self.encoder,
                                   backend=self.backend, encoder_format=self.encoder_format)


def write_shard(folder: Path, number: int, of: int, identity: Identity,
                tables: tuple, token_lists: list[list[str]], lexicon,
                approximate_above: int = store.APPROXIMATE_ABOVE,
                compress_above: int = store.COMPRESS_ABOVE) -> dict:
    """Write one shard (`assemble`'s tables) as an index folder of today's format, its
    BM25 scored with the corpus-wide `lexicon`; return its summary for the top manifest."""
    from qa.retrieval.sharded.lexicon import shard_bm25

    began = time.perf_counter()
    documents, chunks, sentences, chunk_vectors, sentence_vectors = tables
    manifest = identity.manifest(documents, len(chunks), len(sentences), 0.0)
    manifest["shard"] = {"number": number, "of": of}
    data = records.IndexData(manifest, tuple(documents), tuple(chunks), tuple(sentences),
                           chunk_vectors, sentence_vectors)
    generation.write_index(Path(folder), data, shard_bm25(token_lists, lexicon),
                      approximate_above, compress_above)
    return {"name": Path(folder).name, "documents": len(documents), "chunks": len(chunks),
            "sentences": len(sentences), "first_source": documents[0].source if documents
            else None, "last_source": documents[-1].source if documents else None,
            "vector_index": manifest.get("vector_index"),
            "records": [d.__dict__ for d in documents],
            "seconds": round(time.perf_counter() - began, 3)}


def top_manifest(identity: Identity, summaries: list[dict], seconds: float) -> dict:
    """The top generation's manifest: today's manifest over every document (so the
    single-machine staleness check reads it), with the shards and their offsets."""
    documents = [records.DocumentRecord.from_row(r) for s in summaries for r in s["records"]]
    n_chunks = sum(s["chunks"] for s in summaries)
    n_sentences = sum(s["sentences"] for s in summaries)
    manifest = identity.manifest(documents, n_chunks, n_sentences, seconds)
    shards, c_off, s_off = [], 0, 0
    for s in summaries:
        shards.append({k: v for k, v in s.items() if k != "records"}
                      | {"chunk_offset": c_off, "sentence_offset": s_off})
        c_off += s["chunks"]
        s_off += s["sentences"]
    manifest["shards"] = shards
    manifest["layout"] = {"kind": "sharded", "version": store.SHARDED_LAYOUT}
    manifest["lexicon"] = "lexicon.json"
    return manifest


def reshard(data: records.IndexData, index_dir: Path, n: int,
            approximate_above: int = store.APPROXIMATE_ABOVE) -> Path:
    """Write the loaded index `data` as a sharded index of about `n` shards at
    `index_dir`, in this process (tests, and moving a single-machine index onto a
    cluster without re-embedding). Returns the live top generation."""
    from qa.retrieval.sharded.lexicon import Lexicon, chunk_tokens

    m = data.manifest
    identity = Identity(m["model"], int(m["dimension"]), m["chunker"],
                        m.get("encoder", "auto"), m.get("backend"), m.get("encoder_format"))
    by_source = parts_by_source(data)
    runs = split([(d.source, d.chars) for d in data.documents], n)
    dim = identity.dimension
    tables = [assemble([by_source[s] for s in run], dim) for run in runs]
    tokens = [chunk_tokens(c.text for c in t[1]) for t in tables]
    lexicon = Lexicon.merge(Lexicon.of(t) for t in tokens)
    began = time.perf_counter()
    with store.locked(index_dir):
        store.clean_leftovers(Path(index_dir))
        tmp = new_generation(Path(index_dir))
        lexicon.save(tmp)
        summaries = [write_shard(tmp / f"shard-{k:03d}", k, len(runs), identity, t, tok,
                                 lexicon, approximate_above)
                     for k, (t, tok) in enumerate(zip(tables, tokens, strict=True))]
        return switch(index_dir, tmp, top_manifest(identity, summaries,
                                                   time.perf_counter() - began))
