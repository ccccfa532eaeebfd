"""Documents added and removed while the server runs (`POST` / `DELETE /api/documents`,
the chat page's upload control).

Uploaded files are kept in one folder (`Settings.uploads_dir`: by default beside the
index under $QA_HOME, never inside seeds/, the corpus or a git work tree) and indexed
with the served corpus as sources `uploads/<name>`, through the same build as `qa index`
(`Assistant.reload`: the index lock, a new generation, one atomic switch). The corpus
folder's own files are read-only here.

Bad input changes nothing: a file is checked (name, type, size, content, duplicates)
in a hidden staging folder first; only then is it moved in and the index rebuilt, and if
the build fails the files are taken out again (the old ones put back), so the index and
the folder stay as they were. One upload or removal is indexed at a time (`Uploads.lock`);
another waits its turn. A server killed while indexing keeps its last good index (the
build switches generations atomically); a file moved in before the kill is indexed at the
next start (or removed with DELETE).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import secrets
import shutil
import threading
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from embeddings import store
from embeddings.documents import SUFFIXES, UPLOADS_PREFIX, Skipped, load_document
from embeddings.files import fsync_dir
from qa.errors import BadInput, Busy, SettingError, Unusable
from qa.settings import DEFAULT_CORPUS

if TYPE_CHECKING:  # pragma: no cover
    from qa.engine import Assistant
    from qa.settings import Settings

log = logging.getLogger(__name__)

STAGING = ".staging"  # hidden: the corpus walk skips it
MAX_FILES = 20  # files in one upload request
MAX_NAME_BYTES = 180  # a stored name's length in UTF-8 bytes at most
RESERVED = {"CON", "PRN", "AUX", "NUL", "CLOCK$", "CONIN$", "CONOUT$",
            *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
KEPT_JOBS = 100
# a build's checkpoints (embeddings.store.FAULT_POINTS) -> the phase it enters there
PHASES = {"locked": "reading", "read": "embedding", "embedded": "writing",
          "switched": "switching"}


class Refused(BadInput):
    """An upload or removal that can't be done; `status` is its HTTP status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def status_of(exc: BaseException) -> int:
    """The HTTP status of an upload's failure, by its kind (as qa.api.handlers answers)."""
    from embeddings.store import IndexBusy, IndexUnusable

    if isinstance(exc, Refused):
        return exc.status
    if isinstance(exc, (Unusable, IndexUnusable)):
        return 503
    if isinstance(exc, (Busy, IndexBusy)):
        return 409
    return 400 if isinstance(exc, BadInput) else 500


def check_folder(settings: Settings) -> Path:
    """The uploads folder, or SettingError if it may not hold uploads: inside seeds/, the
    corpus or a git work tree (or holding the corpus)."""
    folder = settings.uploads_dir.expanduser().resolve()
    corpus = Path(settings.corpus).expanduser().resolve()
    for other, what in ((DEFAULT_CORPUS.resolve(), "the project's seeds/"),
                        (corpus, "the served corpus")):
        if folder == other or other in folder.parents or folder in other.parents:
            raise SettingError(f"the uploads folder {folder} may not be in or hold {what}; "
                               "set another with --uploads or QA_UPLOADS")
    for parent in (folder, *folder.parents):
        if (parent / ".git").exists():
            raise SettingError(f"the uploads folder {folder} is inside the git work tree "
                               f"{parent}; set one outside with --uploads or QA_UPLOADS")
    return folder


def safe_name(name: str | None) -> str:
    """A file name that stays inside the uploads folder and shows on every system: the
    last path part, no control or format characters, no leading dot or space, no
    characters Windows forbids, no reserved device name (CON, NUL, COM1...), at most
    `MAX_NAME_BYTES` bytes; "upload" when nothing is left."""
    name = unicodedata.normalize("NFC", name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] not in "CZ" or ch == " ")
    name = re.sub(r'[<>:"|?*]+', "_", name).strip().lstrip(". ").rstrip(". ")
    stem, dot, suffix = name.rpartition(".")
    if not dot:
        stem, suffix = name, ""
    if stem.split(".")[0].strip().upper() in RESERVED:
        stem = "_" + stem
    while len(stem.encode("utf-8")) + len(suffix) + 1 > MAX_NAME_BYTES:
        stem = stem[:-1]
    stem = stem.rstrip(". ") or "upload"
    return f"{stem}.{suffix}" if suffix else stem


@dataclass
class Staged:
    """One file checked in the staging folder, ready to move in."""

    filename: str  # as sent
    name: str  # as stored
    path: Path  # in the staging folder
    size: int
    sha256: str
    notes: list[str] = field(default_factory=list)  # parts left out, decoding...

    @property
    def source(self) -> str:
        return UPLOADS_PREFIX + self.name


