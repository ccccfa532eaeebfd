"""The reading stage: the reader (`qa.reader.runtime`) re-reads the ranker's best candidates in
their context and decides which sentence answers, how sure it is, and the phrase.

For a question, the ranker's top `windows` candidates are each read with the sentence
before and after (windows of one document that overlap or touch are read as one). Every
sentence read gets the reader's score (its log-odds against "no answer here") and the
ranker's logit and the start + end logit of its best answer phrase; a small logistic
model over those (`READER_FEATURES`, fitted by `benchmarks/calibrate_reader.py`, stored
as `stack.json` beside the reader; a stack fitted before the phrase's logit counted,
over `reader` and `ranker` alone, still loads) orders them,
and a second one over the best sentence (`STACK_CONFIDENCE`) gives the confidence that
is compared with the threshold. The phrase is the reader's best answer span inside the
chosen sentence, in file offsets.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from embeddings.exact import dot, exact_sigmoid
from qa.answering.answer import Choice
from qa.answering.ranker import Candidate
from qa.reader.runtime import MODEL_FILE, READER_DIR, Reader, ReaderUnusable
from qa.retrieval.index import Index
from qa.retrieval.query import Query
from qa.retrieval.retrieve import Passage
from qa.settings import Settings

log = logging.getLogger(__name__)

STACK_FILE = "stack.json"
# per sentence read: reader log-odds, ranker logit, its best phrase's start + end logit
READER_FEATURES = ("reader", "ranker", "span")
LEGACY_READER_FEATURES = ("reader", "ranker")  # stacks fitted before 2026-12-06
SPAN_FLOOR = -20.0  # the phrase logit of a sentence none of whose word pieces fit
# of the best sentence: its stacked score, margin over the runner-up, reader score, ranker
# logit, its window's no-answer logit; and the ranker's own confidence for the question
STACK_CONFIDENCE = ("score", "margin", "reader", "ranker", "null", "ranker_confidence")
MAX_MARGIN = 5.0


@dataclass(frozen=True)
class Reading:
    """One sentence as read: its row in the index, the reader's score (the best over the
    windows that held it), its no-answer logit there, the ranker's logit, the answer
    phrase (file offsets), whether it was a ranker candidate, and the phrase's start +
    end logit (`span`, SPAN_FLOOR without a phrase)."""

    sentence: int
    reader: float
    null: float
    ranker: float
    phrase: tuple[int, int] | None
    candidate: bool
    span: float = SPAN_FLOOR

    def values(self, names: tuple[str, ...]) -> tuple[float, ...]:
        """The named per-sentence features (`READER_FEATURES`) of this reading."""
        return tuple(getattr(self, n) for n in names)


@dataclass(frozen=True)
class Stack:
    """The logistic models over readings (see the module docstring)."""

    weights: tuple[float, ...] = (1.0, 0.0, 0.0)
    bias: float = 0.0
    confidence_weights: tuple[float, ...] = (0.0, 0.0, 1.0, 0.0, 0.0, 0.0)
    confidence_bias: float = 0.0
    threshold: float = 0.5
    meta: dict = field(default_factory=dict, compare=False)
    features: tuple[str, ...] = READER_FEATURES  # what `weights` weigh, in order

    def score(self, r: Reading) -> float:
        return dot(self.weights, r.values(self.features)) + self.bias

    def confidence(self, score: float, margin: float, best: Reading,
                   ranker_confidence: float) -> float:
        x = (score, min(margin, MAX_MARGIN), best.reader, best.ranker, best.null,
             ranker_confidence)
        z = dot(self.confidence_weights, x) + self.confidence_bias
        return exact_sigmoid(max(-40.0, min(40.0, z)))

    def to_json(self) -> dict:
        return {"features": list(self.features), "weights": list(self.weights),
                "bias": self.bias, "confidence": {"features": list(STACK_CONFIDENCE),
                                                  "weights": list(self.confidence_weights),
                                                  "bias": self.confidence_bias},
                "threshold": self.threshold, **self.meta}

    @classmethod
    def from_json(cls, d: dict, where: str) -> Stack:
        conf = d.get("confidence") or {}
        features = tuple(d.get("features") or ())
        if (features not in (READER_FEATURES, LEGACY_READER_FEATURES)
                or len(d.get("weights") or ()) != len(features)
                or conf.get("features") != list(STACK_CONFIDENCE)
                or len(conf.get("weights") or ()) != len(STACK_CONFIDENCE)):
            raise ReaderUnusable(f"{where}: fitted for other features; refit it with "
                                 "python benchmarks/calibrate_reader.py")
        known = {"features", "weights", "bias", "confidence", "threshold"}
        return cls(tuple(d["weights"]), float(d["bias"]), tuple(conf["weights"]),
                   float(conf["bias"]), float(d["threshold"]),
                   {k: v for k, v in d.items() if k not in known}, features)


def windows_for(index: Index, candidates: list[Candidate], widen: int = 0
                ) -> list[list[int]]:
    """Runs of consecutive sentences to read: each candidate with its neighbours in its
    document (`Candidate.window`), plus `widen` more sentences of the document on each
    side (a longer window); runs of one document that overlap or touch are merged."""
    spans: dict[str, list[tuple[int, int]]] = {}
    for c in candidates:
        source = index.sentences[c.sentence].source
        a, b = c.window
        for _ in range(widen):
            if a > 0 and index.sentences[a - 1].source == source:
                a -= 1
            if b + 1 < len(index.sentences) and index.sentences[b + 1].source == source:
                b += 1
        spans.setdefault(source, []).append((a, b))
    out = []
    for runs in spans.values():
        runs.sort()
        merged = [list(runs[0])]
        for a, b in runs[1:]:
            if a <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out.extend(list(range(a, b + 1)) for a, b in merged)
    return out


def read(reader: Reader, query: Query, index: Index, candidates: list[Candidate],
         n: int, widen: int = 0) -> list[Reading]:
    """The reader's readings of the windows around the top `n` candidates (`widen`: see
    `windows_for`)."""
    top = candidates[:n]
    ranker = {c.sentence: c.z for c in candidates}
    floor = min(ranker.values()) - 1.0 if ranker else 0.0
    windows = windows_for(index, top, widen)
    results = reader.read(query.searched_for, [[index.sentences[i].text for i in w]
                                               for w in windows])
    best: dict[int, Reading] = {}
    for w, result in zip(windows, results, strict=True):
        for i, s in zip(w, result.sentences, strict=False):
            phrase = None
            if s.span is not None:
                start = index.sentences[i].start
                phrase = (start + s.span[0], start + s.span[1])
            r = Reading(i, s.score, result.null, ranker.get(i, floor), phrase, i in ranker,
                        max(s.span_score, SPAN_FLOOR))
            if i not in best or r.reader > best[i].reader:
                best[i] = r
    return list(best.values())


class ReadingStage:
    """The reader with its stacking models; `choose` is the engine's decision."""

    def __init__(self, reader: Reader, stack: Stack, windows: int) -> None:
        self.reader, self.stack, self.windows = reader, stack, windows

    @property
    def threshold(self) -> float:
        return self.stack.threshold

    def choose(self, query: Query, index: Index, passages: list[Passage],
               candidates: list[Candidate], ranker_confidence: float) -> Choice | None:
        """The best sentence read, its confidence and phrase; `ranker_confidence` is the
        ranker's own confidence in its best candidate (an input of the confidence model)."""
        readings = read(self.reader, query, index, candidates, self.windows)
        if not readings:
            return None
        scored = sorted(((self.stack.score(r), r) for r in readings),
                        key=lambda x: (-x[0], x[1].sentence))
        score, best = scored[0]
        margin = score - scored[1][0] if len(scored) > 1 else MAX_MARGIN
        chosen = next((c for c in candidates if c.sentence == best.sentence), None)
        features = (chosen or candidates[0]).features
        confidence = self.stack.confidence(score, margin, best, ranker_confidence)
        if best.phrase is not None:  # a marked answer phrase pins the quote to its sentence
            span = None
        elif chosen is not None:
            span = chosen.extent
        else:  # a neighbour the reader read in a candidate's window
            span = next(e for c in candidates for j, e in c.neighbour_extents
                        if j == best.sentence)
        return Choice(best.sentence, confidence, features, best.phrase, span)


