"""The answer: the chosen sentence quoted verbatim and cited, or the abstention.

No text is generated. The ranker (`qa.ranker`) or the reader (`qa.reading`) chooses a
sentence and a confidence; `compose` extends the quote by a neighbour when the sentence
alone doesn't answer, cites it with its file offsets, adds other documents that state
the same fact, and abstains below the threshold. Every citation's quote is
`file_text[start:end]` of its source.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from qa.features import FEATURES, coverage, has_type
from qa.index import Index
from qa.query import Query
from qa.retrieve import Passage

ABSTAIN_TEXT = "The documents don't contain an answer to this question."
_TYPE_MISMATCH = FEATURES.index("type_mismatch")


@dataclass(frozen=True)
class Citation:
    """A verbatim quote: `quote == file_text[start:end]` of `source`; score in 0..1."""

    source: str
    title: str
    quote: str
    start: int
    end: int
    score: float
    page: int | None = None  # PDF: the 1-based page the quote starts on
    heading: str | None = None  # Word: the heading the quote stands under

    def to_dict(self) -> dict:
        return {"source": self.source, "title": self.title, "quote": self.quote,
                "start": self.start, "end": self.end, "score": round(self.score, 4),
                "page": self.page, "heading": self.heading}

    @property
    def where(self) -> str:
        """Where in the file the quote stands, for people: "p. 3", "under “Costs”", or
        "" for a file without pages or headings."""
        if self.page is not None:
            return f"p. {self.page}"
        if self.heading:
            return f"under “{self.heading}”"
        return ""


def cite(index: Index, source: str, start: int, end: int, quote: str,
         score: float) -> Citation:
    """The citation of `quote` (file_text[start:end] of `source`), with its page or
    heading when the file has them."""
    record = index.records.get(source)
    return Citation(source, index.titles.get(source, source), quote, start, end, score,
                    record.page(start) if record else None,
                    record.heading(start) if record else None)


@dataclass(frozen=True)
class Answer:
    """An answer. `citations[0]` quotes the answer text itself; later citations in other
    sources state the same fact ("also reported by"). Empty when not answerable.
    `answer_span`: the exact answer phrase inside citations[0]'s quote, as file offsets
    (start, end) of its source, when the reader marked one."""

    question: str
    answer: str
    answerable: bool
    confidence: float
    citations: tuple[Citation, ...]
    passages: tuple[Passage, ...]
    searched_for: str = ""
    timings_ms: dict = field(default_factory=dict, compare=False)
    answer_span: tuple[int, int] | None = None

    def to_dict(self) -> dict:
        """The answer object: the one serialisation (CLI --json, API, eval rows)."""
        return {
            "question": self.question,
            "answer": self.answer,
            "answerable": self.answerable,
            "confidence": round(self.confidence, 4),
            "citations": [c.to_dict() for c in self.citations],
            "answer_span": None if self.answer_span is None else {
                "start": self.answer_span[0], "end": self.answer_span[1]},
            "passages": [p.to_dict() for p in self.passages],
            "searched_for": self.searched_for,
            "timings_ms": dict(self.timings_ms),
        }


@dataclass(frozen=True)
class Choice:
    """What the ranker or the reader chose: the best sentence, the confidence that it
    answers, its features (`qa.features.FEATURES`), and the answer phrase in file offsets
    (None: no phrase marked)."""

    sentence: int
    confidence: float
    features: tuple[float, ...]
    phrase: tuple[int, int] | None = None


def abstention(query: Query, confidence: float, passages: tuple[Passage, ...]) -> Answer:
    """The answer that says the documents don't answer; passages stay as related material."""
    return Answer(query.text, ABSTAIN_TEXT, False, confidence, (), passages,
                  query.searched_for)


def apply_threshold(answer: Answer, threshold: float) -> Answer:
    """`answer` if its confidence reaches `threshold` (0..1), else the abstention."""
    if not answer.answerable or answer.confidence >= threshold:
        return answer
    return Answer(answer.question, ABSTAIN_TEXT, False, answer.confidence, (),
                  answer.passages, answer.searched_for, answer.timings_ms)


_LEANS_BACK = re.compile(r"^[\"“‘']?(?:he|she|it|they|this|these|those|his|her|its|their|"
                         r"there|such|both|but|however|instead|yet)\b", re.I)


