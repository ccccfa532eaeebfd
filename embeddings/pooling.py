"""Pooling token embeddings into unit vectors: the text's (sentence-transformers' mean
pooling + Normalize) and, for late chunking, those of character spans of it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embeddings.exact import normalise as _normalise
from embeddings.exact import tree_sum


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Unit text vectors (batch, dim) from token embeddings (batch, seq, dim) and their
    attention mask: sentence-transformers' mean pooling (masked mean, count clamped at
    1e-9), then its Normalize (x / max(|x|, 1e-12)). Sums run in a fixed order and the
    vectors are rounded to the 2**-11 grid (`embeddings.exact`): the same bits on every
    CPU for the same token embeddings."""
    m = mask.astype(np.float32)
    summed = tree_sum(np.asarray(hidden, dtype=np.float32) * m[:, :, None], axis=1)[:, 0]
    return _normalise(summed / np.maximum(m.sum(axis=1, keepdims=True), 1e-9))


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
                out[k] = tree_sum(self.embeddings[rows], axis=0)[0] / np.float32(rows.sum())
        return _normalise(out)
