"""`qa serve --ray`: the JSON API and the chat page as a Ray Serve application.

    serve_on_ray(settings, address=None, host="127.0.0.1", port=7860, replicas=2)

Deployments of the application "cited-qa":

- `shard-000`, `shard-001`, ...: one per shard of the live generation (pinned: a replica
  that restarts loads the same generation), each holding that shard's FAISS index,
  BM25, chunks, sentences and vectors (`qa.retrieval.sharded.shard.ShardReader`) and answering
  rank / rows / sentence_rows / quote calls. A plain, single-machine index is one shard.
- `answerer`: `replicas` replicas behind Ray Serve's HTTP proxy, each with the encoder,
  the reader and a `ShardedIndex` over handles to the shard deployments, serving the
  very FastAPI app of `qa serve` (qa.api.create_app, plus the chat page through the
  `cited_qa.ui` entry point). Ray Serve restarts a replica that dies; the proxy sends new
  requests to the live ones.

Nothing here is an RPC of our own: the calls are Ray Serve deployment handles.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

from ray import serve
from ray.serve import context as serve_context

from qa.cluster import connect
from qa.errors import BadInput

log = logging.getLogger(__name__)

APP = "cited-qa"


class HandleClient:
    """A shard deployment as ShardedIndex wants it: `submit(method, *args).result()`."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def submit(self, method: str, *args):
        return getattr(self.handle, method).remote(*args)


@serve.deployment(max_ongoing_requests=64, ray_actor_options={"num_cpus": 0},
                  health_check_period_s=2)
class Shard:
    """One shard in memory (qa.retrieval.sharded.shard.ShardReader), answering the view's calls."""

    def __init__(self, generation: str, number: int) -> None:
        from qa.retrieval.sharded.shard import ShardReader

        self.reader = ShardReader.open(Path(generation), number)

    def info(self):
        return self.reader.info()

    def lexicon(self):
        return self.reader.lexicon()

    def rank(self, vector, tokens, k):
        return self.reader.rank(vector, tokens, k)

    def rows(self, ids):
        return self.reader.rows(ids)

    def sentence_rows(self, ids):
        return self.reader.sentence_rows(ids)

    def quote(self, first, last):
        return self.reader.quote(first, last)


@serve.deployment(max_ongoing_requests=16, ray_actor_options={"num_cpus": 0},
                  health_check_period_s=2, graceful_shutdown_timeout_s=5)
@serve.ingress()
class Answerer:
    """The API and chat page of `qa serve` (qa.api.create_app + mount_uis), answering
    from a ShardedIndex over the shard deployments."""

    async def __init__(self, settings, generation: str, *shards) -> None:
        from qa.answering.reading import load_stage
        from qa.cluster.assistant import ShardedAssistant
        from qa.engine import load_encoder_for

        clients = [HandleClient(h) for h in shards]
        infos = [await c.submit("info") for c in clients]
        lexicon = await clients[0].submit("lexicon")
        index = _view(clients, infos, lexicon, Path(generation))
        self.assistant = ShardedAssistant(settings, load_encoder_for(settings), index,
                                          load_stage(settings))

    def __serve_build_asgi_app__(self):
        from qa.api import create_app, mount_uis

        app, _ = mount_uis(create_app(self.assistant), self.assistant)
        return app


def application(generation: Path, settings, replicas: int, n_shards: int):
    """The bound application: one Shard deployment per shard, `replicas` answerers."""
    shard_apps = [Shard.options(name=f"shard-{k:03d}").bind(str(generation), k)
                  for k in range(n_shards)]
    return Answerer.options(name="answerer", num_replicas=replicas).bind(
        settings, str(generation), *shard_apps)


def _view(clients, infos, lexicon, generation: Path):
    from embeddings import store
    from qa.retrieval.sharded.view import ShardedIndex, _whole_manifest

    top = store.generation_manifest(generation)
    manifest = top if top is not None else _whole_manifest(infos, lexicon)
    return ShardedIndex(clients, infos, manifest, lexicon, generation)


def _check_proxy_address(host: str, port: int) -> None:
    """Ray Serve runs one HTTP proxy per cluster: once started, `serve.start` ignores a new
    host or port (it only logs a warning), so the URL we print would be wrong. Say so."""
    find = getattr(serve_context, "_get_global_client", None)
    if find is None:  # another Ray Serve version: nothing to compare
        return
    client = find(raise_if_no_controller_running=False)
    config = getattr(client, "http_config", None)
    if config is not None and (config.host, config.port) != (host, port):
        raise BadInput(f"Ray Serve on this cluster already listens on {config.host}:"
                       f"{config.port}, and one cluster has one HTTP proxy: serve there "
                       f"(--host {config.host} --port {config.port}), or stop Serve first "
                       "(`serve shutdown -y`)")


def deploy(settings, *, address: str | None = None, host: str = "127.0.0.1",
           port: int = 7860, replicas: int = 2, build: bool = True):
    """Build the index on the cluster if it is stale, then run the application on Ray
    Serve (HTTP proxy on host:port). Returns the base URL; the application keeps running
    in the cluster until `serve.delete(APP)` or the cluster stops."""
    connect(address)
    from embeddings import store
    from embeddings.indexer import staleness
    from qa.retrieval.sharded import layout

    if build:
        stale = staleness(settings.corpus, settings.index_dir, settings.index_config(),
                          settings.exclude)
        if stale:
            from qa.cluster.build import build_on_ray

            log.warning("building the index on the cluster: %s", stale)
            print(build_on_ray(settings).summary(), file=sys.stderr, flush=True)
    generation = store.current_generation(settings.index_dir)
    manifest = store.generation_manifest(generation)
    if generation is None or manifest is None:
        raise store.IndexUnusable(f"no index at {settings.index_dir}; build it with: "
                                  f"qa index --ray --index {settings.index_dir}")
    n_shards = len(layout.shards_of(generation, manifest))
    _check_proxy_address(host, port)
    serve.start(http_options={"host": host, "port": port})
    app = application(generation, settings, replicas, n_shards)
    serve.run(app, name=APP, route_prefix="/", blocking=False)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


def serve_on_ray(settings, *, address: str | None = None, host: str = "127.0.0.1",
                 port: int = 7860, replicas: int = 2) -> None:
    """`qa serve --ray`: deploy, print the address, and keep the driver alive until
    interrupted; then delete the application (a cluster started for this process stops
    with it)."""
    url = deploy(settings, address=address, host=host, port=port, replicas=replicas)
    print(f"Chat page: {url}/  API docs: {url}/docs  (Ray Serve application {APP!r})",
          flush=True)
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.api_key:
        print(f"warning: listening on {host}, reachable from other machines; the API "
              "has no authentication (--insecure-no-key)", file=sys.stderr, flush=True)
    stop = threading.Event()
    # Ctrl-C or a TERM ends the driver cleanly (Ray's own handlers would otherwise keep
    # the process waiting); the application is deleted on the way out
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        stop.wait()
    finally:
        print("stopping: deleting the Ray Serve application", file=sys.stderr, flush=True)
        serve.delete(APP)