def extend(index: Index, query: Query, choice: Choice) -> tuple[int, int]:
    """Sentences (first, last) of the answer: the chosen one alone, or with one neighbour
    when the sentence alone doesn't answer: it lacks the kind of answer the question asks
    for (a number, date, name) and the neighbour has it; or it leans on the sentence
    before ("He said…", "But…"); or the pair covers clearly more of the question. A
    marked answer phrase pins the quote to the chosen sentence."""
    i = choice.sentence
    if choice.phrase is not None:
        return i, i
    terms = query.terms
    text = index.sentences[i].text
    around = index.neighbours(i)
    if choice.features[_TYPE_MISMATCH]:
        for j in sorted(around, key=lambda j: (j < i, j)):  # next sentence first
            if has_type(terms.kind, index.sentences[j].text, terms.token_set):
                return min(i, j), max(i, j)
    if i - 1 in around and _LEANS_BACK.match(text):
        return i - 1, i
    own = set(index.tokens(i))
    alone = coverage(terms, own)
    best, gain_needed = (i, i), 0.25
    for j in around:
        pair = coverage(terms, own | index.tokens(j))
        if pair - alone >= gain_needed:
            gain_needed = pair - alone
            best = (min(i, j), max(i, j))
    return best


def balance_quotes(start: int, end: int, text: str) -> tuple[int, int, str]:
    """(start, end, text) without a quotation mark that opens or closes a quotation the
    text doesn't hold both ends of ('"We do not support it.' of a quotation that runs on
    into the next sentence): still `file_text[start:end]`, only shorter."""
    def cut(s: int, e: int, t: str, front: bool) -> tuple[int, int, str]:
        t2 = t[1:] if front else t[:-1]
        stripped = t2.strip()
        lead = len(t2) - len(t2.lstrip())
        s2 = s + (1 if front else 0) + lead
        return s2, s2 + len(stripped), stripped

    if text.count('"') % 2 == 1:
        if text.startswith('"'):
            return cut(start, end, text, True)
        if text.endswith('"'):
            return cut(start, end, text, False)
    if text.startswith("“") and "”" not in text:
        return cut(start, end, text, True)
    if text.endswith("”") and "“" not in text:
        return cut(start, end, text, False)
    return start, end, text


def corroborations(index: Index, passages: list[Passage], sentence: int,
                   similarity: float) -> list[Citation]:
    """Sentences of other documents in any retrieved passage (collapsed duplicates
    included) whose vector has cosine >= `similarity` with the answer's: the best one per
    document, most similar first."""
    source = index.sentences[sentence].source
    pool = dict.fromkeys(
        s for p in passages for chunk in (p.chunk, *p.also_chunks)
        for s in range(index.chunks[chunk].first, index.chunks[chunk].last + 1)
        if index.sentences[s].source != source)
    if not pool:
        return []
    ids = list(pool)
    sims = index.sentence_vectors[ids] @ index.sentence_vectors[sentence]
    best: dict[str, tuple[float, int]] = {}
    for s, sim in zip(ids, sims.tolist(), strict=True):
        src = index.sentences[s].source
        if sim >= similarity and sim > best.get(src, (0.0, -1))[0]:
            best[src] = (sim, s)
    out = []
    for src, (sim, s) in sorted(best.items(), key=lambda kv: -kv[1][0]):
        sent = index.sentences[s]
        start, end, text = balance_quotes(sent.start, sent.end, sent.text)
        out.append(cite(index, src, start, end, text, sim))
    return out


def compose(query: Query, index: Index, passages: list[Passage], choice: Choice | None, *,
            top_k: int, threshold: float, corroborate_similarity: float) -> Answer:
    """The Answer for a question whose passages and chosen sentence are known (None: no
    candidate at all): the abstention below `threshold`, else the cited quote."""
    shown = tuple(passages[:top_k])
    if choice is None or not query.terms.words:
        return abstention(query, 0.0, shown)
    if choice.confidence < threshold:
        return abstention(query, choice.confidence, shown)
    first, last = extend(index, query, choice)
    span = index.quote(first, last) if first != last else None
    if span is None:
        s = index.sentences[choice.sentence]
        span = (s.start, s.end, s.text)
    source = index.sentences[choice.sentence].source
    start, end, quote = balance_quotes(*span)
    citations = [cite(index, source, start, end, quote, choice.confidence)]
    citations += corroborations(index, passages, choice.sentence, corroborate_similarity)
    return Answer(query.text, quote, True, choice.confidence, tuple(citations), shown,
                  query.searched_for, answer_span=choice.phrase)
