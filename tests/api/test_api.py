"""The HTTP API against a live server: real model, real index, uvicorn on loopback.

The model comes from the session fixture `model` (tests/conftest.py); the servers are
shared per module, each over a tiny corpus written here (one article carries HTML/script
text, which the API must return verbatim as JSON data).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from qa.api import MAX_BODY_BYTES, create_app, mount_uis, serve_in_thread
from support import ROOT, write_corpus

HARBOUR = "\n\n".join([
    "Zephyr harbour <b>reopens</b> <img src=x onerror=\"document.title='pwned'\">",
    "12 March 2024",
    "The Zephyr harbour reopened on Tuesday after a storm <script>alert(1)</script> "
    "closed it for nine days.",
    "Harbour master Ilse Varga said the cranes were undamaged and that shipping would "
    "resume within a week.",
    "The storm also flooded the fish market near the eastern quay, where repairs will "
    "take a month.",
]) + "\n"
BAKERY = "\n\n".join([
    "Village bakery wins regional prize",
    "The Elmstead village bakery won the regional bread prize on Saturday for its rye "
    "sourdough.",
    "Baker Tomas Reyes said the recipe came from his grandmother and uses a starter that "
    "is forty years old.",
]) + "\n"
RAILWAY = "\n\n".join([
    "New railway bridge opens over the Arden river",
    "The new railway bridge over the Arden river opened to trains on Friday, two years "
    "after construction began.",
    "The bridge cost 240 million euros and carries up to 180 trains a day between Lorne "
    "and Castlebay.",
]) + "\n"
CORPUS = {"harbour.txt": HARBOUR, "bakery.txt": BAKERY, "railway.txt": RAILWAY}

# question -> (file the answer must quote, a word the answer must contain)
QUESTIONS = {
    "When did the Zephyr harbour reopen?": ("harbour.txt", "reopened"),
    "Which prize did the Elmstead bakery win?": ("bakery.txt", "prize"),
    "How much did the Arden railway bridge cost?": ("railway.txt", "240 million"),
    "What did Ilse Varga say about the cranes?": ("harbour.txt", "cranes"),
}
UNANSWERABLE = "Who won the national chess championship final?"


def file_text(corpus: Path, source: str) -> str:
    return (corpus / source).read_bytes().decode("utf-8")  # no newline translation


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("api") / "corpus", CORPUS)


@pytest.fixture(scope="module")
def assistant(model, settings, corpus, tmp_path_factory):
    from qa.engine import Assistant

    index = tmp_path_factory.mktemp("api-index")
    return Assistant.load(settings=settings.replace(corpus=corpus, index=index))


@pytest.fixture(scope="module")
def base_url(assistant):
    app, mounted = mount_uis(create_app(assistant), assistant)
    assert mounted == ["chat"], "the chat page entry point is not installed (pip install -e .)"
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=60) as c:
        yield c


def ask(client: httpx.Client, question: str, **extra) -> httpx.Response:
    return client.post("/api/answer", json={"question": question, **extra})


# --- happy paths -----------------------------------------------------------------------


def test_answer_is_a_verbatim_cited_quote(client, corpus):
    r = ask(client, "When did the Zephyr harbour reopen?")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    for key in ("answer", "answerable", "confidence", "citations", "passages",
                "searched_for", "timings_ms"):
        assert key in body
    assert body["answerable"] is True
    assert 0.0 <= body["confidence"] <= 1.0
    assert body["searched_for"] == "When did the Zephyr harbour reopen?"
    first = body["citations"][0]
    assert set(first) >= {"source", "title", "quote", "start", "end", "score"}
    assert first["source"] == "harbour.txt"
    text = file_text(corpus, first["source"])
    assert first["quote"] == text[first["start"]:first["end"]]
    assert body["answer"] == first["quote"]
    assert "<script>alert(1)</script>" in first["quote"]  # data, returned verbatim
    assert first["title"].startswith("Zephyr harbour <b>reopens</b>")
    for c in body["citations"]:
        assert c["quote"] == file_text(corpus, c["source"])[c["start"]:c["end"]]
    assert body["passages"]
    for p in body["passages"]:
        assert p["text"] == file_text(corpus, p["source"])[p["start"]:p["end"]]
    timings = body["timings_ms"]
    assert {"encode", "retrieve", "answer", "total", "server"} <= set(timings)
    assert timings["server"] >= timings["total"] > 0


@pytest.mark.parametrize("question", sorted(QUESTIONS))
def test_answers_quote_the_right_file(client, question):
    source, word = QUESTIONS[question]
    body = ask(client, question).json()
    assert body["answerable"], body
    assert body["citations"][0]["source"] == source
    assert word in body["answer"]


def test_unanswerable_question_abstains_with_related_material(client):
    body = ask(client, UNANSWERABLE).json()
    assert body["answerable"] is False
    assert body["citations"] == []
    assert body["passages"], "related material is still returned"


def test_top_k_limits_the_passages(client):
    body = ask(client, "When did the Zephyr harbour reopen?", top_k=1).json()
    assert len(body["passages"]) == 1


def test_top_k_may_be_an_integral_float(client):
    """JSON Schema's `integer` (the OpenAPI document's type) admits 2.0; 2.5 is refused."""
    body = ask(client, "When did the Zephyr harbour reopen?", top_k=2.0).json()
    assert len(body["passages"]) == 2, body


def test_follow_up_uses_the_history(client):
    history = [{"question": "What did harbour master Ilse Varga say?",
                "answer": "Harbour master Ilse Varga said the cranes were undamaged."}]
    r = ask(client, "What did she say about shipping?", history=history)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["searched_for"] != "What did she say about shipping?"
    assert "Ilse Varga" in body["searched_for"]
    # (the reader's confidence in this vague one sits at the threshold: 0.38 against 0.39)
    assert body["passages"][0]["source"] == "harbour.txt"
    body = ask(client, "When did she say shipping would resume?", history=history).json()
    assert "Ilse Varga" in body["searched_for"]
    assert body["answerable"] and body["citations"][0]["source"] == "harbour.txt"
    assert "within a week" in body["answer"]


def test_question_white_space_is_normalised(client):
    body = ask(client, "  When did the\tZephyr harbour\n reopen?  ").json()
    assert body["question"] == "When did the Zephyr harbour reopen?"


def test_health(client, assistant):
    r = client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["documents"] == 3
    assert body["chunks"] == len(assistant.index.data.chunks) > 0
    assert body["model"] == assistant.settings.model
    assert body["built_at"]


def test_documents(client):
    r = client.get("/api/documents")
    assert r.status_code == 200
    body = r.json()
    assert body["count"] == 3
    docs = {d["source"]: d for d in body["documents"]}
    assert set(docs) == set(CORPUS)
    assert docs["bakery.txt"]["title"] == "Village bakery wins regional prize"
    assert docs["harbour.txt"]["date"] == "2024-03-12"
    assert docs["railway.txt"]["date"] is None
    assert all(d["chunks"] >= 1 for d in docs.values())


def test_openapi_documents_every_route_and_field(client):
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/answer", "/api/health", "/api/documents", "/api/reload"} <= set(
        spec["paths"])
    schemas = spec["components"]["schemas"]
    request = schemas["AnswerRequest"]
    assert set(request["properties"]) == {"question", "top_k", "history"}
    assert request.get("additionalProperties") is False
    for name in ("AnswerRequest", "AnswerResponse", "CitationOut", "PassageOut", "Turn"):
        for field, schema in schemas[name]["properties"].items():
            assert schema.get("description"), f"{name}.{field} has no description"


def test_chat_page_is_served_next_to_the_api(client):
    r = client.get("/")
    assert r.status_code == 200
    assert "text/html" in r.headers["content-type"]
    assert "<title>cited-qa</title>" in r.text or "cited-qa" in r.text


# --- bad requests ----------------------------------------------------------------------

JSON = {"content-type": "application/json"}
BAD_REQUESTS = [
    # (id, body bytes, headers, expected status, words the error must contain)
    ("no body", b"", JSON, 422, "missing"),
    ("empty object", b"{}", JSON, 422, "question"),
    ("empty question", b'{"question": ""}', JSON, 400, "empty"),
    ("blank question", b'{"question": "  \\n\\t "}', JSON, 400, "empty"),
    ("question too long", json.dumps({"question": "why " * 300}).encode(), JSON, 400,
     "limit"),
    ("question too long as sent", json.dumps({"question": "why" + " " * 1000 + "?"}).encode(),
     JSON, 400, "limit"),  # the schema's maxLength counts the characters sent
    ("question not text", b'{"question": 5}', JSON, 422, "question"),
    ("question null", b'{"question": null}', JSON, 422, "question"),
    ("question list", b'{"question": ["a"]}', JSON, 422, "question"),
    ("top_k text", b'{"question": "hi", "top_k": "x"}', JSON, 422, "top_k"),
    ("top_k numeric text", b'{"question": "hi", "top_k": "5"}', JSON, 422, "top_k"),
    ("top_k float", b'{"question": "hi", "top_k": 2.5}', JSON, 422, "top_k"),
    ("top_k integral float too big", b'{"question": "hi", "top_k": 51.0}', JSON, 422,
     "top_k"),
    ("top_k bool", b'{"question": "hi", "top_k": true}', JSON, 422, "top_k"),
    ("top_k zero", b'{"question": "hi", "top_k": 0}', JSON, 422, "top_k"),
    ("top_k too big", b'{"question": "hi", "top_k": 51}', JSON, 422, "top_k"),
    ("history not a list", b'{"question": "hi", "history": "x"}', JSON, 422, "history"),
    ("history item not object", b'{"question": "hi", "history": [3]}', JSON, 422,
     "history[0]"),
    ("history question not text", b'{"question": "hi", "history": [{"question": 1}]}',
     JSON, 422, "history[0].question"),
    ("history unknown field", b'{"question": "hi", "history": [{"question": "a", "x": 1}]}',
     JSON, 422, "history[0].x"),
    ("history too long", json.dumps({"question": "hi", "history": [
        {"question": "q"}] * 51}).encode(), JSON, 422, "history"),
    ("unknown field", b'{"question": "hi", "foo": 1}', JSON, 422, "foo"),
    ("invalid JSON", b'{"question": ', JSON, 400, "JSON"),
    ("not JSON at all", b"question=hi", JSON, 400, "JSON"),
    ("JSON list", b'["hi"]', JSON, 422, "request body"),
    ("JSON string", b'"hi"', JSON, 422, "request body"),
    ("JSON null", b"null", JSON, 422, "request body"),
    ("form content type", b"question=hi", {"content-type": "application/x-www-form-urlencoded"},
     415, "application/json"),
    ("text content type", b'{"question": "hi"}', {"content-type": "text/plain"}, 415,
     "application/json"),
    ("invalid UTF-8", b'{"question": "\xff\xfe"}', JSON, 400, "JSON"),
    ("body too large", json.dumps({"question": "x" * (MAX_BODY_BYTES + 10)}).encode(), JSON,
     413, "limit"),
]


@pytest.mark.parametrize("body,headers,status,words",
                         [b[1:] for b in BAD_REQUESTS], ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_a_json_error(client, body, headers, status, words):
    r = client.post("/api/answer", content=body, headers=headers)
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()
    assert set(error) == {"error"}
    assert isinstance(error["error"], str) and words in error["error"]


def test_streamed_body_over_the_limit_is_refused(client):
    def chunks():
        yield b'{"question": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 2):
            yield b"x" * 1024
        yield b'"}'

    r = client.post("/api/answer", content=chunks(), headers=JSON)  # chunked, no length
    assert r.status_code == 413
    assert "limit" in r.json()["error"]


def test_wrong_method_and_unknown_endpoint(client):
    r = client.get("/api/answer")
    assert r.status_code == 405 and "POST" in r.json()["error"]
    assert r.headers["allow"] == "POST"
    r = client.post("/api/health")
    assert r.status_code == 405
    r = client.get("/api/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


API_METHODS = {"/api/answer": "POST", "/api/health": "GET", "/api/documents": "GET, POST",
               "/api/reload": "POST"}
# Registered HTTP methods only: an invented one ("BREW") is refused with 400 by uvicorn's
# httptools parser before it reaches the app (with h11 it reaches the app and gets 405).
OTHER_METHODS = ("TRACE", "PROPFIND", "LOCK", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD")


@pytest.mark.parametrize("path", sorted(API_METHODS))
def test_every_other_method_gets_405_with_allow(client, path):
    """Any method a route doesn't take (TRACE and WebDAV ones too, which must not fall
    through to the chat page mounted at "/") gets 405 and the Allow header."""
    allowed = API_METHODS[path]
    others = [m for m in (*OTHER_METHODS, "GET", "POST") if m not in allowed.split(", ")]
    for method in others:
        r = client.request(method, path)
        assert r.status_code == 405, (method, r.status_code, r.text)
        assert r.headers["allow"] == allowed, method
        if method != "HEAD":
            assert allowed in r.json()["error"], method


def test_pages_outside_the_api_have_the_error_shape(client):
    """The chat page's own framework answers unknown paths and methods with FastAPI's
    {"detail"}; the server turns them into {"error"} like the API's."""
    for path in ("/nothing-here", "/assets/no-such-file.js", "/gradio_api/nothing"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.text)
        assert r.headers["content-type"].startswith("application/json")
        assert set(r.json()) == {"error"}, (path, r.text)
        assert r.json()["error"].startswith(f"no such page: {path}")
    r = client.request("TRACE", "/")
    assert r.status_code == 405 and set(r.json()) == {"error"} and r.headers["allow"]
    assert client.get("/").status_code == 200  # the page itself is untouched
    assert client.get("/config").json()  # and its JSON
    assert client.head("/nothing-here").status_code == 404


