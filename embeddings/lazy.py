"""The heavy libraries, imported on first use and only here.

torch pulls in ~1 s of imports, Ray and Gradio more; the query path of an ONNX or
numpy-only tool must not pay for them, and `qa --help` must not either. So a module that
needs one of them at call time asks this module (`lazy.torch()`, `lazy.load("ray.data")`)
rather than importing it inside a function: every deferred import of a heavy library is
here, with the message that says how to install what is missing. (Modules that are
themselves only imported for one heavy job, such as `qa.cluster.serve` for Ray Serve,
import their library at the top.)

After ir_measures' `lazylibs.py`.
"""

from __future__ import annotations

import functools
import importlib

# what to install when a heavy library is missing, by top-level package
_HINTS = {
    "torch": "the exact encoder and reader training need torch (pip install torch==2.13.0)",
    "transformers": "exporting and training need transformers (a dependency of "
                    "sentence-transformers: pip install -e .)",
    "sentence_transformers": "the torch encoder needs sentence-transformers (pip install -e .)",
    "onnx": "exporting the models needs onnx (pip install -e .)",
    "onnxruntime": "the ONNX encoders and reader need onnxruntime (pip install -e .)",
    "faiss": "the vector index needs faiss-cpu (pip install -e .)",
    "ray": "install the cluster extra: pip install -e '.[ray]'",
    "gradio": "the chat page needs gradio (pip install -e .)",
}
HEAVY = frozenset(_HINTS)  # the libraries no module may import inside a function


@functools.cache
def load(name: str):
    """The module `name` (e.g. "onnxruntime.quantization"), imported once, with a message
    that says how to install its library when it is missing."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        top = name.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != top:
            raise  # the library is there but something it imports is not: say so as is
        raise ImportError(_HINTS.get(top, f"pip install {top}")) from exc


def torch():
    """The torch module (CPU build)."""
    return load("torch")


def onnxruntime():
    return load("onnxruntime")


def faiss():
    return load("faiss")


def ray():
    return load("ray")
