"""The OpenAI-compatible API: `GET /v1/models` and `POST /v1/chat/completions`, plain and
streamed, so chat front-ends (Open WebUI, LibreChat) and scripts on the `openai` package
can use this server as a model.

The reply's `content` is the quoted answer with numbered references (qa/api/chat.py);
`cited_qa` carries the structured answer (citations, answer_span, confidence). A request
that isn't a question (a front-end's title or tag request) is answered without searching;
a message that can't be asked (empty, over the question limit) gets a reply that says so.
Errors take OpenAI's shape (`handlers.error_response`); with QA_API_KEY set, `auth.KeyGuard`
asks for the key on every /v1 path.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse, StreamingResponse

from qa.api import handlers
from qa.api.auth import bearer_scheme
from qa.api.chat import (
    Conversation,
    cited_answer,
    conversation_of,
    reply_text,
    task_of,
    task_reply,
    text_of,
    unaskable,
)
from qa.api.openai_schemas import (
    STREAM_EVENT,
    ChatCompletion,
    ChatCompletionRequest,
    ModelList,
    openai_errors,
)
from qa.errors import QuestionError

if TYPE_CHECKING:  # pragma: no cover
    from qa.engine import Assistant

log = logging.getLogger("qa.api")

PRODUCT = "cited-qa"
PIECE_CHARS = 80  # a streamed reply comes in pieces of about this many characters


def model_id(assistant: Assistant) -> str:
    """The model's name: the product and its reader's version, a digest of the files that
    make its answers (the reader's reader.json, which holds its training and probe figures,
    and its stack.json); "cited-qa-ranker" when no reader is used (QA_READER=off)."""
    from qa.answering.reading import STACK_FILE
    from qa.reader.runtime import META_FILE

    stage = assistant.reader
    folder = getattr(getattr(stage, "reader", None), "folder", None)
    if folder is None:
        return f"{PRODUCT}-ranker"
    digest = hashlib.sha256()
    for name in (META_FILE, STACK_FILE):
        path = folder / name
        digest.update(path.read_bytes() if path.is_file() else b"")
    return f"{PRODUCT}-reader-{digest.hexdigest()[:8]}"


def _pieces(text: str) -> Iterator[str]:
    """`text` in pieces of about PIECE_CHARS, cut after white space; joined, `text`."""
    start = 0
    while start < len(text):
        end = min(len(text), start + PIECE_CHARS)
        if end < len(text):
            cut = text.rfind(" ", start, end)
            end = cut + 1 if cut > start else end
        yield text[start:end]
        start = end


def _event(data: dict | str) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n".encode()


def install(app: FastAPI, assistant: Assistant, gate: threading.BoundedSemaphore) -> None:
    """Add the /v1 routes to `app`; questions take their turn at `gate` with /api/answer's."""
    settings = assistant.settings
    ident = model_id(assistant)
    started = int(time.time())
    protected = settings.api_key is not None
    # the key in the OpenAPI document (auth.KeyGuard enforces it)
    security = [Security(bearer_scheme)] if protected else []
    from embeddings.chunking import token_counter
    from qa.engine import clean_question

    count_tokens = token_counter(settings.encoding)

    @app.get("/v1/models", response_model=ModelList, tags=["openai"],
             responses=openai_errors(protected), dependencies=security,
             summary="The model this server answers with (OpenAI-compatible)")
    async def models() -> dict:
        """One model: this server's answerer, named by the product and its reader."""
        return {"object": "list", "data": [{"id": ident, "object": "model",
                                            "created": started, "owned_by": PRODUCT}]}

    def respond(conversation: Conversation) -> tuple[str, dict | None]:
        """(the reply's text, the structured answer or None); raises for errors."""
        task = task_of(conversation.question)
        if task is not None:
            return task_reply(task, conversation.question), None
        try:
            question = clean_question(conversation.question, settings.max_question_chars)
        except QuestionError as exc:  # said in the reply: a chat shows replies, not errors
            return unaskable(exc), None
        with gate:
            answer = assistant.ask(question, history=list(conversation.history) or None)
        return reply_text(answer), cited_answer(answer)

    @app.post("/v1/chat/completions", response_model=ChatCompletion, tags=["openai"],
              dependencies=security,
              responses={200: {"content": {"text/event-stream": {"schema": STREAM_EVENT}},
                               "description": "The reply: a chat.completion object, or with "
                                              "`stream` server-sent events."},
                         **openai_errors(protected, 400, 413, 415, 500, 503)},
              summary="Answer the last user message with cited quotes (OpenAI-compatible)")
    def chat_completions(body: ChatCompletionRequest, request: Request):
        """The last user message is the question, earlier turns the conversation (a
        follow-up such as "What did he say about North Korea?" is completed from them).
        The reply's `content` is the quote with numbered references naming file, page and
        quote, or says plainly that the documents don't answer; `cited_qa` holds the
        citations, `answer_span` and confidence. Parameters such as temperature or
        max_tokens are accepted and ignored."""
        path = request.url.path
        texts = [(m.role, text_of(m.content)) for m in body.messages]
        try:
            text, cited = respond(conversation_of(texts))
        except Exception as exc:  # noqa: BLE001 - one bad request must never take the server down
            known = handlers.kind_response(exc, path)
            if known is not None:
                return known
            log.exception("answering a chat completion failed")
            return handlers.error_response(path, 500, "internal error while answering "
                                                      "(logged on the server)")
        prompt = sum(count_tokens(t) for _, t in texts)
        completion = count_tokens(text)
        usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                 "total_tokens": prompt + completion}
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
                "model": ident}
        if not body.stream:
            return JSONResponse({
                **head, "object": "chat.completion",
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": text,
                                         "refusal": None}}],
                "usage": usage, "cited_qa": cited})
        with_usage = bool(body.stream_options and body.stream_options.include_usage)

        def events() -> Iterator[bytes]:
            chunk = {**head, "object": "chat.completion.chunk"}

            def choice(delta: dict, finish: str | None = None) -> dict:
                return {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}

            yield _event({**chunk, "choices": [choice({"role": "assistant", "content": ""})]})
            for piece in _pieces(text):
                yield _event({**chunk, "choices": [choice({"content": piece})]})
            yield _event({**chunk, "choices": [choice({}, "stop")], "cited_qa": cited})
            if with_usage:
                yield _event({**chunk, "choices": [], "usage": usage})
            yield _event("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
