"""`ShardReader`: one shard in memory answering the calls of
`qa.retrieval.sharded.view.ShardedIndex`
in global ids (`rank`, `rows`, `sentence_rows`, `quote`, `info`, `lexicon`);
`LocalClient` calls one in this process, as a Ray Serve handle calls it on the cluster
(qa.cluster.serve). No Ray here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embeddings import lazy, store
from embeddings.chunking import Chunk
from qa.retrieval.index import Index
from qa.retrieval.retrieve import top_n
from qa.retrieval.sharded import layout
from qa.retrieval.sharded.lexicon import Lexicon


class ShardReader:
    """One shard in memory (a loaded `Index`) answering the view's calls in global ids.
    Thread-safe, like Index."""

    def __init__(self, index: Index, chunk_offset: int = 0, sentence_offset: int = 0,
                 lexicon: Lexicon | None = None) -> None:
        self.index = index
        self.chunk_offset, self.sentence_offset = chunk_offset, sentence_offset
        self._lexicon = lexicon

    @classmethod
    def open(cls, generation: Path, shard: int) -> ShardReader:
        """Shard number `shard` of the live generation folder `generation` (a sharded
        top generation, or a plain one: then shard 0 is the whole index)."""
        manifest = store.generation_manifest(Path(generation))
        if manifest is None:
            raise store.IndexUnusable(f"no readable manifest in {generation}; "
                                      "rebuild it with: qa index --ray --rebuild")
        infos = layout.shards_of(Path(generation), manifest)
        info = infos[shard]
        lexicon = Lexicon.load(generation) if layout.is_sharded(manifest) else None
        if layout.is_sharded(manifest):
            index = Index.load(layout.shard_folder(info))
        else:  # a plain generation: load exactly that one
            faiss = lazy.load("faiss")

            faiss.omp_set_num_threads(1)
            index = Index(*store._load_generation(Path(generation).parent, Path(generation)))
        return cls(index, info.chunk_offset, info.sentence_offset, lexicon)

    def info(self) -> dict:
        ix = self.index
        return {"manifest": ix.manifest, "documents": list(ix.documents),
                "chunks": len(ix.chunks), "sentences": len(ix.sentences),
                "chunk_offset": self.chunk_offset, "sentence_offset": self.sentence_offset}

    def lexicon(self) -> Lexicon:
        """The corpus-wide BM25 statistics; for a plain index, its own BM25's (the same
        `lucene_idf(df, n)` as `Index.idf`)."""
        if self._lexicon is None:
            bm25 = self.index.bm25
            df = np.diff(bm25._retriever.scores["indptr"])
            self._lexicon = Lexicon({t: int(df[i]) for t, i in bm25.vocab.items()
                                     if i < len(df) and df[i] > 0}, bm25.n_docs, 0)
        return self._lexicon

    def rank(self, vector: np.ndarray, tokens: Sequence[str], k: int) -> dict:
        """This shard's dense and BM25 rankings of k chunks, best first, in global ids,
        with the BM25 score of every chunk named (Passage.bm25)."""
        ix, off = self.index, self.chunk_offset
        k = min(k, len(ix.chunks))
        if k <= 0:
            return {"dense": [], "lexical": [], "bm25": {}}
        dense = [(i + off, x) for i, x in ix.dense_rank(vector, k)]
        lexical = ix.bm25.scores(list(tokens))
        lex = [(i + off, float(lexical[i])) for i in top_n(lexical, k)]
        bm25 = {g: float(lexical[g - off]) for g, _ in dense}
        bm25.update(dict(lex))
        return {"dense": dense, "lexical": lex, "bm25": bm25}

    def rows(self, chunk_ids: Sequence[int]) -> dict:
        """The chunks (global ids) with their vectors, and the sentences they hold plus
        one on each side (within this shard) with theirs."""
        ix, co, so = self.index, self.chunk_offset, self.sentence_offset
        local = [int(g) - co for g in chunk_ids]
        wanted: dict[int, None] = {}
        for i in local:
            c = ix.chunks[i]
            for s in range(max(0, c.first - 1), min(len(ix.sentences), c.last + 2)):
                wanted[s] = None
        out = self.sentence_rows([s + so for s in wanted])
        out["chunks"] = [(i + co, self._chunk(ix.chunks[i])) for i in local]
        out["chunk_vectors"] = ix.chunk_vectors[local] if local else np.zeros(
            (0, ix.chunk_vectors.shape[1]), np.float32)
        return out

    def sentence_rows(self, sentence_ids: Sequence[int]) -> dict:
        ix, so = self.index, self.sentence_offset
        local = [int(g) - so for g in sentence_ids]
        return {"sentences": [(i + so, ix.sentences[i]) for i in local],
                "sentence_vectors": ix.sentence_vectors[local] if local else np.zeros(
                    (0, ix.sentence_vectors.shape[1]), np.float32)}

    def quote(self, first: int, last: int) -> tuple[int, int, str] | None:
        so = self.sentence_offset
        return self.index.quote(first - so, last - so)

    def _chunk(self, c: Chunk) -> Chunk:
        so = self.sentence_offset
        return Chunk(c.source, c.start, c.end, c.text, c.first + so, c.last + so, c.tokens)


class _Done:
    """A call already answered (the in-process stand-in for a Ray response)."""

    def __init__(self, value) -> None:
        self.value = value

    def result(self, *args, **kwargs):
        return self.value


class LocalClient:
    """Calls a ShardReader in this process."""

    def __init__(self, reader: ShardReader) -> None:
        self.reader = reader

    def submit(self, method: str, *args) -> _Done:
        return _Done(getattr(self.reader, method)(*args))
