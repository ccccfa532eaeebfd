"""The chat page's documents panel and login in a real headless Chromium (as
tests/ui/test_ui_browser.py, whose helpers this uses) against live servers:
upload a file, ask about it and see its citation; a refused file says why; remove it and
the same question abstains. With a key, the page asks for it through its login form.
Screenshots go to out/screenshots/."""

from __future__ import annotations

import pytest
from test_ui_browser import (
    NOT_ANSWERED,
    ask,
    keep_screenshot,
    open_chat,
    wait_for_answer_in_view,
)

from qa.api import create_app, mount_uis, serve_in_thread
from support import write_corpus

pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated.*")]

CORPUS = {
    "bakery.txt": "Village bakery wins regional prize\n\nThe Elmstead village bakery won the "
                  "regional bread prize on Saturday for its rye sourdough.\n",
    "railway.txt": "New railway bridge opens\n\nThe new railway bridge over the Arden river "
                   "cost 240 million euros and carries 180 trains a day.\n",
}
LIGHTHOUSE = ("Island notes\n\nThe Varnholm lighthouse keeper Edda Quist retired on Friday "
              "after thirty-one years of service on the island.\n")
QUESTION = "Who retired as the Varnholm lighthouse keeper?"
KEY = "k-browser-5e1f0a"


def _server(assistant):
    app, mounted = mount_uis(create_app(assistant), assistant)
    assert mounted == ["chat"]
    return serve_in_thread(app)


@pytest.fixture(scope="module")
def docs_url(model, settings, tmp_path_factory):
    from qa.engine import Assistant

    root = tmp_path_factory.mktemp("ui-docs")
    corpus = write_corpus(root / "corpus", CORPUS)
    assistant = Assistant.load(settings=settings.replace(
        corpus=corpus, index=root / "index", uploads=root / "uploads"))
    with _server(assistant) as url:
        yield url


def upload_status(page, kind: str) -> str:
    selector = f'#cqa-upload-status [data-kind="{kind}"]'
    page.wait_for_selector(selector, timeout=180_000)
    return page.inner_text(selector)


@pytest.mark.browser
def test_upload_ask_cite_remove_then_abstain(page, docs_url, tmp_path):
    open_chat(page, docs_url)
    assert NOT_ANSWERED in ask(page, QUESTION)
    sent = tmp_path / "lighthouse.txt"
    sent.write_text(LIGHTHOUSE, encoding="utf-8")
    page.set_input_files("#cqa-upload input[type=file]", str(sent))
    added = upload_status(page, "ok")
    assert "Added uploads/lighthouse.txt" in added, added
    assert "uploads/lighthouse.txt" in page.inner_text("#cqa-docs")
    reply = ask(page, QUESTION)
    assert "Edda Quist" in reply and "uploads/lighthouse.txt" in reply, reply
    wait_for_answer_in_view(page)
    keep_screenshot(page, "upload-answered")

    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    page.set_input_files("#cqa-upload input[type=file]", str(empty))
    refused = upload_status(page, "error")
    assert "Not added" in refused and "empty" in refused, refused
    keep_screenshot(page, "upload-refused")

    page.click("#cqa-remove-choice input")
    page.click('[data-testid="dropdown-option"][aria-label="uploads/lighthouse.txt"]')
    page.click("#cqa-remove")
    page.wait_for_function(
        """() => { const s = document.querySelector('#cqa-upload-status [data-kind="ok"]');
                   return s && s.innerText.includes('Removed'); }""", timeout=180_000)
    assert "uploads/lighthouse.txt" not in page.inner_text("#cqa-docs")
    assert NOT_ANSWERED in ask(page, QUESTION)
    wait_for_answer_in_view(page)
    keep_screenshot(page, "upload-removed")
    assert not page.errors, page.errors


@pytest.fixture(scope="module")
def keyed_url(model, settings, tmp_path_factory):
    from qa.engine import Assistant

    root = tmp_path_factory.mktemp("ui-keyed")
    corpus = write_corpus(root / "corpus", CORPUS)
    assistant = Assistant.load(settings=settings.replace(
        corpus=corpus, index=root / "index", uploads=root / "uploads", api_key=KEY))
    with _server(assistant) as url:
        yield url


@pytest.mark.browser
def test_the_page_asks_for_the_key_through_its_login(page, keyed_url):
    page.goto(keyed_url)
    page.wait_for_selector("#cqa-key")
    assert "/login" in page.url
    page.fill("#cqa-key", "not the key")
    page.click("#cqa-login")
    page.wait_for_selector("#cqa-login-error")
    assert "not the key" in page.inner_text("#cqa-login-error")
    keep_screenshot(page, "login-refused")
    page.fill("#cqa-key", KEY)
    page.click("#cqa-login")
    page.wait_for_selector("#cqa-question textarea", timeout=60_000)
    reply = ask(page, "Which prize did the Elmstead bakery win?")
    assert "bakery.txt" in reply and "prize" in reply, reply
    keep_screenshot(page, "login-chat")
    assert not page.errors, page.errors
