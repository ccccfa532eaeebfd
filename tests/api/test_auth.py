"""The key (QA_API_KEY): every /api and /v1 route, the page and the page framework's own
routes ask for it on a live server (real model, real index, the chat page mounted as
`qa serve` does); health stays open; wrong keys are rate-limited; the page's login form
sets a session cookie, with CSRF protection; `qa serve --host` on a public address refuses
to start without a key."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import httpx
import pytest

from qa.api import create_app, mount_uis, serve_in_thread
from support import write_corpus

KEY = "k-7f3a9c1e5b2d4680-test"
CORPUS = {"harbour.txt": "Zephyr harbour reopens\n\nThe Zephyr harbour reopened on Tuesday "
                         "after a storm closed it for nine days.\n"}
QUESTION = {"question": "When did the Zephyr harbour reopen?"}


@pytest.fixture(scope="module")
def keyed(model, settings, tmp_path_factory):
    """(base URL, settings) of a server with a key, 3 wrong keys per 2 s allowed."""
    from qa.engine import Assistant

    root = tmp_path_factory.mktemp("auth")
    corpus = write_corpus(root / "corpus", CORPUS)
    assistant = Assistant.load(settings=settings.replace(
        corpus=corpus, index=root / "index", uploads=root / "uploads", api_key=KEY,
        auth_failures=3, auth_window=2))
    app, mounted = mount_uis(create_app(assistant), assistant)
    assert mounted == ["chat"]
    with serve_in_thread(app) as url:
        yield url


def bearer(key: str = KEY) -> dict:
    return {"Authorization": f"Bearer {key}"}


def test_every_route_but_health_asks_for_the_key(keyed):
    with httpx.Client(base_url=keyed, timeout=120) as c:
        assert c.get("/api/health").status_code == 200  # open: load balancers probe it
        for method, path, kwargs in [
                ("POST", "/api/answer", {"json": QUESTION}),
                ("GET", "/api/documents", {}),
                ("GET", "/api/documents/harbour.txt/text", {}),
                ("POST", "/api/reload", {}),
                ("GET", "/api/nothing", {}),
                ("GET", "/v1/models", {}),
                ("GET", "/docs", {}), ("GET", "/openapi.json", {}),
                ("GET", "/", {}), ("GET", "/config", {}),
                ("GET", "/gradio_api/info", {}),
                ("POST", "/gradio_api/upload", {"files": {"files": ("a.txt", b"x")}}),
                ("GET", "/gradio_api/file=/etc/passwd", {})]:
            r = c.request(method, path, **kwargs)
            assert r.status_code == 401, (method, path, r.status_code, r.text[:200])
            assert r.headers["www-authenticate"] == "Bearer"
            body = r.json()
            message = body["error"]["message"] if path.startswith("/v1") else body["error"]
            assert "Authorization: Bearer" in message, (path, message)
        r = c.post("/api/answer", json=QUESTION, headers=bearer())
        assert r.status_code == 200 and r.json()["answerable"], r.text
        assert r.json()["citations"][0]["source"] == "harbour.txt"
        assert c.get("/v1/models", headers=bearer()).status_code == 200
        assert c.get("/api/documents", headers=bearer()).json()["count"] == 1
        page = c.get("/", headers=bearer())
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        spec = c.get("/openapi.json", headers=bearer()).json()
        answer = spec["paths"]["/api/answer"]["post"]
        assert answer["security"] == [{"apiKey": []}] and "401" in answer["responses"]
        assert "security" not in spec["paths"]["/api/health"]["get"]
        # a browser asking for the page is sent to the login form instead
        r = c.get("/?x=1", headers={"Accept": "text/html"})
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F%3Fx%3D1"


def test_wrong_keys_are_rate_limited(keyed):
    with httpx.Client(base_url=keyed, timeout=120) as c:
        time.sleep(2.1)  # a clean window
        for _ in range(3):
            r = c.get("/api/documents", headers=bearer("wrong"))
            assert r.status_code == 401 and r.json()["error"] == "incorrect API key provided"
        for key in ("wrong", KEY):  # locked: even the right key waits, or guessing goes on
            r = c.get("/api/documents", headers=bearer(key))
            assert r.status_code == 429, r.text
            assert 1 <= int(r.headers["retry-after"]) <= 2
            assert "too many wrong API keys" in r.json()["error"]
        assert c.get("/api/documents").status_code == 401  # no key: not a guess, not counted
        assert c.get("/api/health").status_code == 200
        time.sleep(2.1)
        assert c.get("/api/documents", headers=bearer()).status_code == 200


def test_login_sets_a_session_with_csrf_protection(keyed):
    time.sleep(2.1)  # a clean window for the wrong key below
    with httpx.Client(base_url=keyed, timeout=120) as c:
        form = c.get("/login?next=/%3Fa%3D1")
        assert form.status_code == 200 and 'name="csrf"' in form.text
        assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        assert c.cookies["cqa_csrf"] == csrf
        # the form without the token its cookie holds: refused (login CSRF)
        r = c.post("/login", data={"key": KEY, "csrf": "forged", "next": "/"})
        assert r.status_code == 403 and "CSRF" in r.json()["error"]
        r = c.post("/login", data={"key": "wrong", "csrf": csrf, "next": "/"})
        assert r.status_code == 401 and "That is not the key." in r.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', r.text).group(1)
        r = c.post("/login", data={"key": KEY, "csrf": csrf, "next": "//evil.example/"})
        assert r.status_code == 303 and r.headers["location"] == "/"  # never another site
        cookie = r.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
        assert KEY not in cookie
        page = c.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "<gradio-app" in page.text.lower() or \
            "gradio" in page.text.lower()
        assert c.get("/config").status_code == 200
        assert c.get("/api/documents").status_code == 200  # the page's session covers /api
        # a page on another site posting with the user's cookie: refused
        r = c.post("/api/reload", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "another site" in r.json()["error"]
        host = keyed.split("//", 1)[1]
        r = c.post("/gradio_api/upload", headers={"Origin": f"http://{host}"},
                   files={"files": ("a.txt", b"same origin")})
        assert r.status_code == 200, r.text
        assert c.get("/logout").status_code == 303
        assert c.get("/api/documents").status_code == 401


def run_qa(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    environment = {k: v for k, v in os.environ.items() if not k.startswith("QA_API_KEY")}
    environment.update(env or {})
    return subprocess.run([sys.executable, "-m", "qa.cli", *args], capture_output=True,
                          text=True, timeout=120, env=environment)


def test_a_public_host_without_a_key_refuses_to_start(tmp_path):
    r = run_qa("serve", "--host", "0.0.0.0", "--port", "0")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "QA_API_KEY" in lines[0] and "--api-key-file" in lines[0]
    assert "--insecure-no-key" in lines[0], lines
    empty = tmp_path / "key"
    empty.write_text("\n")
    r = run_qa("serve", "--host", "0.0.0.0", "--api-key-file", str(empty))
    assert r.returncode == 2 and "empty" in r.stderr
    r = run_qa("serve", "--host", "0.0.0.0", "--api-key-file", str(tmp_path / "missing"))
    assert r.returncode == 2 and "cannot read the API key file" in r.stderr


def test_loopback_is_told_from_public_addresses():
    from qa.cli import is_loopback

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.0.2.1", "no-such-host.invalid"):
        assert not is_loopback(host), host


def test_key_file_and_settings(tmp_path):
    from qa.settings import Settings

    key = tmp_path / "key"
    key.write_text("  sk-from-file  \nsecond line ignored\n")
    s = Settings.load(env={"QA_API_KEY_FILE": str(key)})
    assert s.api_key == "sk-from-file" and "sk-from-file" not in repr(s)
    assert Settings.load(env={}, api_key_file=key).api_key == "sk-from-file"
    s = Settings.load(env={"QA_MAX_UPLOAD_MB": "1", "QA_INSECURE_NO_KEY": "1"})
    assert s.max_upload_mb == 1 and s.insecure_no_key
    with pytest.raises(ValueError, match="auth_failures"):
        Settings.load(env={"QA_AUTH_FAILURES": "0"})


def test_throttle_counts_failures_per_address_within_the_window(monkeypatch):
    from qa.api import auth

    now = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: now[0])
    throttle = auth.Throttle(failures=2, window=60)
    assert throttle.wait("a") == 0
    throttle.failed("a")
    now[0] += 10
    throttle.failed("a")
    assert throttle.wait("a") == 50 and throttle.wait("b") == 0  # others unaffected
    now[0] += 50
    assert throttle.wait("a") == 0  # the first failure left the window
    for i in range(10_002):  # a crowd of one-time guessers is forgotten once quiet
        throttle.failed(f"x{i}")
    now[0] += 61
    throttle.failed("y")
    assert len(throttle._seen) <= 2
