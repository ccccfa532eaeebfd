"""The chat page in a real headless Chromium (Debian's /usr/bin/chromium, driven by
playwright from PyPI) against live servers: over seeds/, and over a corpus whose
article carries script and event-handler markup that must show as text, never run.

The first tests (no browser) check the HTML rendering directly; the browser tests are
marked `browser` and skipped when Chromium is not installed. A screenshot of the page is
saved in the test's temporary folder; with QA_UPDATE_SCREENSHOT=1 it replaces
docs/screenshot.png (the README's picture).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from qa.api import create_app, mount_uis, serve_in_thread
from support import ROOT

SCREENSHOT = ROOT / "docs" / "screenshot.png"
SEED_FILE = re.compile(r"\b00[0-4]_[0-9a-f]{16}\.txt\b")
NOT_ANSWERED = "The documents don't answer this question."
# A phrase the answer to each example button must hold (the page offers ui.app.EXAMPLES).
EXAMPLE_ANSWERS = {
    "Does the US support Taiwan independence?": ("not support Taiwan independence",),
    "Who declined to meet Lloyd Austin?": ("Li Shangfu",),
    "When did Blinken arrive in China?": ("Wednesday",),
    # Reader v2 quotes the sentence about China's influence; reader-init quoted the DPRK one
    "What did Blinken say about North Korea?": ("DPRK", "influence over its ally North Korea"),
}
# gradio's queue calls pandas APIs that pandas 3 deprecates; not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting.*"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated.*")]

PAYLOAD_ARTICLE = "\n\n".join([
    "Zephyr harbour <b>reopens</b> <img src=x onerror=\"document.title='pwned'\">",
    "12 March 2024",
    "The Zephyr harbour reopened on Tuesday after a storm "
    "<script>window.__pwned=1</script> closed it for nine days.",
    "Harbour master Ilse Varga said the <img src=x onerror=\"window.__pwned=2\"> cranes "
    "were undamaged and that ${window.__pwned=3} shipping would resume within a week.",
    "The storm also flooded <a href=\"javascript:window.__pwned=4\">the fish market</a> "
    "near the eastern quay, where repairs will take a month.",
]) + "\n"
OTHER_ARTICLE = """Village bakery wins regional prize

