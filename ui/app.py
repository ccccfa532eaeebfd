"""The chat page: a Gradio Blocks app mounted at "/" of the API app.

Registered as the entry point `cited_qa.ui: chat = ui.app:mount`, which `qa.api.serve`
discovers. Every answer is rendered as HTML built here from escaped pieces
(`html.escape`): document text never reaches the page as markup, so an article holding
`<script>` or `<img onerror=...>` shows those characters instead of running them. The
Chatbot's own sanitizer stays on as a second layer, and Markdown/LaTeX rendering is off
so article text can't be reinterpreted either.
"""

from __future__ import annotations

import bisect
import html
import logging
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home

import gradio as gr  # noqa: E402

from qa.errors import QuestionError  # noqa: E402

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from embeddings.store import DocumentRecord
    from qa.answer import Answer, Citation
    from qa.engine import Assistant
    from qa.index import Index
    from qa.retrieve import Passage

log = logging.getLogger(__name__)

TITLE = "cited-qa"
DESCRIPTION = ("Ask a question about the articles: every answer is a sentence quoted word "
               "for word from one of them, with its source.")
NOT_ANSWERED = "The documents don't answer this question."
# Offered as buttons; each must be answered correctly over seeds/ (the browser test asks
# every one and checks its answer): a stance, a person, a number, one to follow up on.
EXAMPLES = (
    "Does the US support Taiwan independence?",
    "Who declined to meet Lloyd Austin?",
    "When did Blinken arrive in China?",
    "What did Blinken say about North Korea?",
)
CONTEXT_CHARS = 320  # passage text shown on each side of a quote, at most
RELATED_SHOWN = 3
SNIPPET_CHARS = 360
TOP_K_MAX = 10


# --- the engine's index: the only code here that knows its shape -------------------------


def _documents(index: Index | None) -> Sequence[DocumentRecord]:
    """The indexed documents (source, title, date, counts), sorted by source."""
    return index.documents if index is not None else ()


def _chunk_around(index: Index | None, source: str, start: int,
                  end: int) -> tuple[int, str] | None:
    """(start, text) of an indexed passage of `source` holding [start, end), for a
    citation whose passage was not among the retrieved ones. The index keeps chunks by
    source and start, and a document's chunk ends grow with their starts, so the last
    chunk starting at or before `start` is the one that can hold the span."""
    if index is None:
        return None
    chunks = index.chunks
    i = bisect.bisect_right(chunks, (source, start), key=lambda c: (c.source, c.start))
    chunk = chunks[i - 1] if i else None
    if chunk is None or chunk.source != source or chunk.end < end:
        return None
    return chunk.start, chunk.text


def _document(index: Index | None, source: str) -> DocumentRecord | None:
    """The indexed document `source`, found by bisection (no table built per answer)."""
    documents = _documents(index)
    i = bisect.bisect_left(documents, source, key=lambda d: d.source)
    return documents[i] if i < len(documents) and documents[i].source == source else None


