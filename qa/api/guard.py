"""ASGI middleware in front of every route: the body-size limits and arrival time of /api/
and /v1/ requests, and the `{"error": ...}` shape for "no such page" answers of whatever is
mounted beside the API (a chat page's own framework answers 404/405 as `{"detail": ...}`)."""

from __future__ import annotations

import json
import time

from qa.api.handlers import OPENAI_PREFIX, error_response, not_found_message
from qa.api.schemas import MAX_BODY_BYTES, MAX_CHAT_BODY_BYTES

API_PREFIX = "/api/"
GRADIO_UPLOAD = "/gradio_api/upload"  # the chat page framework's own upload route
T0 = "cited_qa.t0"  # ASGI scope key: when the request arrived (perf_counter seconds)


async def send_error(send, status: int, message: str, headers: dict | None = None,
                     path: str = API_PREFIX, code: str | None = None) -> None:
    """Send a complete error response (its shape decided by `path`, `handlers.error_response`)
    through the raw ASGI `send`."""
    response = error_response(path, status, message, headers, code=code)
    await send({"type": "http.response.start", "status": status,
                "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _too_large(limit: int) -> str:
    return f"request body is over the limit of {limit} bytes ({limit / 2**20:g} MiB)"


async def stream_limited(app, scope, receive, send, limit: int) -> None:
    """Pass a request to `app` without holding its body, refusing it with 413 past `limit`
    bytes: at once when Content-Length announces more (nothing of it read), else as soon
    as the bytes received pass it (the app then sees the client gone; its answer is
    replaced by the 413)."""
    path = scope["path"]
    length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
    if length is not None:
        try:
            announced = int(length)
        except ValueError:
            await send_error(send, 400, "invalid Content-Length header", path=path)
            return
        if announced > limit:
            await send_error(send, 413, _too_large(limit), path=path)
            return
    size = 0
    over = False
    started = False

    async def counting_receive():
        nonlocal size, over
        if over:
            return {"type": "http.disconnect"}
        message = await receive()
        size += len(message.get("body", b""))
        if size > limit:
            over = True
            return {"type": "http.disconnect"}
        return message

    async def guarded_send(message) -> None:
        nonlocal started
        if over:
            return
        started = True
        await send(message)

    try:
        await app(scope, counting_receive, guarded_send)
    except Exception:
        if not over:
            raise
    if over and not started:
        await send_error(send, 413, _too_large(limit), path=path)


class ApiGuard:
    """For /api/ and /v1/ requests: note the arrival time and refuse bodies over the
    prefix's limit (`max_body`; `max_chat_body` for /v1/, whose chat history grows with the
    conversation) with 413, whether announced by Content-Length or streamed. The paths in
    `streamed` (uploads) have their own limits and are not held in memory
    (`stream_limited`)."""

    def __init__(self, app, max_body: int = MAX_BODY_BYTES,
                 max_chat_body: int = MAX_CHAT_BODY_BYTES,
                 streamed: dict[str, int] | None = None) -> None:
        self.app = app
        self.limits = {API_PREFIX: max_body, OPENAI_PREFIX: max_chat_body}
        self.streamed = dict(streamed or {})

    async def __call__(self, scope, receive, send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if path in self.streamed:
            scope[T0] = time.perf_counter()
            await stream_limited(self.app, scope, receive, send, self.streamed[path])
            return
        limit = next((n for prefix, n in self.limits.items() if path.startswith(prefix)), None)
        if limit is None:
            await self.app(scope, receive, send)
            return
        scope[T0] = time.perf_counter()
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            try:
                announced = int(length)
            except ValueError:
                await send_error(send, 400, "invalid Content-Length header", path=path)
                return
            if announced > limit:
                await send_error(send, 413, f"request body is {announced} bytes; the limit "
                                            f"is {limit}", path=path)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_error(send, 413, f"request body is over the limit of "
                                            f"{limit} bytes", path=path)
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


class ErrorShape:
    """Outside /api/ and /v1/: rewrite a 404/405 JSON body `{"detail": "..."}` (FastAPI's shape,
    which a mounted chat page's framework uses for unknown paths and wrong methods) into
    `{"error": "..."}`, so every JSON error of the server has one shape. Other
    responses, and HEAD requests (no body), pass through untouched."""

    STATUSES = (404, 405)
    MAX_REWRITE = 64 * 1024  # larger bodies are not error messages: pass them on

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if (scope["type"] != "http" or scope["path"].startswith((API_PREFIX, OPENAI_PREFIX))
                or scope.get("method") == "HEAD"):
            await self.app(scope, receive, send)
            return
        start: dict | None = None
        parts: list[bytes] = []

        async def reshaping_send(message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                kind = next((v for k, v in message.get("headers") or []
                             if k.lower() == b"content-type"), b"").split(b";")[0].strip()
                if message["status"] in self.STATUSES and kind == b"application/json":
                    start = message  # hold it until the body is known
                    return
                await send(message)
                return
            if start is not None and message["type"] != "http.response.body":
                held, start = start, None  # not a plain body: give up reshaping
                await send(held)
            if start is None:
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False) and sum(map(len, parts)) <= self.MAX_REWRITE:
                return
            held, start = start, None
            body = _reshaped(b"".join(parts), held["status"], scope["path"])
            if body is not None and not message.get("more_body", False):
                headers = [(k, v) for k, v in held.get("headers", [])
                           if k.lower() != b"content-length"]
                headers.append((b"content-length", str(len(body)).encode()))
                await send({**held, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await send(held)
            await send({**message, "body": b"".join(parts)})

        await self.app(scope, receive, reshaping_send)


def _reshaped(body: bytes, status: int, path: str) -> bytes | None:
    """`{"detail": "..."}` as `{"error": "..."}` (a plain "Not Found" in the API's words),
    or None to leave the body as it is."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict) or set(data) != {"detail"} or not isinstance(
            data["detail"], str):
        return None
    message = data["detail"]
    if status == 404 and message == "Not Found":
        message = not_found_message(path)
    return json.dumps({"error": message}, ensure_ascii=False,
                      separators=(",", ":")).encode()
