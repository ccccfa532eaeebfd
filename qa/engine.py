"""The assistant: settings + model + loaded index, and `ask()` from question to Answer.

    from qa import Assistant
    assistant = Assistant.load(corpus="seeds")        # builds the index if there is none
    answer = assistant.ask("Does the US support Taiwan independence?")
    print(answer.answer, answer.citations[0].source)
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings import store
from embeddings.chunking import Sentence
from embeddings.indexer import BuildReport, build_index, staleness
from embeddings.lexical import BM25, tokenize
from qa.answer import (
    Answer,
    QuestionTerms,
    SentenceTokens,
    compose,
    default_calibration,
    load_calibration,
    score_candidates,
)
from qa.conversation import contextualize
from qa.errors import QuestionError
from qa.retrieve import search, to_passage
from qa.settings import Settings

log = logging.getLogger(__name__)


def clean_question(question: object, max_chars: int) -> str:
    """Validate a question and normalise its white space; raise QuestionError if unusable.

    Control characters are removed; max_chars counts characters after cleaning.
    """
    if not isinstance(question, str):
        raise QuestionError(f"question must be a string, got {type(question).__name__}")
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch
                   for ch in question if unicodedata.category(ch) not in ("Cs", "Co"))
    text = " ".join(text.split())
    if not text:
        raise QuestionError("question is empty")
    if len(text) > max_chars:
        raise QuestionError(
            f"question is {len(text)} characters long; the limit is {max_chars}")
    return text


@dataclass(frozen=True)
class LoadedIndex:
    data: store.IndexData
    bm25: BM25
    vectors: object  # faiss index
    titles: dict[str, str]
    sentence_tokens: SentenceTokens


def _load(index_dir: Path) -> LoadedIndex:
    import faiss

    # One question searches one vector: FAISS threads only add hand-off cost (and fight
    # the encoder for the cores), so answer-time search runs on one thread.
    faiss.omp_set_num_threads(1)
    data, bm25, vectors = store.load_index(index_dir)
    titles = {d.source: d.title for d in data.documents}
    return LoadedIndex(data, bm25, vectors, titles, SentenceTokens(data))


def ensure_index(settings: Settings, progress: bool = False, model=None,
                 rebuild: bool = False) -> BuildReport:
    """Build or update the index of `settings.corpus` (incremental, or everything with
    `rebuild`); return the report. `model` defaults to the settings' encoder."""
    return build_index(
        settings.corpus, settings.index_dir, settings.index_config(),
        (lambda: model) if model is not None else (lambda: load_encoder_for(settings)),
        batch_size=settings.batch_size, exclude=settings.exclude, progress=progress,
        rebuild=rebuild, approximate_above=settings.approximate_above)


def load_encoder_for(settings: Settings):
    """The text encoder the settings ask for (loaded once per process)."""
    from embeddings.encoder import load_encoder

    return load_encoder(settings.model, settings.encoder)


