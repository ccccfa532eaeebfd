"""The ONNX export of a sentence-transformers model, and its cache.

`ensure_export(name, backend)` makes sure `$QA_HOME/models/<model name>-<12 hex of the
source weights>/` holds the tokenizer and the ONNX file of `backend` ("onnx": fp32,
attention/LayerNorm/GELU fused by onnxruntime's transformer optimizer where that keeps
the output; "onnx-int8": that file's weights dynamically quantized to int8), each checked
against torch on probe texts right after it is made. Every file is written under a
temporary name and renamed into place, an exclusive lock keeps two processes from
exporting at once (the second reuses the first's files), and `encoder.json` records each
file's size and SHA-256: a missing or damaged file is re-exported on the next load.
Exporting needs torch, transformers and onnx; `embeddings.encoder.OnnxEncoder` runs an
existing export with onnxruntime and tokenizers only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings import files
from embeddings.errors import BadInput, Unusable
from embeddings.pooling import mean_pool

log = logging.getLogger(__name__)

EXPORT_FORMAT = 2  # bump when the exported files change meaning: old caches are redone
# (2: int8 weights in 7 bits, the same integers on every x86-64 CPU)
MODEL_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}  # per backend
TOKENIZER_FILE = "tokenizer.json"
_META = "encoder.json"
_LOCK = ".export.lock"
# Probe texts checked against torch right after an export (padding, accents, length).
_PROBES = (
    "The quick brown fox jumps over the lazy dog.",
    "Café naïve résumé — “quoted” text, 3.14 and ünïcödé.",
    "Who won the 1998 FIFA World Cup, and where was the final played?",
    "short",
    " ".join(["Shares in the company rose sharply after the results were announced."] * 30),
)


# --- the model's folder -----------------------------------------------------------------


def model_folder(name: str) -> Path:
    """The local sentence-transformers folder of `name` (bundled, a folder, or a hub name
    already in the hub cache; a hub name not cached yet is downloaded)."""
    from embeddings.encoder import resolve_model

    target = resolve_model(name)
    if Path(target).is_dir():
        return Path(target)
    try:
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(target, local_files_only=True))
        except Exception:  # noqa: BLE001 - not cached: try the network once
            return Path(snapshot_download(target))
    except Exception as exc:  # noqa: BLE001
        raise BadInput(f"model {name!r} is not a local folder and could not be fetched "
                       f"({exc})") from exc


def _pipeline(source: Path) -> tuple[Path, int]:
    """(transformer folder, max_seq_length) of a Transformer -> mean Pooling -> [Normalize]
    sentence-transformers folder; ValueError for anything the ONNX path can't reproduce."""
    modules_file = source / "modules.json"
    if not modules_file.is_file():
        raise ValueError(f"{source} has no modules.json (not a sentence-transformers model)")
    modules = json.loads(modules_file.read_text())
    kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
    if kinds not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        raise ValueError(f"ONNX export supports Transformer+Pooling[+Normalize], not {kinds}")
    transformer = source / (modules[0].get("path") or "")
    pooling = json.loads((source / modules[1]["path"] / "config.json").read_text())
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"ONNX export supports mean pooling only, not {modes}")
    config = {}
    for candidate in (transformer / "sentence_bert_config.json",
                      source / "sentence_bert_config.json"):
        if candidate.is_file():
            config = json.loads(candidate.read_text())
            break
    if config.get("do_lower_case"):
        raise ValueError("ONNX export does not support do_lower_case models")
    if not (transformer / TOKENIZER_FILE).is_file():
        raise ValueError(f"{transformer} has no {TOKENIZER_FILE} (needs a fast tokenizer)")
    max_len = config.get("max_seq_length")
    if not max_len:
        tok_config = transformer / "tokenizer_config.json"
        max_len = (json.loads(tok_config.read_text()).get("model_max_length")
                   if tok_config.is_file() else None) or 512
        max_len = min(int(max_len), 512)
    return transformer, int(max_len)


def transformer_folder(source: Path) -> Path:
    """The transformer's own folder: the first module of a sentence-transformers folder,
    or `source` itself for a plain transformers folder."""
    modules_file = source / "modules.json"
    if modules_file.is_file():
        return source / (json.loads(modules_file.read_text())[0].get("path") or "")
    return source


