"""The encoder backends: ONNX (fp32, int8) against torch, token offsets, late-chunking
pooling, and the export cache (reuse, repair, concurrency)."""

from __future__ import annotations

import json
import os
import shutil
import threading
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from embeddings import encoder as enc

MODEL = "all-MiniLM-L6-v2"
TEXTS = [
    "The Bank of England raised interest rates by a quarter of a point on Thursday.",
    "Café owners in Zürich said the naïve plan would cost them “thousands” of francs.",
    "Who won the 2004 Olympic marathon?",
    "short",
    "Line one.\n\n  Line two,\twith tabs   and   spaces!",
    "",
    " ".join(["Shares in the company rose sharply after the results were announced."] * 40),
]


@pytest.fixture(scope="module")
def export_home(tmp_path_factory):
    """A QA_HOME holding one fp32 + int8 export, made once for this module."""
    home = tmp_path_factory.mktemp("encoder-home")
    old = os.environ.get("QA_HOME")
    os.environ["QA_HOME"] = str(home)
    try:
        enc.ensure_export(MODEL, "onnx-int8")
    finally:
        if old is None:
            os.environ.pop("QA_HOME", None)
        else:
            os.environ["QA_HOME"] = old
    return home


@pytest.fixture
def home(tmp_path, monkeypatch, export_home):
    """A private QA_HOME starting as a copy of the module's export."""
    target = tmp_path / "qa-home"
    shutil.copytree(export_home, target)
    monkeypatch.setenv("QA_HOME", str(target))
    return target


@pytest.fixture(scope="module")
def torch_encoder():
    return enc.load_encoder(MODEL, "torch")


@pytest.fixture(scope="module")
def onnx_encoders(export_home):
    old = os.environ.get("QA_HOME")
    os.environ["QA_HOME"] = str(export_home)
    try:
        out = {}
        for backend in ("onnx", "onnx-int8"):
            folder, meta = enc.ensure_export(MODEL, backend)
            out[backend] = enc.OnnxEncoder(MODEL, backend, folder, meta)
        return out
    finally:
        if old is None:
            os.environ.pop("QA_HOME", None)
        else:
            os.environ["QA_HOME"] = old


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def _export_folder(home: Path) -> Path:
    (folder,) = [p for p in (home / "models").iterdir() if not p.name.startswith(".")]
    return folder


# --- agreement with torch -----------------------------------------------------------------


@pytest.mark.parametrize("backend, floor", [("onnx", 0.99), ("onnx-int8", 0.95)])
def test_onnx_vectors_agree_with_torch(torch_encoder, onnx_encoders, backend, floor):
    reference = torch_encoder.encode(TEXTS)
    vectors = onnx_encoders[backend].encode(TEXTS)
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert _cos(vectors, reference).min() > floor


# The stated tolerance of the int8 encoder against fp32: every vector within cosine 0.98,
# on average 0.99 (measured on 123 seeds sentences and questions: min 0.987, mean 0.993).
INT8_MIN_COSINE, INT8_MEAN_COSINE = 0.98, 0.99


def test_int8_matches_fp32_within_the_stated_tolerance(onnx_encoders):
    texts = [t for t in TEXTS if t] + [
        "Does the US support Taiwan independence?",
        "Chinese Defense Minister Li Shangfu has declined to meet US counterpart Lloyd Austin.",
        "It cost 38 million euros.", "Who did Blinken meet in Beijing?"]
    cos = _cos(onnx_encoders["onnx-int8"].encode(texts), onnx_encoders["onnx"].encode(texts))
    assert cos.min() >= INT8_MIN_COSINE and cos.mean() >= INT8_MEAN_COSINE, cos


def test_int8_weights_fit_in_7_bits_so_every_cpu_computes_the_same(export_home):
    """Full 8-bit weights saturate AVX2's integer kernel (see test_int8_kernels.py)."""
    (model,) = export_home.glob("models/*/model-int8.onnx")
    assert 32 < enc.int8_weight_range(model) <= 64


def test_fp32_onnx_is_numerically_torch(torch_encoder, onnx_encoders):
    assert _cos(onnx_encoders["onnx"].encode(TEXTS), torch_encoder.encode(TEXTS)).min() > 0.9999


def test_module_functions_accept_an_encoder(torch_encoder, onnx_encoders, model):
    onnx = onnx_encoders["onnx"]
    assert enc.model_info(onnx) == enc.model_info(model) == (384, 256)
    assert enc.count_model_tokens(onnx, TEXTS) == enc.count_model_tokens(model, TEXTS)[:6] + [
        256]  # the long text is truncated to the model's limit by the encoder
    got = enc.encode(onnx, TEXTS[:3], batch_size=2)
    assert _cos(got, enc.encode(torch_encoder, TEXTS[:3])).min() > 0.9999
    assert enc.encode(onnx, []).shape == (0, 384)
    assert onnx.get_embedding_dimension() == 384 and onnx.max_seq_length == 256


