"""Every tunable in one frozen object: defaults, then `QA_*` environment variables, then flags.

`Settings.load(**overrides)` reads the environment (e.g. `QA_TOP_K=8`, `QA_MODEL=/models/x`)
and applies explicit overrides (CLI flags, API arguments) on top.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path

from embeddings import store
from embeddings.documents import UPLOADS_PREFIX
from embeddings.encoder import BACKENDS
from embeddings.files import qa_home
from embeddings.indexer import BATCH_SIZE, IndexConfig
from embeddings.models import DEFAULT_MODEL
from qa.errors import SettingError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = PROJECT_ROOT / "seeds"


MAX_TOP_K = 50  # passages an answer may return: the one limit (CLI, API, Python)


def check_top_k(value: object) -> int:
    """`value` as a passage count, or SettingError (bad input) if it isn't 1..MAX_TOP_K."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise SettingError(f"top_k must be an integer from 1 to {MAX_TOP_K}, got {value!r}")
    return value


def read_key_file(path: Path) -> str:
    """The key in `path` (its first line, stripped), or SettingError saying why not."""
    try:
        lines = Path(path).read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"cannot read the API key file {path}: "
                           f"{getattr(exc, 'strerror', None) or exc}") from None
    if not lines or not lines[0].strip():
        raise SettingError(f"the API key file {path} is empty; put the key on its first line")
    return lines[0].strip()


def default_uploads_dir(corpus: Path) -> Path:
    """`$QA_HOME/uploads/<folder name>-<8 hex of the corpus's absolute path>`: beside the
    default index, outside any git tree."""
    return qa_home() / "uploads" / default_index_dir(corpus).name


def default_index_dir(corpus: Path) -> Path:
    """Where the index of `corpus` lives unless told otherwise: outside any git tree.

    `$QA_HOME/indexes/<folder name>-<8 hex of the absolute path>`, with QA_HOME defaulting
    to `$XDG_CACHE_HOME/cited-qa` (usually ~/.cache/cited-qa).
    """
    absolute = Path(corpus).expanduser().resolve()
    digest = hashlib.sha1(str(absolute).encode()).hexdigest()[:8]
    return qa_home() / "indexes" / f"{absolute.name or 'root'}-{digest}"


