"""What every index generation's manifest.json says, and whether this program can read it.

`make_manifest` writes it (format version, model, encoder, chunker, counts, files and
their hashes, when and by which version of the program it was built); `version_problem`
says why an index of another format version or sharded layout can't be read and what to
run; `is_sharded` tells a sharded top generation (`qa index --ray`) from a plain one.
"""

from __future__ import annotations

import time
from pathlib import Path

from embeddings.encoder import DEFAULT_BACKEND
from embeddings.exact import VECTOR_FORMAT
from embeddings.records import DocumentRecord

FORMAT_VERSION = 1
# The sharded layout of `qa index --ray` (qa/retrieval/sharded/layout.py): a top generation whose
# manifest names its shards ("shards", "layout"), each shard an index folder of its own.
SHARDED_LAYOUT = 1


def make_manifest(model: str, dim: int, chunker: dict, documents: list[DocumentRecord],
                  n_chunks: int, n_sentences: int, seconds: float, *,
                  encoder: str = DEFAULT_BACKEND, backend: str | None = None,
                  encoder_format: int | None = None) -> dict:
    """The manifest of a generation. `seconds` is the build's wall time; `encoder` is
    the backend asked for ("auto", "onnx-int8", ...), `backend` the one that embedded
    the newest vectors, `encoder_format` the version of its ONNX export."""
    return {
        "format_version": FORMAT_VERSION,
        "model": model,
        "encoder": encoder,
        "backend": backend,
        "encoder_format": encoder_format,
        "vectors": VECTOR_FORMAT,
        "dimension": dim,
        "chunker": chunker,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "built_by": program_version(),
        "build_seconds": round(seconds, 3),
        "counts": {"documents": len(documents), "chunks": n_chunks, "sentences": n_sentences},
        "files": {d.source: d.sha256 for d in documents},
    }


def program_version() -> str:
    """"cited-qa X.Y.Z", the program that writes a manifest (in every manifest as
    "built_by"; "cited-qa ?" when the package metadata is missing)."""
    from importlib import metadata

    try:
        return f"cited-qa {metadata.version('cited-qa')}"
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "cited-qa ?"


def is_sharded(manifest: dict | None) -> bool:
    """Whether a generation's manifest is the top of a sharded index (`qa index --ray`)."""
    return bool(manifest) and isinstance(manifest.get("shards"), list)


def rebuild_hint(index_dir: Path, sharded: bool = False) -> str:
    if sharded:
        return f"rebuild it with: qa index --ray --rebuild --index {index_dir}"
    return f"rebuild it with: qa index --rebuild --index {index_dir}"


def version_problem(manifest: dict, index_dir: Path) -> str | None:
    """Why this program can't read an index of this manifest's format or layout (another
    version wrote it), naming what to run; None when it can."""
    sharded = is_sharded(manifest)
    found, by = manifest.get("format_version"), manifest.get("built_by")
    wrote = f", written by {by}" if by else ""
    if not isinstance(found, int) or isinstance(found, bool):
        return (f"index at {index_dir} has a manifest without a format version: it was not "
                f"written by cited-qa; {rebuild_hint(index_dir, sharded)}")
    if found > FORMAT_VERSION:
        return (f"index at {index_dir} has format version {found}{wrote}; this program "
                f"({program_version()}) reads version {FORMAT_VERSION}: upgrade cited-qa "
                f"to read it, or {rebuild_hint(index_dir, sharded)}")
    if found < FORMAT_VERSION:
        return (f"index at {index_dir} has format version {found} (an older cited-qa"
                f"{' ' + by.split()[-1] if by else ''}); this program reads version "
                f"{FORMAT_VERSION}: {rebuild_hint(index_dir, sharded)}")
    layout = (manifest.get("layout") or {}).get("version", 1) if sharded else None
    if sharded and (not isinstance(layout, int) or layout > SHARDED_LAYOUT):
        return (f"index at {index_dir} is sharded in layout version {layout}{wrote}; this "
                f"program ({program_version()}) reads sharded layout {SHARDED_LAYOUT}: "
                f"upgrade cited-qa to read it, or {rebuild_hint(index_dir, True)}")
    return None
