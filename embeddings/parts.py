"""Chunk and embed one document a part at a time, straight into a new generation.

A build hands each new document to `PartEmbedder.document`: its sentences are split and
chunked as a stream (`chunking.iter_sentences` / `iter_chunks`), PART_CHUNKS chunks at a
time are run through the model, and each sentence's vector (late chunking: the sum of
its pooled tokens in every chunk that holds it, normalised) is finished as soon as the
last chunk holding it is embedded; finished sentences, the part's chunks and their
vectors go to the `GenerationWriter` and are dropped. The memory a document costs is its
text and one part, whatever its size.

The vectors are those of embedding the whole document at once: each chunk text's vector
and pooled rows are a function of that text alone, a sentence's rows are added in chunk
order as before, and the normalising is per row (tests/test_streaming.py compares the
files of a build in many small parts with one in a single part).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import numpy as np

from embeddings.chunking import Chunk, Sentence, iter_chunks, iter_sentences
from embeddings.documents import Document
from embeddings.encoder import Encoder
from embeddings.generation import GenerationWriter
from embeddings.lexical import reading_form

PART_CHUNKS = 512  # chunks embedded at a time (~0.3 MB of text, a few MB of vectors)


class PartEmbedder:
    """Embeds new documents into `writer` part by part. The model is loaded (by
    `model_loader()`) at the first chunk; `embedded` counts the texts sent to it as
    the whole-build embedding did (each distinct chunk text once, plus the sentences no
    chunk token covers; every chunk and sentence for a model without token access)."""

    def __init__(self, model_loader: Callable, writer: GenerationWriter, batch_size: int,
                 progress: bool = False, part_chunks: int | None = None) -> None:
        part_chunks = PART_CHUNKS if part_chunks is None else part_chunks
        if part_chunks < 1:
            raise ValueError(f"part_chunks must be at least 1, got {part_chunks}")
        self.model_loader, self.writer = model_loader, writer
        self.batch_size, self.part_chunks = batch_size, part_chunks
        self.model = None
        self.embedded = 0
        self._seen: set[bytes] = set()  # digests of the chunk texts embedded so far
        self._bar = None
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(desc="embedding", unit="chunk")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    @property
    def dim(self) -> int | None:
        return int(self.model.dim) if self.model is not None else None

    def document(self, doc: Document, max_tokens: int, chunk_tokens: int,
                 chunk_overlap: int, count: Callable[[str], int]) -> tuple[int, int]:
        """Chunk, embed and write `doc`; returns its (chunks, sentences)."""
        pending: list[Sentence] = []

        def read() -> Iterator[Sentence]:  # the chunker's sentences, kept until written
            for s in iter_sentences(doc, max_tokens, count):
                pending.append(s)
                yield s

        return self._run(iter_chunks(doc, read(), chunk_tokens, chunk_overlap, count),
                         pending, lambda k, done: None)

    def chunked(self, sentences: list[Sentence], chunks: list[Chunk]) -> tuple[int, int]:
        """Embed and write a document already split (its sentences and chunks)."""
        pending: list[Sentence] = []
        stream = iter(sentences)

        def need(k: int, done: int) -> None:
            while done + len(pending) <= k:
                pending.append(next(stream))

        return self._run(iter(chunks), pending, need)

    def _run(self, chunks: Iterator[Chunk], pending: list[Sentence],
             need: Callable[[int, int], None]) -> tuple[int, int]:
        """Embed and write a document's chunks a part at a time; `pending` holds its
        sentences read and not yet written (`need(k, done)` reads up to sentence k)."""
        base = self.writer.sentences  # the document's first row of the sentence table
        done = 0  # document-local index of pending[0]
        carried: np.ndarray | None = None  # the rows added so far for pending
        n_chunks = 0
        following = next(chunks, None)
        while following is not None:
            part = [following]
            while len(part) < self.part_chunks and (c := next(chunks, None)) is not None:
                part.append(c)
            following = next(chunks, None)
            need(part[-1].last, done)
            # sentences before the next chunk's first are in no later chunk: finished
            finished = (following.first if following is not None
                        else done + len(pending)) - done
            vectors, carried = self._embed(part, pending, done, carried)
            self.writer.add_chunks([Chunk(c.source, c.start, c.end, c.text, c.first + base,
                                          c.last + base, c.tokens) for c in part], vectors)
            n_chunks += len(part)
            if finished:
                rows = self._finish(pending[:finished], carried[:finished])
                self.writer.add_sentences(pending[:finished], rows)
                del pending[:finished]
                carried = carried[finished:]
                done += finished
            if self._bar is not None:
                self._bar.update(len(part))
        return n_chunks, done

    def _embed(self, part: list[Chunk], pending: list[Sentence], done: int,
               carried: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Vectors of the part's chunks, and `carried` grown to all of `pending` with the
        part's pooled sentence rows added (in chunk order)."""
        if self.model is None:
            self.model = self.model_loader()
        model = self.model
        texts = [c.text for c in part]
        rows = np.zeros((len(pending), int(model.dim)), dtype=np.float32)
        if carried is not None:
            rows[: len(carried)] = carried
        if not isinstance(model, Encoder):  # no token access: sentences are embedded alone
            self.embedded += len(texts)
            return np.ascontiguousarray(model.encode(texts, batch_size=self.batch_size),
                                        dtype=np.float32), rows
        spans = [[(pending[i - done].start - c.start, pending[i - done].end - c.start)
                  for i in range(c.first, c.last + 1)] for c in part]
        vectors, pooled = model.encode_spans(texts, spans, self.batch_size, False)
        for c, pooled_rows in zip(part, pooled, strict=True):
            np.add.at(rows, [i - done for i in range(c.first, c.last + 1)], pooled_rows)
        for t in texts:
            digest = hashlib.blake2b(reading_form(t).encode("utf-8", "surrogatepass"),
                                     digest_size=16).digest()
            if digest not in self._seen:
                self._seen.add(digest)
                self.embedded += 1
        return vectors, rows

    def _finish(self, sentences: list[Sentence], rows: np.ndarray) -> np.ndarray:
        """The finished sentences' unit vectors from their summed pooled rows; a sentence
        no chunk token covered (cut off by the model's input limit) is embedded alone."""
        model = self.model
        rows = np.array(rows, dtype=np.float32)  # its own C-ordered copy
        if not isinstance(model, Encoder):
            self.embedded += len(sentences)
            return np.ascontiguousarray(model.encode([s.text for s in sentences],
                                                     batch_size=self.batch_size),
                                        dtype=np.float32)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        alone = np.flatnonzero(norms[:, 0] < 1e-6)
        rows /= np.maximum(norms, 1e-12)
        if len(alone):
            rows[alone] = model.encode([sentences[i].text for i in alone], self.batch_size)
            self.embedded += len(alone)
        return rows


