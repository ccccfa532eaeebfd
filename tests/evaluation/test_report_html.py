"""qa/evaluation/report_html.py: report.html, one self-contained page with every miss, searchable.
Rendered from hand-made judged rows; the search is tried in a real headless Chromium
(marked `browser`, skipped without Debian's chromium, as tests/ui/test_ui_browser.py)."""

from __future__ import annotations

import os

import pytest

from qa.evaluation.report_html import render
from qa.evaluation.run import Question
from support import CHROMIUM, CHROMIUM_ARGS


def _judged(qid, answerable, abstained, correct, **answer):
    row = {"id": qid, "answer": answer.get("answer", ""), "confidence": 0.42,
           "citations": answer.get("citations", []), "answer_span": answer.get("span"),
           "passages": answer.get("passages", [])}
    row["judgement"] = {"answerable": answerable, "abstained": abstained, "correct": correct,
                        "raw_confidence": 0.42, "prediction": answer.get("prediction", ""),
                        "squad_em": float(correct), "squad_f1": float(correct)}
    return row


def misses():
    """Four judged rows (one right, three wrong of each kind) and their questions."""
    passage = {"source": "a.txt", "text": "Before. Li <b>Shangfu</b> declined. After.",
               "start": 100, "end": 142}
    quote = {"source": "a.txt", "quote": "Li <b>Shangfu</b> declined.", "start": 108,
             "end": 135, "page": 2}
    rows = [
        _judged("right", True, False, True, answer="x"),
        _judged("wrong", True, False, False, answer=quote["quote"], citations=[quote],
                passages=[passage], span={"start": 108, "end": 125},
                prediction="Li <b>Shangfu</b>"),
        _judged("missed", True, True, False, passages=[passage]),
        _judged("eager", False, False, False, answer="x", citations=[quote],
                passages=[passage], prediction="x"),
    ]
    questions = [Question("right", "Q?", ("x",), (), True),
                 Question("wrong", "Who <script>alert(1)</script>?", ("Qin Gang",),
                          ("b.txt",), True),
                 Question("missed", "Who else?", ("Li",), ("a.txt",), True),
                 Question("eager", "Super Bowl?", (), (), False)]
    return rows, questions


def test_report_html_is_one_searchable_self_contained_page():
    rows, questions = misses()
    metrics = {"questions": 4, "unanswerable": 1, "accuracy": 0.25, "squad_f1": 0.25,
               "threshold": 0.39}
    page = render(rows, questions, metrics, "set <1>.json", b"\x89PNG")
    assert page.startswith("<!doctype html>") and "set &lt;1&gt;.json" in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "Wrong answers and wrong abstentions (3)" in page
    assert 'data-kind="wrong answer"' in page and 'data-kind="wrong abstention"' in page
    assert 'data-kind="answered, should abstain"' in page and ">right<" not in page
    # the quote marked in its passage, the answer phrase in bold, all escaped
    assert ("Before. <mark><strong>Li &lt;b&gt;Shangfu&lt;/b&gt;</strong> declined.</mark>"
            " After.") in page
    assert "a.txt, p. 2" in page and "closest passage: a.txt" in page
    assert "Qin Gang" in page and "abstain: the documents" in page
    assert 'id="search"' in page and "addEventListener" in page
    assert "data:image/png;base64,iVBORw==" in page
    for outside in ("http://", "https://", "<link", "src=\"/", "@import"):
        assert outside not in page, outside


@pytest.mark.browser
def test_the_search_box_filters_the_misses_offline(tmp_path):
    if not CHROMIUM.exists():
        message = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("QA_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    rows, questions = misses()
    path = tmp_path / "report.html"
    path.write_text(render(rows, questions, {"questions": 4}, "set", b"\x89PNG"),
                    encoding="utf-8")
    fetched: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda r: fetched.append(r.url))
        page.goto(path.as_uri())
        shown = page.locator("#misses tbody tr:visible")
        assert shown.count() == 3 and page.text_content("#count") == "3 of 3 shown"
        page.fill("#search", "qin GANG")  # words, any case, anywhere in the row
        assert shown.count() == 1 and "Who <script>" in shown.first.text_content()
        page.fill("#search", "a.txt")
        assert shown.count() == 3
        page.select_option("#kind", "wrong abstention")
        assert shown.count() == 1 and page.text_content("#count") == "1 of 3 shown"
        page.fill("#search", "")
        page.select_option("#kind", "")
        assert shown.count() == 3
        browser.close()
    assert not errors, errors
    assert all(url.startswith(("file:", "data:")) for url in fetched), fetched
