"""embeddings/indexer.py: incremental builds with the real model and a real FAISS index."""

from __future__ import annotations

import pytest
from conftest import write_corpus

from embeddings import store
from embeddings.indexer import IndexConfig, build_index

ARTICLES = {
    "harbor.txt": "The harbor in Valparaiso reopened on Tuesday after the storm.\n\n"
                  "Port officials said cranes were repaired within two days.",
    "orchard.txt": "Apple growers in Nagano reported a record harvest this autumn.\n\n"
                   "Farmers credited the cool nights for the crisp fruit.",
    "glacier.md": "# Glacier retreat\n\nThe Aletsch glacier lost forty metres of length "
                  "last year, researchers said.",
}


def _build(corpus, index, model, **kw):
    return build_index(corpus, index, IndexConfig(model="all-MiniLM-L6-v2"), lambda: model,
                       **kw)


def _texts_embedded_for(index, source):
    data, _, _ = store.load_index(index)
    rec = next(d for d in data.documents if d.source == source)
    return rec.chunks + rec.sentences


def test_add_change_delete_only_reembeds_what_changed(tmp_path, model):
    from qa.engine import Assistant
    from qa.settings import Settings

    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    index = tmp_path / "index"
    first = _build(corpus, index, model)
    assert first.wrote and set(first.added) == set(ARTICLES) and first.files == 3
    assert first.embedded == sum(_texts_embedded_for(index, s) for s in ARTICLES)

    again = _build(corpus, index, model)
    assert not again.wrote and again.embedded == 0  # nothing changed, nothing written

    (corpus / "orchard.txt").write_text(
        "Apple growers in Nagano reported a poor harvest after hail in June.", encoding="utf-8")
    (corpus / "glacier.md").unlink()
    write_corpus(corpus, {"new/volcano.txt": "Mount Etna erupted on Sunday night, sending "
                                             "ash over Catania."})
    update = _build(corpus, index, model)
    assert update.changed == ("orchard.txt",)
    assert update.removed == ("glacier.md",)
    assert update.added == ("new/volcano.txt",)
    assert update.embedded == (_texts_embedded_for(index, "orchard.txt")
                               + _texts_embedded_for(index, "new/volcano.txt"))

    settings = Settings.load(env={}, corpus=corpus, index=index)
    assistant = Assistant.load(settings=settings)
    assert {d.source for d in assistant.index.data.documents} == {
        "harbor.txt", "orchard.txt", "new/volcano.txt"}
    answer = assistant.ask("What damaged the apple harvest in Nagano?")
    assert answer.answerable and "hail" in answer.answer
    assert answer.citations[0].source == "orchard.txt"
    glacier = assistant.ask("How much length did the Aletsch glacier lose?", abstain=False)
    assert all(c.source != "glacier.md" for c in glacier.citations)
    assert all(p.source != "glacier.md" for p in glacier.passages)
    volcano = assistant.ask("Which volcano erupted on Sunday?")
    assert volcano.citations[0].source == "new/volcano.txt" and "Etna" in volcano.answer


def test_changed_chunker_settings_rebuild_with_a_reason(tmp_path, model):
    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    index = tmp_path / "index"
    _build(corpus, index, model)
    report = build_index(corpus, index, IndexConfig(model="all-MiniLM-L6-v2", chunk_tokens=64,
                                                    chunk_overlap=8), lambda: model)
    assert report.rebuilt == "chunker settings changed" and report.wrote
    assert set(report.added) == set(ARTICLES)  # everything re-read and re-embedded
    data, _, _ = store.load_index(index)
    assert data.manifest["chunker"]["chunk_tokens"] == 64


def test_empty_and_missing_corpus_are_clear_errors(tmp_path, model):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no readable documents"):
        _build(tmp_path / "empty", tmp_path / "i1", model)
    with pytest.raises(ValueError, match="does not exist"):
        _build(tmp_path / "nope", tmp_path / "i2", model)


def test_damaged_index_is_rebuilt_by_the_next_build(tmp_path, model):
    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    index = tmp_path / "index"
    _build(corpus, index, model)
    gen = store.current_generation(index)
    (gen / "sentence_vectors.npy").write_bytes(b"junk")
    report = _build(corpus, index, model)
    assert report.wrote and "unusable" in report.rebuilt
    store.load_index(index)  # loads again


def test_loading_updates_a_stale_index_by_itself(tmp_path, model):
    from embeddings.indexer import staleness
    from qa.engine import Assistant
    from qa.settings import Settings

    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    settings = Settings.load(env={}, corpus=corpus, index=tmp_path / "index")
    config = settings.index_config()
    assert staleness(corpus, settings.index_dir, config) == "no index yet"
    Assistant.load(settings=settings)
    assert staleness(corpus, settings.index_dir, config) is None
    (corpus / "harbor.txt").write_text("The harbor in Valparaiso stayed closed all week.",
                                       encoding="utf-8")
    assert staleness(corpus, settings.index_dir, config) == "1 file(s) changed"
    answer = Assistant.load(settings=settings).ask("Is the harbor in Valparaiso open?")
    assert "stayed closed" in answer.answer
    other = settings.replace(chunk_tokens=64, chunk_overlap=8)
    assert staleness(corpus, settings.index_dir, other.index_config()) == (
        "chunker settings changed")
