"""Request and response models of the JSON API, and the table of its error responses.

The OpenAPI document FastAPI derives from these models is a contract that outside tools
check (tests/api/test_api_conformance.py runs schemathesis against it): every request the
schema admits must be answered 2xx, every request it rules out must be refused 4xx. So
the schema states the limits the server enforces, e.g. the question's `pattern` (at
least one character the engine keeps) and `maxLength` (the server's question limit).
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from qa.settings import MAX_TOP_K

MAX_BODY_BYTES = 64 * 1024  # request bodies under /api/ larger than this get 413
# under /v1/: a chat client sends the whole conversation, replies and their quotes included
MAX_CHAT_BODY_BYTES = 1024 * 1024
MAX_HISTORY_TURNS = 50
DEFAULT_MAX_QUESTION_CHARS = 1000


# --- what counts as a question ----------------------------------------------------------

# qa.engine.clean_question turns control characters (Cc), line and paragraph separators
# (Zl, Zp) into spaces, drops surrogates (Cs) and private-use characters (Co), and
# collapses white space: a question is empty unless it holds some other character.
_DROPPED = ("Cc", "Zl", "Zp", "Cs", "Co")


def _kept(ch: str) -> bool:
    return unicodedata.category(ch) not in _DROPPED and not ch.isspace()


def _class_item(low: int, high: int) -> str:
    def one(cp: int) -> str:
        # BMP as \uXXXX (ECMA-262, Python re and Rust regex all read it); astral
        # characters literally, which every engine reads as one code point.
        return f"\\u{cp:04x}" if cp <= 0xFFFF else chr(cp)

    return one(low) if low == high else f"{one(low)}-{one(high)}"


# Outside the BMP only the two private-use planes are dropped (no astral character is a
# control, a separator or white space); tests check the pattern against clean_question for
# every code point.
_ASTRAL_DROPPED = ((0xF0000, 0xFFFFD), (0x100000, 0x10FFFD))


@lru_cache(maxsize=1)
def question_pattern() -> str:
    """A JSON Schema `pattern` matching exactly the strings the engine does not find empty:
    one character outside the ranges it drops or treats as white space (from this Python's
    Unicode tables, so it agrees with `clean_question` character for character)."""
    ranges: list[list[int]] = []
    for cp in range(0x10000):
        if 0xD800 <= cp <= 0xDFFF:  # no JSON string of a schema can hold a surrogate
            continue
        if not _kept(chr(cp)):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    ranges.extend([lo, hi] for lo, hi in _ASTRAL_DROPPED)
    return "[^" + "".join(_class_item(lo, hi) for lo, hi in ranges) + "]"


def _integral(value: Any) -> Any:
    """JSON Schema's `integer` admits 5.0: take an integral float as that integer (5.5 and
    non-numbers go on to the strict check and are refused)."""
    if type(value) is float and value.is_integer():
        return int(value)
    return value


TopK = Annotated[int, Field(ge=1, le=MAX_TOP_K), BeforeValidator(_integral)]


# --- requests --------------------------------------------------------------------------


class Turn(BaseModel):
    """One earlier turn of the conversation."""

    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(description="The question asked in that turn.")
    answer: str = Field("", description="The answer given (may be empty).")


class _AnswerRequestFields(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True,
        json_schema_extra={"examples": [
            {"question": "Does the US support Taiwan independence?"},
            {"question": "What did he say about North Korea?", "top_k": 3,
             "history": [{"question": "What did Blinken say about Taiwan?",
                          "answer": "Blinken repeated that the United States does not "
                                    "support the independence of Taiwan."}]},
        ]})

    question: str = Field(description="The question.")
    top_k: TopK | None = Field(
        None, description=f"How many retrieved passages to return (1-{MAX_TOP_K}; default: the "
                    "server setting, 5).")
    history: list[Turn] | None = Field(
        None, max_length=MAX_HISTORY_TURNS,
        description="Earlier turns, oldest first. A follow-up such as \"What did he say "
                    "about North Korea?\" is searched together with names from the "
                    "previous question.")


@lru_cache(maxsize=8)
def answer_request_model(max_question_chars: int = DEFAULT_MAX_QUESTION_CHARS
                         ) -> type[BaseModel]:
    """The request model of POST /api/answer, its schema stating this server's limit.

    The question's `pattern` (a character the engine keeps) and `maxLength` are
    documented, not enforced by validation: the route and the engine refuse such
    questions with 400 and a message of their own.
    """

    class AnswerRequest(_AnswerRequestFields):
        """A question, optionally with the conversation so far (for follow-ups)."""

        question: str = Field(
            description="The question. White space is normalised; it must hold a visible "
                        f"character and must not exceed {max_question_chars} characters.",
            json_schema_extra={"minLength": 1, "maxLength": max_question_chars,
                               "pattern": question_pattern()})

    return AnswerRequest


AnswerRequest = answer_request_model()


# --- responses -------------------------------------------------------------------------


class CitationOut(BaseModel):
    source: str = Field(description="File path relative to the corpus folder.")
    title: str = Field(description="The document's title.")
    quote: str = Field(description="Verbatim text: equals file_text[start:end].")
    start: int = Field(description="Character offset of the quote in the file's text.")
    end: int = Field(description="Character offset just past the quote.")
    score: float = Field(description="0..1: the answer's confidence for citations[0]; "
                                     "similarity to the answer for the others.")
    page: int | None = Field(None, description="PDF files: the 1-based page the quote "
                                               "starts on; null for other files.")
    heading: str | None = Field(None, description="Word files: the heading the quote "
                                                  "stands under, if any; null otherwise.")


class PassageOut(BaseModel):
    source: str = Field(description="File path relative to the corpus folder.")
    text: str = Field(description="The passage: file_text[start:end].")
    start: int = Field(description="Character offset of the passage in the file's text.")
    end: int = Field(description="Character offset just past the passage.")
    score: float = Field(description="Fused retrieval score, 0..1.")
    also: list[str] = Field(default_factory=list,
                            description="Other files holding a near-identical passage.")


class SpanOut(BaseModel):
    start: int = Field(description="Character offset of the answer phrase in the file's text.")
    end: int = Field(description="Character offset just past the phrase.")


class AnswerResponse(BaseModel):
    question: str = Field(description="The question as understood (white space normalised).")
    answer: str = Field(description="A sentence (or two) quoted verbatim from the corpus, or "
                                    "the abstention text when answerable is false.")
    answerable: bool = Field(description="False when the documents don't answer the question.")
    confidence: float = Field(description="0..1; below the calibrated threshold the "
                                          "assistant abstains.")
    citations: list[CitationOut] = Field(
        description="citations[0] is the answer's source; later ones are other documents "
                    "stating the same fact. Empty when not answerable.")
    answer_span: SpanOut | None = Field(
        None, description="The exact answer phrase inside citations[0].quote, as file "
                          "offsets of citations[0].source (file_text[start:end]), when the "
                          "reader marked one; null otherwise.")
    passages: list[PassageOut] = Field(
        description="The top retrieved passages, best first (related material when not "
                    "answerable).")
    searched_for: str = Field(description="The text actually searched: the question, "
                                          "completed from the history for follow-ups.")
    timings_ms: dict[str, float] = Field(
        description="Milliseconds per stage: encode, retrieve, answer, total (engine) and "
                    "server (arrival of the request to the response, queueing included).")


class HealthResponse(BaseModel):
    status: str = Field(description="\"ok\" when the index is loaded and answering.")
    documents: int = Field(description="Indexed files.")
    chunks: int = Field(description="Indexed passages.")
    sentences: int = Field(description="Indexed sentences.")
    model: str | None = Field(description="Embedding model the index was built with.")
    built_at: str | None = Field(description="When the live index was built (local time, "
                                             "ISO 8601).")
    build_seconds: float | None = Field(None, description="How long that build took.")


class DocumentOut(BaseModel):
    source: str = Field(description="File path relative to the corpus folder.")
    title: str = Field(description="Title (the first content line).")
    date: str | None = Field(description="Publication date found in the file (YYYY-MM-DD), "
                                         "if any.")
    chunks: int = Field(description="Passages indexed from this file.")
    sentences: int = Field(description="Sentences indexed from this file.")
    chars: int = Field(description="Length of the file's text in characters.")
    sha256: str = Field(description="SHA-256 of the file's bytes.")
    pages: int | None = Field(None, description="PDF files: the number of pages.")
    uploaded: bool = Field(False, description="Sent through the API or the page (source "
                                              "`uploads/<name>`; DELETE removes it); false "
                                              "for the served corpus folder's own files.")
    size: int | None = Field(None, description="The file's size in bytes (null: gone from "
                                               "the disk since it was indexed).")
    added_at: str | None = Field(None, description="Uploaded files: when (UTC, ISO 8601).")


class UploadedOut(BaseModel):
    source: str = Field(description="The source citations name: `uploads/<name>`.")
    filename: str = Field(description="The file name as sent.")
    renamed: bool = Field(description="Stored under another name than sent (a path, a "
                                      "leading dot, control characters, a reserved device "
                                      "name, or a corpus file of that name): `source` says "
                                      "which.")
    size: int
    sha256: str
    indexed: bool
    title: str | None
    pages: int | None = Field(description="PDF files: the number of pages.")
    chunks: int
    sentences: int
    notes: list[str] = Field(description="Parts left out (pages without text...), the "
                                         "encoding guessed.")


class UploadResponse(BaseModel):
    status: str = Field(description="\"indexed\".")
    documents: list[UploadedOut]
    summary: str = Field(description="What the build did, in one line.")


class JobOut(BaseModel):
    id: str
    state: str = Field(description="queued, indexing, done or failed.")
    phase: str | None = Field(description="While indexing: checking, reading, embedding "
                                          "(the long part), writing or switching.")
    files: list[str] = Field(description="The sources being added.")
    created_at: str
    seconds: float = Field(description="Time spent indexing so far.")
    result: UploadResponse | None = Field(description="When done: what a small upload "
                                                      "answers.")
    error: str | None = Field(description="When failed: why (nothing was kept).")
    status: int | None = Field(description="When failed: the HTTP status it would have had.")


class JobAccepted(BaseModel):
    status: str = Field(description="\"queued\".")
    job: JobOut
    url: str = Field(description="Where to follow it (GET).")


class RemoveResponse(BaseModel):
    status: str = Field(description="\"removed\".")
    source: str
    summary: str = Field(description="What the build did, in one line.")


class HeadingOut(BaseModel):
    offset: int = Field(description="Where the heading starts in the text.")
    heading: str


class DocumentTextResponse(BaseModel):
    source: str = Field(description="File path relative to the corpus folder.")
    title: str
    text: str = Field(description="The text citations' offsets point into: "
                                  "quote == text[start:end]. For PDF, Word and HTML files "
                                  "the extracted text, otherwise the file's text.")
    chars: int = Field(description="len(text).")
    pages: list[int] = Field(description="PDF files: the offset at which each page starts "
                                         "(page n at pages[n - 1]); empty for others.")
    headings: list[HeadingOut] = Field(description="Word files: the headings and where "
                                                   "they start; empty for others.")


class DocumentsResponse(BaseModel):
    count: int = Field(description="Number of indexed files.")
    documents: list[DocumentOut]


class ReloadResponse(BaseModel):
    status: str = Field(description="\"reloaded\".")
    summary: str = Field(description="What the build did, in one line.")
    files: int
    added: list[str]
    changed: list[str]
    removed: list[str]
    chunks: int
    sentences: int
    embedded: int = Field(description="Texts sent to the embedding model.")
    seconds: float = Field(description="Wall time of the build.")


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong, in words.")


# --- the error responses each route documents ------------------------------------------

_ERROR_TEXT = {
    400: "Invalid JSON, or input the engine can't use (an empty or over-long question).",
    401: "QA_API_KEY is set and the request lacks it (Authorization: Bearer <key>).",
    403: "Not allowed: a file of the served corpus (read-only through the API), or a "
         "cookie-only request from another site's page.",
    404: "No indexed file (or job) of that name.",
    409: "Another process is writing the index; try again when it is done (uploads: the "
         "same content is indexed already, or the name exists without replace=true).",
    413: f"Request body over {MAX_BODY_BYTES} bytes (uploads: over QA_MAX_UPLOAD_MB).",
    415: "Body not sent as application/json (uploads: not multipart/form-data, or a file "
         "that is not a document).",
    422: "Wrong field types or values, missing or unknown fields (uploads: no files, or "
         "too many).",
    429: "Too many wrong keys from this address; wait the Retry-After seconds.",
    500: "Unexpected server error (logged).",
    503: "A file the server needs (index, model export, calibration) is missing or "
         "damaged; the message names the command that fixes it.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for these error statuses, all `ErrorResponse`."""
    return {code: {"model": ErrorResponse, "description": _ERROR_TEXT[code]}
            for code in codes}


ANSWER_ERRORS = error_responses(400, 413, 415, 422, 500, 503)
RELOAD_ERRORS = error_responses(400, 409, 500, 503)
INDEX_ERRORS = error_responses(500, 503)  # GET /api/health, /api/documents
TEXT_ERRORS = error_responses(404, 500, 503)  # GET /api/documents/{source}/text
UPLOAD_ERRORS = error_responses(400, 409, 413, 415, 422, 500, 503)
REMOVE_ERRORS = error_responses(403, 404, 409, 500, 503)
JOB_ERRORS = error_responses(404)
