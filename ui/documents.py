"""The chat page's document panel: an upload control (drag and drop, or click to choose;
the files are checked and indexed as a job, its progress shown) and the removal of
uploaded files. The work is `qa.uploads.Uploads`, the same as `POST /api/documents` and
`DELETE /api/documents/{source}` do; this module only turns it into page updates."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from embeddings.documents import SUFFIXES, UPLOADS_PREFIX
from qa.uploads import Uploads
from ui.render import esc, render_documents

if TYPE_CHECKING:  # pragma: no cover
    from qa.engine import Assistant

POLL_SECONDS = 0.5


def uploaded_sources(index) -> list[str]:
    """The sources of the uploaded files in the index (what can be removed)."""
    documents = index.data.documents if index is not None else ()
    return [d.source for d in documents if d.source.startswith(UPLOADS_PREFIX)]


def status(text: str, kind: str = "info") -> str:
    css = {"info": "cqa-meta", "ok": "cqa-ok", "error": "cqa-error"}[kind]
    return f'<div class="cqa-upload-status {css}" data-kind="{kind}">{esc(text)}</div>'


def _names(files: Any) -> list[str]:
    if not files:
        return []
    items = files if isinstance(files, list) else [files]
    return [str(getattr(f, "path", f)) for f in items]


def _added(result: dict) -> str:
    parts = []
    for d in result["documents"]:
        line = f"Added {d['source']} ({d['chunks']} passage{'s' if d['chunks'] != 1 else ''}"
        line += f", {d['pages']} pages)" if d["pages"] else ")"
        if d["renamed"]:
            line += f", stored under a safe name (sent as {d['filename']!r})"
        if d["notes"]:
            line += "; " + "; ".join(d["notes"])
        parts.append(line + ".")
    return " ".join(parts)


def make_handlers(assistant: Assistant, uploads: Uploads):
    """(on_upload, on_remove, refresh) for the panel's events; each returns updates for
    (status, document list, remove choice[, the file control])."""

    def choices(value=None):
        return gr.update(choices=uploaded_sources(assistant.index), value=value)

    def on_upload(files: Any) -> Iterator[tuple]:
        paths = _names(files)
        if not paths:
            yield gr.update(), gr.update(), gr.update(), gr.update()
            return
        names = [Path(p).name for p in paths]
        yield (status(f"Checking {', '.join(names)}…"), gr.update(), gr.update(),
               gr.update())
        where = uploads.staging()
        handles = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed below
        try:
            staged = uploads.stage(list(zip(names, handles, strict=True)), where)
            uploads.check(staged, replace=False)
        except Exception as exc:  # noqa: BLE001 - refused: say why, keep nothing
            shutil.rmtree(where, ignore_errors=True)
            message = str(exc) if isinstance(exc, ValueError) else "the upload failed"
            yield status(f"Not added: {message}", "error"), gr.update(), gr.update(), None
            return
        finally:
            for handle in handles:
                handle.close()
        job = uploads.start(staged, where, replace=False)
        shown = 0.0
        while job.state not in ("done", "failed"):
            time.sleep(POLL_SECONDS)
            waited = time.time() - job.created
            if waited - shown >= 2:  # a progress line every 2 s
                shown = waited
                what = ("Waiting for another upload" if job.state == "queued"
                        else f"Indexing ({job.phase or 'starting'})")
                yield (status(f"{what}: {', '.join(names)}… {waited:.0f} s"), gr.update(),
                       gr.update(), gr.update())
        if job.state == "failed":
            yield (status(f"Not added: {job.error}", "error"), gr.update(), gr.update(),
                   None)
            return
        yield (status(_added(job.result), "ok"), render_documents(assistant.index),
               choices(), None)

    def on_remove(source: Any) -> tuple:
        if not isinstance(source, str) or not source:
            return (status("Choose an uploaded document to remove first.", "error"),
                    gr.update(), choices())
        try:
            uploads.remove(source)
        except Exception as exc:  # noqa: BLE001 - refused: say why
            message = str(exc) if isinstance(exc, ValueError) else "the removal failed"
            return status(f"Not removed: {message}", "error"), gr.update(), choices()
        return (status(f"Removed {source}.", "ok"), render_documents(assistant.index),
                choices())

    def refresh() -> tuple:
        return render_documents(assistant.index), choices()

    return on_upload, on_remove, refresh


def upload_controls():
    """The panel's controls: (file control, status, remove choice, remove button)."""
    files = gr.File(label=f"Add documents ({', '.join(SUFFIXES)})", file_count="multiple",
                    file_types=list(SUFFIXES), type="filepath", elem_id="cqa-upload",
                    height=120)
    note = gr.HTML(status("Drop files here to ask about them: they are indexed with the "
                          "others."), elem_id="cqa-upload-status", js_on_load=None)
    with gr.Row(equal_height=True):
        remove_choice = gr.Dropdown(choices=[], label="Remove an uploaded document",
                                    scale=3, elem_id="cqa-remove-choice", interactive=True)
        remove = gr.Button("Remove", variant="stop", scale=1, min_width=80,
                           elem_id="cqa-remove")
    return files, note, remove_choice, remove


def wire(blocks, docs, assistant: Assistant, uploads: Uploads, controls) -> None:
    """Connect the controls' events (inside `blocks`)."""
    files, note, remove_choice, remove = controls
    on_upload, on_remove, refresh = make_handlers(assistant, uploads)
    private = {"api_visibility": "private"}
    files.upload(on_upload, files, [note, docs, remove_choice, files],
                 concurrency_limit=4, concurrency_id="documents", **private)
    remove.click(on_remove, remove_choice, [note, docs, remove_choice],
                 concurrency_limit=4, concurrency_id="documents", **private)
    blocks.load(refresh, None, [docs, remove_choice], queue=False, show_progress="hidden",
                **private)