def test_server_still_answers_after_bad_requests(client):
    for _, body, headers, _, _ in BAD_REQUESTS:
        client.post("/api/answer", content=body, headers=headers)
    r = ask(client, "How much did the Arden railway bridge cost?")
    assert r.status_code == 200
    assert r.json()["citations"][0]["source"] == "railway.txt"


# --- concurrency -----------------------------------------------------------------------


def test_concurrent_requests_are_all_answered(client, base_url):
    questions = sorted(QUESTIONS) * 10  # 40 requests
    health: list[int] = []
    stop = threading.Event()

    def poll_health():
        with httpx.Client(base_url=base_url, timeout=30) as c:
            while not stop.is_set():
                health.append(c.get("/api/health").status_code)

    def one(q: str) -> tuple[str, int, str | None]:
        r = ask(client, q)
        source = r.json()["citations"][0]["source"] if r.status_code == 200 else None
        return q, r.status_code, source

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, questions))
    finally:
        stop.set()
        poller.join()
    assert len(results) == 40
    assert Counter(status for _, status, _ in results) == {200: 40}
    for q, _, source in results:  # no answer went to the wrong request
        assert source == QUESTIONS[q][0]
    assert health and set(health) == {200}


def test_concurrent_bad_and_good_requests(client):
    bad = [(b[1], b[2]) for b in BAD_REQUESTS]
    good = [(json.dumps({"question": q}).encode(), JSON) for q in QUESTIONS]
    jobs = (bad + good) * 2

    def one(job):
        body, headers = job
        return client.post("/api/answer", content=body, headers=headers).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(one, jobs))
    assert statuses.count(200) == 2 * len(good)
    assert all(s == 200 or 400 <= s < 500 for s in statuses)


