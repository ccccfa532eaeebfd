"""The chat page: a Gradio Blocks app mounted at "/" of the API app.

Registered as the entry point `cited_qa.ui: chat = ui.app:mount`, which `qa.api.serve`
discovers. Every answer is rendered as HTML by `ui.render` from escaped pieces
(`html.escape`): document text never reaches the page as markup. The Chatbot's own
sanitizer stays on as a second layer, and Markdown/LaTeX rendering is off so article
text can't be reinterpreted either. Here: the page's layout, style, and the responder
that turns a chat turn into an answer.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home

import gradio as gr  # noqa: E402

from qa.errors import QuestionError  # noqa: E402
from ui.render import (  # noqa: E402
    esc,
    render_answer,
    render_documents,
    render_error,
    render_question,
)

if TYPE_CHECKING:  # pragma: no cover
    from fastapi import FastAPI

    from qa.engine import Assistant

log = logging.getLogger(__name__)

TITLE = "cited-qa"
DESCRIPTION = ("Ask a question about the articles: every answer is a sentence quoted word "
               "for word from one of them, with its source.")
# Offered as buttons; each must be answered correctly over seeds/ (the browser test asks
# every one and checks its answer): a stance, a person, a number, one to follow up on.
EXAMPLES = (
    "Does the US support Taiwan independence?",
    "Who declined to meet Lloyd Austin?",
    "When did Blinken arrive in China?",
    "What did Blinken say about North Korea?",
)
TOP_K_MAX = 10


def examples_for(index) -> tuple[str, ...]:
    """The example questions, when the index holds the seeds they are about (another
    corpus gets none rather than questions its documents don't answer)."""
    from qa.settings import DEFAULT_CORPUS

    seeds = {p.name for p in DEFAULT_CORPUS.glob("*.txt")}
    indexed = {d.source for d in index.documents} if index is not None else set()
    return EXAMPLES if seeds and seeds <= indexed else ()


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
.cqa-where { font-size: .78rem; font-weight: 600; }
.cqa-meta { color: var(--body-text-color-subdued); font-size: .78rem; }
.cqa-passage { margin: .25rem 0 0 0; font-size: .86rem;
  color: var(--body-text-color-subdued); }
.cqa-passage mark, .cqa-msg mark { background: #fde68a; color: #111827;
  padding: 0 .1rem; border-radius: 2px; }
.cqa-also { font-size: .82rem; margin-top: .5rem; }
.cqa-abstain { font-weight: 600; margin: 0 0 .3rem 0; }
.cqa-related-item { margin: .4rem 0; font-size: .85rem; }
.cqa-error { color: #b91c1c; }
.cqa-ok { color: #15803d; }
.cqa-upload-status { font-size: .82rem; margin: .3rem 0; }
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


def build_ui(assistant: Assistant, uploads=None) -> gr.Blocks:
    """The chat page for `assistant` (mount it with `mount`); `uploads` (a
    `qa.uploads.Uploads`, the API's) adds the upload control and removal."""
    from ui import documents

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
                examples = examples_for(assistant.index)
                with gr.Row(elem_classes="cqa-examples", visible=bool(examples)):
                    example_buttons = [gr.Button(q, size="sm", variant="secondary")
                                       for q in examples]
            with gr.Column(scale=2, min_width=260):
                with gr.Accordion("Indexed documents", open=True):
                    controls = documents.upload_controls() if uploads is not None else None
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
        for button, question in zip(example_buttons, examples, strict=True):
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
        if controls is not None:
            documents.wire(blocks, docs, assistant, uploads, controls)
        else:
            blocks.load(lambda: render_documents(assistant.index), None, docs,
                        api_visibility="private", queue=False, show_progress="hidden")
    return blocks


def mount(app: FastAPI, assistant: Assistant) -> FastAPI:
    """Mount the chat page at "/" of `app` (entry point `cited_qa.ui: chat`), with the
    upload control when the app has the documents API (`app.state.uploads`)."""
    uploads = getattr(app.state, "uploads", None)
    return gr.mount_gradio_app(
        app, build_ui(assistant, uploads), path="/", theme=_theme(), css=CSS,
        footer_links=[], run_history=False, ssr_mode=False, mcp_server=False,
        show_error=False, max_file_size=f"{assistant.settings.max_upload_mb}mb")
