"""Tiny hand-made indexes for unit tests that need no model.

`tiny_index({source: text})` chunks and splits the texts with the product's own code and
gives every chunk and sentence a bag-of-words vector (`embed`): a deterministic stand-in
for the model whose cosines follow shared words, so retrieval and features behave
predictably. Not a test file: test modules import it.
"""

from __future__ import annotations

import hashlib

import numpy as np

from embeddings import records, store
from embeddings.chunking import Chunk, chunk_sentences, sentences_of, token_counter
from embeddings.documents import Document
from embeddings.lexical import BM25, tokenize
from qa.retrieval.index import Index
from qa.retrieval.query import Query, make_query

DIM = 64


def embed(text: str, dim: int = DIM) -> np.ndarray:
    """Unit bag-of-words vector of `text` (its tokens hashed into `dim` buckets)."""
    v = np.zeros(dim, dtype=np.float32)
    for t in tokenize(text):
        v[int(hashlib.sha1(t.encode()).hexdigest(), 16) % dim] += 1.0
    n = float(np.linalg.norm(v))
    if n == 0:
        v[0] = 1.0
        n = 1.0
    return v / n


def tiny_data(texts: dict[str, str], chunk_tokens: int = 40,
              overlap: int = 10) -> records.IndexData:
    count = token_counter()
    docs, chunks, sentences = [], [], []
    for source, text in texts.items():
        doc = Document(source, text, source.split(".")[0].title(), None, ((0, len(text)),),
                       f"sha-{source}")
        sents = sentences_of(doc, 96, count)
        base = len(sentences)
        cs = chunk_sentences(doc, sents, chunk_tokens, overlap, count)
        sentences.extend(sents)
        chunks.extend(Chunk(c.source, c.start, c.end, c.text, c.first + base, c.last + base,
                            c.tokens) for c in cs)
        docs.append(records.DocumentRecord(source, doc.title, None, doc.sha256, len(text),
                                         len(cs), len(sents)))
    manifest = store.make_manifest("bag-of-words", DIM, {"x": 1}, docs, len(chunks),
                                   len(sentences), 0.0)
    return records.IndexData(manifest, tuple(docs), tuple(chunks), tuple(sentences),
                           np.vstack([embed(c.text) for c in chunks]),
                           np.vstack([embed(s.text) for s in sentences]))


def tiny_index(texts: dict[str, str], **kwargs) -> Index:
    """An Index over `texts` with exact FAISS search and real BM25, built in memory."""
    import faiss

    data = tiny_data(texts, **kwargs)
    vectors = faiss.IndexFlatIP(DIM)
    vectors.add(data.chunk_vectors)
    return Index(data, BM25.build([c.text for c in data.chunks]), vectors)


def query_of(index: Index, text: str, searched_for: str | None = None) -> Query:
    searched = searched_for or text
    return make_query(text, searched, embed(searched), index.idf, index.n_chunks)
