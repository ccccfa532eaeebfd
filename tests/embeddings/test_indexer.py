"""embeddings/indexer.py: incremental builds with the real model and a real FAISS index."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings import indexer, store
from embeddings.errors import BadInput
from embeddings.indexer import IndexConfig, build_index, survey
from support import write_corpus

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
    """Each chunk goes through the model once; its sentences are pooled from it."""
    data, _, _ = store.load_index(index)
    return next(d for d in data.documents if d.source == source).chunks


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
    with pytest.raises(BadInput, match="no readable documents"):
        _build(tmp_path / "empty", tmp_path / "i1", model)
    with pytest.raises(BadInput, match="does not exist"):
        _build(tmp_path / "nope", tmp_path / "i2", model)
    with pytest.raises(BadInput, match="does not exist"):
        indexer.staleness(tmp_path / "nope", tmp_path / "i2", IndexConfig(model="m"))


def test_damaged_index_is_rebuilt_by_the_next_build(tmp_path, model):
    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    index = tmp_path / "index"
    _build(corpus, index, model)
    gen = store.current_generation(index)
    (gen / "sentence_vectors.npy").write_bytes(b"junk")
    report = _build(corpus, index, model)
    assert report.wrote and "unusable" in report.rebuilt
    assert set(report.added) == set(ARTICLES)  # everything re-embedded, nothing reused
    data, _, _ = store.load_index(index)  # the new generation loads
    assert data.path != gen and not gen.exists()
    assert {d.source for d in data.documents} == set(ARTICLES)
    assert data.sentence_vectors.shape == (len(data.sentences), model.dim)


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


def test_sentence_vectors_are_pooled_from_every_chunk_that_holds_them(tmp_path, model):
    text = " ".join(f"Sentence {n} says the ferry to island {n} left at {n} o'clock."
                    for n in range(12))
    corpus = write_corpus(tmp_path / "corpus", {"ferries.txt": text})
    index = tmp_path / "index"
    config = IndexConfig(model="all-MiniLM-L6-v2", chunk_tokens=64, chunk_overlap=40)
    report = build_index(corpus, index, config, lambda: model)
    data, _, _ = store.load_index(index)
    assert report.embedded == len(data.chunks) > 2  # one model pass per chunk, no more
    spans = [[(s.start - c.start, s.end - c.start)
              for s in data.sentences[c.first : c.last + 1]] for c in data.chunks]
    chunk_vectors, pooled = model.encode_spans([c.text for c in data.chunks], spans)
    np.testing.assert_allclose(data.chunk_vectors, chunk_vectors, atol=1e-5)
    expected = np.zeros_like(data.sentence_vectors)
    for c, rows in zip(data.chunks, pooled, strict=True):
        expected[c.first : c.last + 1] += rows
    shared = {i for c in data.chunks for i in range(c.first, c.last + 1)
              if sum(d.first <= i <= d.last for d in data.chunks) > 1}
    assert shared  # the overlap puts some sentences in two chunks
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(data.sentence_vectors, expected, atol=1e-5)
    assert data.manifest["backend"] == model.backend
    assert data.manifest["encoder"] == "auto"


def test_a_paragraph_two_articles_share_is_embedded_once(tmp_path, model):
    shared = "The council approved the new tram line on Monday."
    corpus = write_corpus(tmp_path / "corpus", {
        "a.txt": f"Trams return to Leeds.\n\n{shared}", "b.txt": f"Leeds votes.\n\n{shared}"})
    config = IndexConfig(model="all-MiniLM-L6-v2", chunk_tokens=12, chunk_overlap=0)
    report = build_index(corpus, tmp_path / "index", config, lambda: model)
    data, _, _ = store.load_index(tmp_path / "index")
    texts = [c.text for c in data.chunks]
    assert len(texts) == 4 and texts.count(shared) == 2
    assert report.embedded == 3  # texts sent to the model: the shared one once
    twice = [i for i, t in enumerate(texts) if t == shared]
    np.testing.assert_array_equal(data.chunk_vectors[twice[0]], data.chunk_vectors[twice[1]])


def test_sentences_past_the_model_input_limit_are_embedded_on_their_own(tmp_path, model):
    text = " ".join(f"Item {n}: the lighthouse keeper logged {n} ships." for n in range(60))
    corpus = write_corpus(tmp_path / "corpus", {"log.txt": text})
    config = IndexConfig(model="all-MiniLM-L6-v2", chunk_tokens=1000, chunk_overlap=0)
    report = build_index(corpus, tmp_path / "index", config, lambda: model)
    data, _, _ = store.load_index(tmp_path / "index")
    assert len(data.chunks) == 1 and model.count_tokens([text])[0] == model.max_tokens
    cut = report.embedded - 1  # sentences the one chunk's 256 model tokens don't reach
    assert 0 < cut < len(data.sentences)
    last = data.sentences[-1]
    np.testing.assert_allclose(data.sentence_vectors[-1], model.encode([last.text])[0],
                               atol=1e-5)
    # unit vectors rounded to the 2**-11 grid: norms within sqrt(384) * 2**-12
    np.testing.assert_allclose(np.linalg.norm(data.sentence_vectors, axis=1), 1.0, atol=5e-3)


def test_a_model_without_token_access_embeds_sentences_on_their_own(tmp_path, model):
    class Plain:  # not an Encoder: encode() and a dimension only
        dim = model.dim

        def encode(self, texts, batch_size=32):
            return model.encode(list(texts), batch_size)

    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    report = build_index(corpus, tmp_path / "index", IndexConfig(model="all-MiniLM-L6-v2"),
                         Plain)
    data, _, _ = store.load_index(tmp_path / "index")
    assert report.embedded == len(data.chunks) + len(data.sentences)
    np.testing.assert_allclose(data.sentence_vectors,
                               model.encode([s.text for s in data.sentences]), atol=1e-5)


def test_another_encoder_backend_rebuilds_with_a_reason(tmp_path, model):
    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    index = tmp_path / "index"
    _build(corpus, index, model)
    report = build_index(corpus, index, IndexConfig(model="all-MiniLM-L6-v2",
                                                    encoder="onnx-int8"), lambda: model)
    assert report.rebuilt == "encoder changed: auto -> onnx-int8"


def test_an_index_from_an_older_int8_export_rebuilds_with_a_reason():
    """An export format bump changes the int8 vectors: old indexes are rebuilt once."""
    config = IndexConfig(model="all-MiniLM-L6-v2")
    manifest = store.make_manifest(config.model, 384, config.chunker(), [], 0, 0, 0.0,
                                   encoder=config.encoder, backend="onnx-int8",
                                   encoder_format=indexer.EXPORT_FORMAT - 1)
    assert indexer._mismatch(manifest, config, None) == (
        f"the int8 encoder's export changed (format {indexer.EXPORT_FORMAT - 1} -> "
        f"{indexer.EXPORT_FORMAT})")
    manifest["encoder_format"] = indexer.EXPORT_FORMAT
    assert indexer._mismatch(manifest, config, None) is None


def test_a_survey_lists_and_hashes_once_for_the_check_and_the_build(tmp_path, model,
                                                                    monkeypatch):
    import hashlib

    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    index = tmp_path / "index"
    config = IndexConfig(model="all-MiniLM-L6-v2")
    calls = {"list": 0, "hash": 0}
    real_list, real_hash = indexer.corpus_files, indexer.file_sha256
    monkeypatch.setattr(indexer, "corpus_files", lambda *a: calls.update(
        list=calls["list"] + 1) or real_list(*a))
    monkeypatch.setattr(indexer, "file_sha256", lambda p: calls.update(
        hash=calls["hash"] + 1) or real_hash(p))
    first = survey(corpus, index, config)
    assert first.reason == "no index yet" and first.generation is None
    assert [s for _, s in first.files] == sorted(ARTICLES)
    assert first.hashes == {s: hashlib.sha256((corpus / s).read_bytes()).hexdigest()
                            for s in ARTICLES}
    assert calls == {"list": 1, "hash": 3}
    with monkeypatch.context() as m:  # reading the new files hashes nothing either
        m.setattr("embeddings.documents.hashlib", None)
        report = build_index(corpus, index, config, lambda: model, survey=first)
    assert report.wrote and set(report.added) == set(ARTICLES)
    assert calls == {"list": 1, "hash": 3}
    data, _, _ = store.load_index(index)
    assert {d.source: d.sha256 for d in data.documents} == first.hashes
    again = survey(corpus, index, config)
    assert again.reason is None and again.generation == data.path
    assert again.manifest == data.manifest
    assert indexer.staleness(corpus, index, config) is None
    report = build_index(corpus, index, config, lambda: model, survey=again)
    assert not report.wrote and calls == {"list": 3, "hash": 9}


def test_a_survey_of_other_settings_is_refused(tmp_path, model):
    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    config = IndexConfig(model="all-MiniLM-L6-v2")
    taken = survey(corpus, tmp_path / "index", config)
    with pytest.raises(ValueError, match="survey"):
        build_index(corpus, tmp_path / "index", IndexConfig(model="all-MiniLM-L6-v2",
                                                            chunk_tokens=64), lambda: model,
                    survey=taken)
    with pytest.raises(ValueError, match="survey"):
        build_index(corpus, tmp_path / "other", config, lambda: model, survey=taken)


def test_a_generation_switched_after_the_survey_is_checked_again(tmp_path, model):
    """Another build between the survey and this one: its manifest decides, not the
    survey's (here it has other chunker settings, so everything is rebuilt)."""
    corpus = write_corpus(tmp_path / "corpus", ARTICLES)
    index = tmp_path / "index"
    config = IndexConfig(model="all-MiniLM-L6-v2")
    _build(corpus, index, model)
    taken = survey(corpus, index, config)
    assert taken.reason is None
    other = IndexConfig(model="all-MiniLM-L6-v2", chunk_tokens=64, chunk_overlap=8)
    build_index(corpus, index, other, lambda: model)
    report = build_index(corpus, index, config, lambda: model, survey=taken)
    assert report.wrote and report.rebuilt == "chunker settings changed"
    data, _, _ = store.load_index(index)
    assert data.manifest["chunker"] == config.chunker()