CSS = """
.cqa-header h1 { margin: 0 0 .15rem 0; font-size: 1.6rem; }
.cqa-header p { margin: 0; color: var(--body-text-color-subdued); }
.cqa-msg { line-height: 1.5; }
.cqa-msg .cqa-h { font-weight: 600; font-size: .8rem; text-transform: uppercase;
  letter-spacing: .04em; color: var(--body-text-color-subdued); margin: .8rem 0 .3rem; }
.cqa-answer-text { font-size: 1.02rem; margin: 0 0 .4rem 0; }
.cqa-phrase { font-weight: 700; }
.cqa-ref { font-size: .72rem; font-weight: 600; color: var(--color-accent);
  margin-left: .1rem; }
.cqa-searched { font-size: .8rem; color: var(--body-text-color-subdued);
  margin-bottom: .35rem; }
.cqa-confidence { display: flex; align-items: center; gap: .5rem; font-size: .8rem;
  margin: .25rem 0; }
.cqa-badge { border-radius: 999px; padding: .05rem .55rem; font-weight: 600;
  font-size: .75rem; }
.cqa-high { background: #dcfce7; color: #14532d; }
.cqa-medium { background: #fef9c3; color: #713f12; }
.cqa-low { background: #fee2e2; color: #7f1d1d; }
.cqa-bar { display: inline-block; width: 7rem; height: .45rem; border-radius: 999px;
  background: var(--border-color-primary); overflow: hidden; }
.cqa-bar > span { display: block; height: 100%; background: var(--color-accent); }
.cqa-source { border-left: 3px solid var(--border-color-accent, #f97316);
  padding: .15rem 0 .15rem .6rem; margin: .45rem 0; }
.cqa-source-head { font-size: .85rem; }
.cqa-file { font-family: var(--font-mono); font-size: .78rem; }
.cqa-meta { color: var(--body-text-color-subdued); font-size: .78rem; }
.cqa-passage { margin: .25rem 0 0 0; font-size: .86rem;
  color: var(--body-text-color-subdued); }
.cqa-passage mark, .cqa-msg mark { background: #fde68a; color: #111827;
  padding: 0 .1rem; border-radius: 2px; }
.cqa-also { font-size: .82rem; margin-top: .5rem; }
.cqa-abstain { font-weight: 600; margin: 0 0 .3rem 0; }
.cqa-related-item { margin: .4rem 0; font-size: .85rem; }
.cqa-error { color: #b91c1c; }
.cqa-timing { font-size: .72rem; color: var(--body-text-color-subdued); margin-top: .5rem; }
.cqa-docs table { width: 100%; border-collapse: collapse; font-size: .8rem; }
.cqa-docs table, .cqa-docs thead, .cqa-docs tbody, .cqa-docs tr, .cqa-docs th,
.cqa-docs td { border: 0 !important; background: transparent; }
.cqa-docs th, .cqa-docs td { text-align: left; padding: .35rem .35rem; vertical-align: top; }
.cqa-docs tbody tr { border-top: 1px solid var(--border-color-primary) !important; }
.cqa-docs th { font-weight: 600; color: var(--body-text-color-subdued); }
.cqa-docs td.cqa-num, .cqa-docs th.cqa-num { text-align: right; white-space: nowrap; }
.cqa-docs .cqa-file { display: block; word-break: break-all; margin-top: .1rem; }
.cqa-examples button { text-align: left; }
/* the clear button gets a row of its own above the messages instead of covering them */
#cqa-chat .top-panel { position: static; align-self: flex-end; margin: .3rem .3rem 0 0; }
#cqa-chat .bubble-wrap { height: auto; flex: 1 1 0; min-height: 0; padding-top: .5rem; }
"""

# The chat fills the window's height (the header, input and examples take ~290 px).
CHAT_HEIGHT = "calc(100vh - 290px)"
CHAT_MIN_HEIGHT = 420
# Gradio's autoscroll jumps to the end of a reply, i.e. to the tail of its sources: it is
# off, and this brings the latest question (or, if that is too tall, the reply itself) to
# the top of the chat instead, so the answer is read first. Run after the reply is in;
# the chat renders a message a moment after its value arrives, hence the delay.
SHOW_REPLY_JS = """() => new Promise(done => setTimeout(() => {
  const box = document.querySelector('#cqa-chat .bubble-wrap');
  const rows = box ? box.querySelectorAll('.message-row') : [];
  if (rows.length) {
    const reply = rows[rows.length - 1], asked = rows[rows.length - 2];
    const top = asked && asked.classList.contains('user-row') &&
                asked.offsetHeight < box.clientHeight / 3 ? asked : reply;
    box.scrollTop += top.getBoundingClientRect().top - box.getBoundingClientRect().top - 8;
  }
  done();
}, 150))"""


def _theme() -> gr.themes.Base:
    # System fonts only: the default theme would fetch Google Fonts, and the page must
    # work without the internet.
    return gr.themes.Soft(
        primary_hue="orange", neutral_hue="slate",
        font=["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"])


# --- rendering (pure functions: text in, escaped HTML out) ------------------------------


