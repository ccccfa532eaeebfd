"""Serving: `serve()` (the `qa serve` command), `serve_in_thread()` (tests, embedding),
and `mount_uis()`, which adds the user interfaces registered under the entry-point group
`cited_qa.ui` (`mount(app, assistant) -> app`). This package never imports them itself,
so the dependency stays one-way: embeddings -> qa -> ui."""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from fastapi import FastAPI

from qa.api.routes import create_app

if TYPE_CHECKING:  # pragma: no cover
    from qa.engine import Assistant
    from qa.settings import Settings

log = logging.getLogger("qa.api")

UI_ENTRY_POINT_GROUP = "cited_qa.ui"


def mount_uis(app: FastAPI, assistant: Assistant) -> tuple[FastAPI, list[str]]:
    """Mount every user interface registered under the `cited_qa.ui` entry-point group.

    Returns (app, names mounted). A UI that fails to load is logged and skipped: the
    API keeps working without it.
    """
    mounted = []
    for ep in sorted(entry_points(group=UI_ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            mount = ep.load()
            app = mount(app, assistant)
            mounted.append(ep.name)
        except Exception:  # noqa: BLE001 - a broken UI must not take the API down
            log.exception("could not mount user interface %r (%s)", ep.name, ep.value)
    return app, mounted


def _bind(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket on host:port (port 0 picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SystemExit(f"qa serve: error: unknown host {host!r} ({exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise SystemExit(f"qa serve: error: cannot listen on {host}:{port} "
                         f"({exc.strerror or exc}); is another server using it? "
                         "Pick another with --port") from None
    sock.set_inheritable(True)
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Load the model and index (building it if missing), then serve the API and every
    registered UI on http://host:port until interrupted. Never opens a public link."""
    import uvicorn

    from qa.engine import Assistant

    sock = _bind(host, port)  # fail fast if the port is taken, before the slow load
    try:
        print("loading model and index…", file=sys.stderr, flush=True)
        log.info("loading model and index from %s", settings.index_dir)
        assistant = Assistant.load(settings=settings, progress=True)
        app, mounted = mount_uis(create_app(assistant), assistant)
        url = _url(sock)
        if mounted:
            print(f"Chat page: {url}/  API docs: {url}/docs", flush=True)
        else:
            print(f"No chat page installed (entry-point group {UI_ENTRY_POINT_GROUP!r} is "
                  f"empty). API: {url}/api/  API docs: {url}/docs", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            if settings.api_key:
                print(f"listening on {host}, reachable from other machines: every route but "
                      "/api/health asks for the key; put TLS in front (docs/ui.md), a key "
                      "over plain HTTP can be read on the wire", file=sys.stderr, flush=True)
            else:
                print(f"warning: listening on {host}, reachable from other machines, with "
                      "NO key (--insecure-no-key): anyone can read, upload and delete "
                      "documents", file=sys.stderr, flush=True)
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


@contextlib.contextmanager
def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0,
                    timeout: float = 30.0) -> Iterator[str]:
    """Run `app` with uvicorn in a background thread; yield its base URL
    ("http://127.0.0.1:PORT"), and stop it on exit. For tests and embedding."""
    import uvicorn

    sock = _bind(host, port)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning",
                                           timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name="qa-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield _url(sock)
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
