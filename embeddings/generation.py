"""Write one index generation part by part (a streaming build), then switch to it.

`GenerationWriter` opens a new `gen-….tmp` folder beside the live generation and takes a
generation's documents, sentences, chunks and vectors in order, a part at a time:
sentences and chunks go straight to their JSON lines files, vector rows are appended to
`.npy` files with plain writes (the header, which holds the row count, is written last),
and each chunk's BM25 tokens are kept as a small array of ids. `finish` writes the FAISS
index (read back from the chunk vectors' file in blocks), the BM25 files and the
manifest, then renames the folder and swaps the `current` link (`embeddings.store`'s
layout and crash points, in the same order). Nothing a part held stays in memory, so a
build's memory does not grow with the file's size but for the FAISS and BM25 indexes.

The files are byte for byte those `np.save` and the whole-generation writer made.
"""

from __future__ import annotations

import ctypes
import io
import json
import os
import time
from array import array
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from embeddings import files, lazy, store
from embeddings.chunking import Chunk, Sentence
from embeddings.compressed import EXACT_FILE
from embeddings.lexical import BM25, tokenize
from embeddings.records import DocumentRecord, IndexData

BLOCK_ROWS = 8192  # vector rows read back at a time (12 MB at 384 dimensions)


def npy_header(rows: int, dim: int) -> bytes:
    """The header `np.save` writes for a (rows, dim) C-order float32 array."""
    out = io.BytesIO()
    npy_format.write_array_header_1_0(out, {"descr": npy_format.dtype_to_descr(
        np.dtype(np.float32)), "fortran_order": False, "shape": (rows, dim)})
    return out.getvalue()


