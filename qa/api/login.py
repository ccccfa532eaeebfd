"""The chat page's login: a form at /login that takes the server's key and sets a session
cookie, protected against cross-site request forgery.

- The form carries a random token that must equal the `cqa_csrf` cookie set with the
  page (double submit): a page on another site can neither read the cookie nor post the
  form in the user's name (a login CSRF).
- The session cookie `cqa_session` is random (not the key), HttpOnly, SameSite=Strict,
  Path=/, Secure when the request came over HTTPS (directly, or `X-Forwarded-Proto: https`
  from a reverse proxy), and lasts `Settings.session_hours`. Sessions live in the server's
  memory: a restart logs everyone out.
- Requests that change something (anything but GET, HEAD, OPTIONS) and carry only the
  cookie must come from the page itself: an `Origin` (else `Referer`) of another host is
  refused with 403 (`same_origin`).

Everything here is plain functions and a small class; `qa.api.auth.KeyGuard` calls them.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

LOGIN_PATH = "/login"
LOGOUT_PATH = "/logout"
SESSION_COOKIE = "cqa_session"
CSRF_COOKIE = "cqa_csrf"
MAX_FORM_BYTES = 8192  # the login form's body at most
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class Sessions:
    """Random session tokens with their expiry times (thread-safe, in memory)."""

    def __init__(self, hours: float) -> None:
        self.seconds = hours * 3600
        self._live: dict[str, float] = {}
        self._lock = threading.Lock()

    def new(self) -> str:
        token = secrets.token_urlsafe(32)
        now = time.monotonic()
        with self._lock:
            self._live = {t: e for t, e in self._live.items() if e > now}  # drop expired
            self._live[token] = now + self.seconds
        return token

    def valid(self, token: str | None) -> bool:
        if not token:
            return False
        with self._lock:
            expiry = self._live.get(token)
        return expiry is not None and expiry > time.monotonic()

    def end(self, token: str | None) -> None:
        with self._lock:
            self._live.pop(token or "", None)


def header(scope, name: bytes) -> str | None:
    value = next((v for k, v in scope.get("headers") or () if k == name), None)
    return value.decode("latin-1") if value is not None else None


def cookies(scope) -> dict[str, str]:
    raw = header(scope, b"cookie")
    if not raw:
        return {}
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:  # noqa: BLE001 - a malformed cookie header is no cookie
        return {}
    return {k: m.value for k, m in jar.items()}


def is_https(scope) -> bool:
    forwarded = (header(scope, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
    return scope.get("scheme") in ("https", "wss") or forwarded == "https"


def cookie_header(name: str, value: str, scope, max_age: int | None) -> tuple[bytes, bytes]:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Strict"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if is_https(scope):
        parts.append("Secure")
    return b"set-cookie", "; ".join(parts).encode("latin-1")


def same_origin(scope) -> bool:
    """Whether a request's `Origin` (else `Referer`) names the host it was sent to; a
    request with neither (not sent by a browser's page) counts as same-origin."""
    source = header(scope, b"origin") or header(scope, b"referer")
    if not source or source == "null":
        return source != "null"
    host = header(scope, b"x-forwarded-host") or header(scope, b"host") or ""
    return urlsplit(source).netloc.lower() == host.split(",")[0].strip().lower()


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    return target


def read_form(body: bytes) -> dict[str, str]:
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cited-qa: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: ui-sans-serif, system-ui, sans-serif; background: #f8fafc;
  display: flex; justify-content: center; padding-top: 12vh; margin: 0; }}
form {{ background: #fff; border: 1px solid #e2e8f0; border-radius: 10px; padding: 1.6rem;
  width: 21rem; box-shadow: 0 1px 3px rgba(0,0,0,.06); }}
h1 {{ font-size: 1.3rem; margin: 0 0 .3rem 0; }} p {{ color: #475569; font-size: .9rem; }}
input[type=password] {{ width: 100%; box-sizing: border-box; padding: .5rem;
  border: 1px solid #cbd5e1; border-radius: 6px; font-size: 1rem; }}
button {{ margin-top: .8rem; width: 100%; padding: .55rem; border: 0; border-radius: 6px;
  background: #f97316; color: #fff; font-weight: 600; font-size: 1rem; cursor: pointer; }}
.error {{ color: #b91c1c; font-weight: 600; }}
</style></head><body>
<form method="post" action="{action}">
<h1>cited-qa</h1>
<p>This server asks for its key (the <code>QA_API_KEY</code> it was started with).</p>
{message}
<input type="password" name="key" id="cqa-key" autocomplete="current-password"
 placeholder="API key" autofocus required>
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<button type="submit" id="cqa-login">Log in</button>
</form></body></html>
"""


def login_page(csrf: str, next_path: str, message: str = "") -> bytes:
    shown = f'<p class="error" id="cqa-login-error">{html.escape(message)}</p>' if message else ""
    return PAGE.format(action=LOGIN_PATH, message=shown, csrf=html.escape(csrf),
                       next=html.escape(safe_next(next_path))).encode("utf-8")
