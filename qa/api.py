"""The JSON API (FastAPI) and `serve()`, which also mounts the chat page.

    from qa import Assistant
    from qa.api import create_app
    app = create_app(Assistant.load(corpus="seeds"))   # an ASGI app: uvicorn, TestClient...

Routes (every error is JSON `{"error": "..."}` with a 4xx/5xx status):

    POST /api/answer     {"question": str, "top_k": int?, "history": [{"question", "answer"}]?}
    GET  /api/health     status, document/chunk counts, model, index build time
    GET  /api/documents  the indexed files
    POST /api/reload     re-read the corpus (incremental) and swap the index in, no downtime
    GET  /docs           OpenAPI documentation of the above

`serve()` adds the user interfaces registered under the entry-point group `cited_qa.ui`
(`mount(app, assistant) -> app`); this package never imports them itself, so the
dependency stays one-way: embeddings -> qa -> ui.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:  # pragma: no cover
    from qa.engine import Assistant
    from qa.settings import Settings

log = logging.getLogger(__name__)

UI_ENTRY_POINT_GROUP = "cited_qa.ui"
MAX_BODY_BYTES = 64 * 1024  # request bodies under /api/ larger than this get 413
MAX_HISTORY_TURNS = 50
API_PREFIX = "/api/"
_T0 = "cited_qa.t0"  # ASGI scope key: when the request arrived (perf_counter seconds)


# --- request and response models -------------------------------------------------------


class Turn(BaseModel):
    """One earlier turn of the conversation."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(description="The question asked in that turn.")
    answer: str = Field("", description="The answer given (may be empty).")


class AnswerRequest(BaseModel):
    """A question, optionally with the conversation so far (for follow-ups)."""

    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [
            {"question": "Does the US support Taiwan independence?"},
            {"question": "What did he say about North Korea?", "top_k": 3,
             "history": [{"question": "What did Blinken say about Taiwan?",
                          "answer": "Blinken repeated that the United States does not "
                                    "support the independence of Taiwan."}]},
        ]})

    question: str = Field(
        description="The question. White space is normalised; it must not be empty and "
                    "must not exceed the server's limit (1000 characters by default).")
    top_k: int | None = Field(
        None, ge=1, le=50,
        description="How many retrieved passages to return (1-50; default: the server "
                    "setting, 5).")
    history: list[Turn] | None = Field(
        None, max_length=MAX_HISTORY_TURNS,
        description="Earlier turns, oldest first. A follow-up such as \"What did he say "
                    "about North Korea?\" is searched together with names from the "
                    "previous question.")


class CitationOut(BaseModel):
    source: str = Field(description="File path relative to the corpus folder.")
    title: str = Field(description="The document's title.")
    quote: str = Field(description="Verbatim text: equals file_text[start:end].")
    start: int = Field(description="Character offset of the quote in the file's text.")
    end: int = Field(description="Character offset just past the quote.")
    score: float = Field(description="0..1: the answer's confidence for citations[0]; "
                                     "similarity to the answer for the others.")


class PassageOut(BaseModel):
    source: str = Field(description="File path relative to the corpus folder.")
    text: str = Field(description="The passage: file_text[start:end].")
    start: int = Field(description="Character offset of the passage in the file's text.")
    end: int = Field(description="Character offset just past the passage.")
    score: float = Field(description="Fused retrieval score, 0..1.")
    also: list[str] = Field(default_factory=list,
                            description="Other files holding a near-identical passage.")


class AnswerResponse(BaseModel):
    question: str = Field(description="The question as understood (white space normalised).")
    answer: str = Field(description="A sentence (or two) quoted verbatim from the corpus, or "
                                    "the abstention text when answerable is false.")
    answerable: bool = Field(description="False when the documents don't answer the question.")
    confidence: float = Field(description="0..1; below the calibrated threshold the "
                                          "assistant abstains.")
    citations: list[CitationOut] = Field(
        description="citations[0] is the answer's source; later ones are other documents "
                    "stating the same fact. Empty when not answerable.")
    passages: list[PassageOut] = Field(
        description="The top retrieved passages, best first (related material when not "
                    "answerable).")
    searched_for: str = Field(description="The text actually searched: the question, "
                                          "completed from the history for follow-ups.")
    timings_ms: dict[str, float] = Field(
        description="Milliseconds per stage: encode, retrieve, answer, total (engine) and "
                    "server (arrival of the request to the response, queueing included).")


class HealthResponse(BaseModel):
    status: str = Field(description="\"ok\" when the index is loaded and answering.")
    documents: int = Field(description="Indexed files.")
    chunks: int = Field(description="Indexed passages.")
    sentences: int = Field(description="Indexed sentences.")
    model: str | None = Field(description="Embedding model the index was built with.")
    built_at: str | None = Field(description="When the live index was built (local time, "
                                             "ISO 8601).")
    build_seconds: float | None = Field(None, description="How long that build took.")