The Elmstead village bakery won the regional bread prize on Saturday for its rye sourdough.
"""


# --- rendering, without a browser --------------------------------------------------------


def test_rendered_answer_escapes_document_text(model, settings, tmp_path):
    from qa.engine import Assistant
    from ui.render import render_answer, render_documents

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "harbour.txt").write_text(PAYLOAD_ARTICLE, encoding="utf-8")
    (corpus / "bakery.txt").write_text(OTHER_ARTICLE, encoding="utf-8")
    assistant = Assistant.load(settings=settings.replace(corpus=corpus,
                                                         index=tmp_path / "index"))
    answer = assistant.ask("When did the Zephyr harbour reopen?")
    assert answer.answerable
    page = render_answer(answer, assistant.index) + render_documents(assistant.index)
    for raw in ("<script", "<img", "<b>", "<a href", "onerror=\"", "\"javascript:"):
        assert raw not in page
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=&quot;document.title=&#x27;pwned&#x27;&quot;&gt;" in page
    assert "<mark>" in page and "\n" not in page


def test_rendered_answer_shows_sources_in_context(seeds_assistant):
    import dataclasses

    from qa.answering.answer import Citation
    from ui.render import citation_context, render_answer

    index = seeds_assistant.index
    data = index.data
    answer = seeds_assistant.ask("Does the US support Taiwan independence?")
    assert answer.answerable and answer.citations
    if len(answer.citations) == 1:  # make sure "also reported by" is exercised
        other = next(s for s in data.sentences[5:] if s.source != answer.citations[0].source)
        extra = Citation(other.source, other.source, other.text, other.start, other.end, 0.9)
        answer = dataclasses.replace(answer, citations=(*answer.citations, extra))
    html = render_answer(answer, index)
    for n, c in enumerate(answer.citations, 1):
        before, quote, after = citation_context(c, answer.passages, index)
        assert quote == c.quote and (before or after), "quote shown inside its passage"
        assert f"[{n}]" in html and c.source in html
    assert "Also reported by" in html and "confidence" in html
    assert "ADVERTISEMENT" not in html  # passages are chunks, which hold no boilerplate
    # a citation whose passage was not retrieved is found among the index's chunks
    for c in answer.citations:
        before, quote, after = citation_context(c, (), index)
        assert quote == c.quote and (before or after)

    unanswered = seeds_assistant.ask("How many troops does China have near Taiwan?",
                                     top_k=10)
    assert not unanswered.answerable
    sources = [p.source for p in unanswered.passages]
    assert len(set(sources)) < len(sources), "several passages of one document"
    html = render_answer(unanswered, index)
    assert NOT_ANSWERED in html.replace("&#x27;", "'")
    assert "Related material" in html and "Sources" not in html
    related = SEED_FILE.findall(html)
    assert related and len(related) == len(set(related)), "each document listed once"


# --- the page in Chromium --------------------------------------------------------------

def _serve(assistant):
    app, mounted = mount_uis(create_app(assistant), assistant)
    assert mounted == ["chat"], "the chat page entry point is not installed (pip install -e .)"
    return serve_in_thread(app)


@pytest.fixture(scope="module")
def seeds_url(seeds_assistant):
    with _serve(seeds_assistant) as url:
        yield url


@pytest.fixture(scope="module")
def payload_url(model, settings, tmp_path_factory):
    from qa.engine import Assistant

    corpus = tmp_path_factory.mktemp("payload") / "corpus"
    corpus.mkdir()
    (corpus / "harbour.txt").write_text(PAYLOAD_ARTICLE, encoding="utf-8")
    (corpus / "bakery.txt").write_text(OTHER_ARTICLE, encoding="utf-8")
    index = tmp_path_factory.mktemp("payload-index")
    assistant = Assistant.load(settings=settings.replace(corpus=corpus, index=index))
    with _serve(assistant) as url:
        yield url


def open_chat(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#cqa-question textarea", timeout=60_000)


def bot_messages(page):
    return page.locator('#cqa-chat [data-testid="bot"]')


def wait_for_reply(page, before: int) -> str:
    """Wait until a new assistant message is complete; return its text."""
    page.wait_for_function(
        """n => { const m = document.querySelectorAll('#cqa-chat [data-testid="bot"]');
                  return m.length > n &&
                         !m[m.length - 1].innerText.includes('Searching the documents'); }""",
        arg=before, timeout=60_000)
    return bot_messages(page).last.inner_text()


def ask(page, question: str) -> str:
    before = bot_messages(page).count()
    page.fill("#cqa-question textarea", question)
    page.press("#cqa-question textarea", "Enter")
    return wait_for_reply(page, before)


def wait_for_answer_in_view(page) -> None:
    """Wait until the top of the latest reply, and its answer line, show inside the chat
    (not scrolled past to the end of its sources)."""
    page.wait_for_function(
        """() => { const box = document.querySelector('#cqa-chat .bubble-wrap')
                                  .getBoundingClientRect();
                   const m = document.querySelectorAll('#cqa-chat [data-testid="bot"]');
                   const reply = m[m.length - 1];
                   const line = reply.querySelector('.cqa-answer-text, .cqa-abstain, .cqa-error');
                   const top = reply.getBoundingClientRect().top;
                   return box.top <= top && line &&
                          line.getBoundingClientRect().bottom <= box.bottom; }""",
        timeout=5_000)


def keep_screenshot(page, name: str) -> Path:
    """A screenshot to look at, in out/screenshots/NAME.png (not committed; the README's
    picture is docs/screenshot.png, rewritten with QA_UPDATE_SCREENSHOT=1)."""
    folder = ROOT / "out" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / f"{name}.png"
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000
    return shot


def answer_text(page) -> str:
    """The answer line of the latest reply (not its sources)."""
    return bot_messages(page).last.locator(".cqa-answer-text").inner_text()


@pytest.mark.browser
def test_conversation_with_citations_follow_up_and_abstention(page, seeds_url, tmp_path_factory):
    open_chat(page, seeds_url)
    title = page.title()
    assert title == "cited-qa"
    docs = page.inner_text("#cqa-docs")
    assert "5 files" in docs and "000_61a2b7113e9c39af.txt" in docs
    # the chat takes the window's height, not a fixed 560 px
    assert page.locator("#cqa-chat").bounding_box()["height"] > 650

    reply = ask(page, "Does the US support Taiwan independence?")
    assert "Taiwan" in reply and "independence" in reply
    assert "[1]" in reply and "SOURCES" in reply.upper()
    cited = SEED_FILE.findall(reply)
    assert cited and cited[0][:4] in ("000_", "001_", "003_")
    assert re.search(r"confidence \d+%", reply)
    marks = bot_messages(page).last.locator("mark")
    assert marks.count() >= 1 and "Taiwan" in marks.first.inner_text()
    wait_for_answer_in_view(page)
    # the clear button sits above the messages, not over them
    clear = page.locator('#cqa-chat button[aria-label="Clear"]').bounding_box()
    messages = page.locator("#cqa-chat .bubble-wrap").bounding_box()
    assert clear["y"] + clear["height"] <= messages["y"]
    shot = tmp_path_factory.mktemp("shots") / "screenshot.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    keep_screenshot(page, "answer")
    if os.environ.get("QA_UPDATE_SCREENSHOT"):
        SCREENSHOT.write_bytes(shot.read_bytes())

    # answered, not only searched: an abstention would show the completed question too
    reply = ask(page, "When did he arrive in China?")
    assert NOT_ANSWERED not in reply and re.search(r"arrived in China", reply), reply
    assert "searched for" in reply and SEED_FILE.search(reply)
    wait_for_answer_in_view(page)
    keep_screenshot(page, "follow-up")

    # a complete question is searched as it is, without the earlier subject
    reply = ask(page, "How many troops does China have near Taiwan?")
    assert NOT_ANSWERED in reply and "searched for" not in reply
    assert "RELATED MATERIAL" in reply.upper()
    wait_for_answer_in_view(page)
    keep_screenshot(page, "abstention")
    assert page.title() == title and not page.errors


@pytest.mark.browser
def test_phone_width_page_fits_and_answers(browser, seeds_url):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  device_scale_factor=2)
    page = context.new_page()
    try:
        open_chat(page, seeds_url)
        reply = ask(page, "Who declined to meet Lloyd Austin?")
        assert "Li Shangfu" in reply and SEED_FILE.search(reply)
        wait_for_answer_in_view(page)
        # nothing wider than the screen: no sideways scrolling on a phone
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
        assert page.locator("#cqa-ask").bounding_box()["width"] > 0
        keep_screenshot(page, "phone")
    finally:
        context.close()


@pytest.mark.browser
def test_long_replies_open_at_their_answer(browser, seeds_url):
    context = browser.new_context(viewport={"width": 1280, "height": 720})
    page = context.new_page()
    try:
        open_chat(page, seeds_url)
        assert page.locator("#cqa-chat").bounding_box()["height"] >= 420  # the minimum
        for question in ("Does the US support Taiwan independence?",
                         "What did he say about North Korea?",
                         "How many troops does China have near Taiwan?",
                         "Who declined to meet Lloyd Austin?"):
            ask(page, question)
            wait_for_answer_in_view(page)
        box = page.locator("#cqa-chat .bubble-wrap")
        assert box.evaluate("e => e.scrollHeight > e.clientHeight + 400")  # long replies
    finally:
        context.close()


@pytest.mark.browser
def test_every_example_question_is_answered(page, seeds_url):
    from ui.app import EXAMPLES

    assert set(EXAMPLES) == set(EXAMPLE_ANSWERS), "EXAMPLE_ANSWERS must follow EXAMPLES"
    open_chat(page, seeds_url)
    for question in EXAMPLES:
        before = bot_messages(page).count()
        page.get_by_role("button", name=question).click()
        reply = wait_for_reply(page, before)
        assert NOT_ANSWERED not in reply and SEED_FILE.search(reply), (question, reply)
        shown = answer_text(page)
        assert any(a in shown for a in EXAMPLE_ANSWERS[question]), (question, reply)
        wait_for_answer_in_view(page)
    assert not page.errors


@pytest.mark.browser
def test_error_messages(page, seeds_url):
    open_chat(page, seeds_url)
    reply = ask(page, "why " * 300)
    assert "limit is 1000" in reply and "Traceback" not in reply

    # an empty question gets a notice of its own, not a line in the previous reply
    before = bot_messages(page).count()
    page.fill("#cqa-question textarea", "   ")
    page.click("#cqa-ask")
    notice = page.locator('[data-testid="toast-body"]')
    notice.wait_for(timeout=10_000)
    assert "Please type a question" in notice.inner_text()
    assert bot_messages(page).count() == before
    assert "Please type a question" not in page.inner_text("#cqa-chat")

    # the page still answers after errors
    reply = ask(page, "Does the US support Taiwan independence?")
    assert SEED_FILE.search(reply) and not page.errors


@pytest.mark.browser
def test_markup_in_articles_and_questions_never_runs(page, payload_url):
    open_chat(page, payload_url)
    title = page.title()
    reply = ask(page, "When did the Zephyr harbour reopen?")
    assert "<script>window.__pwned=1</script>" in reply  # shown as text
    assert "<img src=x onerror=\"document.title='pwned'\">" in reply  # the title, as text
    reply = ask(page, "What did Ilse Varga say about the cranes?")
    assert "${window.__pwned=3}" in reply
    ask(page, "What flooded near the eastern quay?")
    # (markup the article does not hold: with the article's own <img> tag the question
    # shares its words with that headline, and the reader answers with it at 42%)
    reply = ask(page, '<svg onload="window.__pwned=5"> who won the chess final?')
    assert NOT_ANSWERED in reply
    page.wait_for_timeout(500)  # give any injected handler the chance to fire

    assert page.title() == title == "cited-qa"
    assert page.evaluate("() => typeof window.__pwned") == "undefined"
    chat = page.locator("#cqa-chat")
    assert chat.locator("img").count() == 0 and chat.locator("script").count() == 0
    assert chat.locator("svg[onload]").count() == 0
    assert page.locator("a[href^='javascript']").count() == 0
    assert page.locator("#cqa-docs img").count() == 0
    assert "<b>reopens</b>" in page.inner_text("#cqa-docs")
    user_text = page.locator('#cqa-chat [data-testid="user"]').last.inner_text()
    assert '<svg onload="window.__pwned=5">' in user_text
    assert not page.errors


@pytest.fixture(scope="module")
def documents_url(model, settings, tmp_path_factory):
    """A corpus of a PDF and a Word file (tests/made_files.py)."""
    import made_files as made
    from qa.engine import Assistant

    corpus = tmp_path_factory.mktemp("documents") / "corpus"
    corpus.mkdir()
    (corpus / "report.pdf").write_bytes(made.harbour_report())
    (corpus / "minutes.docx").write_bytes(made.minutes_docx())
    index = tmp_path_factory.mktemp("documents-index")
    assistant = Assistant.load(settings=settings.replace(corpus=corpus, index=index))
    with _serve(assistant) as url:
        yield url


def test_a_pdf_answer_names_its_page_and_a_word_answer_its_heading(page, documents_url):
    open_chat(page, documents_url)
    reply = ask(page, "How much did the southern terminal cost?")
    assert "310 million euros" in reply
    head = bot_messages(page).last.locator(".cqa-source-head").first
    assert head.inner_text().endswith("report.pdf, p. 2")
    wait_for_answer_in_view(page)
    keep_screenshot(page, "pdf-answer")
    reply = ask(page, "What budget did the board approve?")
    assert "48 million euros" in reply
    head = bot_messages(page).last.locator(".cqa-source-head").first
    assert head.inner_text().endswith("minutes.docx, under “Budget”")
    # the seeds' example questions are not offered for documents they are not about
    assert page.locator(".cqa-examples button").count() == 0
    assert not page.errors


def test_examples_are_offered_for_the_seeds_only(seeds_assistant):
    from ui.app import EXAMPLES, examples_for

    assert examples_for(seeds_assistant.index) == EXAMPLES
    assert examples_for(None) == ()
