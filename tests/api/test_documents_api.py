"""Documents added and removed through the API on a live server (real model, real index,
uvicorn on loopback, the chat page mounted): an uploaded file's fact is answered and cited
at once and abstained on once it is deleted; bad input (unsafe names, a body over the
limit, empty, unreadable and non-document files, a zip bomb, duplicates) changes nothing;
two uploads at once are both indexed; a large upload is a job; a server SIGKILLed while
indexing an upload keeps answering from its last good index."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from embeddings import store
from qa.api import create_app, mount_uis, serve_in_thread
from support import ROOT, write_corpus

CORPUS = {
    "bakery.txt": "Village bakery wins regional prize\n\nThe Elmstead village bakery won the "
                  "regional bread prize on Saturday for its rye sourdough.\n",
    "railway.txt": "New railway bridge opens\n\nThe new railway bridge over the Arden river "
                   "cost 240 million euros and carries 180 trains a day.\n",
}
LIGHTHOUSE = ("Island notes\n\nThe Varnholm lighthouse keeper Edda Quist "
              "retired on Friday after thirty-one years of service on the island.\n")
LIGHTHOUSE_Q = "Who retired as the Varnholm lighthouse keeper?"
OBSERVATORY = ("Observatory reopens\n\nThe Kestrel Ridge observatory reopened in May with a "
               "new telescope paid for by 4,200 local donors.\n")
OBSERVATORY_Q = "How many donors paid for the Kestrel Ridge telescope?"


@pytest.fixture(scope="module")
def server(model, settings, tmp_path_factory):
    """(base URL, root folder, assistant) of a server over a small corpus."""
    from qa.engine import Assistant

    root = tmp_path_factory.mktemp("docs-api")
    corpus = write_corpus(root / "corpus", CORPUS)
    assistant = Assistant.load(settings=settings.replace(
        corpus=corpus, index=root / "index", uploads=root / "uploads"))
    app, mounted = mount_uis(create_app(assistant), assistant)
    assert mounted == ["chat"]
    with serve_in_thread(app) as url:
        yield url, root, assistant


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server[0], timeout=300) as c:
        yield c


def upload(client, *files, **params) -> httpx.Response:
    """POST the files as multipart, their names as they are (httpx would percent-encode
    control characters)."""
    body = b""
    for name, data in files:
        body += (b"--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\""
                 + name.replace('"', "%22").encode("utf-8")
                 + b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n")
    body += b"--b0undary--\r\n"
    return client.post("/api/documents", params=params, content=body,
                       headers={"Content-Type": "multipart/form-data; boundary=b0undary"})


def ask(client, question: str) -> dict:
    r = client.post("/api/answer", json={"question": question})
    assert r.status_code == 200, r.text
    return r.json()


def all_files(root: Path) -> set[str]:
    """Every file under `root` but the index's (each change writes a new generation)."""
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).as_posix().startswith("index/")}


def test_an_uploaded_file_is_answered_cited_listed_and_removed(client, server):
    _, root, _ = server
    assert not ask(client, LIGHTHOUSE_Q)["answerable"]
    r = upload(client, ("lighthouse.txt", LIGHTHOUSE.encode()))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "indexed" and "1 added" in body["summary"]
    (doc,) = body["documents"]
    assert doc["source"] == "uploads/lighthouse.txt" and not doc["renamed"]
    assert doc["indexed"] and doc["chunks"] >= 1 and doc["title"] == "Island notes"
    assert (root / "uploads" / "lighthouse.txt").read_text() == LIGHTHOUSE
    answer = ask(client, LIGHTHOUSE_Q)
    assert answer["answerable"] and "Edda Quist" in answer["answer"]
    cited = answer["citations"][0]
    assert cited["source"] == "uploads/lighthouse.txt"
    assert LIGHTHOUSE[cited["start"]:cited["end"]] == cited["quote"]
    text = client.get("/api/documents/uploads/lighthouse.txt/text").json()["text"]
    assert text == LIGHTHOUSE
    listed = {d["source"]: d for d in client.get("/api/documents").json()["documents"]}
    assert listed["uploads/lighthouse.txt"]["uploaded"] is True
    assert listed["uploads/lighthouse.txt"]["size"] == len(LIGHTHOUSE.encode())
    assert listed["uploads/lighthouse.txt"]["added_at"].endswith("Z")
    assert listed["bakery.txt"]["uploaded"] is False and listed["bakery.txt"]["added_at"] is None

    r = client.delete("/api/documents/uploads/lighthouse.txt")
    assert r.status_code == 200 and r.json()["status"] == "removed", r.text
    assert not (root / "uploads" / "lighthouse.txt").exists()
    assert not ask(client, LIGHTHOUSE_Q)["answerable"]
    r = client.delete("/api/documents/uploads/lighthouse.txt")
    assert r.status_code == 404 and "no uploaded file" in r.json()["error"]
    r = client.delete("/api/documents/bakery.txt")  # the corpus's own: read-only here
    assert r.status_code == 403 and "read-only" in r.json()["error"]
    assert (root / "corpus" / "bakery.txt").exists()
    assert client.delete("/api/documents/uploads/../corpus/bakery.txt").status_code in (403,
                                                                                          404)
    assert (root / "corpus" / "bakery.txt").exists()


