"""The answer: the chosen sentence quoted verbatim and cited, or the abstention.

No text is generated. The ranker (`qa.answering.ranker`) or the reader
(`qa.answering.reading`) chooses a
sentence, a confidence and the sentences to quote (the sentence, or with a neighbour when
it alone doesn't answer: `qa.answering.features.extent`); `compose` cites the quote with its file
offsets, adds other documents that state the same fact, and abstains below the
threshold. Every citation's quote is
`file_text[start:end]` of its source.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

from qa.retrieval.index import Index
from qa.retrieval.query import Query
from qa.retrieval.retrieve import Passage

ABSTAIN_TEXT = "The documents don't contain an answer to this question."
_WRAPPED = re.compile(r"(?<=[^\W\d_])-\n(?=[a-z])|(?<!\n)\n(?!\n)")
_CELLS = " | "  # how a table row's cells are joined (embeddings/pdf.py, word.py)


def flowed(text: str) -> str:
    """`text` for reading on a screen: a line break inside a paragraph (PDF text wraps
    inside sentences) is a space, a word hyphenated at a line end keeps its hyphen with a
    zero-width space, and a table's rows keep their lines. Same length, so offsets into
    it still hold."""
    if "\n" not in text:
        return text

    def join(m: re.Match) -> str:
        if m.group() == "-\n":
            return "-\u200b"
        before = text.rfind("\n", 0, m.start())
        after = text.find("\n", m.end())
        if (_CELLS in text[before + 1:m.start()]
                or _CELLS in text[m.end():after if after >= 0 else len(text)]):
            return "\n"  # a table row
        return " "

    return _WRAPPED.sub(join, text)


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

    def to_text(self, bold: bool = False) -> str:
        """A readable answer: the quote (its answer phrase in bold on a terminal), the phrase
        on its own line, numbered citations; or the abstention with the closest material."""
        lines = []
        width = 88
        if self.answerable:
            text = textwrap.fill(flowed(self.answer), width)
            phrase = None
            if self.answer_span is not None and self.citations:
                a = self.answer_span[0] - self.citations[0].start
                b = self.answer_span[1] - self.citations[0].start
                if 0 <= a < b <= len(self.answer):
                    phrase = flowed(self.answer)[a:b]
                    if bold and phrase in text:  # not when the wrap split the phrase
                        head, _, tail = text.partition(phrase)
                        text = f"{head}\033[1m{phrase}\033[0m{tail}"
            lines.append(text + " [1]")
            lines.append(("" if phrase is None else f"\nanswer: {' '.join(phrase.split())}")
                         + f"\nconfidence {self.confidence:.2f}")
            lines.append("\nsources:")
            for n, c in enumerate(self.citations, 1):
                tag = "" if n == 1 else "  (also reported)"
                where = f", {c.where}" if c.where else ""
                lines.append(f"  [{n}] {c.source}{where} (chars {c.start}-{c.end}){tag}")
                lines.append(f"      {c.title}")
                lines.append(textwrap.fill(f"“{flowed(c.quote)}”", width,
                                           initial_indent="      ",
                                           subsequent_indent="       "))
        else:
            lines.append(self.answer)
            lines.append(f"\nconfidence {self.confidence:.2f}")
            if self.passages:
                lines.append("\nclosest material (not an answer):")
                for p in self.passages[:3]:
                    snippet = " ".join(p.text.split())
                    snippet = snippet if len(snippet) <= 200 else snippet[:197] + "…"
                    lines.append(f"  - {p.source}: {snippet}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Choice:
    """What the ranker or the reader chose: the best sentence, the confidence that it
    answers, its features (`qa.answering.features.FEATURES`), and the answer phrase in file offsets
    (None: no phrase marked)."""

    sentence: int
    confidence: float
    features: tuple[float, ...]
    phrase: tuple[int, int] | None = None
    extent: tuple[int, int] | None = None  # sentences (first, last) to quote; None: alone


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


def compose(query: Query, index: Index, passages: list[Passage], choice: Choice | None,
            span: tuple[int, int, str] | None = None, *, top_k: int, threshold: float,
            corroborate_similarity: float) -> Answer:
    """The Answer for a question whose passages and chosen sentence are known (None: no
    candidate at all): the abstention below `threshold`, else the cited quote. `span`:
    (start, end, text) of the choice's `extent` when it spans two sentences
    (`Index.quote`); None quotes the chosen sentence alone."""
    shown = tuple(passages[:top_k])
    if choice is None or not query.terms.words:
        return abstention(query, 0.0, shown)
    if choice.confidence < threshold:
        return abstention(query, choice.confidence, shown)
    if span is None:
        s = index.sentences[choice.sentence]
        span = (s.start, s.end, s.text)
    source = index.sentences[choice.sentence].source
    start, end, quote = balance_quotes(*span)
    citations = [cite(index, source, start, end, quote, choice.confidence)]
    citations += corroborations(index, passages, choice.sentence, corroborate_similarity)
    return Answer(query.text, quote, True, choice.confidence, tuple(citations), shown,
                  query.searched_for, answer_span=choice.phrase)