class Assistant:
    """Answers questions from one index. Thread-safe for concurrent `ask` calls."""

    def __init__(self, settings: Settings, model, index: LoadedIndex) -> None:
        self.settings = settings
        self.model = model
        self._index = index
        self._reload_lock = threading.Lock()

    @classmethod
    def load(cls, corpus: str | Path | None = None, index: str | Path | None = None, *,
             settings: Settings | None = None, update: bool | None = None,
             progress: bool = False, **overrides) -> Assistant:
        """Load the model and the index, building or updating the index first if it
        doesn't reflect the corpus (missing, other model or chunker settings, files
        added, changed or deleted).

        update: True always runs the (incremental) build first; False never builds;
        None (default) builds only when the index is stale.
        """
        base = settings or Settings.load()
        changes = {k: v for k, v in overrides.items() if v is not None}
        if corpus is not None:
            changes["corpus"] = Path(corpus).expanduser()
            if index is None and settings is None:
                changes["index"] = None
        if index is not None:
            changes["index"] = Path(index).expanduser()
        settings = base.replace(**changes) if changes else base
        stale = None
        if update is None:  # first, so a missing corpus is reported before the model loads
            stale = staleness(settings.corpus, settings.index_dir, settings.index_config(),
                              settings.exclude)
        model = load_encoder_for(settings)
        if update or stale:
            if stale and stale != "no index yet":
                log.warning("updating the index: %s", stale)
            report = ensure_index(settings, progress=progress, model=model)
            log.info("%s", report.summary())
        loaded = _load(settings.index_dir)
        if loaded.data.manifest.get("model") != settings.model:
            raise store.IndexUnusable(
                f"index at {settings.index_dir} was built with model "
                f"{loaded.data.manifest.get('model')!r}, not {settings.model!r}; "
                f"{store.rebuild_hint(settings.index_dir)}")
        return cls(settings, model, loaded)

    @property
    def index(self) -> LoadedIndex:
        return self._index

    def reload(self, update: bool = True) -> BuildReport | None:
        """Re-read the corpus (if `update`) and swap in the new index; answers keep
        flowing from the old one until the swap."""
        with self._reload_lock:
            report = ensure_index(self.settings, model=self.model) if update else None
            self._index = _load(self.settings.index_dir)
            return report

    def embed_question(self, text: str) -> np.ndarray:
        from embeddings.encoder import encode

        return encode(self.model, [text])[0]

    def _retrieve(self, index: LoadedIndex, query: str, qvec: np.ndarray, top_k: int):
        s = self.settings
        tokens = tokenize(query)
        hits = search(index.data, index.vectors, index.bm25, qvec, tokens,
                      candidates=max(s.candidates, top_k), rrf_k=s.rrf_k,
                      dense_weight=s.dense_weight, bm25_weight=s.bm25_weight,
                      duplicate_similarity=s.duplicate_similarity)
        best = (s.dense_weight + s.bm25_weight) / (s.rrf_k + 1)
        passages = [to_passage(index.data, h, best) for h in hits]
        return tokens, hits, passages

    def candidates(self, question: str) -> list[tuple[Sentence, tuple[float, ...]]]:
        """Every candidate sentence for a question with its feature values
        (`qa.answer.FEATURES`), best first: the input for refitting the calibration (which
        works even when the calibration file is of older features: the order then comes
        from the default weights)."""
        index = self._index
        question = clean_question(question, self.settings.max_question_chars)
        qvec = self.embed_question(question)
        tokens, hits, passages = self._retrieve(index, question, qvec, self.settings.top_k)
        try:
            model = load_calibration()
        except ValueError:  # a calibration of other features: only the order differs
            model = default_calibration()
        found = score_candidates(index.data, hits, passages, qvec,
                                 QuestionTerms(question, index.bm25, tokens),
                                 index.sentence_tokens, model, self.settings.answer_passages)
        return [(index.data.sentences[c.sentence], c.features) for c in found]

    def threshold(self) -> float:
        """The abstention threshold in force (settings, else the calibration file)."""
        if self.settings.min_confidence is not None:
            return self.settings.min_confidence
        return float(load_calibration()["threshold"])

    def ask(self, question: str, *, top_k: int | None = None,
            history: Sequence[dict] | None = None, abstain: bool = True) -> Answer:
        """Answer `question` (optionally in the context of earlier turns).

        abstain=False returns the best candidate whatever its confidence (for
        evaluation: apply `qa.answer.apply_threshold` to get what `ask` returns).
        Raises QuestionError for an empty, non-text or over-long question, ValueError for
        a bad top_k. Answer.timings_ms holds milliseconds per stage.
        """
        s = self.settings
        question = clean_question(question, s.max_question_chars)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)
                                  or not 1 <= top_k <= 50):
            raise ValueError(f"top_k must be an integer from 1 to 50, got {top_k!r}")
        top_k = top_k or s.top_k
        index = self._index
        t0 = time.perf_counter()
        query = contextualize(question, history)
        qvec = self.embed_question(query)
        t1 = time.perf_counter()
        tokens, hits, passages = self._retrieve(index, query, qvec, top_k)
        t2 = time.perf_counter()
        answer = compose(
            question, index.data, hits, passages, qvec, QuestionTerms(query, index.bm25, tokens),
            index.sentence_tokens, top_k=top_k, n_passages=s.answer_passages,
            min_confidence=self.threshold() if abstain else 0.0,
            corroborate_similarity=s.corroborate_similarity,
            titles=index.titles, searched_for=query)
        t3 = time.perf_counter()
        answer.timings_ms.update({"encode": round((t1 - t0) * 1000, 2),
                                  "retrieve": round((t2 - t1) * 1000, 2),
                                  "answer": round((t3 - t2) * 1000, 2),
                                  "total": round((t3 - t0) * 1000, 2)})
        return answer
