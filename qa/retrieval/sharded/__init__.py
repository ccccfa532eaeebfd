"""The sharded index folder (`qa index --ray` writes it) and how it is read, without Ray:

- `layout`: a top generation naming N shards, each a complete index folder; how sources
  are split; the atomic switch.
- `lexicon`: BM25 with corpus-wide statistics, so a shard scores its chunks exactly as one
  index over the whole corpus would.
- `shard`: `ShardReader`, one shard in memory answering `rank` / `rows` / `quote` calls in
  global ids; `LocalClient` calls one in this process.
- `view`: `ShardedIndex`, what `qa.retrieval.index.Index` offers the answerer, over shard
  clients (in this process, or Ray Serve handles: `qa.cluster.serve`).
"""

__all__ = ["layout", "lexicon", "shard", "view"]