# --- reload and failures (their own servers: they change state) -------------------------


def test_reload_adds_new_files_without_downtime(model, settings, tmp_path):
    from qa.engine import Assistant

    corpus = write_corpus(tmp_path / "corpus", {"bakery.txt": BAKERY})
    assistant = Assistant.load(settings=settings.replace(corpus=corpus,
                                                         index=tmp_path / "index"))
    with serve_in_thread(create_app(assistant)) as url, \
            httpx.Client(base_url=url, timeout=120) as c:
        assert c.get("/api/health").json()["documents"] == 1
        before = ask(c, "How much did the Arden railway bridge cost?").json()
        assert not before["answerable"]
        write_corpus(corpus, {"railway.txt": RAILWAY})
        (corpus / "bakery.txt").unlink()

        result: dict = {}
        reloader = threading.Thread(target=lambda: result.update(
            r=c.post("/api/reload")))
        reloader.start()
        during = [ask(c, "Which prize did the Elmstead bakery win?").status_code
                  for _ in range(5)]
        reloader.join()
        assert set(during) == {200}  # answering continued while re-indexing
        r = result["r"]
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["added"] == ["railway.txt"] and report["removed"] == ["bakery.txt"]
        assert report["files"] == 1 and report["summary"]
        docs = c.get("/api/documents").json()
        assert [d["source"] for d in docs["documents"]] == ["railway.txt"]
        after = ask(c, "How much did the Arden railway bridge cost?").json()
        assert after["answerable"] and after["citations"][0]["source"] == "railway.txt"


