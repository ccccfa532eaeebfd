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
from pathlib import Path

from embeddings import store
from embeddings.chunking import Sentence
from embeddings.indexer import BuildReport, Survey, _mismatch, build_index, survey
from qa.answering import calibration
from qa.answering.answer import Answer, Choice, compose
from qa.answering.ranker import rank, score_candidates
from qa.errors import QuestionError
from qa.retrieval.conversation import contextualize
from qa.retrieval.folder import open_index
from qa.retrieval.index import Index
from qa.retrieval.query import Query, make_query
from qa.retrieval.retrieve import SearchSettings
from qa.retrieval.sharded.view import ShardedIndex
from qa.settings import Settings, check_top_k

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


def ensure_index(settings: Settings, progress: bool = False, model=None,
                 rebuild: bool = False, surveyed: Survey | None = None) -> BuildReport:
    """Build or update the index of `settings.corpus` (incremental, or everything with
    `rebuild`); return the report. `model` defaults to the settings' encoder; `surveyed`
    is a survey of the corpus just taken (its files are not listed or hashed again)."""
    return build_index(
        settings.corpus, settings.index_dir, settings.index_config(),
        (lambda: model) if model is not None else (lambda: load_encoder_for(settings)),
        batch_size=settings.batch_size, exclude=settings.exclude, progress=progress,
        rebuild=rebuild, approximate_above=settings.approximate_above, survey=surveyed,
        uploads=settings.uploads_dir)


def _stale_sharded(settings: Settings, manifest: dict, stale: str | None) -> None:
    """A sharded index that doesn't reflect the corpus: this machine doesn't rebuild it
    (`qa index --ray` does). Files added, changed or deleted: a warning, and the answers
    come from the index as built; other settings or another format: IndexUnusable
    naming the command."""
    index_dir = settings.index_dir
    problem = store.version_problem(manifest, index_dir)
    if problem:
        raise store.IndexUnusable(problem)
    mismatch = _mismatch(manifest, settings.index_config(), None)
    if mismatch:
        raise store.IndexUnusable(
            f"index at {index_dir} is sharded and was built with other settings "
            f"({mismatch}); rebuild it on the cluster with: qa index --ray --rebuild "
            f"--corpus {settings.corpus} --index {index_dir}")
    if stale:
        log.warning("the sharded index at %s does not reflect the corpus (%s); answering "
                    "from it as built. Update it on the cluster with: qa index --ray "
                    "--corpus %s --index %s", index_dir, stale, settings.corpus, index_dir)


def load_encoder_for(settings: Settings):
    """The text encoder the settings ask for (loaded once per process)."""
    from embeddings.encoder import load_encoder

    return load_encoder(settings.model, settings.encoder)


