"""The API key: with `QA_API_KEY` set (`Settings.api_key`), requests under the protected
prefixes must carry `Authorization: Bearer <key>`; others get 401 in their prefix's error
shape (OpenAI's under /v1/) and a `WWW-Authenticate: Bearer` header.

One place for the check, so it can grow to cover /api/ and the page: today it guards
/v1/, the OpenAI-compatible API (`PROTECTED`). The key is compared in constant time
(`hmac.compare_digest`), and never logged or echoed.
"""

from __future__ import annotations

import hmac

from fastapi.security import HTTPBearer

from qa.api.guard import send_error
from qa.api.handlers import OPENAI_PREFIX

PROTECTED = (OPENAI_PREFIX,)  # path prefixes the key guards
CHALLENGE = {"WWW-Authenticate": "Bearer"}

# What the OpenAPI document states for the guarded routes when a key is set (it enforces
# nothing itself: KeyGuard does, for every path under the prefixes, unknown ones too).
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


def is_protected(path: str) -> bool:
    return any(path.startswith(p) or path == p.rstrip("/") for p in PROTECTED)


class KeyGuard:
    """ASGI middleware: 401 for a request under a protected prefix without the key."""

    def __init__(self, app, key: str) -> None:
        self.app = app
        self.key = key

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or not is_protected(scope["path"]):
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
        token = bearer_token(header.decode("utf-8", "replace") if header is not None else None)
        if key_matches(token, self.key):
            await self.app(scope, receive, send)
            return
        if token is None:
            message = ("no API key: this server asks for one; send it as "
                       "`Authorization: Bearer <key>` (the api_key of an OpenAI client)")
            code = None
        else:
            message = "incorrect API key provided"
            code = "invalid_api_key"
        await send_error(send, 401, message, CHALLENGE, path=scope["path"], code=code)
