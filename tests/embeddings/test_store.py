"""embeddings/store.py: the index folder format, atomic switch, damage detection, locking.

Vectors here are random: storage doesn't care what they mean (a fake encoder is fine)."""

from __future__ import annotations

import json
import multiprocessing
import os

import numpy as np
import pytest

from embeddings import generation, records, store
from embeddings.chunking import chunk_sentences, sentences_of, token_counter
from embeddings.documents import Document
from embeddings.errors import Busy, Unusable
from embeddings.lexical import BM25

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


def make_data(texts: dict[str, str], dim: int = 8, seed: int = 0) -> records.IndexData:
    rng = np.random.default_rng(seed)
    count = token_counter()
    docs, chunks, sentences = [], [], []
    for source, text in texts.items():
        doc = Document(source, text, source, None, ((0, len(text)),), f"sha-{source}")
        sents = sentences_of(doc, 96, count)
        base = len(sentences)
        cs = chunk_sentences(doc, sents, 40, 10, count)
        sentences.extend(sents)
        chunks.extend(c.__class__(c.source, c.start, c.end, c.text, c.first + base,
                                  c.last + base, c.tokens) for c in cs)
        docs.append(records.DocumentRecord(source, source, None, doc.sha256, len(text),
                                         len(cs), len(sents)))

    def unit(n):
        v = rng.normal(size=(n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    manifest = store.make_manifest("fake", dim, {"x": 1}, docs, len(chunks), len(sentences), 0.1)
    return records.IndexData(manifest, tuple(docs), tuple(chunks), tuple(sentences),
                           unit(len(chunks)), unit(len(sentences)))


def write(index_dir, data):
    with store.locked(index_dir):
        return generation.write_index(index_dir, data, BM25.build([c.text for c in data.chunks]))


def test_roundtrip_is_inspectable_and_exact(tmp_path):
    data = make_data({"a.txt": "Alpha one. Alpha two.", "b.txt": "Beta one. Beta two. Beta 3."})
    gen = write(tmp_path, data)
    assert (tmp_path / "current").resolve() == gen
    names = {p.name for p in gen.iterdir()}
    assert {"manifest.json", "documents.jsonl", "chunks.jsonl", "sentences.jsonl",
            "vectors.faiss", "sentence_vectors.npy", "bm25"} <= names
    assert not any(p.suffix == ".pkl" for p in gen.rglob("*"))
    manifest = json.loads((gen / "manifest.json").read_text())  # plain JSON
    assert manifest["counts"] == {"documents": 2, "chunks": len(data.chunks),
                                  "sentences": len(data.sentences)}
    assert manifest["files"] == {"a.txt": "sha-a.txt", "b.txt": "sha-b.txt"}
    assert manifest["format_version"] == store.FORMAT_VERSION
    rows = [json.loads(line) for line in (gen / "documents.jsonl").read_text().splitlines()]
    assert [records.DocumentRecord.from_row(r) for r in rows] == list(data.documents)
    loaded, bm25, vectors = store.load_index(tmp_path)
    assert loaded.manifest == manifest and loaded.documents == data.documents
    assert loaded.chunks == data.chunks and loaded.sentences == data.sentences
    assert np.allclose(loaded.chunk_vectors, data.chunk_vectors)
    assert np.allclose(loaded.sentence_vectors, data.sentence_vectors)
    assert vectors.ntotal == len(data.chunks)


def test_crash_mid_write_keeps_previous_index(tmp_path, monkeypatch):
    old = make_data({"a.txt": "Old text here."})
    write(tmp_path, old)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(BM25, "save", boom)
    with pytest.raises(OSError):
        write(tmp_path, make_data({"b.txt": "New text here."}))
    monkeypatch.undo()
    loaded, _, _ = store.load_index(tmp_path)
    assert [d.source for d in loaded.documents] == ["a.txt"]
    assert any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # the leftover
    write(tmp_path, make_data({"c.txt": "Newest text."}))
    gens = [p.name for p in tmp_path.iterdir() if p.name.startswith("gen-")]
    assert len(gens) == 1  # leftovers and the superseded generation are gone


@pytest.mark.parametrize("damage", ["truncate_faiss", "garble_chunks", "drop_sentences",
                                    "wrong_format", "garble_npy", "missing_manifest"])
def test_damaged_index_gives_a_clear_error(tmp_path, damage):
    gen = write(tmp_path, make_data({"a.txt": "One. Two. Three.", "b.txt": "Four. Five."}))
    if damage == "truncate_faiss":
        path = gen / "vectors.faiss"
        path.write_bytes(path.read_bytes()[:20])
    elif damage == "garble_chunks":
        (gen / "chunks.jsonl").write_text("{not json\n")
    elif damage == "drop_sentences":
        (gen / "sentences.jsonl").unlink()
    elif damage == "wrong_format":
        m = json.loads((gen / "manifest.json").read_text())
        m["format_version"] = 999
        (gen / "manifest.json").write_text(json.dumps(m))
    elif damage == "garble_npy":
        (gen / "sentence_vectors.npy").write_bytes(b"garbage")
    elif damage == "missing_manifest":
        (gen / "manifest.json").unlink()
    with pytest.raises(store.IndexUnusable, match="qa index"):
        store.load_index(tmp_path)


def test_no_index_yet(tmp_path):
    with pytest.raises(store.IndexUnusable, match="no index"):
        store.load_index(tmp_path / "nothing")
    assert store.read_manifest(tmp_path / "nothing") is None


def test_errors_are_of_their_kind():
    assert issubclass(store.IndexUnusable, Unusable)
    assert not issubclass(store.IndexUnusable, ValueError)  # not a bad input: exit 1 / 5xx
    assert issubclass(store.IndexBusy, Busy)


def _hold_lock(path, ready, release):
    with store.locked(path):
        ready.set()
        release.wait(10)


def test_second_writer_is_refused_with_a_message(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(tmp_path, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(store.IndexBusy, match=f"pid {holder.pid}"):
            with store.locked(tmp_path):
                pass
    finally:
        release.set()
        holder.join(10)
    with store.locked(tmp_path):  # free again
        assert os.path.exists(tmp_path / ".lock")


def test_small_indexes_search_exactly_and_big_ones_switch_to_ivf(tmp_path):
    import faiss

    small = make_data({"a.txt": "Alpha one. Alpha two."})
    write(tmp_path / "small", small)
    _, _, vectors = store.load_index(tmp_path / "small")
    assert isinstance(vectors, faiss.IndexFlatIP)
    assert store.read_manifest(tmp_path / "small")["vector_index"] == {"type": "flat"}

    text = " ".join(f"Line {n} is here." for n in range(3000))
    big = make_data({"long.txt": text})
    n = len(big.chunks)
    assert n > 256  # more than the smallest number of IVF lists
    with store.locked(tmp_path / "big"):
        generation.write_index(tmp_path / "big", big, BM25.build([c.text for c in big.chunks]),
                          approximate_above=n - 1)
    lists, probes = store.ivf_shape(n)
    assert store.read_manifest(tmp_path / "big")["vector_index"] == {
        "type": "ivf-flat", "lists": lists, "probes": probes}
    loaded, _, vectors = store.load_index(tmp_path / "big")
    assert isinstance(vectors, faiss.IndexIVFFlat) and vectors.nprobe == probes
    np.testing.assert_array_equal(loaded.chunk_vectors, big.chunk_vectors)
    _, ids = vectors.search(big.chunk_vectors[:50], 1)
    assert ids[:, 0].tolist() == list(range(50))  # each vector finds itself first


def test_ivf_shape_grows_with_the_collection():
    assert store.ivf_shape(100_001) == (1024, 16)
    assert store.ivf_shape(1_000_000) == (2048, 32)
    assert store.ivf_shape(10) == (256, 16)


def test_page_and_heading_of_an_offset():
    pdf = records.DocumentRecord("r.pdf", "R", None, "h", 300, 1, 1, pages=(0, 120, 250))
    assert [pdf.page(o) for o in (0, 119, 120, 249, 250, 299)] == [1, 1, 2, 2, 3, 3]
    assert pdf.heading(10) is None
    word = records.DocumentRecord("m.docx", "M", None, "h", 300, 1, 1,
                                headings=((0, "Title"), (40, "Budget"), (90, "Staff")))
    assert [word.heading(o) for o in (0, 39, 40, 89, 90, 299)] == [
        "Title", "Title", "Budget", "Budget", "Staff", "Staff"]
    assert word.page(10) is None
    # a text before the first heading stands under none
    late = records.DocumentRecord("m.docx", "M", None, "h", 300, 1, 1, headings=((50, "H"),))
    assert late.heading(49) is None and late.heading(50) == "H"


def test_texts_pages_and_headings_round_trip(tmp_path):
    data = make_data({"a.txt": "Alpha one. Alpha two.", "b.txt": "Beta one. Beta two."})
    docs = (data.documents[0].__class__(**{**data.documents[0].__dict__, "pages": (0, 11)}),
            data.documents[1].__class__(**{**data.documents[1].__dict__,
                                            "headings": ((0, "Beta"),)}))
    texts = {"a.txt": "Alpha one. Alpha two.", "b.txt": "Beta one. Beta two."}
    data = records.IndexData(data.manifest, docs, data.chunks, data.sentences,
                           data.chunk_vectors, data.sentence_vectors, texts=texts)
    gen = write(tmp_path, data)
    loaded, _, _ = store.load_index(tmp_path)
    assert loaded.documents == docs
    assert store.read_texts(gen) == texts
    assert store.read_texts(None) == {}
    (gen / store.TEXTS_FILE).write_text("{broken\n")
    with pytest.raises(store.IndexUnusable, match="texts.jsonl is damaged"):
        store.read_texts(gen)