def test_a_skipped_file_is_remembered_until_it_changes(tmp_path, model, caplog):
    """A scan or an encrypted PDF is warned about once, not read again by every check."""
    import logging

    import made_files as made

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The lighthouse was built in 1872.", encoding="utf-8")
    (corpus / "scan.pdf").write_bytes(made.scanned_pdf())
    index = tmp_path / "i"
    config = IndexConfig(model="all-MiniLM-L6-v2")
    with caplog.at_level(logging.WARNING):
        first = _build(corpus, index, model)
    assert first.skipped == 1
    assert sum("scan.pdf: skipped" in r.getMessage() for r in caplog.records) == 1
    assert store.read_manifest(index)["skipped"] == {
        "scan.pdf": indexer.file_sha256(corpus / "scan.pdf")}
    assert survey(corpus, index, config).reason is None  # nothing to do
    caplog.clear()
    (corpus / "b.txt").write_text("The ferry leaves at noon.", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        second = _build(corpus, index, model)
    assert second.added == ("b.txt",) and second.skipped == 1
    assert not any("scan.pdf" in r.getMessage() for r in caplog.records)  # not re-read
    (corpus / "scan.pdf").write_bytes(made.harbour_report())  # now it has text
    third = _build(corpus, index, model)
    assert third.added == ("scan.pdf",) and third.skipped == 0
    assert "skipped" not in store.read_manifest(index)


def test_the_extracted_text_is_kept_for_every_file(tmp_path, model):
    import made_files as made

    corpus = tmp_path / "c"
    corpus.mkdir()
    (corpus / "a.txt").write_text("The lighthouse was built in 1872.", encoding="utf-8")
    (corpus / "r.pdf").write_bytes(made.harbour_report())
    index = tmp_path / "i"
    _build(corpus, index, model)
    texts = store.read_texts(store.current_generation(index))
    assert texts["a.txt"] == "The lighthouse was built in 1872."
    assert texts["r.pdf"].startswith("The year in review\n\n")
    data, _, _ = store.load_index(index)
    for s in data.sentences:
        assert texts[s.source][s.start:s.end] == s.text
    # an update that keeps r.pdf carries its text over
    (corpus / "b.txt").write_text("The ferry leaves at noon.", encoding="utf-8")
    _build(corpus, index, model)
    assert store.read_texts(store.current_generation(index))["r.pdf"] == texts["r.pdf"]