class Assistant:
    """Answers questions from one index. Thread-safe for concurrent `ask` calls."""

    def __init__(self, settings: Settings, model, index: Index | ShardedIndex, reader=None) -> None:
        self.settings = settings
        self.model = model
        self.reader = reader  # a qa.answering.reading.ReadingStage, or None: the ranker decides
        self._index = index
        self._reload_lock = threading.Lock()
        self.search_settings = SearchSettings(
            settings.candidates, settings.rrf_k, settings.dense_weight,
            settings.bm25_weight, settings.duplicate_similarity)

    @classmethod
    def load(cls, corpus: str | Path | None = None, index: str | Path | None = None, *,
             settings: Settings | None = None, update: bool | None = None,
             progress: bool = False, **overrides) -> Assistant:
        """Load the model, the reader and the index, building or updating the index first
        if it doesn't reflect the corpus (missing, other model or chunker settings, files
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
        surveyed = None
        if update is None:  # first, so a missing corpus is reported before the model loads
            surveyed = survey(settings.corpus, settings.index_dir, settings.index_config(),
                              settings.exclude, settings.uploads_dir)
        stale = surveyed.reason if surveyed else None
        manifest = surveyed.manifest if surveyed else store.read_manifest(settings.index_dir)
        if store.is_sharded(manifest) and (update or stale):
            _stale_sharded(settings, manifest, stale)  # warns, or raises naming the fix
            update, stale = False, None  # a sharded index is built on a cluster, not here
        model = load_encoder_for(settings)
        if update or stale:
            if stale and stale != "no index yet":
                log.warning("updating the index: %s", stale)
            report = ensure_index(settings, progress=progress, model=model, surveyed=surveyed)
            log.info("%s", report.summary())
        loaded = open_index(settings.index_dir)
        if loaded.manifest.get("model") != settings.model:
            raise store.IndexUnusable(
                f"index at {settings.index_dir} was built with model "
                f"{loaded.manifest.get('model')!r}, not {settings.model!r}; "
                f"{store.rebuild_hint(settings.index_dir)}")
        from qa.answering.reading import load_stage

        return cls(settings, model, loaded, load_stage(settings))

    @property
    def index(self) -> Index | ShardedIndex:
        return self._index

    def reload(self, update: bool = True) -> BuildReport | None:
        """Re-read the corpus (if `update`) and swap in the new index; answers keep
        flowing from the old one until the swap. A sharded index is not built here
        (`qa index --ray` builds it): its live generation is opened again, and None
        returned."""
        with self._reload_lock:
            sharded = store.is_sharded(store.read_manifest(self.settings.index_dir))
            report = (ensure_index(self.settings, model=self.model)
                      if update and not sharded else None)
            self._index = open_index(self.settings.index_dir)
            return report

    def query(self, question: str, history: Sequence[dict] | None = None,
              index: Index | ShardedIndex | None = None) -> Query:
        """The Query of a cleaned question: completed from `history` for a follow-up,
        embedded and tokenized once."""
        index = index or self._index
        searched = contextualize(question, history)
        vector = self.model.encode([searched])[0]
        return make_query(question, searched, vector, index.idf, index.n_chunks)

    def threshold(self) -> float:
        """The abstention threshold in force: the settings' min_confidence, else the
        reader's calibrated one, else the ranker's."""
        if self.settings.min_confidence is not None:
            return self.settings.min_confidence
        if self.reader is not None:
            return self.reader.threshold
        return calibration.load().threshold

    def candidates(self, question: str) -> list[tuple[Sentence, tuple[float, ...]]]:
        """Every candidate sentence for a question with its feature values
        (`qa.answering.features.FEATURES`), best first: the input for refitting the calibration
        (which works even when the calibration file is of older features: the order then
        comes from the default weights)."""
        index = self._index
        query = self.query(clean_question(question, self.settings.max_question_chars),
                           index=index)
        passages = index.search(query, self.search_settings, self.settings.top_k)
        try:
            ranker = calibration.load()
        except calibration.CalibrationUnusable:  # other features: only the order differs
            ranker = calibration.default()
        found = score_candidates(query, index, passages, ranker, self.settings.answer_passages)
        return [(index.sentences[c.sentence], c.features) for c in found]

    def ask(self, question: str, *, top_k: int | None = None,
            history: Sequence[dict] | None = None, abstain: bool = True) -> Answer:
        """Answer `question` (optionally in the context of earlier turns).

        abstain=False returns the best candidate whatever its confidence (for
        evaluation: apply `qa.answering.answer.apply_threshold` to get what `ask` returns).
        Raises QuestionError for an empty, non-text or over-long question, SettingError
        for a bad top_k. Answer.timings_ms holds milliseconds per stage.
        """
        s = self.settings
        question = clean_question(question, s.max_question_chars)
        top_k = s.top_k if top_k is None else check_top_k(top_k)
        index = self._index
        t0 = time.perf_counter()
        query = self.query(question, history, index)
        t1 = time.perf_counter()
        passages = index.search(query, self.search_settings, top_k)
        t2 = time.perf_counter()
        # the sentence that answers best and the confidence that it does: the ranker's
        # best, re-read by the reader when there is one; None without candidates
        ranking = rank(query, index, passages, calibration.load(), s.answer_passages)
        choice = None
        if ranking.candidates and self.reader is not None:
            choice = self.reader.choose(query, index, passages, ranking.candidates,
                                        ranking.confidence)
        elif ranking.candidates:
            best = ranking.candidates[0]
            choice = Choice(best.sentence, ranking.confidence, best.features,
                            extent=best.extent)
        extent = choice.extent if choice is not None else None
        # the quote of two sentences comes from a chunk that holds both (None: it alone)
        span = index.quote(*extent) if extent and extent[0] != extent[1] else None
        answer = compose(query, index, passages, choice, span, top_k=top_k,
                         threshold=self.threshold() if abstain else 0.0,
                         corroborate_similarity=s.corroborate_similarity)
        t4 = time.perf_counter()
        answer.timings_ms.update({"encode": round((t1 - t0) * 1000, 2),
                                  "retrieve": round((t2 - t1) * 1000, 2),
                                  "answer": round((t4 - t2) * 1000, 2),
                                  "total": round((t4 - t0) * 1000, 2)})
        return answer