@dataclass(frozen=True)
class Settings:
    """All tunables. Units: tokens are tiktoken (cl100k) tokens; lengths in characters."""

    corpus: Path = DEFAULT_CORPUS
    index: Path | None = None  # None: default_index_dir(corpus)
    model: str = DEFAULT_MODEL  # a local folder, or a hub name (needs the internet)
    encoder: str = IndexConfig.encoder  # torch | onnx | onnx-int8 | auto (int8 ONNX)
    chunk_tokens: int = IndexConfig.chunk_tokens  # target chunk size
    chunk_overlap: int = IndexConfig.chunk_overlap  # tokens shared by consecutive chunks
    sentence_max_tokens: int = IndexConfig.sentence_max_tokens  # longer ones are cut
    encoding: str = IndexConfig.encoding
    batch_size: int = BATCH_SIZE  # texts per model batch when indexing (int8 runs 1)
    approximate_above: int = store.APPROXIMATE_ABOVE  # chunks above which FAISS is IVF-Flat
    top_k: int = 5  # passages returned with an answer
    candidates: int = 30  # chunks taken from each retriever before fusion
    rrf_k: int = 60  # reciprocal rank fusion constant
    dense_weight: float = 1.0
    bm25_weight: float = 2.0  # BM25 counts double in the fusion (docs/benchmarks.md: levers)
    answer_passages: int = 6  # fused passages whose sentences compete for the answer
    min_confidence: float | None = None  # abstain below this; None: the calibrated threshold
    duplicate_similarity: float = 0.95  # cosine above which two passages are one hit
    corroborate_similarity: float = 0.75  # cosine above which a sentence states the same fact
    max_question_chars: int = 1000
    reader: str = "auto"  # auto (the shipped reader) | off (the ranker decides) | a folder
    reader_windows: int = 2  # top ranker candidates the reader reads, each with neighbours
    # (2: the best point of the accuracy-latency curve, docs/benchmarks.md)
    api_concurrency: int | None = None  # questions the server answers at once; None: cores
    # the Bearer key every /api and /v1 route and the page ask for (health excepted);
    # None: open (qa/api/auth.py). api_key_file: a file holding it (one line)
    api_key: str | None = field(default=None, repr=False)
    api_key_file: Path | None = None
    insecure_no_key: bool = False  # serve a non-loopback address without a key anyway
    auth_failures: int = 10  # wrong keys from one client address per auth_window ...
    auth_window: int = 60  # ... seconds; past that, 429 until the window clears
    session_hours: int = 12  # how long a login of the chat page lasts
    uploads: Path | None = None  # None: default_uploads_dir(corpus), outside git
    max_upload_mb: int = 50  # an upload request's body (one file or several) at most
    upload_wait_kb: int = 512  # uploads above this are indexed as a job (202)
    exclude: tuple[str, ...] = field(default=())  # corpus-relative paths left out

    @property
    def index_dir(self) -> Path:
        return Path(self.index) if self.index else default_index_dir(self.corpus)

    @property
    def uploads_dir(self) -> Path:
        """Where files sent through the API and the page are kept (indexed with the
        corpus, their sources under `UPLOADS_PREFIX`)."""
        return Path(self.uploads) if self.uploads else default_uploads_dir(self.corpus)

    def source_path(self, source: str) -> Path:
        """The file an indexed source names: under the uploads folder for an uploaded
        one, else under the corpus."""
        own = Path(self.corpus) / source
        if source.startswith(UPLOADS_PREFIX) and not own.exists():  # the corpus's wins
            return self.uploads_dir / source[len(UPLOADS_PREFIX):]
        return own

    def index_config(self) -> IndexConfig:
        return IndexConfig(self.model, self.chunk_tokens, self.chunk_overlap,
                           self.sentence_max_tokens, self.encoding, self.encoder)

    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        """Defaults, then `QA_<NAME>` variables from `env` (default os.environ), then
        `overrides` whose value is not None. Raises SettingError on a bad value."""
        env = os.environ if env is None else env
        values: dict = {}
        hints = typing.get_type_hints(cls)
        for f in fields(cls):
            raw = env.get(f"QA_{f.name.upper()}")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, hints[f.name], raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise SettingError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        if "corpus" in values:
            values["corpus"] = Path(values["corpus"]).expanduser()
        for name in ("index", "uploads", "api_key_file"):
            if values.get(name):
                values[name] = Path(values[name]).expanduser()
        if values.get("api_key_file") and not values.get("api_key"):
            values["api_key"] = read_key_file(values["api_key_file"])
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes) -> Settings:
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def validate(self) -> None:
        """Raise SettingError naming the first setting out of range."""
        positive = ("chunk_tokens", "sentence_max_tokens", "batch_size", "candidates",
                    "rrf_k", "answer_passages", "max_question_chars", "approximate_above",
                    "reader_windows", "auth_failures", "auth_window", "session_hours",
                    "max_upload_mb")
        for name in positive:
            if getattr(self, name) < 1:
                raise SettingError(f"{name} must be at least 1, got {getattr(self, name)}")
        check_top_k(self.top_k)
        if not 0 <= self.chunk_overlap < self.chunk_tokens:
            raise SettingError("chunk_overlap must be at least 0 and below chunk_tokens")
        for name in ("min_confidence", "duplicate_similarity", "corroborate_similarity"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise SettingError(f"{name} must be between 0 and 1, got {value}")
        if self.dense_weight < 0 or self.bm25_weight < 0:
            raise SettingError("retrieval weights must not be negative")
        if self.encoder not in ("auto", *BACKENDS):
            raise SettingError(f"encoder must be auto, torch, onnx or onnx-int8, got "
                               f"{self.encoder!r}")
        if self.api_concurrency is not None and self.api_concurrency < 1:
            raise SettingError(f"api_concurrency must be at least 1, got "
                               f"{self.api_concurrency}")
        if self.api_key is not None and not self.api_key.strip():
            raise SettingError("api_key must not be blank (unset QA_API_KEY to leave the "
                               "server open)")
        if self.upload_wait_kb < 0:
            raise SettingError(f"upload_wait_kb must not be negative, got {self.upload_wait_kb}")
        if not self.reader.strip():
            raise SettingError("reader must be auto, off or a folder")


def _base_type(hint) -> type:
    """int for `int`, `int | None`, `Optional[int]`; tuple for `tuple[str, ...]`..."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    return origin or hint


def _parse(name: str, hint, raw: str):
    """A QA_* variable's text as the setting's type."""
    kind = _base_type(hint)
    try:
        if kind is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind in (int, float):
            return kind(raw)
        if kind is tuple:
            return tuple(p for p in (x.strip() for x in raw.split(",")) if p)
    except ValueError:
        raise SettingError(f"QA_{name.upper()}={raw!r} is not a valid {kind.__name__}") from None
    return raw