def test_batch_size_and_order_do_not_change_vectors(onnx_encoders):
    onnx = onnx_encoders["onnx"]
    whole = onnx.encode(TEXTS, batch_size=64)
    one_by_one = np.vstack([onnx.encode([t]) for t in TEXTS])
    assert _cos(whole, one_by_one).min() > 0.99999
    reversed_ = onnx.encode(TEXTS[::-1], batch_size=3)[::-1]
    assert _cos(whole, reversed_).min() > 0.99999


def test_int8_vectors_never_depend_on_batch_mates(onnx_encoders):
    """Dynamic quantization scales activations per batch, so the int8 backend runs one
    text per batch whatever batch_size says: a text's vector is a function of the text."""
    int8, fp32 = onnx_encoders["onnx-int8"], onnx_encoders["onnx"]
    alone = np.vstack([int8.encode([t]) for t in TEXTS])
    assert _cos(int8.encode(TEXTS, batch_size=1), alone).min() > 0.99999
    assert _cos(int8.encode(TEXTS, batch_size=64), alone).min() > 0.99999
    assert _cos(fp32.encode(TEXTS, batch_size=64),
                np.vstack([fp32.encode([t]) for t in TEXTS])).min() > 0.99999


# --- tokens, offsets, pooling ---------------------------------------------------------------


def _plain(text: str) -> str:
    """What BERT's uncased normaliser makes of a piece of text."""
    decomposed = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in decomposed if unicodedata.category(c) != "Mn")


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_token_offsets_are_exact(torch_encoder, onnx_encoders, backend):
    encoder = torch_encoder if backend == "torch" else onnx_encoders[backend]
    items = encoder.encode_with_tokens(TEXTS)
    assert len(items) == len(TEXTS)
    for text, item in zip(TEXTS, items, strict=True):
        n = len(item.ids)
        assert item.embeddings.shape == (n, 384) and item.embeddings.dtype == np.float32
        assert item.offsets.shape == (n, 2) and item.special.shape == (n,)
        assert item.special[0] and item.special[-1] and not item.special[1:-1].any()
        pieces = encoder.token_strings(item.ids)
        previous_end = 0
        for (start, end), piece, special in zip(item.offsets, pieces, item.special,
                                                 strict=True):
            if special:
                assert (start, end) == (0, 0)
                continue
            assert previous_end <= start < end <= len(text)
            if piece != "[UNK]":
                assert _plain(text[start:end]) == piece.removeprefix("##")
            previous_end = end
    # the long text was cut at the model's limit
    assert len(items[-1].ids) == encoder.max_tokens


@pytest.mark.parametrize("backend", ["torch", "onnx", "onnx-int8"])
def test_mean_of_all_token_embeddings_is_the_text_vector(torch_encoder, onnx_encoders,
                                                         backend):
    encoder = torch_encoder if backend == "torch" else onnx_encoders[backend]
    items = encoder.encode_with_tokens(TEXTS, batch_size=3)
    vectors = encoder.encode(TEXTS, batch_size=3)  # int8: same batches, same vectors
    for item, vector in zip(items, vectors, strict=True):
        mean = item.embeddings.mean(axis=0)
        mean /= np.linalg.norm(mean)
        np.testing.assert_allclose(mean, item.vector, atol=1e-5)
        assert float(item.vector @ vector) > 0.9999


def test_torch_and_onnx_token_embeddings_match(torch_encoder, onnx_encoders):
    for a, b in zip(torch_encoder.encode_with_tokens(TEXTS),
                    onnx_encoders["onnx"].encode_with_tokens(TEXTS), strict=True):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.offsets, b.offsets)
        np.testing.assert_allclose(a.embeddings, b.embeddings, atol=1e-3)


def test_pool_spans_late_chunking(onnx_encoders):
    onnx = onnx_encoders["onnx"]
    text = "Rates rose again. The pound fell sharply. Markets shrugged."
    spans = [(0, 17), (18, 41), (42, len(text)), (5, 5)]
    vectors, pooled = onnx.encode_spans([text, "x"], [spans, []])
    (item,) = onnx.encode_with_tokens([text])
    assert vectors.shape == (2, 384) and pooled[0].shape == (4, 384)
    assert pooled[1].shape == (0, 384)
    assert float(vectors[0] @ item.vector) > 0.99999
    for (lo, hi), got in zip(spans[:3], pooled[0][:3], strict=True):
        rows = ~item.special & (item.offsets[:, 0] >= lo) & (item.offsets[:, 0] < hi)
        assert rows.sum() >= 3
        want = item.embeddings[rows].mean(axis=0)
        np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-5)
    assert not pooled[0][3].any()  # an empty span gets a zero row
    # a sentence pooled in context is close to, not equal to, the sentence alone
    alone = onnx.encode([text[18:41]])[0]
    assert 0.5 < float(pooled[0][1] @ alone) < 0.999
    with pytest.raises(ValueError):
        onnx.encode_spans([text], [])


# --- the export cache -----------------------------------------------------------------------


