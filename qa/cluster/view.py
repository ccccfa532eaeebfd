"""`ShardedIndex`: what `qa.index.Index` offers the answerer, over N shards.

The answerer (qa.ranker, qa.reading, qa.answer, the API and the chat page) reads an index
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
statistics (qa.cluster.lexicon), so the passages, their scores and the answer are the
single index's (tests/test_cluster_sharded.py compares them on every seeds question).

Ties: FAISS orders equal similarities by id, which the merge keeps. BM25 ties are another
matter: the single index's `qa.retrieve.top_n` orders equal scores as numpy's
argpartition leaves them, which depends on the whole score vector. When the shards' lists
show a tie, the view rebuilds that vector (up to EXACT_TIES_MAX chunks) and runs the same
`top_n` over it; above that, tied chunks keep shard order. (Breaking ties by chunk number
in `top_n` would make the merge exact at any size without this.)
"""

from __future__ import annotations

import bisect
import heapq
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings import store
from embeddings.chunking import Chunk, Sentence
from qa.cluster import shards as layout
from qa.cluster.lexicon import Lexicon
from qa.cluster.reader import LocalClient, ShardReader
from qa.engine import Assistant
from qa.errors import BadInput
from qa.index import SearchSettings, SentenceTokens
from qa.query import Query
from qa.retrieve import Passage, fuse, top_n

MAX_CACHED = 200_000  # sentences kept from earlier questions before the cache is cleared
# Up to this many chunks, a question whose BM25 scores tie gets the single index's exact
# tie order (the whole score vector, 4 bytes a chunk, is put together from the shards);
# above, ties keep shard order (see the module docstring).
EXACT_TIES_MAX = 2_000_000


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
        """The view over every shard of the live index at `index_dir`, in this process."""
        gen = store.current_generation(Path(index_dir))
        manifest = store.generation_manifest(gen)
        if gen is None or manifest is None:
            raise store.IndexUnusable(f"no index at {index_dir}; build it with: "
                                      f"qa index --ray --index {index_dir}")
        n = len(layout.shards_of(gen, manifest))
        return cls.connect([LocalClient(ShardReader.open(gen, i)) for i in range(n)], gen)

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

    def _lexical_rank(self, tokens: Sequence[str], k: int) -> list[int]:
        """The BM25 top k exactly as the single index ranks it, ties included: `top_n`
        over the whole score vector, put together from the shards' positive scores
        (float32, the single index's values). Only when BM25 scores tie (see `search`)."""
        full = np.zeros(len(self.chunks), dtype=np.float32)
        pending = [c.submit("lexical_scores", list(tokens)) for c in self.clients]
        for p in pending:
            ids, values = p.result()
            full[ids] = values
        return top_n(full, k)

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
        # k-way merges by score; equal scores keep shard order, then the shard's own
        merged_dense = list(heapq.merge(*[r["dense"] for r in ranked],
                                        key=lambda t: -t[1]))[:k]
        merged_lex = list(heapq.merge(*[r["lexical"] for r in ranked],
                                      key=lambda t: -t[1]))[:k]
        lex_rank = [i for i, _ in merged_lex]
        scores = [x for r in ranked for _, x in r["lexical"]]
        tied = len(set(scores)) < len(scores) or any(r["cut_tie"] for r in ranked)
        if tied and len(self.chunks) <= EXACT_TIES_MAX:
            lex_rank = self._lexical_rank(query.tokens, k)
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


class ClusterReloadUnavailable(BadInput):
    """/api/reload on a sharded or clustered index: rebuilding is `qa index --ray`'s job."""


class ShardedAssistant(Assistant):
    """An Assistant answering from a ShardedIndex. `reload` doesn't build: a sharded index
    is built on the cluster (`qa index --ray`) and served again (`qa serve --ray`, which
    Ray Serve rolls over replica by replica)."""

    def reload(self, update: bool = True):
        raise ClusterReloadUnavailable(
            "this server answers from a sharded index: rebuild it with qa index --ray, "
            "then run qa serve --ray again (Ray Serve replaces the replicas one by one)")