def test_unexpected_errors_become_json_500(assistant):
    from qa.engine import Assistant

    class Failing(Assistant):  # the real model and index, with a fault injected
        def ask(self, question, **kwargs):
            if "boom" in question:
                raise RuntimeError("simulated engine fault")
            return super().ask(question, **kwargs)

    failing = Failing(assistant.settings, assistant.model, assistant.index)
    with serve_in_thread(create_app(failing)) as url, \
            httpx.Client(base_url=url, timeout=60) as c:
        r = ask(c, "boom")
        assert r.status_code == 500
        assert set(r.json()) == {"error"} and "simulated" not in r.json()["error"]
        assert ask(c, "When did the Zephyr harbour reopen?").status_code == 200


def test_error_kinds_become_statuses(assistant):
    """BadInput -> 400, Unusable -> 503 with its message (it names the fix), Busy -> 409,
    on /api/answer and /api/reload alike; a plain ValueError still counts as bad input."""
    from embeddings.store import IndexBusy, IndexUnusable
    from qa.engine import Assistant
    from qa.errors import BadInput, Busy, QuestionError, SettingError, Unusable

    fix = "the index at /x is damaged; run: qa index --rebuild"
    raised = {
        "bad": BadInput("corpus folder /nowhere does not exist"),
        "setting": SettingError("top_k must be an integer from 1 to 50, got 99"),
        "question": QuestionError("is not text"),
        "unusable": Unusable(fix),
        "index": IndexUnusable(fix),
        "busy": Busy("another process is writing the index"),
        "locked": IndexBusy("another process (pid 7) is writing the index"),
        "value": ValueError("top_k is odd"),
    }
    expected = {"bad": 400, "setting": 400, "question": 400, "unusable": 503, "index": 503,
                "busy": 409, "locked": 409, "value": 400}

    class Failing(Assistant):
        fail = "unusable"
        broken = False

        @property
        def index(self):
            if self.broken:
                raise raised["index"]
            return super().index

        def ask(self, question, **kwargs):
            raise raised[question]

        def reload(self, update=True):
            raise raised[self.fail]

    failing = Failing(assistant.settings, assistant.model, assistant.index)
    with serve_in_thread(create_app(failing)) as url, \
            httpx.Client(base_url=url, timeout=60) as c:
        for name, status in expected.items():
            r = ask(c, name)
            assert r.status_code == status, (name, r.text)
            assert set(r.json()) == {"error"}
            message = r.json()["error"]
            assert message == (f"question: {raised[name]}" if name == "question"
                               else str(raised[name])), name
        for name in ("unusable", "index", "locked", "bad"):
            failing.fail = name
            r = c.post("/api/reload")
            assert r.status_code == expected[name], (name, r.text)
            assert r.json() == {"error": str(raised[name])}
        failing.broken = True  # raised outside a route's own handling: the app's handlers
        for path in ("/api/health", "/api/documents"):
            r = c.get(path)
            assert r.status_code == 503 and r.json() == {"error": fix}, (path, r.text)
        failing.broken = False
        spec = c.get("/openapi.json").json()["paths"]
        assert {"400", "503"} <= set(spec["/api/answer"]["post"]["responses"])
        assert {"409", "503"} <= set(spec["/api/reload"]["post"]["responses"])
        assert "503" in spec["/api/health"]["get"]["responses"]


# --- architecture ----------------------------------------------------------------------


def test_qa_never_imports_ui():
    for path in sorted((ROOT / "qa").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names = [node.value] if node.value in ("ui", "ui.app") else []
            for name in names:
                assert name != "ui" and not name.startswith("ui."), f"{path}: {name}"
    code = ("import sys, qa, qa.api, qa.engine, qa.cli; "
            "assert not [m for m in sys.modules if m == 'ui' or m.startswith('ui.')]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