def test_export_dir_names_model_and_weights_hash(home):
    folder = enc.export_dir(MODEL)
    assert folder.parent == home / "models"
    name, digest = folder.name.rsplit("-", 1)
    assert name == MODEL and len(digest) == 12
    meta = json.loads((folder / "encoder.json").read_text())
    assert meta["source_digest"] == digest and meta["dim"] == 384
    assert set(meta["files"]) == {"tokenizer.json", "model.onnx", "model-int8.onnx"}


def test_second_load_reuses_the_export(home, monkeypatch):
    folder = _export_folder(home)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    monkeypatch.setattr(enc, "_export", lambda *a, **k: pytest.fail("exported again"))
    for backend in ("onnx", "onnx-int8"):
        got, meta = enc.ensure_export(MODEL, backend)
        assert got == folder
        encoder = enc.OnnxEncoder(MODEL, backend, got, meta)
        assert encoder.encode(["hello"]).shape == (1, 384)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_load_encoder_caches_and_auto_picks_int8_onnx(home, monkeypatch):
    monkeypatch.setattr(enc, "_LOADED", {})
    monkeypatch.setattr(enc, "_export", lambda *a, **k: pytest.fail("exported again"))
    first = enc.load_encoder(MODEL, "onnx-int8")
    assert isinstance(first, enc.OnnxEncoder) and first.backend == "onnx-int8"
    assert enc.load_encoder(MODEL, "onnx-int8") is first
    auto = enc.load_encoder(MODEL)
    assert auto.backend == "onnx-int8" and auto.name == MODEL and auto is not first
    with pytest.raises(ValueError, match="backend"):
        enc.load_encoder(MODEL, "tensorflow")


def test_garbled_model_file_is_reexported(home, onnx_encoders):
    folder = _export_folder(home)
    path = folder / "model.onnx"
    size = path.stat().st_size
    with open(path, "r+b") as f:  # same size, damaged content
        f.seek(size // 2)
        f.write(b"\0garbage\0" * 100)
    got, meta = enc.ensure_export(MODEL, "onnx")
    assert enc._file_ok(got, meta, "model.onnx")
    encoder = enc.OnnxEncoder(MODEL, "onnx", got, meta)
    want = onnx_encoders["onnx"].encode(TEXTS[:3])
    assert _cos(encoder.encode(TEXTS[:3]), want).min() > 0.9999
    # re-exporting fp32 drops the int8 file's record: it derives from the fp32 one
    assert "model-int8.onnx" not in meta["files"]
    got, meta = enc.ensure_export(MODEL, "onnx-int8")
    assert enc._file_ok(got, meta, "model-int8.onnx")


def test_missing_files_are_reexported(home, monkeypatch):
    folder = _export_folder(home)
    fp32_stamp = (folder / "model.onnx").stat().st_mtime_ns
    (folder / "model-int8.onnx").unlink()
    (folder / "tokenizer.json").write_text("{not json")
    calls = []
    real = enc._export_fp32
    monkeypatch.setattr(enc, "_export_fp32", lambda *a: calls.append(a) or real(*a))
    got, meta = enc.ensure_export(MODEL, "onnx-int8")
    assert calls == []  # the intact fp32 model was kept: only int8 and the tokenizer redone
    assert (folder / "model.onnx").stat().st_mtime_ns == fp32_stamp
    assert enc._file_ok(got, meta, "model-int8.onnx") and enc._file_ok(got, meta,
                                                                       "tokenizer.json")
    assert enc.OnnxEncoder(MODEL, "onnx-int8", got, meta).encode(["hi"]).shape == (1, 384)


def test_garbled_metadata_means_a_fresh_export(home):
    folder = _export_folder(home)
    (folder / "encoder.json").write_text("garbage")
    got, meta = enc.ensure_export(MODEL, "onnx")
    assert got == folder and enc._file_ok(folder, meta, "model.onnx")
    assert json.loads((folder / "encoder.json").read_text())["format"] == enc.EXPORT_FORMAT
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_exports_export_once(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_HOME", str(tmp_path))
    calls = []
    real = enc._export
    monkeypatch.setattr(enc, "_export", lambda *a: calls.append(1) or real(*a))
    results, errors = [], []

    def work():
        try:
            results.append(enc.ensure_export(MODEL, "onnx"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and len(calls) == 1
    folder = results[0][0]
    assert results[1][0] == folder and enc._file_ok(folder, results[1][1], "model.onnx")
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_changed_weights_get_a_new_export_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    source = Path(enc.model_folder(MODEL))
    copy = tmp_path / "my-model"
    shutil.copytree(source, copy)
    first = enc.export_dir(str(copy))
    assert first.name.startswith("my-model-")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert enc.export_dir(str(copy)) != first


def test_unsupported_pipeline_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    folder = tmp_path / "cls-model"
    (folder / "1_Pooling").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling",
         "type": "sentence_transformers.models.Pooling"}]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    with pytest.raises(ValueError, match="mean pooling"):
        enc.ensure_export(str(folder), "onnx")
