"""The records of an index generation: what is kept about each file, and the loaded (or
freshly built) tables. `embeddings.store` writes and reads them."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings.chunking import Chunk, Sentence


@dataclass(frozen=True)
class DocumentRecord:
    """What the index keeps about one file (its text is in texts.jsonl).

    `pages`: PDF only, the offset at which each page starts; `headings`: Word only,
    (offset, heading) pairs. Both are empty for other files.
    """

    source: str
    title: str
    date: str | None
    sha256: str
    chars: int
    chunks: int
    sentences: int
    pages: tuple[int, ...] = ()
    headings: tuple[tuple[int, str], ...] = ()

    @classmethod
    def from_row(cls, row: dict) -> DocumentRecord:
        row = dict(row)
        row["pages"] = tuple(row.get("pages", ()))
        row["headings"] = tuple((int(o), str(h)) for o, h in row.get("headings", ()))
        return cls(**row)

    def page(self, offset: int) -> int | None:
        """The 1-based page holding character `offset` (PDF), else None."""
        if not self.pages:
            return None
        return max(1, bisect.bisect_right(self.pages, offset))

    def heading(self, offset: int) -> str | None:
        """The heading the text at `offset` stands under (Word), else None."""
        k = bisect.bisect_right([o for o, _ in self.headings], offset)
        return self.headings[k - 1][1] if k else None


@dataclass(frozen=True)
class IndexData:
    """A loaded (or freshly built) index generation.

    Chunk `first`/`last` are indices into `sentences`; a document's sentences are
    consecutive. `chunk_vectors` and `sentence_vectors` are float32, unit length.
    """

    manifest: dict
    documents: tuple[DocumentRecord, ...]
    chunks: tuple[Chunk, ...]
    sentences: tuple[Sentence, ...]
    chunk_vectors: np.ndarray
    sentence_vectors: np.ndarray
    path: Path | None = None
    texts: dict[str, str] | None = None  # source -> extracted text; set by a build only
