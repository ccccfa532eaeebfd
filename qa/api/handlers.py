"""How failures become JSON `{"error": "..."}` responses.

By kind (`qa.errors`): `BadInput` -> 400, `Unusable` -> 503 (the message names the
command that fixes it), `Busy` -> 409. FastAPI's validation errors -> 422 with one line
per field (400 for a body that isn't JSON, 415 for one not sent as JSON); its HTTP
errors keep their status in the `{"error"}` shape; anything else -> 500, logged.

Under /v1/ (the OpenAI-compatible API) the same failures take OpenAI's shape,
`{"error": {"message", "type", "param", "code"}}` (`error_response`), and a body of the
wrong shape is 400, as OpenAI answers it.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from qa.errors import BadInput, Busy, QuestionError, Unusable

log = logging.getLogger("qa.api")

OPENAI_PREFIX = "/v1/"  # the OpenAI-compatible API (qa/api/openai_routes.py)


# --- the two error shapes --------------------------------------------------------------


def is_openai_path(path: str) -> bool:
    return path.startswith(OPENAI_PREFIX) or path == OPENAI_PREFIX.rstrip("/")


def openai_error(status: int, message: str, code: str | None = None,
                 param: str | None = None) -> dict:
    """OpenAI's error object: `type` is invalid_request_error for 4xx, server_error else."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def error_response(path: str, status: int, message: str, headers: dict | None = None, *,
                   code: str | None = None, param: str | None = None) -> JSONResponse:
    """The error response for a request to `path`: OpenAI's shape under /v1/,
    `{"error": message}` everywhere else."""
    body = (openai_error(status, message, code, param) if is_openai_path(path)
            else {"error": message})
    return JSONResponse(body, status_code=status, headers=headers)


# --- error kinds -----------------------------------------------------------------------


def _kinds() -> tuple[tuple, tuple]:
    """(Unusable kinds, Busy kinds): the index store's own errors count as these kinds
    whether or not they derive from them yet."""
    from embeddings.store import IndexBusy, IndexUnusable

    return (Unusable, IndexUnusable), (Busy, IndexBusy)


def kind_response(exc: BaseException, path: str = "/api/") -> JSONResponse | None:
    """The response for an error of a known kind, or None for any other exception
    (`path`: the request's, which decides the error's shape).

    Unusable is checked first: the store's IndexUnusable may still be a ValueError."""
    unusable, busy = _kinds()
    if isinstance(exc, unusable):
        log.error("cannot serve: %s", exc)
        return error_response(path, 503, str(exc))
    if isinstance(exc, busy):
        return error_response(path, 409, str(exc))
    if isinstance(exc, BadInput):
        message = str(exc)
        if isinstance(exc, QuestionError) and not message.startswith("question"):
            message = f"question: {message}"
        return error_response(path, 400, message)
    return None


def reread_text(path, record) -> str | None:
    """The text of an indexed file read again from `path` (`Settings.source_path`), when
    the index holds none (built before texts were kept) and the file is unchanged; else
    None."""
    from embeddings.documents import read_document

    if path is None:
        return None
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


ANSWER_EXAMPLE = '{"question": "..."}'
CHAT_EXAMPLE = '{"model": "cited-qa", "messages": [{"role": "user", "content": "..."}]}'


def _describe(err: dict, example: str) -> str:
    kind = err.get("type", "")
    where = _where(tuple(err.get("loc", ())))
    if kind == "missing":
        if where == "request body":
            return f"request body is missing: send a JSON object such as {example}"
        return f"{where}: this field is required"
    if kind == "extra_forbidden":
        return f"{where}: unknown field"
    msg = err.get("msg", "invalid value")
    value = err.get("input")
    if kind.endswith("_type") and value is not None and where != "request body":
        msg += f" (got {type(value).__name__})"
    return f"{where}: {msg}"


def validation_message(errors: list[dict], example: str = ANSWER_EXAMPLE) -> tuple[int, str]:
    """(status, message) for FastAPI validation errors: 400 for a body that isn't JSON,
    422 for JSON of the wrong shape (`example`: a body to suggest when there is none)."""
    for err in errors:
        if err.get("type") == "json_invalid":
            detail = (err.get("ctx") or {}).get("error", "")
            return 400, f"the request body is not valid JSON{': ' + detail if detail else ''}"
    if not errors:
        return 422, "invalid request"
    lines = list(dict.fromkeys(_describe(e, example) for e in errors[:10]))
    if any(e.get("type") == "extra_forbidden" for e in errors):
        lines.append("allowed fields: question, top_k, history (turns: question, answer)")
    return 422, "; ".join(lines)


def _openai_param(errors: list[dict]) -> str | None:
    """The first field a validation error names, as OpenAI's `param` ("messages[0].role")."""
    for err in errors:
        where = _where(tuple(err.get("loc", ())))
        if where != "request body" and err.get("type") != "json_invalid":
            return where
    return None


# --- the handlers ----------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Register the exception handlers on `app`."""

    @app.exception_handler(RequestValidationError)
    async def _on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        kind = request.headers.get("content-type", "")
        media = kind.split(";")[0].strip().lower()
        path = request.url.path
        errors = list(exc.errors())
        about_body = any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors)
        if kind and about_body and not (media == "application/json"
                                        or media.endswith("+json")):
            return error_response(path, 415, "send the body as JSON with Content-Type: "
                                             f"application/json (got {kind[:100]!r})")
        if is_openai_path(path):  # OpenAI answers a body of the wrong shape with 400
            _, message = validation_message(errors, CHAT_EXAMPLE)
            return error_response(path, 400, message, param=_openai_param(errors))
        status, message = validation_message(errors)
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail)
        if message == "There was an error parsing the body":  # FastAPI's words
            message = "the request body is not valid JSON (it must be UTF-8 encoded JSON)"
        elif exc.status_code == 404 and message == "Not Found":
            message = not_found_message(request.url.path)
        return error_response(request.url.path, exc.status_code, message,
                              getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error on %s %s", request.method, request.url.path,
                  exc_info=exc)
        return error_response(request.url.path, 500,
                              "internal server error (logged on the server)")

    async def _on_kind(request: Request, exc: Exception) -> JSONResponse:
        response = kind_response(exc, request.url.path)
        return response if response is not None else await _on_crash(request, exc)

    unusable, busy = _kinds()
    for kind in dict.fromkeys((BadInput, *unusable, *busy)):
        app.add_exception_handler(kind, _on_kind)
