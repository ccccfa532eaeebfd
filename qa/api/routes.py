"""The FastAPI app: `create_app(assistant)` with the routes under /api/ and the
OpenAI-compatible ones under /v1/ (qa/api/openai_routes.py).

(No `from __future__ import annotations` here: the request model of /api/answer is made
per app, with that server's question limit, and FastAPI must see the class itself in the
route's signature.)
"""

import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse
from starlette.routing import Route

from qa.api import documents_routes, handlers, openai_routes
from qa.api.auth import KeyGuard, bearer_scheme
from qa.api.guard import API_PREFIX, GRADIO_UPLOAD, T0, ApiGuard, ErrorShape
from qa.api.handlers import OPENAI_PREFIX
from qa.api.schemas import (
    ANSWER_ERRORS,
    INDEX_ERRORS,
    MAX_BODY_BYTES,
    RELOAD_ERRORS,
    TEXT_ERRORS,
    AnswerResponse,
    DocumentTextResponse,
    HealthResponse,
    ReloadResponse,
    answer_request_model,
    error_responses,
)

if TYPE_CHECKING:  # pragma: no cover
    from qa.engine import Assistant

log = logging.getLogger("qa.api")

DESCRIPTION = (
    "Every answer is a sentence quoted verbatim from one of the indexed files, with its "
    "exact character offsets; when the documents don't answer, `answerable` is false and "
    "the closest passages are returned as related material. Errors are JSON: "
    "`{\"error\": \"...\"}`: 400 for input that can't be used, 409 while another process "
    "writes the index, 413/415/422 for the wrong body, 503 when a file the server needs is "
    "missing or damaged (the message names the command that fixes it). Under /v1/, an "
    "OpenAI-compatible chat API (`GET /v1/models`, `POST /v1/chat/completions`) answers "
    "with the same quotes; its errors take OpenAI's shape.")


class _Elsewhere:
    """Every other method or path under /api/ and /v1/: 405 with `Allow` naming the
    methods the path takes, or 404 (in the prefix's error shape)."""

    def __init__(self, allowed: dict[str, tuple]) -> None:
        self.allowed = allowed  # route path -> (its compiled pattern, methods)

    async def __call__(self, scope, receive, send) -> None:
        path, method = scope["path"], scope["method"]
        allowed = next((methods for pattern, methods in self.allowed.values()
                        if pattern.match(path)), None)
        if allowed:
            response = handlers.error_response(
                path, 405, f"{method} is not allowed on {path}; use {', '.join(allowed)}",
                {"Allow": ", ".join(allowed)})
        else:
            response = handlers.error_response(path, 404,
                                               f"no such endpoint: {path} (see /docs)")
        await response(scope, receive, send)


def _manifest(assistant: "Assistant") -> dict:
    manifest = assistant.index.data.manifest
    return manifest if isinstance(manifest, dict) else {}


