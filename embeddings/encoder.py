"""Turn texts into normalised vectors, with ONNX Runtime or sentence-transformers (torch).

`load_encoder(name, backend)` -> an `Encoder` with `.encode(texts)`, `.dim`, `.max_tokens`,
`.count_tokens(texts)`, `.name`, `.backend`, and for late chunking `.encode_spans` and
`.encode_with_tokens(texts)` (token embeddings before pooling, with character offsets).
Backends:

- "torch": sentence-transformers on torch (imports in ~5 s).
- "onnx": the same transformer exported once to ONNX (`embeddings.onnx_export`), run with
  onnxruntime; vectors agree with torch to ~1e-6. The query path imports only
  onnxruntime, tokenizers and numpy (cold load and one question encoded in ~0.4 s).
- "onnx-int8": that export with its weights dynamically quantized to int8 (per-channel,
  u8 activations x s8 weights: the AVX-512 VNNI / AVX2 fast path): ~1.75x the fp32 ONNX
  throughput, cosine to torch ~0.993 (min ~0.97). Activations are quantized per batch, so
  this backend always runs one text per batch (whatever batch_size says): a vector is a
  function of its text alone. benchmarks/encoder_speed.py measures speed and accuracy.
- "auto": "onnx-int8" when onnxruntime is installed and the model can be exported (a
  sentence-transformers folder whose pipeline is Transformer -> mean Pooling [->
  Normalize]), else "onnx", else "torch". int8's accuracy@1 on the eval sets is about a
  point below fp32's, its overall accuracy the same (docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from embeddings import lazy
from embeddings.errors import BadInput
from embeddings.models import DEFAULT_MODEL, resolve_model
from embeddings.onnx_convert import open_session
from embeddings.onnx_export import MODEL_FILES, TOKENIZER_FILE, ensure_export
from embeddings.pooling import TokenEmbeddings, mean_pool
from embeddings.texts import check_texts, progress_bar

log = logging.getLogger(__name__)

DEFAULT_BACKEND = "auto"
BACKENDS = ("exact", "torch", "onnx", "onnx-int8")
EXACT_BATCH_TOKENS = 4096  # the exact backend's batches: at most this many padded tokens
BATCH_SIZE = 64  # texts per model batch unless a caller says otherwise


_POOL_LOCK = threading.Lock()


class Encoder:
    """Texts -> unit vectors with one model and backend. Safe to share between threads.

    Attributes: name (as asked for), backend ("torch", "onnx" or "onnx-int8"), dim,
    max_tokens (input limit in model tokens; longer texts are truncated), source (the
    model folder or hub name).
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
    def __repr__(self) -> str:
        return f"<Encoder {self.name!r} backend={self.backend} dim={self.dim}>"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
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
        elif self.backend == "exact":
            # rows are independent; the attention's memory grows with batch x width**2
            batch_size = max(1, min(batch_size, EXACT_BATCH_TOKENS // self.max_tokens))
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

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE,
               progress: bool = False) -> np.ndarray:
        """(n, dim) float32 unit vectors: attention-mask mean of the token embeddings,
        L2-normalised (sentence-transformers' mean pooling + Normalize)."""
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        bar = progress_bar(len(texts), progress)
        for rows, _, hidden, mask in self._batches(texts, batch_size):
            out[rows] = mean_pool(hidden, mask)
            if bar is not None:
                bar.update(len(rows))
        if bar is not None:
            bar.close()
        return out

    def iter_with_tokens(self, texts: Sequence[str], batch_size: int = BATCH_SIZE
                         ) -> Iterator[tuple[int, TokenEmbeddings]]:
        """Yield (index into texts, TokenEmbeddings) for every text, in no particular
        order, a batch at a time: memory stays bounded however many texts there are."""
        texts = check_texts(texts)
        for rows, tokenized, hidden, mask in self._batches(texts, batch_size):
            vectors = mean_pool(hidden, mask)
            for r, i in enumerate(rows):
                ids, offsets, special = tokenized[r]
                n = len(ids)
                yield i, TokenEmbeddings(
                    vectors[r], np.array(hidden[r, :n], dtype=np.float32),
                    np.asarray(offsets, dtype=np.int32).reshape(n, 2),
                    np.asarray(special, dtype=bool), np.asarray(ids, dtype=np.int64))

    def encode_with_tokens(self, texts: Sequence[str], batch_size: int = BATCH_SIZE
                           ) -> list[TokenEmbeddings]:
        """Per text, in input order: its unit vector, its token embeddings before pooling
        and each token's character offsets (see TokenEmbeddings). ~1.5 KB per token: for
        a whole corpus prefer `iter_with_tokens` or `encode_spans`."""
        texts = check_texts(texts)
        out: list[TokenEmbeddings | None] = [None] * len(texts)
        for i, item in self.iter_with_tokens(texts, batch_size):
            out[i] = item
        return out  # type: ignore[return-value]

    def encode_spans(self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]],
                     batch_size: int = BATCH_SIZE, progress: bool = False
                     ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Late chunking: embed each text once and pool its tokens per character span.

        spans[i] lists (start, end) offsets into texts[i] (e.g. the chunk's sentences).
        Returns the (n, dim) text vectors (as `encode`) and, per text, a
        (len(spans[i]), dim) array of unit span vectors (`TokenEmbeddings.pool`: zero rows
        for spans no token starts in, e.g. past the truncation limit). A text given more
        than once (a paragraph two articles share) is run through the model once.
        """
        texts = check_texts(texts)
        if len(spans) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(spans)} span lists")
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        pooled: list[np.ndarray | None] = [None] * len(texts)
        where: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            where.setdefault(text, []).append(i)
        unique = list(where)
        bar = progress_bar(len(texts), progress)
        for u, item in self.iter_with_tokens(unique, batch_size):
            for i in where[unique[u]]:
                vectors[i] = item.vector
                pooled[i] = item.pool(spans[i])
            if bar is not None:
                bar.update(len(where[unique[u]]))
        if bar is not None:
            bar.close()
        return vectors, pooled  # type: ignore[return-value]


class TorchEncoder(Encoder):
    """sentence-transformers on torch: the reference the ONNX backends are checked against."""

    backend = "torch"

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resolve_model(name)
        if Path(self.source).is_dir():
            # A local folder needs no network: keep the hub client from trying.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
        SentenceTransformer = lazy.load("sentence_transformers").SentenceTransformer
        hf_logging = lazy.load("transformers.utils.logging")

        hf_logging.disable_progress_bar()
        try:
            self.model = SentenceTransformer(self.source, device="cpu")
        except Exception as exc:  # noqa: BLE001 - surface any loading problem as one message
            raise BadInput(f"cannot load embedding model {name!r} ({self.source}): "
                           f"{exc}") from exc
        dim = (self.model.get_embedding_dimension()
               if hasattr(self.model, "get_embedding_dimension")
               else self.model.get_sentence_embedding_dimension())
        self.dim, self.max_tokens = int(dim), int(self.model.max_seq_length)

    def encode(self, texts: Sequence[str], batch_size: int = BATCH_SIZE,
               progress: bool = False) -> np.ndarray:
        """sentence-transformers' own encode (its batching), normalised, float32."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                    convert_to_numpy=True, show_progress_bar=progress)
        return np.ascontiguousarray(vectors, dtype=np.float32)

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
        torch = lazy.load("torch")

        features = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if "token_type_ids" in self.model.tokenizer.model_input_names:
            features["token_type_ids"] = torch.zeros_like(features["input_ids"])
        transformer = self.model[0].model if hasattr(self.model[0], "model") else (
            self.model[0].auto_model)
        with torch.inference_mode():
            out = transformer(**features)
        return out[0].float().numpy()


class _Tokenized(Encoder):
    """A backend tokenizing with a `tokenizers.Tokenizer` in `self.tokenizer` (Rust)."""

    tokenizer: object

    def _tokenize(self, texts):
        if not texts:
            return []
        return [(e.ids, e.offsets, e.special_tokens_mask)
                for e in self.tokenizer.encode_batch(texts)]

    def token_strings(self, ids):
        return [self.tokenizer.id_to_token(int(i)) for i in ids]


class ExactEncoder(_Tokenized):
    """The transformer computed with `embeddings.exact` (int8 products, order-fixed sums):
    the same vectors, bit for bit, on every x86-64 CPU. Loads the sentence-transformers
    folder's weights (Transformer -> mean Pooling [-> Normalize]) with safetensors and
    tokenizes with `tokenizers`; torch runs the products on its own threads."""

    backend = "exact"

    def __init__(self, name: str, threads: int | None = None) -> None:
        import json

        from tokenizers import Tokenizer

        from embeddings.exact import Bert
        from embeddings.lazy import torch
        from embeddings.onnx_export import model_folder, pipeline

        self.name = name
        source = model_folder(name)
        self.source = str(source)
        transformer, self.max_tokens = pipeline(source)
        config = json.loads((transformer / "config.json").read_text())
        weights = transformer / "model.safetensors"
        if not weights.is_file():
            raise BadInput(f"model {name!r} ({source}) has no model.safetensors; the exact "
                           "encoder reads safetensors weights (or set QA_ENCODER=torch)")
        from safetensors.torch import load_file

        self.net = Bert.from_state(load_file(str(weights)), int(config["num_attention_heads"]),
                                   float(config.get("layer_norm_eps", 1e-12)))
        self.dim = self.net.hidden
        self.net.warm()
        self.tokenizer = Tokenizer.from_file(str(transformer / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_tokens)
        if threads:
            torch().set_num_threads(threads)

    def _forward(self, ids, mask):
        return self.net(ids, mask)


class OnnxEncoder(_Tokenized):
    """An exported model (`onnx_export.ensure_export`) run with onnxruntime; tokenized with
    `tokenizers` (Rust)."""

    def __init__(self, name: str, backend: str, folder: Path, meta: dict,
                 threads: int | None = None, parallel: str = "batches") -> None:
        ort = lazy.load("onnxruntime")
        from tokenizers import Tokenizer

        self.name, self.backend, self.folder = name, backend, folder
        self.source = meta["source"]
        self.dim, self.max_tokens = int(meta["dim"]), int(meta["max_tokens"])
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
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
        self.session = open_session(folder / MODEL_FILES[backend], options)
        self._inputs = {i.name for i in self.session.get_inputs()}

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


def load_encoder(name: str = DEFAULT_MODEL, backend: str = DEFAULT_BACKEND, *,
                 threads: int | None = None, parallel: str = "batches") -> Encoder:
    """The Encoder for model `name` (loaded once per process and backend).

    backend: "torch", "onnx", "onnx-int8" or "auto" (see the module docstring). The ONNX
    backends export the model on first use (~20 s, needs torch + transformers + onnx) and
    reuse the export afterwards. threads: cores the ONNX backends use (default: the CPUs
    this process may use); parallel: "batches" (default) runs that many batches side by
    side on one core each, "ops" splits each operator of one batch over them. The torch
    backend uses torch's own thread settings. Raises BadInput (a ValueError) for an
    unknown backend or a model that can't be found or loaded, Unusable when an ONNX
    backend asked for by name can't be exported.
    """
    if backend not in (*BACKENDS, "auto"):
        raise BadInput(f"unknown encoder backend {backend!r}; use one of "
                       f"{', '.join((*BACKENDS, 'auto'))}")
    # torch ignores threads and parallel: one torch encoder per model
    key = (name, backend) + ((None, "batches") if backend == "torch" else (threads, parallel))
    with _LOADED_LOCK:
        if key in _LOADED:
            return _LOADED[key]
    if backend == "auto":
        encoder = _load_auto(name, threads, parallel)
    elif backend == "torch":
        encoder = TorchEncoder(name)
    elif backend == "exact":
        encoder = ExactEncoder(name, threads)
    else:
        folder, meta = ensure_export(name, backend)
        encoder = OnnxEncoder(name, backend, folder, meta, threads, parallel)
    with _LOADED_LOCK:
        return _LOADED.setdefault(key, encoder)


def _load_auto(name: str, threads: int | None, parallel: str) -> Encoder:
    try:
        return ExactEncoder(name, threads)
    except Exception as exc:  # noqa: BLE001 - a model the exact path can't read: fall back
        log.warning("exact encoder for %s unavailable (%s); trying ONNX", name, exc)
    try:
        lazy.load("onnxruntime")  # is it installed?
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
