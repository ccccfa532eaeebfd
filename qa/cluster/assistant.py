"""`ShardedAssistant`: the answerer of `qa serve --ray` (no Ray here).

It is today's `Assistant` over a `ShardedIndex` whose shards are Ray Serve deployments
pinned to one generation, so `/api/reload` can't swap in a new build: the cluster rolls
out a new one (`qa index --ray`, then `qa serve --ray`). Plain `qa serve` over a sharded
index is a plain `Assistant` (qa.engine), whose reload re-opens the live generation.
"""

from __future__ import annotations

from qa.engine import Assistant
from qa.errors import BadInput


class ClusterReloadUnavailable(BadInput):
    """/api/reload on a clustered index: rebuilding is `qa index --ray`'s job."""


class ShardedAssistant(Assistant):
    """An Assistant answering from shard deployments. `reload` doesn't build: a sharded
    index is built on the cluster (`qa index --ray`) and served again (`qa serve --ray`,
    which Ray Serve rolls over replica by replica)."""

    def reload(self, update: bool = True):
        raise ClusterReloadUnavailable(
            "this server answers from a sharded index: rebuild it with qa index --ray, "
            "then run qa serve --ray again (Ray Serve replaces the replicas one by one)")
