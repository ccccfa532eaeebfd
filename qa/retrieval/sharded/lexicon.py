"""BM25 with corpus-wide statistics, one shard at a time.

A shard's BM25 must score its chunks exactly as one index over the whole corpus does, or
the fused ranking (and so the answer) would move with the number of shards. bm25s stores
per (chunk, token) the precomputed score idf(token) * tf / (tf + k1 (1 - b + b len/avgdl)),
where idf and avgdl are corpus statistics: so each shard counts its document frequencies
and token totals (`Lexicon.of`), the counts are summed (`Lexicon.merge`), and each shard's
matrix is computed from the merged statistics (`shard_bm25`) with bm25s's own scoring
function. A query's score of a chunk is then the same float32 sum in the same order as in
the single index (tests/cluster/test_cluster_sharded.py checks bit equality).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from embeddings import files
from embeddings.lexical import BM25, _bm25s, lucene_idf, tokenize

LEXICON = "lexicon.json"


@dataclass(frozen=True)
class Lexicon:
    """Document frequencies over chunks, the number of chunks and their total tokens."""

    df: dict[str, int] = field(default_factory=dict)
    n_docs: int = 0
    total_tokens: int = 0

    @classmethod
    def of(cls, token_lists: Iterable[Sequence[str]]) -> Lexicon:
        df: Counter = Counter()
        n = total = 0
        for tokens in token_lists:
            df.update(set(tokens))
            n += 1
            total += len(tokens)
        return cls(dict(df), n, total)

    @classmethod
    def merge(cls, parts: Iterable[Lexicon]) -> Lexicon:
        df: Counter = Counter()
        n = total = 0
        for p in parts:
            df.update(p.df)
            n += p.n_docs
            total += p.total_tokens
        return cls(dict(df), n, total)

    @property
    def avgdl(self) -> np.float64:
        """Mean tokens per chunk, as bm25s computes it (np.mean of the integer lengths:
        their float64 sum is exact, so summing per shard first gives the same value)."""
        return np.float64(self.total_tokens) / max(self.n_docs, 1)

    def idf(self, token: str) -> float:
        """Lucene IDF over the whole corpus (0 for a token no chunk has), as `BM25.idf`."""
        df = self.df.get(token, 0)
        return lucene_idf(df, self.n_docs) if df else 0.0

    def save(self, folder: Path) -> None:
        files.atomic_write(Path(folder) / LEXICON, json.dumps(
            {"n_docs": self.n_docs, "total_tokens": self.total_tokens, "df": self.df},
            ensure_ascii=False).encode())

    @classmethod
    def load(cls, folder: Path) -> Lexicon:
        raw = json.loads((Path(folder) / LEXICON).read_text(encoding="utf-8"))
        return cls({str(k): int(v) for k, v in raw["df"].items()}, int(raw["n_docs"]),
                   int(raw["total_tokens"]))


def chunk_tokens(texts: Iterable[str]) -> list[list[str]]:
    """The BM25 tokens of each chunk text (`embeddings.lexical.tokenize`)."""
    return [tokenize(t) for t in texts]


def shard_bm25(token_lists: list[list[str]], lexicon: Lexicon) -> BM25:
    """A BM25 over one shard's chunks (`token_lists`, in chunk order) whose stored scores
    use the corpus-wide `lexicon`: what `BM25.build` over all chunks would store for
    these rows. Uses bm25s's own scoring and matrix functions, so the arithmetic is its.

    The shard's vocabulary is its own (ids in first-seen order, as bm25s makes them);
    ids don't change a score, which sums the query's tokens in query order."""
    from bm25s.scoring import _build_scores_and_indices_for_matrix, _score_idf_lucene

    bm25s = _bm25s()
    retriever = bm25s.BM25()
    if retriever.method != "lucene" or retriever.idf_method not in (None, "lucene"):
        raise RuntimeError("bm25s's default is no longer Lucene BM25; shard_bm25 needs it")
    corpus = token_lists or [[]]
    vocab: dict[str, int] = {}
    for tokens in corpus:
        for t in tokens:
            vocab.setdefault(t, len(vocab))
    ids = [[vocab[t] for t in tokens] for tokens in corpus]
    local_df: Counter = Counter()
    for row in ids:
        local_df.update(set(row))
    doc_frequencies = {i: local_df.get(i, 0) for i in range(len(vocab))}
    idf = np.zeros(len(vocab), dtype=retriever.dtype)
    for token, i in vocab.items():
        df = lexicon.df.get(token, 0)
        if df:
            idf[i] = _score_idf_lucene(df, N=lexicon.n_docs)
    scores, docs, vocab_ids = _build_scores_and_indices_for_matrix(
        corpus_token_ids=ids, idf_array=idf, avg_doc_len=lexicon.avgdl,
        doc_frequencies=doc_frequencies, k1=retriever.k1, b=retriever.b,
        delta=retriever.delta, nonoccurrence_array=None, method=retriever.method,
        dtype=retriever.dtype, int_dtype=retriever.int_dtype, show_progress=False)
    if retriever.csc_backend == "scipy":
        import scipy.sparse as sp

        matrix = sp.csc_matrix((scores, (docs, vocab_ids)), shape=(len(ids), len(vocab)),
                               dtype=retriever.dtype)
        data, indices, indptr = matrix.data, matrix.indices, matrix.indptr
    else:
        data, indices, indptr = retriever._np_csc(data=scores, rows=docs, cols=vocab_ids,
                                                  shape=(len(ids), len(vocab)))
        data = data.astype(retriever.dtype)
    retriever.scores = {"data": data, "indices": indices, "indptr": indptr,
                        "num_docs": len(ids)}
    retriever.nonoccurrence_array = None
    if "" not in vocab:  # as bm25s.BM25.index does for token-string corpora
        vocab[""] = max(vocab.values(), default=-1) + 1
    retriever.vocab_dict = vocab
    retriever.unique_token_ids_set = set(vocab.values())
    return BM25(retriever)
