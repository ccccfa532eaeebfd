"""The heavy libraries, imported on first use and only here (torch pulls in ~1 s of
imports; the query path of an ONNX or numpy-only tool must not pay for it)."""

from __future__ import annotations

import functools


@functools.cache
def torch():
    """The torch module (CPU build), with a clear error when it is missing."""
    try:
        import torch as _torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise ImportError("the exact encoder and reader need torch (pip install "
                          "torch==2.13.0)") from exc
    return _torch