def esc(text: object) -> str:
    """HTML-escape any value (quotes too); newlines become <br> so each message stays on
    one line (Gradio dedents multi-line messages)."""
    out = html.escape(str(text), quote=True)
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def _trim_left(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    cut = text[-n:]
    space = cut.find(" ")
    return "…" + (cut[space + 1:] if 0 <= space < 40 else cut)


def _trim_right(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    cut = text[:n]
    space = cut.rfind(" ")
    return (cut[:space] if space > n - 40 else cut) + "…"


def _percent(x: float) -> int:
    return max(0, min(100, round(float(x) * 100)))


def confidence_html(confidence: float, threshold: float | None = None,
                    answerable: bool = True) -> str:
    pct = _percent(confidence)
    level = ("cqa-high" if pct >= 80 else "cqa-medium" if pct >= 50 else "cqa-low") \
        if answerable else "cqa-low"
    note = ""
    if not answerable and threshold is not None:
        note = (f'<span class="cqa-meta">best candidate {pct}%, below the '
                f'{_percent(threshold)}% needed to answer</span>')
    label = f"confidence {pct}%" if answerable else f"{pct}%"
    return (f'<div class="cqa-confidence" title="How sure the assistant is that the quote '
            f'answers the question"><span class="cqa-badge {level}">{label}</span>'
            f'<span class="cqa-bar" role="img" aria-label="confidence {pct} percent">'
            f'<span style="width:{pct}%"></span></span>{note}</div>')


def citation_context(citation: Citation, passages: Sequence[Passage],
                     index: Index | None = None) -> tuple[str, str, str]:
    """(before, quote, after): the quote inside the passage that contains it.

    The passage comes from `passages` (source equal and passage.start <= c.start and
    c.end <= passage.end), else from the index's chunks; (“”, quote, “”) if none does.
    """
    found: tuple[int, str] | None = None
    for p in passages:
        if p.source == citation.source and p.start <= citation.start and \
                citation.end <= p.end:
            found = (p.start, p.text)
            break
    if found is None:
        found = _chunk_around(index, citation.source, citation.start, citation.end)
    if found is None:
        return "", citation.quote, ""
    offset, text = found
    a, b = citation.start - offset, citation.end - offset
    if text[a:b] != citation.quote:  # offsets disagree: show the quote alone, verbatim
        return "", citation.quote, ""
    return text[:a], citation.quote, text[b:]


def _lines(lines: list[str]) -> list[str]:
    """The non-blank lines, white space collapsed. Passages are chunks, which hold no
    boilerplate lines by construction (the indexer chunks only content spans)."""
    return [" ".join(line.split()) for line in lines if line.strip()]


def phrase_html(quote: str, start: int, span: tuple[int, int] | None) -> str:
    """The escaped quote (whose first character is file offset `start`) with the answer
    phrase `span` (file offsets) in bold, when the span lies inside it."""
    if span is None or not start <= span[0] < span[1] <= start + len(quote):
        return esc(quote)
    a, b = span[0] - start, span[1] - start
    return (f'{esc(quote[:a])}<strong class="cqa-phrase">{esc(quote[a:b])}</strong>'
            f"{esc(quote[b:])}")


def _passage_html(before: str, quote: str, after: str, quote_html: str | None = None) -> str:
    """The quote highlighted inside its passage; the quote itself is always shown
    verbatim (`quote_html`: the quote already rendered, e.g. with its phrase in bold)."""
    head = before.replace("\r", "").split("\n")
    tail = after.replace("\r", "").split("\n")
    # head[-1] / tail[0] share a line with the quote; the other lines stand alone
    lead = " ".join(head[-1].split()) + (" " if head[-1][-1:].isspace() else "")
    trail = (" " if tail[0][:1].isspace() else "") + " ".join(tail[0].split())
    above = _lines(head[:-1])
    below = _lines(tail[1:])
    before_text = "\n".join([*above, lead]) if above else lead
    after_text = "\n".join([trail, *below]) if below else trail
    before_text = _trim_left(before_text, CONTEXT_CHARS)
    after_text = _trim_right(after_text, CONTEXT_CHARS)
    inner = esc(quote) if quote_html is None else quote_html
    return (f'<blockquote class="cqa-passage">{esc(before_text)}<mark>{inner}</mark>'
            f"{esc(after_text)}</blockquote>")


def _source_head(n: int | None, source: str, index: Index | None) -> str:
    """Title, date and file name of a source (its file name alone if not indexed)."""
    document = _document(index, source)
    title, date = (document.title, document.date) if document is not None else (source, None)
    num = f'<span class="cqa-ref">[{n}]</span> ' if n is not None else ""
    when = f' <span class="cqa-meta">· {esc(date)}</span>' if date else ""
    return (f'<div class="cqa-source-head">{num}<strong>{esc(title)}</strong>{when}<br>'
            f'<span class="cqa-file">{esc(source)}</span></div>')


def render_answer(answer: Answer, index: Index | None = None,
                  threshold: float | None = None) -> str:
    """The assistant's chat message for an Answer, as escaped HTML."""
    parts = ['<div class="cqa-msg">']
    if answer.searched_for and answer.searched_for != answer.question:
        parts.append(f'<div class="cqa-searched">searched for: “{esc(answer.searched_for)}”'
                     "</div>")
    if answer.answerable and answer.citations:
        refs = "".join(f'<sup class="cqa-ref">[{n}]</sup>'
                       for n in range(1, len(answer.citations) + 1))
        first = answer.citations[0]
        answer_html = phrase_html(first.quote, first.start, answer.answer_span)
        parts.append(f'<p class="cqa-answer-text">{answer_html}{refs}</p>')
        parts.append(confidence_html(answer.confidence))
        parts.append('<div class="cqa-h">Sources</div>')
        for n, c in enumerate(answer.citations, 1):
            parts.append('<div class="cqa-source">')
            parts.append(_source_head(n, c.source, index))
            parts.append(_passage_html(*citation_context(c, answer.passages, index),
                                       answer_html if n == 1 else None))
            parts.append("</div>")
        if len(answer.citations) > 1:
            others = "; ".join(
                f'<span class="cqa-ref">[{n}]</span> {esc(c.title)} '
                f'(<span class="cqa-file">{esc(c.source)}</span>)'
                for n, c in enumerate(answer.citations[1:], 2))
            parts.append(f'<div class="cqa-also"><strong>Also reported by:</strong> '
                         f"{others}</div>")
    else:
        parts.append(f'<p class="cqa-abstain">{esc(NOT_ANSWERED)}</p>')
        parts.append(confidence_html(answer.confidence, threshold, answerable=False))
        related: dict[str, Passage] = {}  # each document once, with its best passage
        for p in answer.passages:
            related.setdefault(p.source, p)
        if related:
            parts.append('<div class="cqa-h">Related material (not an answer)</div>')
            for p in list(related.values())[:RELATED_SHOWN]:
                parts.append('<div class="cqa-related-item">')
                parts.append(_source_head(None, p.source, index))
                lines = _lines(p.text.replace("\r", "").split("\n"))
                snippet = _trim_right("\n".join(lines) or p.text, SNIPPET_CHARS)
                parts.append(f'<blockquote class="cqa-passage">{esc(snippet)}</blockquote>')
                parts.append("</div>")
    total = answer.timings_ms.get("total") if answer.timings_ms else None
    if total is not None:
        parts.append(f'<div class="cqa-timing">answered in {float(total):.0f} ms</div>')
    parts.append("</div>")
    return "".join(parts)


def render_error(message: str) -> str:
    return f'<div class="cqa-msg cqa-error">⚠ {esc(message)}</div>'


def render_question(question: str) -> str:
    return esc(question)


def render_documents(index: Index | None) -> str:
    """The indexed documents as an escaped HTML table."""
    documents = _documents(index)
    if not documents:
        return '<div class="cqa-docs cqa-meta">No documents are indexed.</div>'
    rows = "".join(
        f'<tr><td>{esc(d.title)}<span class="cqa-file cqa-meta">{esc(d.source)}</span></td>'
        f'<td class="cqa-num">{esc(d.date or "—")}</td>'
        f'<td class="cqa-num">{int(d.chunks)}</td></tr>'
        for d in documents)
    n = len(documents)
    return (f'<div class="cqa-docs"><div class="cqa-meta">{n} file{"s" if n != 1 else ""}'
            f'</div><table><thead><tr><th>Document</th><th class="cqa-num">Date</th>'
            f'<th class="cqa-num">Passages</th></tr></thead><tbody>{rows}</tbody></table>'
            "</div>")


# --- the page ---------------------------------------------------------------------------


def _clean_history(history: Any) -> list[dict]:
    """Keep only well-formed turns (the state comes back from the browser)."""
    if not isinstance(history, list):
        return []
    return [{"question": h["question"], "answer": h.get("answer", "")
             if isinstance(h.get("answer", ""), str) else ""}
            for h in history[-20:]
            if isinstance(h, dict) and isinstance(h.get("question"), str)]


def _top_k(value: Any, default: int) -> int:
    try:
        k = int(round(float(value)))
    except (TypeError, ValueError):
        return default
    return max(1, min(TOP_K_MAX, k))


def _preview(question: str, n: int = 300) -> str:
    text = " ".join(question.split())
    return text if len(text) <= n else text[:n] + "…"


def make_responder(assistant: Assistant):
    """The chat handler: (question, chat, history, top_k) -> updates, as a generator
    (first the question with a "searching" note, then the answer)."""
    default_k = min(TOP_K_MAX, assistant.settings.top_k)

    def respond(question: Any, chat: Any, history: Any, top_k: Any
                ) -> Iterator[tuple[str, list, list]]:
        chat = list(chat) if isinstance(chat, list) else []
        history = _clean_history(history)
        question = question if isinstance(question, str) else ""
        if not question.strip():  # a notice, not a chat message
            gr.Warning("Please type a question first.")
            yield "", chat, history
            return
        user = {"role": "user", "content": render_question(_preview(question))}
        pending = {"role": "assistant",
                   "content": '<div class="cqa-msg cqa-meta">Searching the documents…</div>'}
        yield "", [*chat, user, pending], history
        try:
            answer = assistant.ask(question, top_k=_top_k(top_k, default_k), history=history)
        except QuestionError as exc:
            message = str(exc)
            message = message[:1].upper() + message[1:]
            yield "", [*chat, user, {"role": "assistant",
                                     "content": render_error(f"{message}.")}], history
            return
        except Exception:  # noqa: BLE001 - show a message, never a traceback
            log.exception("answering %r failed", question[:200])
            yield "", [*chat, user, {"role": "assistant", "content": render_error(
                "Something went wrong while answering; the error is in the server log.")}], \
                history
            return
        user = {"role": "user", "content": render_question(answer.question)}
        try:
            threshold = assistant.threshold()
        except Exception:  # noqa: BLE001 - only used for a hint
            threshold = None
        reply = {"role": "assistant",
                 "content": render_answer(answer, assistant.index, threshold)}
        history.append({"question": answer.question,
                        "answer": answer.answer if answer.answerable else ""})
        yield "", [*chat, user, reply], history

    return respond


def build_ui(assistant: Assistant) -> gr.Blocks:
    """The chat page for `assistant` (mount it with `mount`)."""
    respond = make_responder(assistant)
    default_k = min(TOP_K_MAX, assistant.settings.top_k)
    ask_events = {"concurrency_limit": 4, "concurrency_id": "ask",
                  "api_visibility": "private"}

    with gr.Blocks(title=TITLE, analytics_enabled=False, fill_width=False) as blocks:
        gr.HTML(f'<div class="cqa-header"><h1>{esc(TITLE)}</h1><p>{esc(DESCRIPTION)} '
                f'<a href="/docs" target="_blank" rel="noopener">JSON API</a></p></div>',
                js_on_load=None)
        history = gr.State([])
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=360):
                chatbot = gr.Chatbot(
                    elem_id="cqa-chat", label="Conversation", show_label=False,
                    height=CHAT_HEIGHT, min_height=CHAT_MIN_HEIGHT,
                    render_markdown=False, sanitize_html=True,
                    allow_tags=False, latex_delimiters=[], buttons=[],
                    feedback_options=None, layout="bubble", autoscroll=False,
                    placeholder="<b>Ask about the indexed articles.</b><br>Answers are "
                                "quotes from the documents, with their sources.")
                with gr.Row():
                    box = gr.Textbox(elem_id="cqa-question", show_label=False,
                                     placeholder="Ask a question about the articles…",
                                     lines=1, max_lines=4, scale=6, autofocus=True)
                    ask = gr.Button("Ask", variant="primary", scale=1, min_width=80,
                                    elem_id="cqa-ask")
                with gr.Row(elem_classes="cqa-examples"):
                    example_buttons = [gr.Button(q, size="sm", variant="secondary")
                                       for q in EXAMPLES]
            with gr.Column(scale=2, min_width=260):
                with gr.Accordion("Indexed documents", open=True):
                    docs = gr.HTML(render_documents(assistant.index), js_on_load=None,
                                   elem_id="cqa-docs")
                with gr.Accordion("Settings", open=False):
                    top_k = gr.Slider(1, TOP_K_MAX, value=default_k, step=1,
                                      label="Passages to retrieve",
                                      info="How many passages are searched and shown "
                                           "as related material.")
                    clear = gr.Button("New conversation", size="sm")

        inputs = [box, chatbot, history, top_k]
        outputs = [box, chatbot, history]
        asked = [box.submit(respond, inputs, outputs, **ask_events),
                 ask.click(respond, inputs, outputs, **ask_events)]
        for button, question in zip(example_buttons, EXAMPLES, strict=True):
            def ask_example(chat, hist, k, _q=question):
                yield from respond(_q, chat, hist, k)
            asked.append(button.click(ask_example, [chatbot, history, top_k], outputs,
                                      **ask_events))
        for event in asked:
            event.then(None, None, None, js=SHOW_REPLY_JS, queue=False,
                       api_visibility="private")
        clear.click(lambda: ("", [], []), None, outputs, api_visibility="private",
                    queue=False)
        chatbot.clear(lambda: [], None, history, api_visibility="private", queue=False,
                      show_progress="hidden")
        blocks.load(lambda: render_documents(assistant.index), None, docs,
                    api_visibility="private", queue=False, show_progress="hidden")
    return blocks


def mount(app: FastAPI, assistant: Assistant) -> FastAPI:
    """Mount the chat page at "/" of `app` (entry point `cited_qa.ui: chat`)."""
    return gr.mount_gradio_app(
        app, build_ui(assistant), path="/", theme=_theme(), css=CSS,
        footer_links=[], run_history=False, ssr_mode=False, mcp_server=False,
        show_error=False)