class DocumentOut(BaseModel):
    source: str = Field(description="File path relative to the corpus folder.")
    title: str = Field(description="Title (the first content line).")
    date: str | None = Field(description="Publication date found in the file (YYYY-MM-DD), "
                                         "if any.")
    chunks: int = Field(description="Passages indexed from this file.")
    sentences: int = Field(description="Sentences indexed from this file.")
    chars: int = Field(description="Length of the file's text in characters.")
    sha256: str = Field(description="SHA-256 of the file's bytes.")


class DocumentsResponse(BaseModel):
    count: int = Field(description="Number of indexed files.")
    documents: list[DocumentOut]


class ReloadResponse(BaseModel):
    status: str = Field(description="\"reloaded\".")
    summary: str = Field(description="What the build did, in one line.")
    files: int
    added: list[str]
    changed: list[str]
    removed: list[str]
    chunks: int
    sentences: int
    embedded: int = Field(description="Texts sent to the embedding model.")
    seconds: float = Field(description="Wall time of the build.")


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong, in words.")


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text} for code, text in (
        (400, "Invalid JSON, or a question the engine can't use (empty, too long)."),
        (413, f"Request body over {MAX_BODY_BYTES} bytes."),
        (415, "Body not sent as application/json."),
        (422, "Wrong field types or values, missing or unknown fields."),
        (500, "Unexpected server error (logged)."),
    )
}


# --- request guard: body size limit and arrival time ----------------------------------