class RowWriter:
    """Float32 rows appended to an `.npy` file with plain writes (no memory map: a map's
    touched pages count as the process's memory); `close` writes the header."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self.dim: int | None = None
        self._reserved = len(npy_header(0, 1))
        self._file = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._file.write(b"\0" * self._reserved)

    def append(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"rows must be a 2-d array, got shape {vectors.shape}")
        if not len(vectors):
            return
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        elif vectors.shape[1] != self.dim:
            raise ValueError(f"rows of {vectors.shape[1]} values appended to rows of "
                             f"{self.dim}")
        self._file.write(vectors.tobytes())
        self.rows += len(vectors)

    def close(self, dim: int) -> None:
        """Write the header for (rows, dim), fsync and close."""
        if self.dim is not None and self.dim != dim:
            raise ValueError(f"rows of {self.dim} values, but the index has {dim}")
        header = npy_header(self.rows, dim)
        f = self._file
        if len(header) == self._reserved:
            f.seek(0)
            f.write(header)
        else:  # a header longer than reserved (never at sane sizes): move the rows
            f.close()
            moved = self.path.with_name(self.path.name + ".rows")
            os.replace(self.path, moved)
            with open(moved, "rb") as src, open(self.path, "wb") as f:
                src.seek(self._reserved)
                f.write(header)
                while block := src.read(1 << 24):
                    f.write(block)
            moved.unlink()
            f = open(self.path, "rb+")  # noqa: SIM115 - closed just below
        f.flush()
        os.fsync(f.fileno())
        f.close()

    def abandon(self) -> None:
        self._file.close()


def read_rows(path: Path, lo: int, hi: int) -> np.ndarray:
    """Rows lo..hi-1 of a float32 `.npy` file, read with plain reads (no memory map)."""
    with open(path, "rb") as f:
        version = npy_format.read_magic(f)
        read = (npy_format.read_array_header_1_0 if version == (1, 0)
                else npy_format.read_array_header_2_0)
        shape, _, _ = read(f)
        dim = int(shape[1])
        f.seek(f.tell() + lo * dim * 4)
        return np.fromfile(f, dtype=np.float32, count=(hi - lo) * dim).reshape(-1, dim)


def copy_rows(vectors: np.ndarray, lo: int, hi: int, out: RowWriter) -> None:
    """Append rows lo..hi-1 of `vectors` to `out`, BLOCK_ROWS at a time; a memory-mapped
    array (a loaded generation's) is read with plain reads, touching none of its pages."""
    source = _mapped_file(vectors)
    for a in range(lo, hi, BLOCK_ROWS):
        b = min(hi, a + BLOCK_ROWS)
        out.append(read_rows(source, a, b) if source is not None else vectors[a:b])


def _mapped_file(vectors: np.ndarray) -> Path | None:
    """The `.npy` file `vectors` is a whole memory map of (directly or as a view), or None."""
    for mapped in (vectors, getattr(vectors, "base", None)):
        if (isinstance(mapped, np.memmap) and getattr(mapped, "filename", None)
                and mapped.shape == vectors.shape
                and mapped.__array_interface__["data"][0]
                == vectors.__array_interface__["data"][0]):
            return Path(mapped.filename)
    return None


class BM25Tokens:
    """Each chunk's BM25 tokens as an int32 array of ids (4 bytes a token, where a list
    of strings costs ~60), the vocabulary in first-seen order; `build` makes the same
    scores as `BM25.build` over the texts."""

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {}
        self.ids: list[array] = []

    def add(self, texts: Iterable[str]) -> None:
        vocab = self.vocab
        for text in texts:
            self.ids.append(array("i", [vocab.setdefault(t, len(vocab))
                                        for t in tokenize(text)]))

    def build(self) -> BM25:
        if not self.vocab:  # no chunk, or none with a token: the whole-list path
            return BM25.build([""] * len(self.ids))
        from embeddings.lexical import _bm25s

        retriever = _bm25s().BM25()
        retriever.index((self.ids, self.vocab), show_progress=False)
        self.ids, self.vocab = [], {}
        return BM25(retriever)


def _write_json_line(f, row: dict) -> None:
    f.write(json.dumps(row, ensure_ascii=False))  # a file's text: no second copy with
    f.write("\n")                                  # the line break


def release_memory() -> None:
    """Hand freed heap memory back to the system (glibc's malloc_trim) after a build:
    otherwise a server keeps a build's peak as its size. Does nothing elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class GenerationWriter:
    """A new generation of the index at `index_dir`, written in order: per document,
    `add_sentences` / `add_chunks` (any number of parts; chunks' `first`/`last` are
    rows of the generation's sentence table) and `add_document`; then `finish`.
    Call only while holding the index lock; `abandon` (or a crash) leaves a `.tmp`
    folder the next build removes."""

    def __init__(self, index_dir: Path) -> None:

        self._store = store
        self.index_dir = Path(index_dir)
        self.name = (f"gen-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-"
                     f"{time.monotonic_ns() % 10**6}")
        self.tmp = self.index_dir / f"{self.name}.tmp"
        self.tmp.mkdir(parents=True)
        self.documents: list[DocumentRecord] = []
        self.sentences = 0
        self.chunks = 0
        self._open = [open(self.tmp / n, "w", encoding="utf-8")  # noqa: SIM115
                      for n in ("chunks.jsonl", "sentences.jsonl", store.TEXTS_FILE)]
        self._chunk_file, self._sentence_file, self._text_file = self._open
        self.sentence_rows = RowWriter(self.tmp / "sentence_vectors.npy")
        self.chunk_rows = RowWriter(self.tmp / EXACT_FILE)
        self.bm25 = BM25Tokens()

    def add_sentences(self, sentences: Iterable[Sentence], vectors: np.ndarray,
                      lo: int = 0, hi: int | None = None) -> None:
        """Append sentences and their vector rows (rows lo..hi-1 of `vectors`)."""
        hi = len(vectors) if hi is None else hi
        n = 0
        for s in sentences:
            _write_json_line(self._sentence_file, {"source": s.source, "start": s.start,
                                                   "end": s.end, "text": s.text})
            n += 1
        if n != hi - lo:
            raise ValueError(f"{n} sentences but {hi - lo} vectors")
        copy_rows(vectors, lo, hi, self.sentence_rows)
        self.sentences += n

    def add_chunks(self, chunks: list[Chunk], vectors: np.ndarray, lo: int = 0,
                   hi: int | None = None, tokens: bool = True) -> None:
        """Append chunks and their vector rows (rows lo..hi-1 of `vectors`); `tokens`:
        keep their BM25 tokens (not when `finish` is given a BM25 index)."""
        hi = len(vectors) if hi is None else hi
        if len(chunks) != hi - lo:
            raise ValueError(f"{len(chunks)} chunks but {hi - lo} vectors")
        for c in chunks:
            _write_json_line(self._chunk_file, {
                "source": c.source, "start": c.start, "end": c.end, "tokens": c.tokens,
                "sentences": [c.first, c.last], "text": c.text})
        if tokens:
            self.bm25.add(c.text for c in chunks)
        copy_rows(vectors, lo, hi, self.chunk_rows)
        self.chunks += len(chunks)

    def add_document(self, record: DocumentRecord, text: str | None) -> None:
        self.documents.append(record)
        if text is not None:
            _write_json_line(self._text_file, {"source": record.source, "text": text})

    def abandon(self) -> None:
        for f in self._open:
            f.close()
        self.sentence_rows.abandon()
        self.chunk_rows.abandon()

    def finish(self, manifest: dict, approximate_above: int, compress_above: int,
               bm25: BM25 | None = None, texts: bool = True) -> Path:
        """Write the rest (FAISS index, BM25, manifest) and make the generation live
        (`store.switch_to`); `bm25`: one built already (else from the chunks' tokens);
        texts=False: no texts.jsonl (a generation of an index from before texts were
        kept)."""
        faiss = lazy.faiss()

        store, tmp, dim = self._store, self.tmp, int(manifest["dimension"])
        with files.synced(tmp / "documents.jsonl", "w", encoding="utf-8") as f:
            for d in self.documents:
                _write_json_line(f, asdict(d))
        store.checkpoint("wrote-documents")
        _close(self._chunk_file)
        store.checkpoint("wrote-chunks")
        _close(self._sentence_file)
        store.checkpoint("wrote-sentences")
        _close(self._text_file)
        if not texts:
            (tmp / store.TEXTS_FILE).unlink()
        self.chunk_rows.close(dim)
        index, kind = store.vector_index(_Blocks(tmp / EXACT_FILE, self.chunks, dim), dim,
                                         approximate_above, compress_above)
        manifest["vector_index"] = kind
        faiss.write_index(index, str(tmp / "vectors.faiss"))
        del index
        if kind["type"] == "flat":  # the loader takes them from the flat index itself
            (tmp / EXACT_FILE).unlink()
        store.checkpoint("wrote-vectors")
        self.sentence_rows.close(dim)
        store.checkpoint("wrote-sentence-vectors")
        (bm25 if bm25 is not None else self.bm25.build()).save(tmp / "bm25")
        self.bm25 = BM25Tokens()
        store.checkpoint("wrote-bm25")
        # The manifest goes last: a generation folder without one is never complete.
        with files.synced(tmp / "manifest.json", "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, ensure_ascii=False)
        store.checkpoint("wrote-manifest")
        release_memory()
        return store.switch_to(self.index_dir, tmp, self.name)


def _close(f) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()


class _Blocks:
    """The (n, dim) rows of a float32 `.npy` file as `store.vector_index` reads them:
    `len`, rows picked by a sorted index array (`[ids]`) and `blocks()`, without
    holding the whole file."""

    def __init__(self, path: Path, n: int, dim: int) -> None:
        self.path, self.n, self.dim = path, n, dim

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        done = 0
        for a in range(0, self.n, BLOCK_ROWS):
            b = min(self.n, a + BLOCK_ROWS)
            k = np.searchsorted(ids, b) - done
            if k:
                out[done: done + k] = read_rows(self.path, a, b)[ids[done: done + k] - a]
                done += k
        return out

    def blocks(self):
        for a in range(0, self.n, BLOCK_ROWS):
            yield read_rows(self.path, a, min(self.n, a + BLOCK_ROWS))


def write_index(index_dir: Path, data: IndexData, bm25: BM25,
                approximate_above: int = store.APPROXIMATE_ABOVE,
                compress_above: int = store.COMPRESS_ABOVE) -> Path:
    """Write `data` as a new generation and make it the live one; return its folder.

    Call only while holding the lock. The previous generation stays live until the
    final atomic rename of the `current` link, and is removed after it. The chunk
    vectors go into an exact FAISS index, or an approximate one above
    `approximate_above` vectors (`vector_index`; the manifest's "vector_index" says
    which).
    """
    writer = GenerationWriter(index_dir)
    try:
        for d in data.documents:  # per document: its sentences, then its chunks
            writer.add_document(d, (data.texts or {}).get(d.source))
        writer.add_sentences(data.sentences, data.sentence_vectors)
        writer.add_chunks(list(data.chunks), data.chunk_vectors, tokens=False)
    except BaseException:
        writer.abandon()
        raise
    return writer.finish(data.manifest, approximate_above, compress_above, bm25,
                         texts=data.texts is not None)
