"""PDF, Word, HTML, Markdown and text files in one corpus, end to end with the real model:
verbatim quotes cited by file, page (PDF) and heading (Word), the text they point into
served by the API, and the seeds scored the same as PDFs as as text files."""

from __future__ import annotations

import json

import httpx
import pytest

import made_files as made
from qa.api import create_app, serve_in_thread
from qa.evaluation.run import load_questions, run, summarize

HARBOUR = "\n".join(made.PAGE1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "report.pdf").write_bytes(made.harbour_report())
    (folder / "minutes.docx").write_bytes(made.minutes_docx())
    (folder / "scan.pdf").write_bytes(made.scanned_pdf())
    (folder / "locked.pdf").write_bytes(made.encrypted_pdf())
    (folder / "lighthouse.txt").write_text(
        "Lighthouse notes\n\nThe old lighthouse on the north mole was built in 1872 and is "
        "now a museum.\n", encoding="utf-8")
    (folder / "ferry.md").write_text(
        "# Ferry timetable\n\nThe night ferry to Kiel leaves at 22:30 every day except "
        "Sunday.\n", encoding="utf-8")
    (folder / "market.html").write_text(
        "<html><head><title>Fish market</title></head><body><article><h1>Fish market</h1>"
        "<p>The fish market opens at five in the morning and closes at noon.</p>"
        "<p>It sells about 300 tonnes of fish a week.</p></article></body></html>",
        encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def assistant(corpus, model, settings, tmp_path_factory):
    from qa.engine import Assistant

    return Assistant.load(settings=settings.replace(
        corpus=corpus, index=tmp_path_factory.mktemp("mixed-index")))


CASES = [
    ("How many containers did the harbour handle in 2025?", "report.pdf", 1, None,
     made.PAGE1[0] + "\nport."),
    ("What does the authority publish every month?", "report.pdf", 1, None,
     "The authority publishes its traffic infor-\nmation every month on its website."),
    ("How deep is the main channel?", "report.pdf", 1, None,  # runs on to page 2
     "\n".join(made.PAGE1_RUN_ON + made.PAGE2_RUN_ON)),
    ("How much did the southern terminal cost?", "report.pdf", 2, None,
     "\n".join(made.RIGHT[:3]).rsplit(" It was", 1)[0]),
    ("Where does the longest ferry route go?", "report.pdf", 2, None,
     "Eleven\nferry routes leave from it, the\nlongest to Bergen."),
    ("How many tonnes of grain were handled in 2025?", "report.pdf", 3, None,
     "\n".join(" | ".join(row) for row in made.TABLE)),
    ("What budget did the board approve?", "minutes.docx", None, "Budget",
     "The board approved a budget of 48 million euros for 2026."),
    ("Who was appointed harbour master?", "minutes.docx", None, "Staff",
     "Maria Olsen was appointed harbour master from 1 July."),
    ("When was the lighthouse built?", "lighthouse.txt", None, None,
     "The old lighthouse on the north mole was built in 1872 and is now a museum."),
    ("When does the night ferry to Kiel leave?", "ferry.md", None, None,
     "The night ferry to Kiel leaves at 22:30 every day except Sunday."),
    ("When does the fish market open?", "market.html", None, None,
     "The fish market opens at five in the morning and closes at noon."),
]


def test_the_unreadable_files_are_skipped_and_the_rest_indexed(assistant):
    assert sorted(d.source for d in assistant.index.documents) == [
        "ferry.md", "lighthouse.txt", "market.html", "minutes.docx", "report.pdf"]
    assert set(assistant.index.manifest["skipped"]) == {"locked.pdf", "scan.pdf"}


@pytest.mark.parametrize("question,source,page,heading,quote", CASES,
                         ids=[c[0][:40] for c in CASES])
def test_each_format_answers_with_a_verbatim_quote_and_where_it_stands(
        assistant, question, source, page, heading, quote):
    answer = assistant.ask(question)
    assert answer.answerable, f"abstained on {question!r} ({answer.confidence:.2f})"
    cited = answer.citations[0]
    assert (cited.source, cited.quote) == (source, quote)
    assert (cited.page, cited.heading) == (page, heading)
    assert assistant.index.text(source)[cited.start:cited.end] == quote


def test_a_word_hyphenated_at_a_line_end_is_found_whole(assistant):
    from embeddings.lexical import tokenize

    index = assistant.index
    scores = index.bm25.scores(tokenize("information"))
    found = [index.chunks[i].text for i in range(len(index.chunks)) if scores[i] > 0]
    assert len(found) == 1 and "traffic infor-\nmation" in found[0]


def test_an_unanswered_question_abstains(assistant):
    assert not assistant.ask("What is the capital of France?").answerable


def test_the_api_serves_the_text_quotes_point_into(assistant):
    with serve_in_thread(create_app(assistant)) as url, httpx.Client(base_url=url) as client:
        body = client.post("/api/answer", json={"question": CASES[3][0]}).json()
        cited = body["citations"][0]
        assert (cited["source"], cited["page"], cited["heading"]) == ("report.pdf", 2, None)
        doc = client.get("/api/documents/report.pdf/text").json()
        assert doc["text"][cited["start"]:cited["end"]] == cited["quote"]
        assert doc["chars"] == len(doc["text"]) and len(doc["pages"]) == 4
        assert doc["text"][doc["pages"][2]:].startswith(made.TABLE_CAPTION)
        minutes = client.get("/api/documents/minutes.docx/text").json()
        assert [h["heading"] for h in minutes["headings"]] == [made.MINUTES_TITLE, "Budget",
                                                               "Staff"]
        assert client.get("/api/documents/lighthouse.txt/text").json()["text"].startswith(
            "Lighthouse notes")
        missing = client.get("/api/documents/nope.pdf/text")
        assert missing.status_code == 404 and "nope.pdf" in missing.json()["error"]
        listed = {d["source"]: d for d in client.get("/api/documents").json()["documents"]}
        assert listed["report.pdf"]["pages"] == 4 and listed["minutes.docx"]["pages"] is None
        trace = client.request("TRACE", "/api/documents/report.pdf/text")
        assert trace.status_code == 405 and trace.headers["allow"] == "GET"


def test_qa_ask_names_the_page_and_the_heading(assistant):
    shown = assistant.ask(CASES[0][0]).to_text()
    assert "  [1] report.pdf, p. 1 (chars " in shown
    shown = assistant.ask(CASES[6][0]).to_text()
    assert "  [1] minutes.docx, under “Budget” (chars " in shown


def test_the_chat_page_names_the_page(assistant):
    from ui.render import render_answer

    html = render_answer(assistant.ask(CASES[0][0]), assistant.index)
    assert '<span class="cqa-file">report.pdf</span><span class="cqa-where">, p. 1</span>' \
        in html


def test_the_seeds_as_pdf_score_as_the_text_files_do(seeds_assistant, seeds_copy, model,
                                                      settings, tmp_path):
    """Every seeds article rendered as a PDF (wrapped lines, page breaks): the seeds
    question set scores within two questions of the .txt files on every count. (The
    reader's stack is fitted on the .txt seeds, so their figures are in-sample and the
    PDF's are not: on 2026-12-06 the PDF lost "Where did Blinken and Wang Yi hold their
    talks?" to another sentence and abstained on "How did Xi Jinping rate Blinken's
    visit?", 79 right against 81, where the held-out .txt figure is 80.)"""
    from qa.engine import Assistant

    pdfs = tmp_path / "seeds-pdf"
    pdfs.mkdir()
    for path in sorted(seeds_copy.glob("*.txt")):
        (pdfs / f"{path.stem}.pdf").write_bytes(made.text_pdf(path.read_text("utf-8")))
    lines = (made.ROOT / "benchmarks/questions/seeds.jsonl").read_text("utf-8")
    (tmp_path / "seeds-pdf.jsonl").write_text(lines.replace('.txt"', '.pdf"'), "utf-8")
    as_pdf = Assistant.load(settings=settings.replace(corpus=pdfs, index=tmp_path / "i"))
    assert all(len(d.pages) >= 2 for d in as_pdf.index.documents)
    figures = []
    for assistant, path in ((seeds_assistant, made.ROOT / "benchmarks/questions/seeds.jsonl"),
                            (as_pdf, tmp_path / "seeds-pdf.jsonl")):
        questions = load_questions(path)
        rows = list(run(assistant, questions))
        metrics = summarize(rows, assistant.threshold())
        figures.append({
            "right": round(metrics["accuracy_at_1"] * metrics["answerable"]),
            "hit5": round(metrics["hit_at_5"] * metrics["answerable"]),
            "abstained": round(metrics["abstain_unanswerable"] * metrics["unanswerable"]),
            "false": round(metrics["false_abstention"] * metrics["answerable"]),
            "verbatim": metrics["citations_verbatim"]})
    text, pdf = figures
    print(json.dumps({"txt": text, "pdf": pdf}))
    assert pdf["verbatim"] == 1.0
    for key in ("right", "hit5", "abstained", "false"):
        assert abs(pdf[key] - text[key]) <= 2, (key, text, pdf)