@pytest.mark.parametrize("sent, stored", [
    ("../../evil.txt", "evil.txt"), ("..\\..\\win.txt", "win.txt"),
    (".hidden.md", "hidden.md"), ("CON.txt", "_CON.txt"), ("nul.md", "_nul.md"),
    ("bad\x01\x1b[31mname\t.txt", "bad[31mname.txt"), ("\u202egnp.txt", "gnp.txt"),
    ("/etc/cron.d/job.txt", "job.txt"),
])
def test_unsafe_names_are_stored_inside_under_a_safe_name(client, server, sent, stored):
    _, root, _ = server
    before = all_files(root)
    text = f"A note filed as {stored}.\n\nThe Orrin depot stored {len(sent)} crates.\n"
    r = upload(client, (sent, text.encode()))
    assert r.status_code == 200, r.text
    (doc,) = r.json()["documents"]
    assert doc["source"] == f"uploads/{stored}" and doc["renamed"] and doc["filename"] == sent
    assert all_files(root) - before == {f"uploads/{stored}"}  # nothing written elsewhere
    assert client.delete(f"/api/documents/uploads/{stored}").status_code == 200
    assert all_files(root) == before


def _zip_bomb() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"\0" * (300 * 1024 * 1024))
    return out.getvalue()


@pytest.mark.parametrize("name, data, status, words", [
    ("empty.txt", b"", 400, "empty"),
    ("blank.md", b"  \n\n ", 400, "empty file"),
    ("tool.exe", b"MZ\x90\x00", 415, "not a document"),
    ("noext", b"some text", 415, "not a document"),
    ("binary.txt", bytes(range(256)) * 40, 415, "binary"),
    ("broken.pdf", b"%PDF-1.4 this is not really a pdf", 400, "can't be read"),
    ("fake.docx", b"PK this is no zip", 400, "can't be read"),
    ("bomb.docx", None, 400, "zip bomb"),
])
def test_bad_files_are_refused_and_change_nothing(client, server, name, data, status, words):
    _, root, assistant = server
    data = _zip_bomb() if data is None else data
    generation = store.current_generation(assistant.settings.index_dir)
    before = all_files(root)
    r = upload(client, (name, data))
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and name in r.json()["error"]
    assert all_files(root) == before
    assert store.current_generation(assistant.settings.index_dir) == generation


def test_one_bad_file_refuses_the_whole_request(client, server):
    _, root, _ = server
    before = all_files(root)
    r = upload(client, ("good.txt", OBSERVATORY.encode()), ("bad.txt", b""))
    assert r.status_code == 400 and "bad.txt" in r.json()["error"]
    assert all_files(root) == before


def test_wrong_requests(client):
    r = client.post("/api/documents", json={"files": []})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]
    r = client.post("/api/documents", files={"other": ("a.txt", b"x")})
    assert r.status_code == 422 and "files" in r.json()["error"]
    r = client.post("/api/documents", data={"files": "not a file"},
                    files={"x": ("a.txt", b"x")})
    assert r.status_code == 422
    assert client.post("/api/documents?replace=maybe",
                       files={"files": ("a.txt", b"x")}).status_code == 422
    assert client.get("/api/jobs/nope").status_code == 404


def test_duplicates_and_replacing(client, server):
    _, root, _ = server
    r = upload(client, ("copy.txt", CORPUS["bakery.txt"].encode()))
    assert r.status_code == 409 and "'bakery.txt'" in r.json()["error"]
    assert "same content" in r.json()["error"]
    assert upload(client, ("obs.txt", OBSERVATORY.encode())).status_code == 200
    r = upload(client, ("obs2.txt", OBSERVATORY.encode()))  # same bytes, another name
    assert r.status_code == 409 and "uploads/obs.txt" in r.json()["error"]
    newer = OBSERVATORY.replace("4,200", "5,300")
    r = upload(client, ("obs.txt", newer.encode()))
    assert r.status_code == 409 and "replace=true" in r.json()["error"]
    assert (root / "uploads" / "obs.txt").read_text() == OBSERVATORY
    r = upload(client, ("obs.txt", newer.encode()), replace="true")
    assert r.status_code == 200, r.text
    assert "1 changed" in r.json()["summary"]
    assert "5,300" in ask(client, OBSERVATORY_Q)["answer"]
    assert client.delete("/api/documents/uploads/obs.txt").status_code == 200


def test_two_uploads_at_once_are_both_indexed(client, server):
    base = server[0]
    texts = {f"depot{i}.txt": f"Depot {i} report\n\nThe depot number {i} in Quellmoor "
                              f"counted {i * 111} wagons in June.\n" for i in (1, 2)}
    results = {}

    def send(name):
        with httpx.Client(base_url=base, timeout=300) as c:
            results[name] = upload(c, (name, texts[name].encode()))

    threads = [threading.Thread(target=send, args=(n,)) for n in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status_code for r in results.values()} == {200}, {
        n: r.text for n, r in results.items()}
    listed = {d["source"] for d in client.get("/api/documents").json()["documents"]}
    assert {"uploads/depot1.txt", "uploads/depot2.txt"} <= listed
    for name in texts:
        assert client.delete(f"/api/documents/uploads/{name}").status_code == 200


