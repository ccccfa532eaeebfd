"""Request and response models of the OpenAI-compatible API under /v1/.

The request admits what OpenAI's chat clients send: every field this server does not use
(temperature, max_tokens, tools, Open WebUI's params/features/metadata...) is accepted and
ignored, a message's content is a string, a list of parts or null, and any role OpenAI
knows is taken (system and developer messages are read past). The fields it does use are
checked strictly, so a body of the wrong shape gets 400 in OpenAI's error shape. As for
/api/ (qa/api/schemas.py), the OpenAPI document is a contract that schemathesis checks:
every body it admits is answered 200, including a message that can't be asked as a
question (empty, over the question limit), which gets a reply that says so.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from qa.api.schemas import MAX_CHAT_BODY_BYTES, CitationOut, SpanOut

ROLES = ("system", "developer", "user", "assistant", "tool", "function")


# --- requests --------------------------------------------------------------------------


class ContentPart(BaseModel):
    """One part of a message's content: its text is read when `type` is "text"; other
    parts (images, files, audio) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: str = Field(description="\"text\" (read) or any other kind (ignored).")
    text: str | None = Field(None, description="The text of a \"text\" part.")


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal[ROLES] = Field(description="Who wrote it. The last `user` message is "
                                             "the question; earlier user and assistant "
                                             "messages are the conversation; others are "
                                             "read past.")
    content: str | list[ContentPart] | None = Field(
        None, description="The text, or a list of parts whose text parts are read.")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool | None = Field(None, description="Send a last chunk with `usage`.")


class ChatCompletionRequest(BaseModel):
    """An OpenAI chat completion request. Fields not listed here are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, json_schema_extra={"examples": [
        {"model": "cited-qa", "messages": [
            {"role": "user", "content": "Who declined to meet Lloyd Austin?"}]},
        {"model": "cited-qa", "stream": True, "temperature": 0.7, "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What did Blinken say about Taiwan?"},
            {"role": "assistant", "content": "We do not support Taiwan independence. [1]"},
            {"role": "user", "content": [{"type": "text",
                                          "text": "What did he say about North Korea?"}]}]},
    ]})

    model: str | None = Field(None, description="Any name: the server has one model "
                                                "(GET /v1/models) and answers with it.")
    messages: list[ChatMessage] = Field(min_length=1, description="The conversation, oldest "
                                                                  "first.")
    stream: bool | None = Field(False, description="Answer as server-sent events "
                                                   "(`chat.completion.chunk` objects, then "
                                                   "`[DONE]`).")
    stream_options: StreamOptions | None = Field(None, description="With `stream`.")


# --- responses -------------------------------------------------------------------------


class CitedAnswer(BaseModel):
    """The structured answer behind a reply: what /api/answer returns, less the passages."""

    question: str = Field(description="The question as understood (white space normalised).")
    answerable: bool = Field(description="False when the documents don't answer it.")
    confidence: float = Field(description="0..1; below the calibrated threshold the "
                                          "assistant abstains.")
    citations: list[CitationOut] = Field(description="citations[0] is the answer's source "
                                                     "([1] in the reply); later ones are "
                                                     "other files stating the same fact.")
    answer_span: SpanOut | None = Field(None, description="The answer phrase inside "
                                                          "citations[0].quote, as file "
                                                          "offsets; null when none is marked.")
    searched_for: str = Field(description="The text searched: the question, completed from "
                                          "the conversation for a follow-up.")


class ReplyMessage(BaseModel):
    role: Literal["assistant"] = Field(description="\"assistant\".")
    content: str = Field(description="The quoted answer with numbered references ([1] file, "
                                     "page: “quote”), or the plain statement that the "
                                     "documents don't answer.")
    refusal: None = Field(None, description="Always null.")


class Choice(BaseModel):
    index: int = Field(description="0: there is one choice.")
    message: ReplyMessage
    finish_reason: Literal["stop"] = Field(description="\"stop\".")
    logprobs: None = Field(None, description="Always null.")


class Usage(BaseModel):
    prompt_tokens: int = Field(description="Tokens (cl100k) of the messages' text.")
    completion_tokens: int = Field(description="Tokens (cl100k) of the reply.")
    total_tokens: int = Field(description="The sum.")


class ChatCompletion(BaseModel):
    id: str = Field(description="\"chatcmpl-\" and a random hex string.")
    object: Literal["chat.completion"] = Field(description="\"chat.completion\".")
    created: int = Field(description="Unix time of the reply.")
    model: str = Field(description="The model's id (GET /v1/models).")
    choices: list[Choice] = Field(description="One choice.")
    usage: Usage
    cited_qa: CitedAnswer | None = Field(
        description="The structured answer (citations, answer_span, confidence); null for "
                    "replies that are not answers: chat-title and tag requests, or a "
                    "message that can't be asked as a question.")


STREAM_EVENT: dict[str, Any] = {
    "type": "object",
    "description": "One server-sent event: `data` is a JSON `chat.completion.chunk` (the "
                   "first with the role, then the reply's text in pieces, then one with "
                   "`finish_reason` \"stop\" and `cited_qa`, then one with `usage` when "
                   "stream_options.include_usage is true), and `[DONE]` last.",
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
    "required": ["data"],
}


class ModelOut(BaseModel):
    id: str = Field(description="The product and its reader: \"cited-qa-reader-<8 hex>\" "
                                "(a digest of the reader's files), or \"cited-qa-ranker\" "
                                "with QA_READER=off.")
    object: Literal["model"] = Field(description="\"model\".")
    created: int = Field(description="Unix time the server started.")
    owned_by: str = Field(description="\"cited-qa\".")


class ModelList(BaseModel):
    object: Literal["list"] = Field(description="\"list\".")
    data: list[ModelOut] = Field(description="The one model this server answers with.")


class OpenAIErrorDetail(BaseModel):
    message: str = Field(description="What was wrong, in words.")
    type: str = Field(description="invalid_request_error (4xx) or server_error (5xx).")
    param: str | None = Field(None, description="The field at fault, if one is.")
    code: str | None = Field(None, description="invalid_api_key for a wrong key; else null.")


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


_ERROR_TEXT = {
    400: "Invalid JSON, or a body of the wrong shape (no messages, a wrong type, an "
         "unknown role).",
    401: "QA_API_KEY is set and the request lacks it (Authorization: Bearer <key>).",
    429: "Too many wrong keys from this address; wait the Retry-After seconds.",
    413: f"Request body over {MAX_CHAT_BODY_BYTES} bytes.",
    415: "Body not sent as application/json.",
    500: "Unexpected server error (logged).",
    503: "A file the server needs (index, model export, calibration, reader) is missing or "
         "damaged; the message names the command that fixes it.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, all in OpenAI's error shape."""
    return {code: {"model": OpenAIError, "description": _ERROR_TEXT[code]} for code in codes}


def openai_errors(protected: bool, *codes: int) -> dict[int | str, dict[str, Any]]:
    """The error responses of a /v1 route: `codes`, and 401/429 when a key guards /v1."""
    return error_responses(*((401, 429) if protected else ()), *codes)