def _source_files(source: Path) -> list[Path]:
    """The files whose content defines the model's vectors: weights and configs."""
    keep = re.compile(r".*\.(safetensors|bin|json|txt|model)$")
    skip = {"README.md", "data_config.json", "model.onnx"}
    out = []
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if (path.is_file() and keep.match(path.name) and path.name not in skip
                and not any(part.startswith(".") or part in ("onnx", "openvino")
                            for part in rel.parts)):
            out.append(path)
    return out


def source_digest(source: Path) -> str:
    """12 hex digits of a SHA-256 over the model folder's weights and configs.

    File hashes are remembered under $QA_HOME/models/.digests/ by (size, mtime), so a
    cold start reads the weights only when they changed.
    """
    source = Path(source).resolve()
    memo_file = (files.qa_home() / "models" / ".digests"
                 / f"{hashlib.sha1(str(source).encode()).hexdigest()[:16]}.json")
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    found, changed = {}, False
    for path in _source_files(source):
        st = path.stat()
        rel = path.relative_to(source).as_posix()
        known = memo.get(rel)
        if isinstance(known, list) and known[:2] == [st.st_size, st.st_mtime_ns]:
            found[rel] = known
        else:
            found[rel] = [st.st_size, st.st_mtime_ns, files.sha256_file(path)]
            changed = True
    if not found:
        raise BadInput(f"no model files in {source}")
    if changed or set(found) != set(memo):
        with contextlib.suppress(OSError):
            files.atomic_write(memo_file, json.dumps(found).encode())
    lines = "".join(f"{rel} {v[2]}\n" for rel, v in sorted(found.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def export_dir(name: str) -> Path:
    """`$QA_HOME/models/<model name>-<12 hex of the source weights>` for model `name`."""
    source = model_folder(name)
    label = Path(name.rstrip("/\\")).name if Path(name).expanduser().is_dir() else (
        name.rsplit("/", 1)[-1])
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.") or "model"
    return files.qa_home() / "models" / f"{label}-{source_digest(source)}"


# --- the cache ----------------------------------------------------------------------------


def _read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / _META).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        return None
    return meta


def _file_ok(folder: Path, meta: dict | None, filename: str) -> bool:
    """Is `filename` there with the size and SHA-256 that encoder.json records?"""
    if meta is None:
        return False
    want = meta.get("files", {}).get(filename)
    path = folder / filename
    try:
        if not want or path.stat().st_size != want["size"]:
            return False
        return files.sha256_file(path) == want["sha256"]
    except OSError:
        return False


def ensure_export(name: str, backend: str = "onnx") -> tuple[Path, dict]:
    """Make sure the ONNX file of `backend` ("onnx" or "onnx-int8") and the tokenizer are
    exported and intact; return (cache folder, encoder.json contents).

    Exports (or re-exports a missing or damaged file) under an exclusive lock; files
    appear by atomic rename, so readers never see half a file. Raises Unusable, naming
    the fix, when the model can't be exported (BadInput for a model that isn't there).
    """
    if backend not in MODEL_FILES:
        raise ValueError(f"not an ONNX backend: {backend!r}")
    folder = export_dir(name)
    needed = (TOKENIZER_FILE, MODEL_FILES[backend])
    meta = _read_meta(folder)
    if all(_file_ok(folder, meta, f) for f in needed):
        return folder, meta  # type: ignore[return-value]
    with files.locked(folder / _LOCK, wait=True):  # waits while another process exports
        meta = _read_meta(folder)  # another process may have finished it meanwhile
        if all(_file_ok(folder, meta, f) for f in needed):
            return folder, meta  # type: ignore[return-value]
        try:
            with quiet_logging(logging.INFO):  # onnxruntime's exporters log every node
                meta = _export(name, folder, meta, backend)
        except Exception as exc:  # noqa: BLE001 - any failure: one message with the fix
            raise Unusable(
                f"cannot export model {name!r} for the {backend} encoder ({exc}); run with "
                "the torch encoder instead (QA_ENCODER=torch)") from exc
    return folder, meta


@contextlib.contextmanager
def quiet_logging(level: int) -> Iterator[None]:
    """Drop log records at `level` and below for the duration (process-wide)."""
    previous = logging.root.manager.disable
    logging.disable(max(level, previous))
    try:
        yield
    finally:
        logging.disable(previous)


def _export(name: str, folder: Path, meta: dict | None, backend: str) -> dict:
    source = model_folder(name)
    transformer_dir, max_tokens = _pipeline(source)
    began = time.perf_counter()
    if meta is None:
        meta = {"format": EXPORT_FORMAT, "name": name, "source": str(source),
                "source_digest": source_digest(source), "max_tokens": max_tokens, "files": {}}
    records = meta["files"]
    if not _file_ok(folder, meta, TOKENIZER_FILE):
        tmp = files.temp_path(folder, TOKENIZER_FILE)
        shutil.copyfile(transformer_dir / TOKENIZER_FILE, tmp)
        records[TOKENIZER_FILE] = _install(tmp, folder / TOKENIZER_FILE)
    fp32, int8 = MODEL_FILES["onnx"], MODEL_FILES["onnx-int8"]
    if not _file_ok(folder, meta, fp32):
        log.warning("exporting %s to ONNX once, into %s", name, folder)
        records.pop(int8, None)  # an int8 file derives from the fp32 one
        info = _export_fp32(transformer_dir, max_tokens, folder, fp32)
        meta.update(info.pop("meta"))
        records[fp32] = info["file"]
    if backend == "onnx-int8" and not _file_ok(folder, meta, int8):
        log.warning("quantizing %s to int8, into %s", name, folder)
        info = _quantize(folder / fp32, transformer_dir, max_tokens, folder, int8)
        meta.setdefault("checks", {}).update(info.pop("checks"))
        records[int8] = info["file"]
    meta["export_seconds"] = round(time.perf_counter() - began, 1)
    files.atomic_write(folder / _META, json.dumps(meta, indent=1).encode())
    return meta


def _install(tmp: Path, final: Path) -> dict:
    record = {"size": tmp.stat().st_size, "sha256": files.sha256_file(tmp)}
    files.move_into_place(tmp, final)
    return record


# --- making the files ---------------------------------------------------------------------


def _reference(transformer_dir: Path, max_tokens: int, texts: Sequence[str]):
    """torch token embeddings of `texts` padded in one batch: (model, hidden, ids, mask)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    tokenizer = Tokenizer.from_file(str(transformer_dir / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    enc = tokenizer.encode_batch(list(texts))
    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, e in enumerate(enc):
        ids[r, : len(e.ids)] = e.ids
        mask[r, : len(e.ids)] = 1
    model = AutoModel.from_pretrained(str(transformer_dir), attn_implementation="eager")
    model.eval()
    with torch.inference_mode():
        hidden = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))[0]
    return model, hidden.float().numpy(), ids, mask


def _run_onnx(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in {i.name for i in session.get_inputs()}:
        feed["token_type_ids"] = np.zeros_like(ids)
    return session.run(["token_embeddings"], feed)[0]


def _agreement(path: Path, ids: np.ndarray, mask: np.ndarray, reference: np.ndarray) -> float:
    """The lowest cosine between the ONNX file's text vectors and `reference`'s."""
    return float((mean_pool(_run_onnx(path, ids, mask), mask) * reference).sum(axis=1).min())


def _export_fp32(transformer_dir: Path, max_tokens: int, folder: Path, final: str) -> dict:
    """torch.onnx.export of the transformer (token embeddings out), then onnxruntime's
    transformer fusions when they keep the output identical."""
    import inspect
    import warnings

    import torch

    model, hidden, ids, mask = _reference(transformer_dir, max_tokens, _PROBES)
    reference = mean_pool(hidden, mask)
    config = model.config
    with_types = "token_type_ids" in inspect.signature(model.forward).parameters and (
        getattr(config, "type_vocab_size", 0) or 0) > 0
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else [])

    class _Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self.inner(**kwargs)[0]

    sample = torch.from_numpy(ids[:2, :16].copy())
    args = (sample, torch.ones_like(sample)) + ((torch.zeros_like(sample),) if with_types else ())
    raw = files.temp_path(folder, "raw.onnx")
    dynamic = {n: {0: "batch", 1: "sequence"} for n in [*names, "token_embeddings"]}
    fused = None
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Wrapped(model), args, str(raw), input_names=names,
                              output_names=["token_embeddings"], dynamic_axes=dynamic,
                              opset_version=17, do_constant_folding=True, dynamo=False)
        agree = _agreement(raw, ids, mask, reference)
        if agree < 0.9999:
            raise ValueError(f"ONNX export disagrees with torch (min cosine {agree:.5f})")
        chosen = raw
        try:
            fused = files.temp_path(folder, "fused.onnx")
            fuse_transformer(raw, fused, config)
            agree = _agreement(fused, ids, mask, reference)
            if agree >= 0.9999:
                chosen = fused
            else:
                log.warning("onnxruntime fusions changed the output (min cosine %.5f); "
                            "keeping the plain export", agree)
        except Exception as exc:  # noqa: BLE001 - fusion is an optimisation only
            log.warning("onnxruntime transformer fusions failed (%s); plain export kept", exc)
        agree = _agreement(chosen, ids, mask, reference)
        record = _install(chosen, folder / final)
    finally:
        for p in (raw, fused):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()
    import onnxruntime

    return {"file": record, "meta": {
        "dim": int(hidden.shape[-1]), "inputs": names, "fused": chosen is not raw,
        "checks": {"onnx_min_cosine_vs_torch": round(agree, 6)},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}}}


def fuse_transformer(src: Path, dst: Path, config: Any) -> None:
    """onnxruntime's transformer fusions (attention, LayerNorm, GELU) of a BERT-like
    export at `src`, written to `dst`; ValueError for a model type it has no recipe for."""
    from onnxruntime.transformers import optimizer

    kinds = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
             "electra": "bert", "camembert": "bert"}
    kind = kinds.get(getattr(config, "model_type", ""))
    if kind is None:
        raise ValueError(f"no fusion recipe for model type {config.model_type!r}")
    optimized = optimizer.optimize_model(
        str(src), model_type=kind, num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size), opt_level=0)
    optimized.save_model_to_file(str(dst))


def int8_weight_range(path: Path) -> int:
    """The largest |w| over the int8 weight tensors of an ONNX file: at most 64 for a
    model whose integer products are exact on every x86-64 CPU (see `_quantize`)."""
    import onnx
    from onnx import numpy_helper

    widest = 0
    for init in onnx.load(str(path)).graph.initializer:
        if init.data_type == onnx.TensorProto.INT8:
            values = numpy_helper.to_array(init).astype(np.int16)
            widest = max(widest, int(np.abs(values).max())) if values.size else widest
    return widest


def _quantize(fp32: Path, transformer_dir: Path, max_tokens: int, folder: Path,
              final: str) -> dict:
    """Dynamic int8 quantization: per-channel s8 weights in 7 bits (reduce_range), u8
    activations. With full 8-bit weights, AVX2's u8 x s8 kernel (VPMADDUBSW) saturates
    its 16-bit pair sums where VNNI does not, so the same model gives other vectors on a
    CPU without VNNI; 7-bit weights keep every pair sum in range, and AVX2, AVX-512 and
    AVX-512 VNNI compute the same integers. Checked against torch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    _, hidden, ids, mask = _reference(transformer_dir, max_tokens, _PROBES)
    reference = mean_pool(hidden, mask)
    tmp = files.temp_path(folder, final)
    try:
        with quiet_logging(logging.WARNING):  # "consider pre-processing": not needed here
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8,
                             per_channel=True, reduce_range=True,
                             extra_options={"DefaultTensorType": 1})
        widest = int8_weight_range(tmp)
        if widest > 64:
            raise ValueError(f"int8 weights reach {widest}; 7-bit weights (at most 64) "
                             "are needed for the same results on every CPU")
        agree = _agreement(tmp, ids, mask, reference)
        if agree < 0.9:
            raise ValueError(f"int8 model disagrees with torch (min cosine {agree:.4f})")
        record = _install(tmp, folder / final)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return {"file": record, "checks": {"int8_min_cosine_vs_torch": round(agree, 6),
                                       "int8_weight_range": widest}}
