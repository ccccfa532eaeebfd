"""The API key: with `QA_API_KEY` set (`Settings.api_key`, or `--api-key-file`), every
request but the open ones (`OPEN`: `/api/health` and the login page) needs the key.

- `/api/` and `/v1/` (and anything else a program calls) take `Authorization: Bearer
  <key>`; without it they get 401 in their prefix's error shape (OpenAI's under /v1/) and
  a `WWW-Authenticate: Bearer` header.
- The chat page, `/docs` and the page framework's own routes (its queue, upload and file
  routes) take the Bearer key too, or the session cookie of a login at `/login`
  (`qa.api.login`: a form with a CSRF token; cookie-only requests that change something
  must come from the page's own origin). A browser asking for a page without either is
  sent to the login form; other requests get 401 JSON.
- Wrong keys are counted per client address: past `failures` wrong keys within
  `window` seconds, every key check from that address gets 429 with `Retry-After` until
  the oldest failure leaves the window (the right key too, or guessing could go on).
  Requests with no key at all are not counted.

The key is compared in constant time (`hmac.compare_digest`), and never logged or echoed.
"""

from __future__ import annotations

import collections
import hmac
import math
import secrets
import threading
import time

from fastapi.security import HTTPBearer

from qa.api import login
from qa.api.guard import send_error
from qa.api.handlers import OPENAI_PREFIX

OPEN = ("/api/health", login.LOGIN_PATH, login.LOGOUT_PATH)  # answered without a key
PROGRAM_PREFIXES = ("/api/", OPENAI_PREFIX)  # 401 JSON, never the login page
CHALLENGE = {"WWW-Authenticate": "Bearer"}

# What the OpenAPI document states for the guarded routes when a key is set (it enforces
# nothing itself: KeyGuard does, for every path, unknown ones too).
bearer_scheme = HTTPBearer(auto_error=False, scheme_name="apiKey",
                           description="The server's QA_API_KEY, as `Authorization: Bearer "
                                       "<key>` (what OpenAI clients send as their api_key).")


