"""Build or update an index from a corpus folder, re-embedding only what changed."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from embeddings import records, store
from embeddings.chunking import DEFAULT_ENCODING, Chunk, token_counter
from embeddings.documents import (
    SUFFIXES,
    Document,
    corpus_files,
    file_sha256,
    read_document,
)
from embeddings.encoder import DEFAULT_BACKEND
from embeddings.errors import BadInput
from embeddings.exact import VECTOR_FORMAT
from embeddings.generation import GenerationWriter
from embeddings.onnx_export import EXPORT_FORMAT
from embeddings.parts import PartEmbedder
from embeddings.parts import embed_lists as _embed  # noqa: F401  (qa.cluster.stages)

log = logging.getLogger(__name__)

BATCH_SIZE = 8  # texts per model batch while indexing (fp32 and torch; int8 runs 1)


@dataclass(frozen=True)
class IndexConfig:
    """What an index depends on: changing any of these forces a full rebuild.

    chunk_tokens / chunk_overlap / sentence_max_tokens are in tiktoken tokens. The field
    defaults are the project's defaults (qa.settings takes them from here).
    """

    model: str
    chunk_tokens: int = 128  # target chunk size
    chunk_overlap: int = 32  # tokens shared by consecutive chunks
    sentence_max_tokens: int = 96  # longer sentences are cut at word boundaries
    encoding: str = DEFAULT_ENCODING  # tiktoken encoding of the token counts
    encoder: str = DEFAULT_BACKEND  # the backend asked for (embeddings.encoder.load_encoder)

    def chunker(self) -> dict:
        # "sentence_vectors": "late" = pooled from the chunk's token embeddings
        return {"chunk_tokens": self.chunk_tokens, "chunk_overlap": self.chunk_overlap,
                "sentence_max_tokens": self.sentence_max_tokens, "encoding": self.encoding,
                "splitter": 2, "sentence_vectors": "late"}


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
    if manifest.get("vectors") != VECTOR_FORMAT:
        return ("vectors are now the same on every CPU (rounded to the 2**-11 grid): "
                "re-embedding once")
    if manifest.get("encoder") != config.encoder:
        return f"encoder changed: {manifest.get('encoder')} -> {config.encoder}"
    if (manifest.get("backend") == "onnx-int8"
            and manifest.get("encoder_format", 1) != EXPORT_FORMAT):
        return (f"the int8 encoder's export changed (format "
                f"{manifest.get('encoder_format', 1)} -> {EXPORT_FORMAT})")
    if dim is not None and manifest.get("dimension") != dim:
        return "vector dimension changed"
    return None


@dataclass(frozen=True)
class Survey:
    """The state of a corpus and its index, taken once (`survey`) and used both to tell
    whether the index is stale and to bring it up to date (`build_index(survey=...)`).

    files: (path, source) of each corpus file, in source order; hashes: source -> hex
    SHA-256 (None for a file that can't be read); generation: the live generation folder
    when surveyed (None: no index); manifest: its manifest (None: none, or unreadable);
    reason: why the index doesn't reflect the corpus under `config`, None if it does.
    """

    corpus: Path
    index_dir: Path
    config: IndexConfig
    exclude: tuple[str, ...]
    files: tuple[tuple[Path, str], ...]
    hashes: dict[str, str | None]
    generation: Path | None
    manifest: dict | None
    reason: str | None
    uploads: Path | None = None


def survey(corpus: Path, index_dir: Path, config: IndexConfig,
           exclude: tuple[str, ...] = (), uploads: Path | None = None) -> Survey:
    """List and hash the corpus files (and those of the `uploads` folder, if it exists,
    as sources "uploads/<name>") and read the index's manifest, once.

    Loads nothing else. Raises BadInput if the corpus folder doesn't exist.
    """
    return _survey(Path(corpus), Path(index_dir), config, tuple(exclude),
                   Path(uploads) if uploads is not None else None)


def _survey(corpus: Path, index_dir: Path, config: IndexConfig,
            exclude: tuple[str, ...], uploads: Path | None = None) -> Survey:
    files = tuple(corpus_files(corpus, exclude, uploads))
    generation = store.current_generation(index_dir)
    manifest = store.generation_manifest(generation)
    hashes = {source: file_sha256(path) for path, source in files}
    return Survey(corpus, index_dir, config, exclude, files, hashes, generation, manifest,
                  _stale(manifest, generation, config, hashes), uploads)


def _stale(manifest: dict | None, generation: Path | None, config: IndexConfig,
           hashes: dict[str, str | None]) -> str | None:
    if manifest is None:
        return "no index yet" if generation is None else "the index has no readable manifest"
    reason = _mismatch(manifest, config, None)
    if reason:
        return reason
    # files skipped before (a scan, an encrypted PDF) count as seen until they change
    indexed = {**(manifest.get("skipped") or {}), **(manifest.get("files") or {})}
    if set(hashes) - set(indexed):
        return f"{len(set(hashes) - set(indexed))} file(s) not indexed yet"
    if set(indexed) - set(hashes):
        return f"{len(set(indexed) - set(hashes))} indexed file(s) deleted"
    changed = [s for s, h in hashes.items() if h != indexed[s]]
    return f"{len(changed)} file(s) changed" if changed else None


def staleness(corpus: Path, index_dir: Path, config: IndexConfig,
              exclude: tuple[str, ...] = (), uploads: Path | None = None) -> str | None:
    """Why the index at `index_dir` doesn't reflect `corpus` under `config`, or None if
    it does: no index yet, other settings, or files added, changed or deleted since.

    `survey(...).reason`: reads the manifest and hashes the corpus files; loads nothing
    else. Raises BadInput if the corpus folder doesn't exist.
    """
    return survey(corpus, index_dir, config, exclude, uploads).reason


def build_index(
    corpus: Path,
    index_dir: Path,
    config: IndexConfig,
    model_loader: Callable,
    *,
    batch_size: int = BATCH_SIZE,
    exclude: tuple[str, ...] = (),
    rebuild: bool = False,
    progress: bool = False,
    approximate_above: int = store.APPROXIMATE_ABOVE,
    survey: Survey | None = None,
    uploads: Path | None = None,
) -> BuildReport:
    """Bring the index at `index_dir` up to date with the files under `corpus`.

    Unchanged files (same SHA-256) keep their chunks and vectors; new and changed files
    are read, chunked and embedded; deleted files are dropped. A manifest that doesn't
    match `config` (or `rebuild=True`) rebuilds everything. Above `approximate_above`
    chunks the vector search is approximate (IVF-Flat, see store.vector_index).
    `model_loader()` returns the Encoder (or any object with `encode(texts, batch_size=)`
    returning unit vectors and a `dim`) and is only called when something must be
    embedded. `survey`, from `survey(corpus, index_dir, config, exclude, uploads)` just
    before, saves listing and hashing the corpus again. `uploads`: a folder of uploaded
    files indexed with the corpus, as sources "uploads/<name>". Raises BadInput for a
    missing corpus or one without readable documents, store.IndexBusy if another build runs.
    """
    began = time.perf_counter()
    corpus, index_dir, exclude = Path(corpus), Path(index_dir), tuple(exclude)
    uploads = Path(uploads) if uploads is not None else None
    if survey is None:
        survey = _survey(corpus, index_dir, config, exclude, uploads)
    elif (survey.corpus, survey.index_dir, survey.config, survey.exclude,
          survey.uploads) != (corpus, index_dir, config, exclude, uploads):
        raise ValueError("the survey is of another corpus, index folder or configuration")
    created = not index_dir.exists()
    try:
        return _build(corpus, index_dir, config, model_loader, batch_size, rebuild, progress,
                      approximate_above, survey, began)
    except BadInput:
        if created:  # a first build that found nothing to index leaves no folder behind
            shutil.rmtree(index_dir, ignore_errors=True)
        raise


def _build(corpus: Path, index_dir: Path, config: IndexConfig, model_loader: Callable,
           batch_size: int, rebuild: bool, progress: bool, approximate_above: int,
           survey: Survey, began: float) -> BuildReport:
    files, hashes = survey.files, survey.hashes
    paths = {source: path for path, source in files}
    with store.locked(index_dir):
        store.clean_leftovers(index_dir)
        store.checkpoint("locked")
        old: records.IndexData | None = None
        rebuilt = "rebuild requested" if rebuild else None
        manifest, generation = survey.manifest, store.current_generation(index_dir)
        if generation != survey.generation:  # another build switched generations since
            manifest = store.generation_manifest(generation)
        if manifest is None and generation is not None:
            rebuilt = "the existing index has no readable manifest"
        elif not rebuild and store.is_sharded(manifest):
            raise store.ShardedNotPlain(
                f"index at {index_dir} is sharded (built with qa index --ray); update it on "
                f"the cluster with: qa index --ray --corpus {corpus} --index {index_dir}; "
                f"or replace it by a single-machine index with: qa index --rebuild "
                f"--corpus {corpus} --index {index_dir}")
        elif not rebuild and manifest is not None:
            rebuilt = _mismatch(manifest, config, None)
            if rebuilt is None:
                try:
                    old, _, _ = store.load_index(index_dir)
                except store.IndexUnusable as exc:
                    rebuilt = f"the existing index is unusable ({exc})"
        if rebuilt and not rebuild:
            log.warning("rebuilding the whole index: %s", rebuilt)

        old_hashes = {d.source: d.sha256 for d in old.documents} if old else {}
        keep = {s for s, h in hashes.items() if h is not None and old_hashes.get(s) == h}
        # a file skipped by the last build and unchanged since is not read again
        old_skipped = (old.manifest.get("skipped") or {}) if old else {}
        still_skipped = {s: h for s, h in hashes.items()
                         if h is not None and old_skipped.get(s) == h and s not in keep}
        fresh_files = [(p, s) for p, s in files if s not in keep and s not in still_skipped]
        removed = tuple(sorted(set(old_hashes) - set(hashes)))
        skipped = len(still_skipped)
        skipped_files = dict(still_skipped)
        docs: list[Document] = []
        iterator = fresh_files
        if progress and len(fresh_files) > 20:
            from tqdm import tqdm

            iterator = tqdm(fresh_files, desc="reading", unit="file")
        for path, source in iterator:
            doc = read_document(path, source, hashes[source])
            if doc is None:
                skipped += 1
                if hashes[source] is not None:
                    skipped_files[source] = hashes[source]
            else:
                docs.append(doc)
        doc = None  # a large file's text is held by `docs` alone, and dropped once written
        store.checkpoint("read")
        read_sources = {d.source for d in docs}
        if not keep and not docs:
            raise BadInput(
                f"no readable documents in {corpus} (looked for {', '.join(SUFFIXES)} files)"
                + ("; the existing index was left as it was" if old else ""))
        added = tuple(sorted(s for s in read_sources if s not in old_hashes))
        changed = tuple(sorted(s for s in read_sources if s in old_hashes))
        # a file that became unreadable or empty disappears like a deleted one
        gone = tuple(sorted(s for s in old_hashes if s in hashes and s not in keep
                            and s not in read_sources))
        removed = tuple(sorted(set(removed) | set(gone)))
        if (old is not None and not added and not changed and not removed
                and skipped_files == old_skipped):
            return BuildReport(len(files), (), (), (), skipped, len(old.chunks),
                               len(old.sentences), 0, time.perf_counter() - began, None, False)

        return _write(corpus, index_dir, config, model_loader, batch_size, progress,
                      approximate_above, began, old, keep, docs, paths, skipped_files,
                      BuildReport(len(files), added, changed, removed, skipped, 0, 0, 0,
                                  0.0, rebuilt, True))


def _write(corpus: Path, index_dir: Path, config: IndexConfig, model_loader: Callable,
           batch_size: int, progress: bool, approximate_above: int, began: float,
           old: records.IndexData | None, keep: set[str], docs: list[Document],
           paths: dict[str, Path], skipped_files: dict[str, str],
           report: BuildReport) -> BuildReport:
    """Write the new generation in source order, a document at a time: a kept file's
    rows copied from the old generation, a new or changed one chunked and embedded in
    parts (`embeddings.parts`) straight into the generation's files."""
    count = token_counter(config.encoding)
    new_docs = {d.source: d for d in docs}
    docs.clear()  # each document's text is dropped once it is written
    old_rows = _rows_by_source(old) if old else {}
    try:
        old_texts = store.read_texts(old.path) if old else {}
    except store.IndexUnusable as exc:  # read the kept files again instead
        log.warning("%s", exc)
        old_texts = {}
    writer = GenerationWriter(index_dir)
    embedder = PartEmbedder(model_loader, writer, batch_size, progress)
    try:
        for source in sorted(keep | set(new_docs)):
            if source in new_docs:
                doc = new_docs.pop(source)
                n_chunks, n_sentences = embedder.document(
                    doc, config.sentence_max_tokens, config.chunk_tokens,
                    config.chunk_overlap, count)
                writer.add_document(records.DocumentRecord(
                    source, doc.title, doc.date, doc.sha256, len(doc.text), n_chunks,
                    n_sentences, doc.pages, doc.headings), doc.text)
                del doc
            else:
                _copy_document(writer, old, old_rows[source], old_texts, paths, corpus)
        store.checkpoint("embedded")
        embedded = embedder.embedded
        backend = (getattr(embedder.model, "backend", "sentence-transformers")
                   if embedded else (old.manifest.get("backend") if old else None))
        dim = embedder.dim or (old.manifest["dimension"] if old else model_loader().dim)
        seconds = time.perf_counter() - began
        manifest = store.make_manifest(config.model, dim, config.chunker(), writer.documents,
                                       writer.chunks, writer.sentences, seconds,
                                       encoder=config.encoder, backend=backend,
                                       encoder_format=EXPORT_FORMAT if embedded else (
                                           old.manifest.get("encoder_format") if old
                                           else None))
        if skipped_files:
            manifest["skipped"] = dict(sorted(skipped_files.items()))
        chunks, sentences = writer.chunks, writer.sentences
        del old, old_rows, old_texts
        writer.finish(manifest, approximate_above, store.COMPRESS_ABOVE)
    except BaseException:
        writer.abandon()
        shutil.rmtree(writer.tmp, ignore_errors=True)
        raise
    finally:
        embedder.close()
    return dataclasses.replace(report, chunks=chunks, sentences=sentences,
                               embedded=embedded, seconds=time.perf_counter() - began)


def _copy_document(writer: GenerationWriter, old: records.IndexData, rows: tuple,
                   old_texts: dict[str, str], paths: dict[str, Path], corpus: Path) -> None:
    """Copy an unchanged document's sentences, chunks and vector rows from the old
    generation (its rows are consecutive there) into the new one."""
    record, c_ids, s_ids = rows
    base = writer.sentences - (s_ids[0] if s_ids else 0)
    if s_ids:
        writer.add_sentences((old.sentences[i] for i in s_ids), old.sentence_vectors,
                             s_ids[0], s_ids[-1] + 1)
    if c_ids:
        writer.add_chunks([Chunk(c.source, c.start, c.end, c.text, c.first + base,
                                 c.last + base, c.tokens)
                           for c in (old.chunks[i] for i in c_ids)],
                          old.chunk_vectors, c_ids[0], c_ids[-1] + 1)
    source = record.source
    text = old_texts.get(source)
    if text is None:  # an index from before texts were kept: read the file once more
        again = read_document(paths.get(source, corpus / source), source, record.sha256)
        if again is not None and len(again.text) == record.chars:
            text = again.text
    writer.add_document(record, text)


def _rows_by_source(data: records.IndexData) -> dict:
    """source -> (DocumentRecord, chunk indices, sentence indices) of a loaded index."""
    out: dict = {d.source: (d, [], []) for d in data.documents}
    for i, c in enumerate(data.chunks):
        out[c.source][1].append(i)
    for i, s in enumerate(data.sentences):
        out[s.source][2].append(i)
    return out
