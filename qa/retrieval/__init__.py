"""Retrieval: from a question to the passages worth reading. Runs when a question is
answered; nothing here reads a model but the encoder's vector the query carries.

- `conversation`: a follow-up is searched with the names of the earlier turns.
- `query`: `Query`, the question as searched (vector, tokens, `Terms`), built once.
- `index`: `Index`, the loaded index folder (chunks, sentences, vectors, BM25) and its
  `search` (dense + BM25, fused).
- `fusion`: reciprocal rank fusion (`rrf`, `best_fused`).
- `retrieve`: `SearchSettings`, `Passage`, top-n, near-duplicate collapsing and `fuse`.
- `folder`: `open_index`, any index folder (plain or sharded) opened for answering.
- `sharded`: the sharded index folder of `qa index --ray` and `ShardedIndex`, read in one
  process or through Ray Serve (no Ray here).
"""

__all__ = ["conversation", "folder", "fusion", "index", "query", "retrieve", "sharded"]
