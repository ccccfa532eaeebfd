"""How failures become JSON `{"error": "..."}` responses.

By kind (`qa.errors`): `BadInput` -> 400, `Unusable` -> 503 (the message names the
command that fixes it), `Busy` -> 409. FastAPI's validation errors -> 422 with one line
per field (400 for a body that isn't JSON, 415 for one not sent as JSON); its HTTP
errors keep their status in the `{"error"}` shape; anything else -> 500, logged.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import BadInput, Busy, QuestionError, Unusable

log = logging.getLogger("qa.api")


# --- error kinds -----------------------------------------------------------------------


def _kinds() -> tuple[tuple, tuple]:
    """(Unusable kinds, Busy kinds): the index store's own errors count as these kinds
    whether or not they derive from them yet."""
    from embeddings.store import IndexBusy, IndexUnusable

    return (Unusable, IndexUnusable), (Busy, IndexBusy)


def kind_response(exc: BaseException) -> JSONResponse | None:
    """The response for an error of a known kind, or None for any other exception.

    Unusable is checked first: the store's IndexUnusable may still be a ValueError."""
    unusable, busy = _kinds()
    if isinstance(exc, unusable):
        log.error("cannot serve: %s", exc)
        return JSONResponse({"error": str(exc)}, status_code=503)
    if isinstance(exc, busy):
        return JSONResponse({"error": str(exc)}, status_code=409)
    if isinstance(exc, BadInput):
        message = str(exc)
        if isinstance(exc, QuestionError) and not message.startswith("question"):
            message = f"question: {message}"
        return JSONResponse({"error": message}, status_code=400)
    return None


def reread_text(corpus, record) -> str | None:
    """The text of an indexed file read again from the corpus, when the index holds none
    (built before texts were kept) and the file is unchanged; else None."""
    from pathlib import Path

    from embeddings.documents import read_document

    if corpus is None:
        return None
    path = Path(corpus) / record.source
    doc = read_document(path, record.source) if path.is_file() else None
    if doc is None or doc.sha256 != record.sha256:
        return None
    return doc.text


def not_found_message(path: str) -> str:
    return f"no such page: {path} (the API is under /api/, see /docs)"


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


# --- the handlers ----------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Register the exception handlers on `app`."""

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
        elif exc.status_code == 404 and message == "Not Found":
            message = not_found_message(request.url.path)
        return JSONResponse({"error": message}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path,
                  exc_info=exc)
        return JSONResponse({"error": "internal server error (logged on the server)"},
                            status_code=500)

    async def _on_kind(request: Request, exc: Exception) -> JSONResponse:
        response = kind_response(exc)
        return response if response is not None else await _on_crash(request, exc)

    unusable, busy = _kinds()
    for kind in dict.fromkeys((BadInput, *unusable, *busy)):
        app.add_exception_handler(kind, _on_kind)
