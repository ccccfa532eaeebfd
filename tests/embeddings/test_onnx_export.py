"""embeddings/onnx_export.py and onnx_convert.py: the export cache (naming, reuse, repair,
concurrency), the int8 file's 7-bit weights, and export failures reported with their fix."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from embeddings import files
from embeddings import onnx_export as ox
from embeddings.encoder import OnnxEncoder
from embeddings.errors import Unusable
from embeddings.onnx_convert import int8_weight_range

MODEL = "all-MiniLM-L6-v2"
TEXTS = ["The Bank of England raised interest rates by a quarter of a point on Thursday.",
         "Who won the 2004 Olympic marathon?", "short"]


@pytest.fixture(scope="module")
def export_home(tmp_path_factory):
    """A QA_HOME holding one fp32 + int8 export: a copy of the session's (made once, in
    the session's QA_HOME, if no test made it yet)."""
    folder, _ = ox.ensure_export(MODEL, "onnx-int8")
    home = tmp_path_factory.mktemp("export-home")
    shutil.copytree(folder, home / "models" / folder.name)
    digests = folder.parent / ".digests"
    if digests.is_dir():
        shutil.copytree(digests, home / "models" / ".digests")
    return home


@pytest.fixture
def home(tmp_path, monkeypatch, export_home):
    """A private QA_HOME starting as a copy of the module's export."""
    target = tmp_path / "qa-home"
    shutil.copytree(export_home, target)
    monkeypatch.setenv("QA_HOME", str(target))
    return target


def _export_folder(home: Path) -> Path:
    (folder,) = [p for p in (home / "models").iterdir() if not p.name.startswith(".")]
    return folder


def _cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosines row by row (vectors on the 2**-11 grid have norms 1 only to ~1e-4)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_export_dir_names_model_and_weights_hash(home):
    folder = ox.export_dir(MODEL)
    assert folder.parent == home / "models"
    name, digest = folder.name.rsplit("-", 1)
    assert name == MODEL and len(digest) == 12
    assert digest == ox.source_digest(ox.model_folder(MODEL))
    meta = json.loads((folder / "encoder.json").read_text())
    assert meta["source_digest"] == digest and meta["dim"] == 384
    assert meta["format"] == ox.EXPORT_FORMAT
    assert set(meta["files"]) == {"tokenizer.json", "model.onnx", "model-int8.onnx"}
    for name, record in meta["files"].items():
        assert record == {"size": (folder / name).stat().st_size,
                          "sha256": files.sha256_file(folder / name)}


def test_int8_weights_fit_in_7_bits_so_every_cpu_computes_the_same(export_home):
    """Full 8-bit weights saturate AVX2's integer kernel (see test_int8_kernels.py)."""
    (model,) = export_home.glob("models/*/model-int8.onnx")
    assert 32 < int8_weight_range(model) <= 64
    meta = json.loads((model.parent / "encoder.json").read_text())
    assert meta["checks"]["int8_weight_range"] == int8_weight_range(model)


