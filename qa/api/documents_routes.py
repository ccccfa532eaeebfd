"""The documents routes: `GET /api/documents` (what is indexed), `POST /api/documents`
(upload one or several files, multipart), `DELETE /api/documents/{source}` (an uploaded
file), `GET /api/jobs/{id}` (a large upload being indexed). The work is `qa.uploads`.

(No `from __future__ import annotations`: FastAPI reads the routes' signatures.)
"""

import logging
from typing import TYPE_CHECKING

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from qa.api import handlers
from qa.api.schemas import (
    INDEX_ERRORS,
    JOB_ERRORS,
    REMOVE_ERRORS,
    UPLOAD_ERRORS,
    DocumentsResponse,
    JobAccepted,
    JobOut,
    RemoveResponse,
    UploadResponse,
)
from qa.uploads import MAX_FILES, Refused, Uploads, status_of

if TYPE_CHECKING:  # pragma: no cover
    from qa.engine import Assistant

log = logging.getLogger("qa.api")

UPLOAD_PATH = "/api/documents"

MULTIPART = {"requestBody": {"required": True, "content": {"multipart/form-data": {
    "schema": {"type": "object", "required": ["files"], "properties": {"files": {
        "type": "array", "minItems": 1, "maxItems": MAX_FILES,
        "items": {"type": "string", "format": "binary"},
        "description": ".txt, .md, .html, .htm, .pdf or .docx files, up to "
                       "QA_MAX_UPLOAD_MB in all"}}}}}}}


def _failure(exc: Exception) -> JSONResponse:
    status = status_of(exc)
    if status == 500:
        log.exception("changing the documents failed")
        return JSONResponse({"error": "internal error while indexing (logged on the "
                                      "server)"}, status_code=500)
    known = handlers.kind_response(exc)
    if known is not None and not isinstance(exc, Refused):
        return known
    return JSONResponse({"error": str(exc)}, status_code=status)


def install(app: FastAPI, assistant: "Assistant", security: list, errors) -> Uploads:
    """Add the documents routes to `app`; returns the `Uploads` they share (also kept as
    `app.state.uploads`, for the chat page)."""
    uploads = Uploads(assistant)
    app.state.uploads = uploads

    @app.get("/api/documents", response_model=DocumentsResponse,
             responses=errors(INDEX_ERRORS), dependencies=security, tags=["documents"],
             summary="List the indexed files")
    def documents() -> dict:
        """Every indexed file with its title, date, number of passages and size; uploaded
        files (`uploaded`, source `uploads/<name>`) with when they were added."""
        docs = []
        for d in assistant.index.data.documents:
            size, added = uploads.about(d.source)
            docs.append({"source": d.source, "title": d.title, "date": d.date,
                         "chunks": d.chunks, "sentences": d.sentences, "chars": d.chars,
                         "sha256": d.sha256, "pages": len(d.pages) if d.pages else None,
                         "uploaded": added is not None, "size": size, "added_at": added})
        return {"count": len(docs), "documents": docs}

    @app.post(UPLOAD_PATH, response_model=UploadResponse, dependencies=security,
              tags=["documents"], openapi_extra=MULTIPART,
              responses={202: {"model": JobAccepted, "description": "A large upload: "
                               "stored, and being indexed as a job (follow `url`)."},
                         **errors(UPLOAD_ERRORS)},
              summary="Add documents: upload files to be indexed with the corpus")
    async def upload(request: Request,
                     replace: bool = Query(False, description="Replace an uploaded file "
                                           "of the same name (else 409)."),
                     background: bool = Query(False, description="Answer 202 with a job "
                                              "at once, whatever the size.")):
        """Store each file (`files`, multipart) in the uploads folder under a safe name and
        index it with the corpus (the same build as `qa index`). Nothing is kept when any
        file is refused: a type that is not a document (415), an empty or unreadable file
        (400), a body over QA_MAX_UPLOAD_MB (413, before it is read to the end), content
        indexed already or a name taken without `replace` (409). Uploads over
        QA_UPLOAD_WAIT_KB answer 202 with a job."""
        kind = request.headers.get("content-type", "")
        if not kind.lower().startswith("multipart/form-data"):
            return JSONResponse({"error": "send the files as multipart/form-data, in "
                                          f"fields named 'files' (got {kind[:100]!r})"},
                                status_code=415)
        try:
            form = await request.form(max_files=MAX_FILES + 1, max_fields=20)
        except Exception as exc:  # noqa: BLE001 - a malformed body is the sender's fault
            detail = getattr(exc, "detail", None) or str(exc)
            return JSONResponse({"error": f"the multipart body can't be read: {detail}"},
                                status_code=400)
        try:
            parts = [(f.filename, f.file) for f in form.getlist("files")
                     if hasattr(f, "file")]
            if any(not hasattr(f, "file") for f in form.getlist("files")):
                raise Refused("the 'files' fields must be files, not text", 422)
            where = await run_in_threadpool(uploads.staging)
            try:
                staged = await run_in_threadpool(uploads.stage, parts, where)
                uploads.check(staged, replace)
                total = sum(s.size for s in staged)
                if background or total > assistant.settings.upload_wait_kb * 1024:
                    job = uploads.start(staged, where, replace)
                    where = None  # the job cleans it up
                    url = f"/api/jobs/{job.id}"
                    return JSONResponse({"status": "queued", "job": job.to_dict(),
                                         "url": url}, status_code=202,
                                        headers={"Location": url})
                return await run_in_threadpool(uploads.add, staged, replace)
            finally:
                if where is not None:
                    import shutil

                    shutil.rmtree(where, ignore_errors=True)
        except Exception as exc:  # noqa: BLE001 - every failure answers; nothing kept
            return _failure(exc)
        finally:
            await form.close()

    @app.delete("/api/documents/{source:path}", response_model=RemoveResponse,
                dependencies=security, tags=["documents"], responses=errors(REMOVE_ERRORS),
                summary="Remove an uploaded file and its passages")
    def remove(source: str) -> dict:
        """Delete an uploaded file (`uploads/<name>`) and drop it from the index; the
        served corpus folder's own files are read-only here (403)."""
        try:
            return uploads.remove(source)
        except Exception as exc:  # noqa: BLE001 - every failure answers; nothing changed
            return _failure(exc)

    @app.get("/api/jobs/{job_id}", response_model=JobOut, dependencies=security,
             tags=["documents"], responses=errors(JOB_ERRORS),
             summary="How a large upload's indexing is going")
    def job(job_id: str) -> dict:
        """A job of `POST /api/documents`: queued, indexing, done (with what the upload
        answers) or failed (with why; nothing was kept)."""
        found = uploads.job(job_id)
        if found is None:
            return JSONResponse({"error": f"no job {job_id!r} (jobs are kept until the "
                                          "server restarts)"}, status_code=404)
        return found.to_dict()

    return uploads
