"""The streamed build (issue 23): a file read, chunked and embedded in parts gives the
files of the whole-file build, byte for byte, and the build's memory does not grow with
the file's size but for its text."""

from __future__ import annotations

import json
import random
import re
import tracemalloc
from pathlib import Path

import numpy as np

from embeddings import parts, store
from embeddings.chunking import chunk_sentences, sentences_of, token_counter
from embeddings.documents import file_sha256, read_document
from embeddings.encoder import Encoder
from embeddings.generation import RowWriter, npy_header
from embeddings.indexer import IndexConfig, build_index

CONFIG = IndexConfig(model="all-MiniLM-L6-v2")
PLACES = ["Oslo", "Lima", "Porto", "Kyoto", "Accra", "Quito", "Hanoi", "Perth"]
THINGS = ["museum", "harbour", "library", "market", "stadium", "gallery"]


def article(paragraphs: int, seed: int = 2) -> str:
    """Paragraphs of a few sentences each, some long, some short."""
    rng = random.Random(seed)
    out = []
    for n in range(paragraphs):
        sentences = [f"The {rng.choice(THINGS)} in {rng.choice(PLACES)} recorded "
                     f"{rng.randint(1, 9999)} visitors on day {n}."]
        for _ in range(rng.randint(0, 4)):
            sentences.append(" ".join(rng.choice(PLACES + THINGS) for _ in
                                      range(rng.randint(3, 40))).capitalize() + ".")
        out.append(" ".join(sentences))
    return "\n\n".join(out) + "\n"


def generation_files(index: Path) -> dict[str, bytes]:
    """Every file of the live generation, the manifest without its time and date."""
    gen = store.current_generation(index)
    out = {}
    for path in sorted(gen.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name == "manifest.json":
                manifest = json.loads(data)
                manifest.pop("built_at", None)
                manifest.pop("build_seconds", None)
                data = json.dumps(manifest, sort_keys=True).encode()
            out[str(path.relative_to(gen))] = data
    return out


def whole_file_vectors(model, doc) -> tuple[np.ndarray, np.ndarray]:
    """The build's vectors as it made them before it was streamed: every chunk of the
    file embedded in one call, the pooled rows added up per sentence, normalised."""
    count = token_counter(CONFIG.encoding)
    sentences = sentences_of(doc, CONFIG.sentence_max_tokens, count)
    chunks = chunk_sentences(doc, sentences, CONFIG.chunk_tokens, CONFIG.chunk_overlap, count)
    spans = [[(sentences[i].start - c.start, sentences[i].end - c.start)
              for i in range(c.first, c.last + 1)] for c in chunks]
    chunk_vectors, pooled = model.encode_spans([c.text for c in chunks], spans, 8, False)
    vectors = np.zeros((len(sentences), model.dim), dtype=np.float32)
    for c, rows in zip(chunks, pooled, strict=True):
        np.add.at(vectors, list(range(c.first, c.last + 1)), rows)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    assert (norms > 1e-6).all()  # no sentence embedded alone in this text
    vectors /= np.maximum(norms, 1e-12)
    return chunk_vectors, vectors


def test_a_file_in_many_parts_gives_the_whole_file_build(tmp_path, model, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "long.txt").write_text("Visitors\n\n" + article(60), encoding="utf-8")
    (corpus / "short.txt").write_text("A bridge\n\nThe bridge opened on Monday. It cost "
                                      "nine million euros.\n", encoding="utf-8")
    calls = []
    encode_spans = model.encode_spans

    def counted(texts, *args, **kwargs):
        calls.append(len(texts))
        return encode_spans(texts, *args, **kwargs)

    monkeypatch.setattr(model, "encode_spans", counted)
    built = {}
    for part in (10_000, 7, 1):
        monkeypatch.setattr(parts, "PART_CHUNKS", part)
        calls.clear()
        report = build_index(corpus, tmp_path / f"index-{part}", CONFIG, lambda: model)
        assert max(calls) <= part
        built[part] = generation_files(tmp_path / f"index-{part}")
    assert report.chunks > 20 and len(calls) == report.chunks  # one part per chunk
    assert built[7] == built[10_000]
    assert built[1] == built[10_000]

    # and those are the vectors of the file embedded whole, as the build did before
    monkeypatch.setattr(model, "encode_spans", encode_spans)
    doc = read_document(corpus / "long.txt", "long.txt", file_sha256(corpus / "long.txt"))
    chunk_vectors, sentence_vectors = whole_file_vectors(model, doc)
    data, _, _ = store.load_index(tmp_path / "index-7")
    rows = [i for i, s in enumerate(data.sentences) if s.source == "long.txt"]
    assert np.array_equal(data.sentence_vectors[rows], sentence_vectors)
    crows = [i for i, c in enumerate(data.chunks) if c.source == "long.txt"]
    assert np.array_equal(data.chunk_vectors[crows], chunk_vectors)


def test_rows_appended_make_the_file_np_save_makes(tmp_path):
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((1001, 24)).astype(np.float32)
    writer = RowWriter(tmp_path / "rows.npy")
    for lo in range(0, 1001, 97):
        writer.append(vectors[lo: lo + 97])
    writer.close(24)
    np.save(tmp_path / "saved.npy", vectors, allow_pickle=False)
    assert (tmp_path / "rows.npy").read_bytes() == (tmp_path / "saved.npy").read_bytes()
    empty = RowWriter(tmp_path / "empty.npy")
    empty.close(24)
    np.save(tmp_path / "empty-saved.npy", np.zeros((0, 24), np.float32))
    assert (tmp_path / "empty.npy").read_bytes() == (tmp_path / "empty-saved.npy").read_bytes()
    assert len(npy_header(10**12, 384)) == len(npy_header(0, 1))


class WordModel(Encoder):
    """A cheap stand-in for the model with its shape (384 values a token): a word is a
    token, its embedding a fixed row picked by the word's hash."""

    name, backend, dim, max_tokens, source = "words", "words", 384, 256, "words"
    table = np.random.default_rng(0).standard_normal((997, 384)).astype(np.float32)

    def _tokenize(self, texts):
        out = []
        for text in texts:
            words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)][: 254]
            ids = [101] + [sum(map(ord, text[a:b])) % 997 for a, b in words] + [102]
            out.append((ids, [(0, 0), *words, (0, 0)], [1] + [0] * len(words) + [1]))
        return out

    def _forward(self, ids, mask):
        return self.table[ids % 997]


def traced_peak(tmp_path: Path, paragraphs: int) -> tuple[int, int]:
    """(peak bytes traced while building an index of one file, the file's size)."""
    corpus = tmp_path / f"corpus-{paragraphs}"
    corpus.mkdir()
    (corpus / "big.txt").write_text(article(paragraphs, seed=paragraphs), encoding="utf-8")
    model = WordModel()
    tracemalloc.start()
    try:
        build_index(corpus, tmp_path / f"index-{paragraphs}", CONFIG, lambda: model)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, (corpus / "big.txt").stat().st_size


def test_build_memory_does_not_grow_with_the_file(tmp_path):
    traced_peak(tmp_path, 50)  # imports, caches
    small, small_size = traced_peak(tmp_path, 1_000)
    large, large_size = traced_peak(tmp_path, 5_000)
    # The file's text is held (a few copies while it is read) and its BM25 token ids;
    # the rest is one part: ~6 bytes traced per byte of text here. The build before it
    # was streamed grew by ~56 (every sentence and chunk, their vectors, pooled rows and
    # BM25 tokens held at once, and copies of the vectors).
    slope = (large - small) / (large_size - small_size)
    assert slope < 15, f"{slope:.1f} bytes traced per byte of text"