def test_residual_layer_norms_stay_unfused_in_files_and_sessions(export_home, tmp_path):
    """SkipLayerNormalization is slower on the CPU than the Add + LayerNormalization it
    replaces (benchmarks/onnx_ops.py): neither the export nor a loaded session has it."""
    import onnx
    import onnxruntime as ort

    from embeddings.onnx_convert import open_session

    paths = sorted(export_home.glob("models/*/model*.onnx"))
    assert [p.name for p in paths] == ["model-int8.onnx", "model.onnx"]
    # the other fusions are still made (a failing fusion step falls back to the plain
    # export, which has no SkipLayerNormalization either)
    assert json.loads((paths[0].parent / "encoder.json").read_text())["fused"] is True
    for path in paths:
        kinds = {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
        assert "LayerNormalization" in kinds and "SkipLayerNormalization" not in kinds, path
        assert kinds & {"Attention", "QAttention"} and kinds & {"BiasGelu"}, path
        seen = {}
        for label, opener in (("ours", open_session), ("default", None)):
            options = ort.SessionOptions()
            options.log_severity_level = 3
            options.optimized_model_filepath = str(tmp_path / f"{label}-{path.name}")
            if opener:
                opener(path, options)
            else:
                ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            graph = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
            seen[label] = {n.op_type for n in graph.node}
        assert "SkipLayerNormalization" not in seen["ours"], path
        # what open_session prevents: onnxruntime's default fuses them back at load
        assert "SkipLayerNormalization" in seen["default"], path


def test_second_load_reuses_the_export(home, monkeypatch):
    folder = _export_folder(home)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    monkeypatch.setattr(ox, "_export", lambda *a, **k: pytest.fail("exported again"))
    for backend in ("onnx", "onnx-int8"):
        got, meta = ox.ensure_export(MODEL, backend)
        assert got == folder
        encoder = OnnxEncoder(MODEL, backend, got, meta)
        assert encoder.encode(["hello"]).shape == (1, 384)
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps


def test_garbled_model_file_is_reexported(home):
    folder = _export_folder(home)
    _, meta = ox.ensure_export(MODEL, "onnx")
    want = OnnxEncoder(MODEL, "onnx", folder, meta).encode(TEXTS)
    path = folder / "model.onnx"
    size = path.stat().st_size
    with open(path, "r+b") as f:  # same size, damaged content
        f.seek(size // 2)
        f.write(b"\0garbage\0" * 100)
    got, meta = ox.ensure_export(MODEL, "onnx")
    assert ox._file_ok(got, meta, "model.onnx")
    encoder = OnnxEncoder(MODEL, "onnx", got, meta)
    assert _cos(encoder.encode(TEXTS), want).min() > 0.9999
    # re-exporting fp32 drops the int8 file's record: it derives from the fp32 one
    assert "model-int8.onnx" not in meta["files"]
    got, meta = ox.ensure_export(MODEL, "onnx-int8")
    assert ox._file_ok(got, meta, "model-int8.onnx")


def test_missing_files_are_reexported(home, monkeypatch):
    folder = _export_folder(home)
    fp32_stamp = (folder / "model.onnx").stat().st_mtime_ns
    (folder / "model-int8.onnx").unlink()
    (folder / "tokenizer.json").write_text("{not json")
    calls = []
    real = ox.export_fp32
    monkeypatch.setattr(ox, "export_fp32", lambda *a: calls.append(a) or real(*a))
    got, meta = ox.ensure_export(MODEL, "onnx-int8")
    assert calls == []  # the intact fp32 model was kept: only int8 and the tokenizer redone
    assert (folder / "model.onnx").stat().st_mtime_ns == fp32_stamp
    assert ox._file_ok(got, meta, "model-int8.onnx") and ox._file_ok(got, meta,
                                                                     "tokenizer.json")
    assert OnnxEncoder(MODEL, "onnx-int8", got, meta).encode(["hi"]).shape == (1, 384)


def test_garbled_metadata_means_a_fresh_export(home):
    folder = _export_folder(home)
    (folder / "encoder.json").write_text("garbage")
    got, meta = ox.ensure_export(MODEL, "onnx")
    assert got == folder and ox._file_ok(folder, meta, "model.onnx")
    assert json.loads((folder / "encoder.json").read_text())["format"] == ox.EXPORT_FORMAT
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_concurrent_exports_export_once(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_HOME", str(tmp_path))
    calls = []
    real = ox._export
    monkeypatch.setattr(ox, "_export", lambda *a: calls.append(1) or real(*a))
    results, errors = [], []

    def work():
        try:
            results.append(ox.ensure_export(MODEL, "onnx"))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2 and len(calls) == 1
    folder = results[0][0]
    assert results[1][0] == folder and ox._file_ok(folder, results[1][1], "model.onnx")
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_changed_weights_get_a_new_export_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    source = Path(ox.model_folder(MODEL))
    copy = tmp_path / "my-model"
    shutil.copytree(source, copy)
    first = ox.export_dir(str(copy))
    assert first.name.startswith("my-model-")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert ox.export_dir(str(copy)) != first


def test_unsupported_pipeline_is_refused_with_the_fix(tmp_path, monkeypatch):
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
    with pytest.raises(Unusable, match="mean pooling.*QA_ENCODER=torch"):
        ox.ensure_export(str(folder), "onnx")


def test_a_failing_export_is_unusable_and_leaves_the_cache_clean(home, monkeypatch):
    folder = _export_folder(home)
    (folder / "model.onnx").unlink()

    def boom(*args):
        raise RuntimeError("torch.onnx.export crashed")

    monkeypatch.setattr(ox, "export_fp32", boom)
    with pytest.raises(Unusable, match="crashed.*QA_ENCODER=torch"):
        ox.ensure_export(MODEL, "onnx")
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_transformer_folder(tmp_path):
    source = ox.model_folder(MODEL)
    modules = json.loads((source / "modules.json").read_text())
    assert ox.transformer_folder(source) == source / (modules[0].get("path") or "")
    assert ox.transformer_folder(tmp_path) == tmp_path  # a plain transformers folder


def test_quiet_logging_drops_records_and_restores(caplog):
    caplog.set_level(logging.INFO)
    log = logging.getLogger("embeddings.test")
    with ox.quiet_logging(logging.INFO):
        log.info("hidden")
        log.warning("shown")
    log.info("shown again")
    assert [r.getMessage() for r in caplog.records] == ["shown", "shown again"]
