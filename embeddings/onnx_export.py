"""The ONNX export of a sentence-transformers model, and its cache.

`ensure_export(name, backend)` makes sure `$QA_HOME/models/<model name>-<12 hex of the
source weights>/` holds the tokenizer and the ONNX file of `backend` ("onnx": fp32,
attention/LayerNorm/GELU fused by onnxruntime's transformer optimizer where that keeps
the output; "onnx-int8": that file's weights dynamically quantized to int8), each checked
against torch on probe texts right after it is made. Every file is written under a
temporary name and renamed into place, an exclusive lock keeps two processes from
exporting at once (the second reuses the first's files), and `encoder.json` records each
file's size and SHA-256: a missing or damaged file is re-exported on the next load.
Making the files (torch export, fusions, int8) is `embeddings.onnx_convert`'s; exporting
needs torch, transformers and onnx; `embeddings.encoder.OnnxEncoder` runs an existing
export with onnxruntime and tokenizers only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import time
from pathlib import Path

from embeddings import files
from embeddings.errors import BadInput, Unusable
from embeddings.models import resolve_model
from embeddings.onnx_convert import (
    TOKENIZER_FILE,
    export_fp32,
    install,
    quantize_int8,
    quiet_logging,
)

log = logging.getLogger(__name__)

EXPORT_FORMAT = 3  # bump when the exported files change meaning: old caches are redone
# (2: int8 weights in 7 bits, the same integers on every x86-64 CPU; 3: the residual Add
# and LayerNormalization not fused into the slower SkipLayerNormalization)
MODEL_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}  # per backend
_META = "encoder.json"
_LOCK = ".export.lock"


# --- the model's folder -----------------------------------------------------------------


def model_folder(name: str) -> Path:
    """The local sentence-transformers folder of `name` (bundled, a folder, or a hub name
    already in the hub cache; a hub name not cached yet is downloaded)."""
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


def pipeline(source: Path) -> tuple[Path, int]:
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


def _export(name: str, folder: Path, meta: dict | None, backend: str) -> dict:
    source = model_folder(name)
    transformer_dir, max_tokens = pipeline(source)
    began = time.perf_counter()
    if meta is None:
        meta = {"format": EXPORT_FORMAT, "name": name, "source": str(source),
                "source_digest": source_digest(source), "max_tokens": max_tokens, "files": {}}
    records = meta["files"]
    if not _file_ok(folder, meta, TOKENIZER_FILE):
        tmp = files.temp_path(folder, TOKENIZER_FILE)
        shutil.copyfile(transformer_dir / TOKENIZER_FILE, tmp)
        records[TOKENIZER_FILE] = install(tmp, folder / TOKENIZER_FILE)
    fp32, int8 = MODEL_FILES["onnx"], MODEL_FILES["onnx-int8"]
    if not _file_ok(folder, meta, fp32):
        log.warning("exporting %s to ONNX once, into %s", name, folder)
        records.pop(int8, None)  # an int8 file derives from the fp32 one
        info = export_fp32(transformer_dir, max_tokens, folder, fp32)
        meta.update(info.pop("meta"))
        records[fp32] = info["file"]
    if backend == "onnx-int8" and not _file_ok(folder, meta, int8):
        log.warning("quantizing %s to int8, into %s", name, folder)
        info = quantize_int8(folder / fp32, transformer_dir, max_tokens, folder, int8)
        meta.setdefault("checks", {}).update(info.pop("checks"))
        records[int8] = info["file"]
    meta["export_seconds"] = round(time.perf_counter() - began, 1)
    files.atomic_write(folder / _META, json.dumps(meta, indent=1).encode())
    return meta