class _ApiGuard:
    """ASGI middleware for /api/ requests: note the arrival time and refuse bodies over
    `max_body` bytes with 413, whether announced by Content-Length or streamed."""

    def __init__(self, app, max_body: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        scope[_T0] = time.perf_counter()
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                await _send_error(send, 400, "invalid Content-Length header")
                return
            if announced > self.max_body:
                await _send_error(send, 413, f"request body is {announced} bytes; the limit "
                                             f"is {self.max_body}")
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                await _send_error(send, 413, f"request body is over the limit of "
                                             f"{self.max_body} bytes")
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_error(send, status: int, message: str) -> None:
    response = JSONResponse({"error": message}, status_code=status)
    await send({"type": "http.response.start", "status": status,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# --- validation messages ---------------------------------------------------------------


def _where(loc: tuple) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "request body"


def _describe(err: dict) -> str:
    kind = err.get("type", "")
    where = _where(tuple(err.get("loc", ())))
    if kind == "missing":
        if where == "request body":
            return 'request body is missing: send a JSON object such as {"question": "..."}'
        return f"{where}: this field is required"
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    msg = err.get("msg", "invalid value")
    value = err.get("input")
    if kind.endswith("_type") and value is not None and where != "request body":
        msg += f" (got {type(value).__name__})"
    return f"{where}: {msg}"


def validation_message(errors: list[dict]) -> tuple[int, str]:
    """(status, message) for FastAPI validation errors: 400 for a body that isn't JSON,
    422 for JSON of the wrong shape."""
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return 400, f"the request body is not valid JSON{': ' + detail if detail else ''}"
    if not errors:
        return 422, "invalid request"
    lines = list(dict.fromkeys(_describe(e) for e in errors[:10]))
    if any(e.get("type") == "extra_forbidden" for e in errors):
        lines.append("allowed fields: question, top_k, history (turns: question, answer)")
    return 422, "; ".join(lines)


# --- the app ---------------------------------------------------------------------------


def _manifest(assistant: Assistant) -> dict:
    manifest = assistant.index.data.manifest
    return manifest if isinstance(manifest, dict) else {}


def create_app(assistant: Assistant, *, max_body_bytes: int = MAX_BODY_BYTES,
               max_concurrent: int | None = None) -> FastAPI:
    """The FastAPI app with the JSON API over `assistant` (see the module doc).

    max_concurrent: questions answered at the same time (others wait their turn);
    default: `assistant.settings.api_concurrency`, else the number of CPU cores. The
    model already uses every core for one question, so running more at once only adds
    contention.
    """
    import os

    from qa.engine import QuestionError

    if max_concurrent is None:
        max_concurrent = assistant.settings.api_concurrency or os.cpu_count() or 1
    gate = threading.BoundedSemaphore(max(1, max_concurrent))

    app = FastAPI(
        title="cited-qa",
        version="0.1.0",
        summary="Answers questions from a folder of articles with verbatim, cited quotes.",
        description="Every answer is a sentence quoted verbatim from one of the indexed "
                    "files, with its exact character offsets; when the documents don't "
                    "answer, `answerable` is false and the closest passages are returned "
                    "as related material. Errors are JSON: `{\"error\": \"...\"}`.",
    )
    app.state.assistant = assistant
    app.add_middleware(_ApiGuard, max_body=max_body_bytes)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        kind = request.headers.get("content-type", "")
        media = kind.split(";")[0].strip().lower()
        if kind and not (media == "application/json" or media.endswith("+json")):
            return JSONResponse({"error": f"send the body as JSON with Content-Type: "
                                          f"application/json (got {kind[:100]!r})"},
                                status_code=415)
        status, message = validation_message(list(exc.errors()))
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if message == "There was an error parsing the body":  # FastAPI's words
            message = "the request body is not valid JSON (it must be UTF-8 encoded JSON)"
        return JSONResponse({"error": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path,
                  exc_info=exc)
        return JSONResponse({"error": "internal server error (logged on the server)"},
                            status_code=500)

    @app.post("/api/answer", response_model=AnswerResponse, responses=_ERRORS,
              summary="Answer a question with cited quotes", tags=["answers"])
    def answer(body: AnswerRequest, request: Request) -> dict:
        """Answer one question from the indexed documents.

        The answer is a verbatim quote; `citations[0]` gives its file and character
        offsets (`quote == file_text[start:end]`), later citations are other files
        stating the same fact. When `answerable` is false the documents don't answer
        the question and `passages` are only related material.
        """
        history = [t.model_dump() for t in body.history] if body.history else None
        try:
            with gate:
                result = assistant.ask(body.question, top_k=body.top_k, history=history)
        except QuestionError as exc:
            message = str(exc)
            if not message.startswith("question"):
                message = f"question: {message}"
            return JSONResponse({"error": message}, status_code=400)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        except Exception:  # noqa: BLE001 - one bad request must never take the server down
            log.exception("answering %r failed", body.question[:200])
            return JSONResponse({"error": "internal error while answering (logged on the "
                                          "server)"}, status_code=500)
        out = result.to_dict()
        out["question"] = result.question
        out["searched_for"] = result.searched_for
        timings = dict(result.timings_ms)
        t0 = request.scope.get(_T0)
        if t0 is not None:
            timings["server"] = round((time.perf_counter() - t0) * 1000, 2)
        out["timings_ms"] = timings
        return out

    @app.get("/api/health", response_model=HealthResponse, tags=["index"],
             summary="Is the server up, and what is indexed")
    async def health() -> dict:
        """Status and the live index: counts, model and build time."""
        manifest = _manifest(assistant)
        data = assistant.index.data
        counts = manifest.get("counts") or {}
        return {"status": "ok",
                "documents": int(counts.get("documents", len(data.documents))),
                "chunks": int(counts.get("chunks", len(data.chunks))),
                "sentences": int(counts.get("sentences", len(data.sentences))),
                "model": manifest.get("model"),
                "built_at": manifest.get("built_at"),
                "build_seconds": manifest.get("build_seconds")}

    @app.get("/api/documents", response_model=DocumentsResponse, tags=["index"],
             summary="List the indexed files")
    async def documents() -> dict:
        """Every indexed file with its title, date and number of passages."""
        docs = [{"source": d.source, "title": d.title, "date": d.date, "chunks": d.chunks,
                 "sentences": d.sentences, "chars": d.chars, "sha256": d.sha256}
                for d in assistant.index.data.documents]
        return {"count": len(docs), "documents": docs}

    @app.post("/api/reload", response_model=ReloadResponse, tags=["index"],
              responses={409: {"model": ErrorResponse,
                               "description": "Another process is writing the index."},
                         500: _ERRORS[500]},
              summary="Re-read the corpus and swap in the new index")
    def reload() -> dict:
        """Index new and changed files (incrementally), drop deleted ones, and swap the
        new index in. Questions keep being answered from the old index meanwhile."""
        from embeddings.store import IndexBusy

        try:
            report = assistant.reload()
        except IndexBusy as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        except Exception as exc:  # noqa: BLE001 - report, keep serving the old index
            log.exception("reload failed")
            return JSONResponse({"error": f"reload failed: {exc}"}, status_code=500)
        if report is None:  # pragma: no cover - reload(update=True) always builds
            data = assistant.index.data
            return {"status": "reloaded", "summary": "index reloaded",
                    "files": len(data.documents), "added": [], "changed": [],
                    "removed": [], "chunks": len(data.chunks),
                    "sentences": len(data.sentences), "embedded": 0, "seconds": 0.0}
        return {"status": "reloaded", "summary": report.summary(), "files": report.files,
                "added": list(report.added), "changed": list(report.changed),
                "removed": list(report.removed), "chunks": report.chunks,
                "sentences": report.sentences, "embedded": report.embedded,
                "seconds": round(report.seconds, 3)}

    api_routes = [r for r in app.routes if getattr(r, "path", "").startswith(API_PREFIX)]

    @app.api_route("/api/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE",
                                                "HEAD", "OPTIONS"],
                   include_in_schema=False)
    async def unknown(rest: str, request: Request) -> JSONResponse:
        path = request.url.path
        allowed = sorted({m for r in api_routes if r.path == path for m in r.methods})
        if allowed:
            return JSONResponse({"error": f"{request.method} is not allowed on {path}; "
                                          f"use {', '.join(allowed)}"},
                                status_code=405, headers={"Allow": ", ".join(allowed)})
        return JSONResponse({"error": f"no such endpoint: {path} (see /docs)"},
                            status_code=404)

    return app


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
            print(f"warning: listening on {host}, reachable from other machines; the API "
                  "has no authentication", file=sys.stderr, flush=True)
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
