"""`ShardedIndex`: what `qa.retrieval.index.Index` offers the answerer, over N shards.

The answerer (qa.answering.ranker, qa.answering.reading, qa.answering.answer, the API and
the chat page) reads an index
through a few things: `search`, `chunks[i]`, `sentences[i]`, `sentence_vectors[ids]`,
`tokens`/`words`/`neighbours` of a sentence, `quote`, `titles`, `documents`, `idf` and
`n_chunks`, `data.manifest`. `ShardedIndex` gives the same over shards
that each answer four calls (`ShardReader`: in this process, or a Ray Serve deployment):

- `rank(vector, tokens, k)`: the shard's exact FAISS top k and BM25 top k (global ids);
- `rows(chunk ids)`: those chunks with their vectors, and their sentences (plus one on
  each side) with theirs;
- `sentence_rows(ids)`, `quote(first, last)`: for anything not fetched yet.

`search` asks every shard at once, merges the rankings (each shard's order kept, so one
shard gives exactly the single index's order), fuses and collapses them with the same
functions as `Index.search`, and fetches the rows of the candidates in one call per shard;
the answer stage then reads them from a bounded cache (a miss is fetched again, so a
cleared cache costs a call, never a wrong answer). Global ids are shard offset + local id,
the same numbers as in one index over the corpus, and BM25 scores use corpus-wide
statistics (qa.retrieval.sharded.lexicon), so the passages, their scores and the answer are the
single index's (tests/cluster/test_cluster_sharded.py compares them on every seeds question).

Ties: equal scores come out lower id first everywhere. `qa.retrieval.index.Index.dense_rank` (each
shard's cosine ranking, and the single index's) and `qa.retrieval.retrieve.top_n` (BM25) break ties
by the lower chunk number, and a shard's ids are a contiguous run of the global ones, so
the best k of the shards' lists (`qa.retrieval.retrieve.merge_ranked`) are the single index's top k,
in its order, at any size. (FAISS's own order of equal similarities is its heap's, which
no merge could reproduce: tests/cluster/test_cluster_sharded.py has twelve tied chunks.)
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings import store
from embeddings.chunking import Chunk, Sentence
from qa.retrieval.index import SentenceTokens
from qa.retrieval.query import Query
from qa.retrieval.retrieve import Passage, SearchSettings, fuse, merge_ranked
from qa.retrieval.sharded import layout
from qa.retrieval.sharded.lexicon import Lexicon
from qa.retrieval.sharded.shard import LocalClient, ShardReader

MAX_CACHED = 200_000  # sentences kept from earlier questions before the cache is cleared


@dataclass(frozen=True)
class _Data:
    """What the API reads as `index.data`."""

    manifest: dict
    documents: tuple
    chunks: Sequence
    sentences: Sequence
    path: Path | None = None


class _Rows(Sequence):
    """chunks / sentences of the view: a sequence fetched on demand."""

    def __init__(self, n: int, get) -> None:
        self._n, self._get = n, get

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._get(j) for j in range(*i.indices(self._n))]
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return self._get(i)


class _Vectors:
    """sentence_vectors / chunk_vectors of the view: `[i]` a vector, `[ids]` the rows
    stacked (the same contiguous float32 matrix as the single index's fancy indexing)."""

    def __init__(self, n: int, dim: int, many) -> None:
        self._many, self.shape = many, (n, dim)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self._many([int(key)])[0]
        ids = [int(i) for i in np.asarray(key).reshape(-1)]
        return self._many(ids)


class ShardedIndex(SentenceTokens):
    """An Index over shards (see the module docstring). Thread-safe."""

    def __init__(self, clients: list, infos: list[dict], manifest: dict,
                 lexicon: Lexicon, path: Path | None = None) -> None:
        if len(clients) != len(infos) or not clients:
            raise ValueError("one info per shard client, at least one shard")
        self.clients = clients
        self.manifest = manifest
        self.documents = tuple(d for info in infos for d in info["documents"])
        self.titles = {d.source: d.title for d in self.documents}
        self.records = {d.source: d for d in self.documents}
        self.dates = {d.source: d.date for d in self.documents}
        self._chunk_offsets = [int(i["chunk_offset"]) for i in infos]
        self._sentence_offsets = [int(i["sentence_offset"]) for i in infos]
        n_chunks = sum(int(i["chunks"]) for i in infos)
        n_sentences = sum(int(i["sentences"]) for i in infos)
        self._lexicon = lexicon
        dim = int(manifest.get("dimension") or 0)
        self.chunks = _Rows(n_chunks, self._chunk)
        self.sentences = _Rows(n_sentences, self._sentence)
        self.chunk_vectors = _Vectors(n_chunks, dim, self._chunk_vectors)
        self.sentence_vectors = _Vectors(n_sentences, dim, self._sentence_vectors)
        self.data = _Data(manifest, self.documents, self.chunks, self.sentences, path)
        self._lock = threading.Lock()
        self._c: dict[int, Chunk] = {}
        self._cv: dict[int, np.ndarray] = {}
        self._s: dict[int, Sentence] = {}
        self._sv: dict[int, np.ndarray] = {}
        self._tokens: dict[int, tuple[tuple[str, ...], frozenset[str]]] = {}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def connect(cls, clients: list, path: Path | None = None) -> ShardedIndex:
        """The view over shard clients (`submit(method, *args) -> .result()`)."""
        infos = [r.result() for r in [c.submit("info") for c in clients]]
        lexicon = clients[0].submit("lexicon").result()
        top = store.generation_manifest(path) if path is not None else None
        manifest = top if top is not None else _whole_manifest(infos, lexicon)
        return cls(clients, infos, manifest, lexicon, path)

    @classmethod
    def open_local(cls, index_dir: Path | str) -> ShardedIndex:
        """The view over every shard of the live index at `index_dir`, in this process
        (a plain index is one shard). Raises IndexUnusable naming the fix when there is
        no index, it is of another version, or a shard is missing or damaged."""
        index_dir = Path(index_dir)
        gen = store.current_generation(index_dir)
        manifest = store.generation_manifest(gen)
        if gen is None:
            raise store.IndexUnusable(f"no index at {index_dir}; build it with: "
                                      f"qa index --ray --index {index_dir}")
        sharded = layout.is_sharded(manifest)
        if manifest is None:
            raise store.IndexUnusable(f"index at {index_dir} has no readable manifest "
                                      f"({gen.name}/manifest.json); "
                                      f"{store.rebuild_hint(index_dir, True)}")
        problem = store.version_problem(manifest, index_dir)
        if problem:
            raise store.IndexUnusable(problem)
        try:
            n = len(layout.shards_of(gen, manifest))
            readers = [ShardReader.open(gen, i) for i in range(n)]
        except store.IndexUnusable as exc:
            if not sharded:
                raise
            raise store.IndexUnusable(
                f"index at {index_dir} is sharded and a shard is damaged ({exc}); "
                f"{store.rebuild_hint(index_dir, True)}") from exc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise store.IndexUnusable(
                f"index at {index_dir} is damaged ({type(exc).__name__}: {exc}); "
                f"{store.rebuild_hint(index_dir, sharded)}") from exc
        return cls.connect([LocalClient(r) for r in readers], gen)

    # -- lexical statistics ---------------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        """Chunks in the BM25 statistics (Index.n_chunks: bm25.n_docs)."""
        return self._lexicon.n_docs

    def idf(self, token: str) -> float:
        """Corpus-wide Lucene IDF of a token, as Index.idf."""
        return self._lexicon.idf(token)

    # -- shards and the cache ---------------------------------------------------------------
    def _shard_of_chunk(self, i: int) -> int:
        return bisect.bisect_right(self._chunk_offsets, i) - 1

    def _shard_of_sentence(self, i: int) -> int:
        return bisect.bisect_right(self._sentence_offsets, i) - 1

    def _store(self, rows: dict) -> None:
        with self._lock:
            if len(self._s) > MAX_CACHED:
                for cache in (self._c, self._cv, self._s, self._sv, self._tokens):
                    cache.clear()
            for (g, c), v in zip(rows.get("chunks", ()), rows.get("chunk_vectors", ()),
                                 strict=True):
                self._c[g], self._cv[g] = c, v
            for (g, s), v in zip(rows["sentences"], rows["sentence_vectors"], strict=True):
                self._s[g], self._sv[g] = s, v

    def _fetch(self, ids: Sequence[int], method: str, shard_of) -> None:
        by_shard: dict[int, list[int]] = {}
        for i in ids:
            by_shard.setdefault(shard_of(i), []).append(i)
        pending = [self.clients[k].submit(method, v) for k, v in by_shard.items()]
        for p in pending:
            self._store(p.result())

    def prefetch(self, chunk_ids: Sequence[int]) -> None:
        """Fetch the rows of these chunks (and their sentences) not in the cache yet."""
        missing = [i for i in dict.fromkeys(chunk_ids) if i not in self._c]
        if missing:
            self._fetch(missing, "rows", self._shard_of_chunk)

    def _chunk(self, i: int) -> Chunk:
        got = self._c.get(i)
        if got is None:
            self._fetch([i], "rows", self._shard_of_chunk)
            got = self._c[i]
        return got

    def _chunk_vectors(self, ids: list[int]) -> np.ndarray:
        missing = [i for i in ids if i not in self._cv]
        if missing:
            self._fetch(missing, "rows", self._shard_of_chunk)
        cv = self._cv
        return np.stack([cv[i] for i in ids]) if ids else np.zeros(
            (0, self.chunk_vectors.shape[1]), np.float32)

    def _sentence(self, i: int) -> Sentence:
        got = self._s.get(i)
        if got is None:
            self._fetch([i], "sentence_rows", self._shard_of_sentence)
            got = self._s[i]
        return got

    def _sentence_vectors(self, ids: list[int]) -> np.ndarray:
        missing = list(dict.fromkeys(i for i in ids if i not in self._sv))
        if missing:
            self._fetch(missing, "sentence_rows", self._shard_of_sentence)
        sv = self._sv
        return np.stack([sv[i] for i in ids]) if ids else np.zeros(
            (0, self.sentence_vectors.shape[1]), np.float32)

    # -- sentences (as Index; tokens and words from SentenceTokens) ------------------------
    def text(self, source: str) -> str | None:
        """Shards keep no texts: the API reads an unchanged file again instead."""
        return None

    def neighbours(self, i: int) -> list[int]:
        """As Index.neighbours: a document never spans shards, so a sentence of another
        shard is never a neighbour (and is not fetched to find that out)."""
        src, shard = self.sentences[i].source, self._shard_of_sentence(i)
        return [j for j in (i - 1, i + 1)
                if 0 <= j < len(self.sentences) and self._shard_of_sentence(j) == shard
                and self.sentences[j].source == src]

    def quote(self, first: int, last: int) -> tuple[int, int, str] | None:
        shard = self._shard_of_sentence(first)
        if self._shard_of_sentence(last) != shard:
            return None
        return self.clients[shard].submit("quote", first, last).result()

    # -- search (as Index.search) -----------------------------------------------------------
    def search(self, query: Query, settings: SearchSettings | None = None,
               top_k: int = 0) -> list[Passage]:
        """As Index.search, over every shard (see the module docstring)."""
        s = settings or SearchSettings()
        if not len(self.chunks):
            return []
        k = min(max(s.candidates, top_k), len(self.chunks))
        vector = query.vector.reshape(1, -1).astype(np.float32)
        pending = [c.submit("rank", vector, list(query.tokens), k) for c in self.clients]
        ranked = [p.result() for p in pending]
        # each shard's best k by (score, lower id), so the best k of their union are
        # the single index's
        merged_dense = merge_ranked([r["dense"] for r in ranked], k)
        merged_lex = merge_ranked([r["lexical"] for r in ranked], k)
        lex_rank = [i for i, _ in merged_lex]
        bm25: dict[int, float] = {}
        for r in ranked:
            bm25.update(r["bm25"])
        return fuse(self, query, s, [i for i, _ in merged_dense], dict(merged_dense),
                    lex_rank, lambda i: bm25.get(i, 0.0), prefetch=self.prefetch)


def _whole_manifest(infos: list[dict], lexicon: Lexicon) -> dict:
    """The manifest of the whole index when only the shards' are at hand: the first
    shard's, with the counts and files of all."""
    manifest = dict(infos[0]["manifest"])
    docs = [d for i in infos for d in i["documents"]]
    manifest["counts"] = {"documents": len(docs),
                          "chunks": sum(int(i["chunks"]) for i in infos),
                          "sentences": sum(int(i["sentences"]) for i in infos)}
    manifest["files"] = {d.source: d.sha256 for d in docs}
    return manifest