class _Kept:
    """A writer that keeps the vectors it is given (`embed_lists`)."""

    def __init__(self) -> None:
        self.sentences = self.chunks = 0
        self.sentence_vectors: list[np.ndarray] = []
        self.chunk_vectors: list[np.ndarray] = []

    def add_chunks(self, chunks: list[Chunk], vectors: np.ndarray) -> None:
        self.chunk_vectors.append(np.asarray(vectors, dtype=np.float32))
        self.chunks += len(chunks)

    def add_sentences(self, sentences: list[Sentence], vectors: np.ndarray) -> None:
        self.sentence_vectors.append(np.asarray(vectors, dtype=np.float32))
        self.sentences += len(sentences)


def embed_lists(model_loader: Callable, chunk_lists: list[tuple[list[Sentence], list[Chunk]]],
                batch_size: int, progress: bool = False
                ) -> tuple[np.ndarray, np.ndarray, int]:
    """Vectors of the given documents' chunks and sentences, each in input order, and the
    texts sent to the model (`PartEmbedder`'s vectors; the cluster's stages embed their
    batches with it). chunk_lists holds (sentences, chunks) per document."""
    if not any(cs for _, cs in chunk_lists):  # nothing to embed: don't load the model
        return np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), 0
    kept = _Kept()
    embedder = PartEmbedder(model_loader, kept, batch_size, progress)  # type: ignore[arg-type]
    try:
        for sentences, chunks in chunk_lists:
            _, n = embedder.chunked(sentences, chunks)
            if n != len(sentences):
                raise ValueError(f"{len(sentences)} sentences, {n} of them in chunks")
    finally:
        embedder.close()
    dim = embedder.dim or 0
    return (np.concatenate(kept.chunk_vectors) if kept.chunk_vectors
            else np.zeros((0, dim), np.float32),
            np.concatenate(kept.sentence_vectors) if kept.sentence_vectors
            else np.zeros((0, dim), np.float32), embedder.embedded)
