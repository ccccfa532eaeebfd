"""Past one machine: build the index with Ray Data and answer with Ray Serve.

    pip install -e '.[ray]'
    qa index --ray [ADDRESS]     # read, chunk and embed on the cluster; write N shards
    qa serve --ray [ADDRESS]     # shard deployments + answerer replicas behind Serve's proxy
    qa eval --ray [ADDRESS]      # a question set answered by Ray Data workers
    qa ask --ray [ADDRESS]       # one question, answered in a Ray task

Modules (docs/cluster.md):

The sharded index folder itself and its reading (`layout`, `lexicon`, `shard`, `view`)
need no Ray and live in `qa.retrieval.sharded`, below the engine; this package is what
runs on Ray:

- `assistant`: `ShardedAssistant`, the answerer of `qa serve --ray` (no Ray).
- `stages`: the Ray Data stages as plain functions and the embedding actor class (no Ray).
- `build`: `build_on_ray`, the driver: the Ray Data pipeline over `stages`, the shard
  tasks, the top manifest and the switch.
- `answering`: `qa ask --ray` (a Ray task) and `qa eval --ray` (Ray Data over the
  questions, each worker loading every shard).
- `serve`: `serve_on_ray`, the Ray Serve application.

Plain `qa ask`, `qa eval` and `qa serve` read a sharded index without Ray:
`qa.retrieval.sharded.view` over in-process readers (qa.retrieval.folder.open_index).

Nothing here imports Ray at module level except `serve` (`build` and `answering` at
call time), and the CLI imports those only for `--ray`; `connect` says how to install the
extra when Ray is missing.
"""

from __future__ import annotations

import os

from embeddings import lazy
from qa.errors import Unusable

INSTALL_HINT = "install the cluster extra: pip install -e '.[ray]'"


class RayMissing(Unusable):
    """`--ray` was asked for but Ray is not installed."""


class ClusterUnreachable(Unusable):
    """`--ray ADDRESS` names a cluster this process can't join; the message says why."""


def require_ray():
    """The `ray` module, or RayMissing naming the install command."""
    try:
        ray = lazy.load("ray")
    except ImportError:
        raise RayMissing(f"Ray is not installed; {INSTALL_HINT}") from None
    return ray


def runtime_env(extra: dict | None = None) -> dict:
    """The runtime_env every task and actor of ours runs in: the QA_* settings of this
    process (QA_HOME above all: where the ONNX export is cached), so workers read the
    same settings as the driver. The code itself is the installed package on every node
    (the same `pip install -e '.[ray]'`); add `py_modules`/`working_dir` through `extra`
    (or RAY_RUNTIME_ENV-style job config) for nodes that lack it."""
    env = {k: v for k, v in os.environ.items() if k.startswith("QA_")}
    out = {"env_vars": env}
    for key, value in (extra or {}).items():
        if key == "env_vars":
            out["env_vars"] = {**env, **value}
        else:
            out[key] = value
    return out


def connect(address: str | None = None, **init_args):
    """Connect to a Ray cluster the way Ray does it: `address` ("auto", "ray://...",
    "HOST:PORT"), else $RAY_ADDRESS, else a local Ray started for this process.
    Idempotent; returns the `ray` module."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        ray.init(address=address, runtime_env=runtime_env(), log_to_driver=False,
                 include_dashboard=False if address is None else None, **init_args)
    except ConnectionError as exc:
        cause = str(exc.__cause__ or exc)
        hint = ("the cluster asks for Ray's token authentication (ray start enables it): "
                "export RAY_AUTH_MODE=token on this machine (the token is in "
                "~/.ray/auth_token, or RAY_AUTH_TOKEN)" if "auth" in cause.lower() else
                "start it with: ray start --head --port 6379 (or check the address and "
                "RAY_ADDRESS)")
        raise ClusterUnreachable(f"cannot connect to the Ray cluster at {address}; "
                                 f"{hint}") from exc
    return ray
