"""The loaded index: documents, chunks, sentences, vectors, BM25 and titles, validated once
when loaded, and `search(query) -> list[Passage]`.

    index = Index.load(index_dir)              # raises IndexUnusable naming the fix
    passages = index.search(query, candidates=30)

Everything per sentence that the answerer asks for more than once (tokens, neighbours)
is computed on first use and kept.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embeddings import lazy, records, store
from embeddings.lexical import BM25, tokenize
from qa.retrieval.query import Query
from qa.retrieval.retrieve import Passage, SearchSettings, best_n, fuse, top_n


class SentenceTokens:
    """Sentence i's tokens, tokenized once on first use and kept (for `Index` and the
    cluster's `ShardedIndex`: both have `sentences`, a `_tokens` dict and a `_lock`)."""

    sentences: Sequence
    _tokens: dict[int, tuple[tuple[str, ...], frozenset[str]]]
    _lock: threading.Lock

    def _words(self, i: int) -> tuple[tuple[str, ...], frozenset[str]]:
        got = self._tokens.get(i)
        if got is None:
            words = tuple(tokenize(self.sentences[i].text))
            got = (words, frozenset(words))
            with self._lock:
                self._tokens[i] = got
        return got

    def tokens(self, i: int) -> frozenset[str]:
        """Sentence i's tokens (`embeddings.lexical.tokenize`) as a set."""
        return self._words(i)[1]

    def words(self, i: int) -> tuple[str, ...]:
        """Sentence i's tokens in order."""
        return self._words(i)[0]


class Index(SentenceTokens):
    """One index generation in memory. Thread-safe for concurrent searches."""

    def __init__(self, data: records.IndexData, bm25: BM25, vectors) -> None:
        self.data = data
        self.bm25 = bm25
        self.vectors = vectors  # the FAISS index of the chunk vectors
        self.manifest = data.manifest
        self.documents = data.documents
        self.chunks = data.chunks
        self.sentences = data.sentences
        self.chunk_vectors = data.chunk_vectors
        self.sentence_vectors = data.sentence_vectors
        self.titles = {d.source: d.title for d in data.documents}
        self.records = {d.source: d for d in data.documents}
        self.dates = {d.source: d.date for d in data.documents}
        self._chunk_firsts = [c.first for c in data.chunks]
        self._tokens: dict[int, tuple[tuple[str, ...], frozenset[str]]] = {}
        self._lock = threading.Lock()
        self._texts: dict[str, str] | None = data.texts

    @classmethod
    def load(cls, index_dir: Path | str) -> Index:
        """Load and check the live generation (`embeddings.store.load_index`)."""
        faiss = lazy.load("faiss")

        # One question searches one vector: FAISS threads only add hand-off cost (and
        # fight the encoder for the cores), so answer-time search runs on one thread.
        faiss.omp_set_num_threads(1)
        return cls(*store.load_index(Path(index_dir)))

    # -- lexical statistics ---------------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        return self.bm25.n_docs

    def idf(self, token: str) -> float:
        return self.bm25.idf(token)

    def text(self, source: str) -> str | None:
        """The text `source`'s offsets point into (the generation's texts.jsonl, read on
        first use); None when the index did not keep it."""
        if self._texts is None:
            texts = store.read_texts(self.data.path)
            with self._lock:
                self._texts = texts
        return self._texts.get(source)

    # -- sentences --------------------------------------------------------------------------
    def neighbours(self, i: int) -> list[int]:
        """The sentences before and after sentence i in the same document."""
        src = self.sentences[i].source
        return [j for j in (i - 1, i + 1)
                if 0 <= j < len(self.sentences) and self.sentences[j].source == src]

    def quote(self, first: int, last: int) -> tuple[int, int, str] | None:
        """(start, end, text) of sentences first..last of one document: the file's text
        from the first's start to the last's end, taken from a chunk that holds them all
        (chunks are stored in sentence order, so it is found by bisection); None when no
        chunk does."""
        a, b = self.sentences[first], self.sentences[last]
        k = bisect.bisect_right(self._chunk_firsts, first)
        for c in self.chunks[max(0, k - 3): k]:
            if c.first <= first and last <= c.last:
                return a.start, b.end, c.text[a.start - c.start: b.end - c.start]
        return None

    # -- search -----------------------------------------------------------------------------
    def search(self, query: Query, settings: SearchSettings | None = None,
               top_k: int = 0) -> list[Passage]:
        """Chunks for a question, best first: FAISS inner-product and BM25 each rank
        max(candidates, top_k) chunks, weighted reciprocal rank fusion merges them, and a
        chunk near-identical (cosine >= duplicate_similarity) to a better one from
        another file is folded into it (`Passage.also`)."""
        s = settings or SearchSettings()
        if not self.chunks:
            return []
        k = min(max(s.candidates, top_k), len(self.chunks))
        ranked = self.dense_rank(query.vector, k)
        lexical = self.bm25.scores(list(query.tokens))
        return fuse(self, query, s, [i for i, _ in ranked], dict(ranked), top_n(lexical, k),
                    lambda i: float(lexical[i]))

    def dense_rank(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """The k chunks of highest cosine with `vector`, (row, cosine) best first, equal
        cosines lower row first. An exact index computes every cosine (one float32
        matrix-vector product: the vectors lie on the 2**-11 grid, so each is exact and
        FAISS's own) and picks with `best_n`; an approximate one (IVF) asks FAISS and
        orders what it found."""
        v = np.asarray(vector, dtype=np.float32).reshape(-1)
        if (self.manifest.get("vector_index") or {}).get("type", "flat") == "flat":
            sims = self.chunk_vectors @ v
            return [(i, float(sims[i])) for i in best_n(sims, k)]
        sims, ids = self.vectors.search(v.reshape(1, -1), k)
        found = [(int(i), float(x)) for i, x in zip(ids[0], sims[0], strict=True) if i >= 0]
        return sorted(found, key=lambda t: (-t[1], t[0]))