def create_app(assistant: "Assistant", *, max_body_bytes: int = MAX_BODY_BYTES,
               max_concurrent: int | None = None) -> FastAPI:
    """The FastAPI app with the JSON API over `assistant` (see `qa.api`).

    max_concurrent: questions answered at the same time (others wait their turn);
    default: `assistant.settings.api_concurrency`, else the number of CPU cores. The
    model already uses every core for one question, so running more at once only adds
    contention.
    """
    settings = assistant.settings
    if max_concurrent is None:
        max_concurrent = settings.api_concurrency or os.cpu_count() or 1
    gate = threading.BoundedSemaphore(max(1, max_concurrent))
    max_question_chars = int(settings.max_question_chars)
    request_model = answer_request_model(max_question_chars)

    app = FastAPI(
        title="cited-qa",
        version="0.1.0",
        summary="Answers questions from a folder of articles with verbatim, cited quotes.",
        description=DESCRIPTION,
    )
    app.state.assistant = assistant
    upload_limit = settings.max_upload_mb * 1024 * 1024
    app.add_middleware(ApiGuard, max_body=max_body_bytes, streamed={
        documents_routes.UPLOAD_PATH: upload_limit, GRADIO_UPLOAD: upload_limit})
    protected = settings.api_key is not None
    if protected:  # before the body is read: no key, no 413 either
        app.add_middleware(KeyGuard, key=settings.api_key, failures=settings.auth_failures,
                           window=settings.auth_window, session_hours=settings.session_hours)
    # the key in the OpenAPI document (KeyGuard enforces it, on every path but health)
    security = [Security(bearer_scheme)] if protected else []

    def errors(table: dict) -> dict:
        return {**table, **error_responses(401, 429)} if protected else table
    app.add_middleware(ErrorShape)  # outermost: it also sees what mounted pages answer
    handlers.install(app)

    @app.post("/api/answer", response_model=AnswerResponse, responses=errors(ANSWER_ERRORS),
              dependencies=security, summary="Answer a question with cited quotes",
              tags=["answers"])
    def answer(body: request_model, request: Request) -> dict:
        """Answer one question from the indexed documents.

        The answer is a verbatim quote; `citations[0]` gives its file and character
        offsets (`quote == file_text[start:end]`), later citations are other files
        stating the same fact. When `answerable` is false the documents don't answer
        the question and `passages` are only related material.
        """
        if len(body.question) > max_question_chars:  # as sent: the schema's maxLength
            return JSONResponse({"error": f"question is {len(body.question)} characters "
                                          f"long; the limit is {max_question_chars}"},
                                status_code=400)
        history = [t.model_dump() for t in body.history] if body.history else None
        try:
            with gate:
                result = assistant.ask(body.question, top_k=body.top_k, history=history)
        except Exception as exc:  # noqa: BLE001 - one bad request must never take the server down
            known = handlers.kind_response(exc)
            if known is not None:
                return known
            if isinstance(exc, ValueError):  # bad input not yet raised as BadInput
                return JSONResponse({"error": str(exc)}, status_code=400)
            log.exception("answering %r failed", body.question[:200])
            return JSONResponse({"error": "internal error while answering (logged on the "
                                          "server)"}, status_code=500)
        out = result.to_dict()  # the answer object, the one serialisation
        t0 = request.scope.get(T0)
        if t0 is not None:
            out["timings_ms"]["server"] = round((time.perf_counter() - t0) * 1000, 2)
        return out

    @app.get("/api/health", response_model=HealthResponse, responses=INDEX_ERRORS,
             tags=["index"],
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

    @app.get("/api/documents/{source:path}/text", response_model=DocumentTextResponse,
             responses=errors(TEXT_ERRORS), dependencies=security, tags=["index"],
             summary="The text of one file that citations point into")
    def document_text(source: str) -> dict:
        """The text a citation's `start`/`end` index into, so anyone can check a quote:
        `text[start:end] == quote`. For PDF, Word and HTML files it is the text extracted
        when the file was indexed (pages and headings included); `source` is the path
        relative to the corpus folder, as citations give it."""
        index = assistant.index
        record = index.records.get(source)
        if record is None:
            return JSONResponse({"error": f"no indexed file {source!r} (GET /api/documents "
                                          "lists them)"}, status_code=404)
        try:
            text = index.text(source)
        except Exception as exc:  # noqa: BLE001 - a damaged texts file: say so, keep serving
            known = handlers.kind_response(exc)
            if known is not None:
                return known
            raise
        if text is None:
            text = handlers.reread_text(assistant.settings.source_path(source), record)
        if text is None:
            return JSONResponse({"error": f"the index holds no text for {source!r} and the "
                                          "file changed since it was indexed; update the "
                                          "index (qa index, or POST /api/reload)"},
                                status_code=503)
        return {"source": source, "title": record.title, "text": text, "chars": len(text),
                "pages": list(record.pages),
                "headings": [{"offset": o, "heading": h} for o, h in record.headings]}

    @app.post("/api/reload", response_model=ReloadResponse, tags=["index"],
              responses=errors(RELOAD_ERRORS), dependencies=security,
              summary="Re-read the corpus and swap in the new index")
    def reload() -> dict:
        """Index new and changed files (incrementally), drop deleted ones, and swap the
        new index in. Questions keep being answered from the old index meanwhile."""
        try:
            report = assistant.reload()
        except Exception as exc:  # noqa: BLE001 - report, keep serving the old index
            known = handlers.kind_response(exc)
            if known is not None:
                return known
            log.exception("reload failed")
            return JSONResponse({"error": f"reload failed: {exc}"}, status_code=500)
        if report is None:  # a sharded index: re-opened, built by qa index --ray only
            data = assistant.index.data
            return {"status": "reloaded", "summary": "sharded index re-opened as qa index "
                    "--ray last built it (this server builds no sharded index)",
                    "files": len(data.documents), "added": [], "changed": [],
                    "removed": [], "chunks": len(data.chunks),
                    "sentences": len(data.sentences), "embedded": 0, "seconds": 0.0}
        return {"status": "reloaded", "summary": report.summary(), "files": report.files,
                "added": list(report.added), "changed": list(report.changed),
                "removed": list(report.removed), "chunks": report.chunks,
                "sentences": report.sentences, "embedded": report.embedded,
                "seconds": round(report.seconds, 3)}

    documents_routes.install(app, assistant, security, errors)
    openai_routes.install(app, assistant, gate)

    allowed: dict[str, tuple] = {}
    for route in app.routes:
        path = getattr(route, "path", "")
        if path.startswith((API_PREFIX, OPENAI_PREFIX)):
            methods = allowed.get(path, (None, ()))[1]
            allowed[path] = (route.path_regex, sorted({*methods, *route.methods}))
    # An ASGI app as the endpoint: Starlette's route then takes every method (TRACE,
    # PROPFIND, ...), so none falls through to a page mounted at "/" and its 404.
    elsewhere = _Elsewhere(allowed)
    for prefix in (API_PREFIX, OPENAI_PREFIX):
        app.router.routes.append(Route(prefix + "{rest:path}", elsewhere,
                                       include_in_schema=False))
    return app