def test_a_large_upload_is_a_job(client):
    # long enough to be seen while embedding (a few seconds)
    filler = "".join(f"\n\nThe island ferry number {i} carried {i * 7} passengers to the "
                     f"harbour of Skerra on day {i} of the season." for i in range(400))
    content = (LIGHTHOUSE + filler).encode()
    r = upload(client, ("lighthouse.txt", content), background="true")
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert r.headers["location"] == r.json()["url"] == f"/api/jobs/{job['id']}"
    assert job["state"] in ("queued", "indexing") and job["files"] == ["uploads/lighthouse.txt"]
    deadline = time.monotonic() + 300
    phases = set()
    while job["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.05)
        job = client.get(r.json()["url"]).json()
        phases.add(job["phase"])
    assert job["state"] == "done" and job["phase"] is None, job
    assert phases & {"checking", "reading", "embedding", "writing", "switching"}, phases
    assert job["result"]["documents"][0]["source"] == "uploads/lighthouse.txt"
    assert ask(client, LIGHTHOUSE_Q)["answerable"]
    # a job that fails keeps nothing: the same content again
    r = upload(client, ("again.txt", content), background="true")
    assert r.status_code == 409  # known at once, before any job
    assert client.delete("/api/documents/uploads/lighthouse.txt").status_code == 200


@pytest.fixture(scope="module")
def small_limit(model, settings, tmp_path_factory):
    from qa.engine import Assistant

    root = tmp_path_factory.mktemp("docs-limit")
    corpus = write_corpus(root / "corpus", CORPUS)
    assistant = Assistant.load(settings=settings.replace(
        corpus=corpus, index=root / "index", uploads=root / "uploads", max_upload_mb=1))
    app, _ = mount_uis(create_app(assistant), assistant)
    with serve_in_thread(app) as url:
        yield url, root


def test_over_the_limit_is_413_before_the_body_is_read_and_nothing_is_kept(small_limit):
    url, root = small_limit
    big = (b"The Tarn ferry sailed at dawn. " * 70_000)[:2 * 1024 * 1024]
    before = all_files(root)
    with httpx.Client(base_url=url, timeout=120) as c:
        r = upload(c, ("big.txt", big))
        assert r.status_code == 413 and "1 MiB" in r.json()["error"], r.text

        def chunks():  # no Content-Length: refused once the bytes pass the limit
            yield b"--xyz\r\nContent-Disposition: form-data; name=\"files\"; " \
                  b"filename=\"big.txt\"\r\nContent-Type: text/plain\r\n\r\n"
            for i in range(0, len(big), 65536):
                yield big[i:i + 65536]
            yield b"\r\n--xyz--\r\n"

        r = c.post("/api/documents", content=chunks(),
                   headers={"Content-Type": "multipart/form-data; boundary=xyz"})
        assert r.status_code == 413, r.text
        r = c.post("/gradio_api/upload", files={"files": ("big.txt", big)})
        assert r.status_code == 413  # the page framework's own upload route too
        assert c.get("/api/health").status_code == 200
    assert all_files(root) == before


def test_sigkill_while_indexing_an_upload_keeps_the_last_good_index(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", CORPUS)
    index, uploads = tmp_path / "index", tmp_path / "uploads"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("QA_FAULT_POINT", None)
    common = ["--corpus", str(corpus), "--index", str(index)]
    subprocess.run([sys.executable, "-m", "qa.cli", "index", *common, "--quiet"], check=True,
                   env=env, timeout=600, capture_output=True)
    generation = store.current_generation(index)
    server = subprocess.Popen(
        [sys.executable, "-m", "qa.cli", "serve", *common, "--uploads", str(uploads),
         "--port", "0"], env={**env, "QA_FAULT_POINT": "embedded"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 300
        while "Chat page" not in line and time.monotonic() < deadline:
            line = server.stdout.readline()
            assert line or server.poll() is None, server.stderr.read()
        url = line.split("Chat page: ")[1].split("/  ")[0]
        with httpx.Client(base_url=url, timeout=300) as c:
            with pytest.raises(httpx.TransportError):  # the server dies mid-build
                upload(c, ("lighthouse.txt", LIGHTHOUSE.encode()))
        assert server.wait(timeout=60) == -signal.SIGKILL
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    assert store.current_generation(index) == generation  # the last good one, untouched
    data, _, _ = store.load_index(index)
    assert sorted(d.source for d in data.documents) == sorted(CORPUS)
    answered = subprocess.run(
        [sys.executable, "-m", "qa.cli", "ask", *common, "--json",
         "Which prize did the Elmstead bakery win?"],
        env=env, timeout=600, capture_output=True, text=True)
    assert answered.returncode == 0 and "bakery.txt" in answered.stdout, answered.stderr
