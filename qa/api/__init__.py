"""The JSON API (FastAPI) and `serve()`, which also mounts the chat page.

    from qa import Assistant
    from qa.api import create_app
    app = create_app(Assistant.load(corpus="seeds"))   # an ASGI app: uvicorn, TestClient...

Routes (every error is JSON `{"error": "..."}` with a 4xx/5xx status):

    POST /api/answer     {"question": str, "top_k": int?, "history": [{"question", "answer"}]?}
    GET  /api/health     status, document/chunk counts, model, index build time
    GET  /api/documents  the indexed files
    POST /api/reload     re-read the corpus (incremental) and swap the index in, no downtime
    GET  /v1/models, POST /v1/chat/completions
                         OpenAI-compatible chat (plain and streamed): the quote with numbered
                         references as the reply, the structured answer in `cited_qa`
    GET  /docs           OpenAPI documentation of the above

Errors by kind (`qa.errors`): BadInput -> 400, Busy -> 409, Unusable -> 503 (naming the
fix); 413/415/422 for a body that is too large, not JSON, or of the wrong shape; 404/405
(with `Allow`) for unknown paths and methods; 500 for anything else, logged.

Under /v1/ errors take OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
and with QA_API_KEY set every /v1 request needs `Authorization: Bearer <key>` (401 else).

Modules: `schemas` (request/response models, the documented error table), `guard`
(ASGI middleware: body limits, arrival time, one error shape), `handlers` (exceptions to
responses), `routes` (`create_app`), `serving` (`serve`, `serve_in_thread`, `mount_uis`),
`openai_schemas` / `openai_routes` / `chat` (the /v1 API), `auth` (the API key).
`serve()` adds the user interfaces registered under the entry-point group `cited_qa.ui`
(`mount(app, assistant) -> app`); this package never imports them itself, so the
dependency stays one-way: embeddings -> qa -> ui.
"""

from __future__ import annotations

from qa.api.guard import API_PREFIX
from qa.api.handlers import validation_message
from qa.api.routes import create_app
from qa.api.schemas import (
    MAX_BODY_BYTES,
    MAX_HISTORY_TURNS,
    AnswerRequest,
    AnswerResponse,
    CitationOut,
    DocumentOut,
    DocumentsResponse,
    ErrorResponse,
    HealthResponse,
    PassageOut,
    ReloadResponse,
    Turn,
    answer_request_model,
    question_pattern,
)
from qa.api.serving import UI_ENTRY_POINT_GROUP, _bind, _url, mount_uis, serve, serve_in_thread

__all__ = [
    "API_PREFIX", "MAX_BODY_BYTES", "MAX_HISTORY_TURNS", "UI_ENTRY_POINT_GROUP",
    "AnswerRequest", "AnswerResponse", "CitationOut", "DocumentOut", "DocumentsResponse",
    "ErrorResponse", "HealthResponse", "PassageOut", "ReloadResponse", "Turn",
    "answer_request_model", "create_app", "mount_uis", "question_pattern", "serve",
    "serve_in_thread", "validation_message", "_bind", "_url",
]