def bearer_token(authorization: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <token>` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def key_matches(token: str | None, key: str) -> bool:
    """Whether `token` is `key`, compared in constant time."""
    return token is not None and hmac.compare_digest(token.encode("utf-8"),
                                                     key.encode("utf-8"))


def is_open(path: str) -> bool:
    return path in OPEN


class Throttle:
    """Failed key attempts per client address: `failures` within `window` seconds."""

    def __init__(self, failures: int, window: float) -> None:
        self.failures, self.window = failures, window
        self._seen: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def wait(self, address: str) -> int:
        """Seconds until `address` may try a key again (0: now)."""
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(address)
            while seen and seen[0] <= now - self.window:
                seen.popleft()
            if not seen or len(seen) < self.failures:
                return 0
            return max(1, math.ceil(seen[0] + self.window - now))

    def failed(self, address: str) -> None:
        with self._lock:
            if len(self._seen) > 10_000:  # many addresses: forget the quiet ones
                cutoff = time.monotonic() - self.window
                self._seen = {a: d for a, d in self._seen.items() if d and d[-1] > cutoff}
            self._seen.setdefault(address, collections.deque()).append(time.monotonic())


def _client(scope) -> str:
    client = scope.get("client")
    return client[0] if client else "?"


async def _send(send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class KeyGuard:
    """ASGI middleware: the key for every request but the open ones (see the module)."""

    def __init__(self, app, key: str, failures: int = 10, window: float = 60,
                 session_hours: float = 12) -> None:
        self.app = app
        self.key = key
        self.throttle = Throttle(failures, window)
        self.sessions = login.Sessions(session_hours)
        self.session_seconds = int(session_hours * 3600)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if scope["type"] == "http" and path == login.LOGIN_PATH:
            await self._login(scope, receive, send)
            return
        if scope["type"] == "http" and path == login.LOGOUT_PATH:
            await self._logout(scope, send)
            return
        if scope["type"] == "http" and is_open(path):
            await self.app(scope, receive, send)
            return
        token = bearer_token(login.header(scope, b"authorization"))
        if token is not None:
            if await self._check(scope, send, token):
                await self.app(scope, receive, send)
            return
        session = login.cookies(scope).get(login.SESSION_COOKIE)
        if self.sessions.valid(session):
            if (scope["type"] == "http" and scope["method"] not in login.SAFE_METHODS
                    and not login.same_origin(scope)):
                await send_error(send, 403, "a request from another site's page was refused "
                                            "(cross-site request forgery protection)",
                                 path=path)
                return
            await self.app(scope, receive, send)
            return
        await self._refuse(scope, send)

    async def _check(self, scope, send, token: str) -> bool:
        """Whether `token` is the key; else (or while throttled) the error is sent."""
        address = _client(scope)
        wait = self.throttle.wait(address)
        if wait:
            await self._error(scope, send, 429, f"too many wrong API keys from {address}; "
                              f"try again in {wait} s", {"Retry-After": str(wait)})
            return False
        if key_matches(token, self.key):
            return True
        self.throttle.failed(address)
        await self._error(scope, send, 401, "incorrect API key provided", CHALLENGE,
                          code="invalid_api_key")
        return False

    async def _error(self, scope, send, status: int, message: str, headers: dict,
                     code: str | None = None) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(send, status, message, headers, path=scope["path"], code=code)

    async def _refuse(self, scope, send) -> None:
        """No key and no session: the login page for a browser, 401 for the rest."""
        path = scope["path"]
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        accept = login.header(scope, b"accept") or ""
        if (scope["method"] == "GET" and "text/html" in accept
                and not path.startswith(PROGRAM_PREFIXES)):
            query = scope.get("query_string", b"").decode("latin-1")
            target = path + (f"?{query}" if query else "")
            from urllib.parse import quote

            await _send(send, 303, b"", [(b"location", (
                f"{login.LOGIN_PATH}?next={quote(target, safe='')}").encode("latin-1"))])
            return
        if path.startswith(OPENAI_PREFIX) or path == OPENAI_PREFIX.rstrip("/"):
            message = ("no API key: this server asks for one; send it as "
                       "`Authorization: Bearer <key>` (the api_key of an OpenAI client)")
        else:
            message = ("no API key: this server asks for one; send it as "
                       f"`Authorization: Bearer <key>`, or log in at {login.LOGIN_PATH}")
        await send_error(send, 401, message, CHALLENGE, path=path)

    async def _login(self, scope, receive, send) -> None:
        from urllib.parse import parse_qs

        method = scope["method"]
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if method in ("GET", "HEAD"):
            await self._form(scope, send, (query.get("next") or ["/"])[0])
            return
        if method != "POST":
            await send_error(send, 405, f"{method} is not allowed on {login.LOGIN_PATH}; "
                                        "use GET, POST", {"Allow": "GET, POST"},
                             path=login.LOGIN_PATH)
            return
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if len(body) > login.MAX_FORM_BYTES:
                await send_error(send, 413, "the login form is too large", path=login.LOGIN_PATH)
                return
            if not message.get("more_body", False):
                break
        form = login.read_form(body)
        expected = login.cookies(scope).get(login.CSRF_COOKIE) or ""
        if not expected or not hmac.compare_digest(form.get("csrf", "").encode(),
                                                   expected.encode()):
            await send_error(send, 403, "the login form's CSRF token is missing or wrong; "
                                        f"load {login.LOGIN_PATH} and try again",
                             path=login.LOGIN_PATH)
            return
        address = _client(scope)
        wait = self.throttle.wait(address)
        if wait:
            await self._form(scope, send, form.get("next"), f"Too many wrong keys; try "
                             f"again in {wait} s.", 429, {"retry-after": str(wait)})
            return
        if not key_matches(form.get("key"), self.key):
            self.throttle.failed(address)
            await self._form(scope, send, form.get("next"), "That is not the key.", 401)
            return
        session = self.sessions.new()
        await _send(send, 303, b"", [
            (b"location", login.safe_next(form.get("next")).encode("latin-1")),
            login.cookie_header(login.SESSION_COOKIE, session, scope, self.session_seconds),
            login.cookie_header(login.CSRF_COOKIE, "", scope, 0)])

    async def _form(self, scope, send, next_path: str | None, message: str = "",
                    status: int = 200, extra: dict | None = None) -> None:
        csrf = secrets.token_urlsafe(24)
        body = login.login_page(csrf, next_path or "/", message)
        headers = [(b"content-type", b"text/html; charset=utf-8"),
                   (b"cache-control", b"no-store"),
                   (b"x-frame-options", b"DENY"),
                   (b"content-security-policy", b"default-src 'none'; style-src "
                                                b"'unsafe-inline'; form-action 'self'; "
                                                b"frame-ancestors 'none'"),
                   login.cookie_header(login.CSRF_COOKIE, csrf, scope, 3600)]
        headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await _send(send, status, body if scope["method"] != "HEAD" else b"", headers)

    async def _logout(self, scope, send) -> None:
        self.sessions.end(login.cookies(scope).get(login.SESSION_COOKIE))
        await _send(send, 303, b"", [
            (b"location", login.LOGIN_PATH.encode()),
            login.cookie_header(login.SESSION_COOKIE, "", scope, 0)])