def reader_folder(settings: Settings) -> Path | None:
    """The folder QA_READER points at: None for "off", the shipped one for "auto" (None
    if this installation has none)."""
    choice = settings.reader.strip()
    if choice.lower() == "off":
        return None
    if choice.lower() == "auto":
        return READER_DIR if (READER_DIR / MODEL_FILE).is_file() else None
    return Path(choice).expanduser()


def load_stage(settings: Settings) -> ReadingStage | None:
    """The reading stage the settings ask for, or None (QA_READER=off: the ranker
    decides). Raises ReaderUnusable (an Unusable: exit 1 / HTTP 5xx) for a folder that
    can't be loaded."""
    folder = reader_folder(settings)
    if folder is None:
        if settings.reader.strip().lower() == "auto":
            log.warning("no reader installed in %s; answering with the ranker alone",
                        READER_DIR)
        return None
    reader = Reader(folder)
    stack_path = folder / STACK_FILE
    try:
        stack = Stack.from_json(json.loads(stack_path.read_text(encoding="utf-8")),
                                str(stack_path))
    except FileNotFoundError:
        log.warning("%s has no %s: the reader's score decides unstacked", folder, STACK_FILE)
        stack = Stack()
    except (OSError, ValueError, KeyError) as exc:
        raise ReaderUnusable(f"{stack_path} is unreadable ({exc}); refit it with python "
                             "benchmarks/calibrate_reader.py") from None
    return ReadingStage(reader, stack, settings.reader_windows)

