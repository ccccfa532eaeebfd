"""The Ray Data stages of `qa index --ray` (qa.cluster.build): plain functions and one
actor class over pandas batches, no Ray import.

- `hash_read_and_chunk` (CPU tasks): hash each file; one the live index has under the same
  SHA-256 is marked kept and not read; the others are read, cleaned and chunked exactly as
  embeddings.indexer does, and carried as JSON (`doc_json`).
- `Embedder` (the actor pool): loads the encoder once, embeds a batch of documents with
  embeddings.indexer._embed (the single-machine build's own function).
- `stage`: writes the embedded documents, per shard, as plain files (JSON lines + .npy)
  named by their sources, so a retried batch rewrites the same files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np

from embeddings import files, indexer, records
from embeddings.chunking import Chunk, Sentence, chunk_sentences, sentences_of, token_counter
from embeddings.documents import file_sha256, read_document
from embeddings.indexer import IndexConfig

DOCS_PER_BATCH = 16  # documents per embedding call of an actor
PAUSE_ENV = "QA_CLUSTER_PAUSE"  # fault trials: see `_pause_once`


def doc_json(doc, sentences: list[Sentence], chunks: list[Chunk]) -> str:
    return json.dumps({
        "record": [doc.source, doc.title, doc.date, doc.sha256, len(doc.text), len(chunks),
                   len(sentences), list(doc.pages), [list(h) for h in doc.headings]],
        "sentences": [[s.start, s.end, s.text] for s in sentences],
        "chunks": [[c.start, c.end, c.text, c.first, c.last, c.tokens] for c in chunks]},
        ensure_ascii=False)


def parse_doc(text: str):
    """(record, sentences, chunks) of a document staged by `doc_json`."""
    raw = json.loads(text)
    fields = ("source", "title", "date", "sha256", "chars", "chunks", "sentences", "pages",
              "headings")
    record = records.DocumentRecord.from_row(dict(zip(fields, raw["record"], strict=False)))
    source = record.source
    sentences = [Sentence(source, a, b, t) for a, b, t in raw["sentences"]]
    chunks = [Chunk(source, a, b, t, f, last, n) for a, b, t, f, last, n in raw["chunks"]]
    return record, sentences, chunks


def hash_read_and_chunk(batch, config: IndexConfig):
    """Hash each file; one whose SHA-256 the live index has is marked `kept` and not
    read; the others are read, cleaned and chunked exactly as embeddings.indexer does."""
    count = token_counter(config.encoding)
    hashes, docs, kept, skipped = [], [], [], []
    for path, source, old in zip(batch["path"], batch["source"], batch["old_sha256"],
                                 strict=True):
        sha = file_sha256(Path(path)) or ""
        hashes.append(sha)
        if sha and sha == old:
            docs.append("")
            kept.append(True)
            skipped.append(False)
            continue
        doc = read_document(Path(path), source, sha or None)
        kept.append(False)
        if doc is None:
            docs.append("")
            skipped.append(True)
            continue
        sentences = sentences_of(doc, config.sentence_max_tokens, count)
        chunks = chunk_sentences(doc, sentences, config.chunk_tokens, config.chunk_overlap,
                                 count)
        docs.append(doc_json(doc, sentences, chunks))
        skipped.append(False)
    batch["sha256"] = hashes
    batch["doc"] = docs
    batch["kept"] = kept
    batch["skipped"] = skipped
    return batch


def _pause_once() -> None:
    """Fault trials: with QA_CLUSTER_PAUSE=FILE, the first embedding call anywhere on the
    cluster writes its process id to FILE and waits up to 120 s (for a test to SIGKILL
    it); FILE.taken marks that it happened, so the retry runs straight through."""
    path = os.environ.get(PAUSE_ENV)
    if not path:
        return
    try:
        fd = os.open(path + ".taken", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    files.atomic_write(Path(path), str(os.getpid()).encode())
    time.sleep(120)


def fault_env() -> dict:
    """map_batches arguments that hand QA_CLUSTER_PAUSE (set in the driver after Ray
    started) to the embedding actors; none without it."""
    path = os.environ.get(PAUSE_ENV)
    return {"runtime_env": {"env_vars": {PAUSE_ENV: path}}} if path else {}


class Embedder:
    """A Ray Data actor: loads the encoder once, embeds batches of chunked documents."""

    def __init__(self, model: str, encoder: str, batch_size: int, threads: int = 1) -> None:
        self.name, self.encoder, self.batch_size = model, encoder, batch_size
        self.threads = threads  # the CPUs Ray gave the actor (not the whole node's)
        self.model = None

    def _load(self):
        """The encoder, loaded on the first batch with something to embed (a build with
        nothing new loads no model)."""
        if self.model is None:
            from embeddings.encoder import load_encoder

            self.model = load_encoder(self.name, self.encoder, threads=self.threads)
        return self.model

    def __call__(self, batch):
        parsed = [parse_doc(d) if d else None for d in batch["doc"]]
        lists = [(p[1], p[2]) for p in parsed if p is not None]
        if lists:
            _pause_once()
        cv, sv, embedded = indexer._embed(self._load, lists, self.batch_size, False)
        chunk_bytes, sentence_bytes, counts = [], [], []
        c = s = 0
        for p in parsed:
            if p is None:
                chunk_bytes.append(b"")
                sentence_bytes.append(b"")
                continue
            nc, ns = len(p[2]), len(p[1])
            chunk_bytes.append(np.ascontiguousarray(cv[c: c + nc], np.float32).tobytes())
            sentence_bytes.append(np.ascontiguousarray(sv[s: s + ns], np.float32).tobytes())
            c, s = c + nc, s + ns
        counts = [0] * len(parsed)
        if counts:
            counts[0] = embedded
        batch["chunk_vectors"] = chunk_bytes
        batch["sentence_vectors"] = sentence_bytes
        batch["embedded"] = counts
        model = self.model
        batch["backend"] = [getattr(model, "backend", "sentence-transformers")
                            if model is not None else ""] * len(parsed)
        batch["dimension"] = [int(model.dim) if model is not None else 0] * len(parsed)
        return batch


def _npy_bytes(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array, allow_pickle=False)
    return out.getvalue()


def stage(batch, folder: str):
    """Write the batch's documents, per shard, as NAME.jsonl + NAME.chunks.npy +
    NAME.sentences.npy under folder/shard-KKK/ (NAME from the sources: a retried batch
    rewrites the same files). Returns one small row per document."""
    names = [""] * len(batch)
    for shard in sorted(set(batch["shard"])):
        rows = [i for i in range(len(batch)) if batch["shard"].iloc[i] == shard
                and batch["doc"].iloc[i]]
        if not rows:
            continue
        name = hashlib.sha1("\n".join(batch["source"].iloc[i] for i in rows).encode()
                            ).hexdigest()[:20]
        where = Path(folder) / f"shard-{int(shard):03d}"
        dim = int(batch["dimension"].iloc[rows[0]])
        cv = np.concatenate([np.frombuffer(batch["chunk_vectors"].iloc[i], np.float32)
                             for i in rows]).reshape(-1, dim)
        sv = np.concatenate([np.frombuffer(batch["sentence_vectors"].iloc[i], np.float32)
                             for i in rows]).reshape(-1, dim)
        files.atomic_write(where / f"{name}.chunks.npy", _npy_bytes(cv))
        files.atomic_write(where / f"{name}.sentences.npy", _npy_bytes(sv))
        files.atomic_write(where / f"{name}.jsonl", "".join(
            batch["doc"].iloc[i] + "\n" for i in rows).encode())
        for i in rows:
            names[i] = name
    batch["staged"] = names
    return batch[["source", "shard", "sha256", "kept", "skipped", "staged", "embedded",
                  "backend", "dimension"]]