@dataclass
class Job:
    """A large upload indexed in the background (`GET /api/jobs/{id}`)."""

    id: str
    files: list[str]
    state: str = "queued"  # queued | indexing | done | failed
    phase: str | None = None  # while indexing: checking, reading, embedding, writing
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    result: dict | None = None
    error: str | None = None
    status: int | None = None  # the HTTP status the upload would have answered

    def to_dict(self) -> dict:
        end = self.finished or time.time()
        return {"id": self.id, "state": self.state, "phase": self.phase,
                "files": self.files,
                "created_at": _iso(self.created),
                "seconds": round(end - (self.started or end), 1),
                "result": self.result, "error": self.error, "status": self.status}


def _advance(job: Job | None, checkpoint: str) -> None:
    if job is not None and checkpoint in PHASES:
        job.phase = PHASES[checkpoint]


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class _Notes(logging.Handler):
    """Collects what reading a file warns about (pages left out, the encoding)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


class Uploads:
    """The uploads folder of one server: stage, add, remove, and background jobs."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant
        self.settings = assistant.settings
        self.folder = self.settings.uploads_dir
        self.limit = self.settings.max_upload_mb * 1024 * 1024
        self.lock = threading.Lock()  # one change to the folder and the index at a time
        self.jobs: dict[str, Job] = {}
        self._jobs_lock = threading.Lock()
        shutil.rmtree(self.folder / STAGING, ignore_errors=True)  # a killed upload's

    # --- checking ----------------------------------------------------------------------

    def staging(self) -> Path:
        check_folder(self.settings)
        path = self.folder / STAGING / secrets.token_hex(8)
        path.mkdir(parents=True)
        return path

    def stage(self, parts: list[tuple[str | None, IO[bytes]]], where: Path) -> list[Staged]:
        """Copy each (file name as sent, readable) into `where`, checking its name, type
        and size; Refused at the first that can't be taken."""
        if not parts:
            raise Refused("no files: send them as multipart/form-data fields named 'files'",
                          422)
        if len(parts) > MAX_FILES:
            raise Refused(f"{len(parts)} files in one request; the limit is {MAX_FILES}", 422)
        staged: list[Staged] = []
        for filename, stream in parts:
            sent = filename or ""
            name = self._free_name(safe_name(sent), {s.name for s in staged})
            if Path(name).suffix.lower() not in SUFFIXES:
                raise Refused(f"{sent!r} is not a document this server reads (send "
                              f"{', '.join(SUFFIXES)} files)", 415)
            path = where / name
            digest, size = hashlib.sha256(), 0
            with path.open("wb") as out:
                while block := stream.read(1 << 20):
                    size += len(block)
                    if size > self.limit:
                        raise Refused(f"{sent!r} is over the upload limit of "
                                      f"{self.settings.max_upload_mb} MiB", 413)
                    digest.update(block)
                    out.write(block)
            if not size:
                raise Refused(f"{sent!r} is empty")
            staged.append(Staged(sent, name, path, size, digest.hexdigest()))
        return staged

    def _free_name(self, name: str, taken: set[str]) -> str:
        """`name`, or `name-2`, `name-3`... when the corpus has a file of that source (its
        files win) or an earlier file of the same request took it."""
        stem, suffix = os.path.splitext(name)
        candidate, n = name, 1
        while (Path(self.settings.corpus) / (UPLOADS_PREFIX + candidate)).exists() or \
                candidate in taken:
            n += 1
            candidate = f"{stem}-{n}{suffix}"
        return candidate

    def check(self, staged: list[Staged], replace: bool) -> None:
        """Refused (409) for a file whose content is indexed already, or whose name an
        uploaded file has (unless `replace`)."""
        indexed = {d.sha256: d.source for d in self.assistant.index.data.documents}
        seen: dict[str, str] = {}
        for s in staged:
            same = indexed.get(s.sha256) or seen.get(s.sha256)
            if same is not None and not (replace and same == s.source):
                raise Refused(f"{s.filename!r} has the same content as {same!r}, which is "
                              "indexed already (same SHA-256)", 409)
            seen[s.sha256] = s.source
            if (self.folder / s.name).exists() and not replace:
                raise Refused(f"{s.source!r} exists; send replace=true to replace it", 409)

    def read_check(self, staged: list[Staged]) -> None:
        """Read each file as the index will; Refused with the reason if it can't be."""
        logger = logging.getLogger("embeddings")
        for s in staged:
            notes = _Notes()
            logger.addHandler(notes)
            try:
                load_document(s.path, s.source, s.sha256)
            except Skipped as exc:
                status = 415 if "binary" in str(exc) else 400
                raise Refused(f"{s.filename!r} can't be read: {exc}", status) from None
            finally:
                logger.removeHandler(notes)
            s.notes = [line.removeprefix(f"{s.source}: ") for line in notes.lines]

    # --- changing ----------------------------------------------------------------------

    def add(self, staged: list[Staged], replace: bool = False,
            job: Job | None = None) -> dict:
        """Check, move in and index `staged` (one change at a time); on any failure the
        folder and the index stay as they were. Returns the upload's summary."""
        with self.lock, store.watch(lambda name: _advance(job, name)):
            if job is not None:
                job.state, job.started, job.phase = "indexing", time.time(), "checking"
            self.check(staged, replace)
            self.read_check(staged)
            moved: list[tuple[Path, Path | None]] = []
            try:
                for s in staged:
                    final = self.folder / s.name
                    backup = None
                    if final.exists():
                        backup = s.path.with_name(f".old-{s.name}")
                        os.replace(final, backup)
                    os.replace(s.path, final)
                    moved.append((final, backup))
                fsync_dir(self.folder)
                report = self.assistant.reload()
            except BaseException:
                for final, backup in reversed(moved):
                    with contextlib.suppress(OSError):
                        final.unlink()
                        if backup is not None:
                            os.replace(backup, final)
                raise
        records = self.assistant.index.records
        documents = []
        for s in staged:
            record = records.get(s.source)
            documents.append({
                "source": s.source, "filename": s.filename, "renamed": s.name != s.filename,
                "size": s.size, "sha256": s.sha256, "indexed": record is not None,
                "title": record.title if record else None,
                "pages": len(record.pages) if record and record.pages else None,
                "chunks": record.chunks if record else 0,
                "sentences": record.sentences if record else 0, "notes": s.notes})
        return {"status": "indexed", "documents": documents,
                "summary": report.summary() if report is not None else "index reloaded"}

    def remove(self, source: str) -> dict:
        """Take an uploaded file out of the folder and the index."""
        corpus_file = (Path(self.settings.corpus) / source).exists()
        if corpus_file or (not source.startswith(UPLOADS_PREFIX)
                           and source in self.assistant.index.records):
            raise Refused(f"{source!r} is a file of the served corpus folder, read-only "
                          "through the API; only uploaded files (uploads/...) can be "
                          "removed", 403)
        name = source[len(UPLOADS_PREFIX):] if source.startswith(UPLOADS_PREFIX) else ""
        path = self.folder / name
        inside = bool(name) and self.folder.resolve() in path.resolve().parents
        if not inside or name.startswith(".") or not path.is_file():
            raise Refused(f"no uploaded file {source!r} (GET /api/documents lists them)", 404)
        with self.lock:
            where = self.staging()
            backup = where / "removed"
            try:
                os.replace(path, backup)
                try:
                    report = self.assistant.reload()
                except BaseException:
                    os.replace(backup, path)
                    raise
            finally:
                shutil.rmtree(where, ignore_errors=True)
        return {"status": "removed", "source": source,
                "summary": report.summary() if report is not None else "index reloaded"}

    # --- jobs --------------------------------------------------------------------------

    def start(self, staged: list[Staged], where: Path, replace: bool) -> Job:
        """Index `staged` in a background thread; the job reports how it went."""
        job = Job(secrets.token_hex(8), [s.source for s in staged])
        with self._jobs_lock:
            self.jobs[job.id] = job
            for old in sorted(self.jobs.values(), key=lambda j: j.created)[:-KEPT_JOBS]:
                if old.state in ("done", "failed"):
                    del self.jobs[old.id]

        def run() -> None:
            try:
                job.result = self.add(staged, replace, job)
                job.state = "done"
            except Exception as exc:  # noqa: BLE001 - reported through the job
                job.status = status_of(exc)
                job.error = str(exc) if job.status != 500 else \
                    "internal error while indexing (logged on the server)"
                if job.status == 500:
                    log.exception("upload job %s failed", job.id)
                job.state = "failed"
            finally:
                job.finished, job.phase = time.time(), None
                shutil.rmtree(where, ignore_errors=True)

        threading.Thread(target=run, name=f"qa-upload-{job.id}", daemon=True).start()
        return job

    def job(self, job_id: str) -> Job | None:
        with self._jobs_lock:
            return self.jobs.get(job_id)

    def about(self, source: str) -> tuple[int | None, str | None]:
        """(size in bytes, when it was added) of an indexed file; (size, None) for a corpus
        file, (None, None) for one gone from the disk."""
        path = self.settings.source_path(source)
        try:
            stat = path.stat()
        except OSError:
            return None, None
        uploaded = source.startswith(UPLOADS_PREFIX) and path.parent == self.folder
        return stat.st_size, _iso(stat.st_mtime) if uploaded else None
