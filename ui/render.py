"""The chat page's HTML: answers, sources in context, documents, errors, built from
escaped pieces (`html.escape`) only, so document text never reaches the page as markup:
an article holding `<script>` or `<img onerror=...>` shows those characters instead of
running them. Pure functions, text in and HTML out (no Gradio here); `ui.app` lays them
out on the page."""

from __future__ import annotations

import bisect
import html
from collections.abc import Sequence
from typing import TYPE_CHECKING

from embeddings.documents import UPLOADS_PREFIX
from qa.answering.answer import flowed

if TYPE_CHECKING:  # pragma: no cover
    from embeddings.store import DocumentRecord
    from qa.answering.answer import Answer, Citation
    from qa.retrieval.index import Index
    from qa.retrieval.retrieve import Passage

NOT_ANSWERED = "The documents don't answer this question."
CONTEXT_CHARS = 320  # passage text shown on each side of a quote, at most
RELATED_SHOWN = 3
SNIPPET_CHARS = 360

# --- the engine's index: the only code here that knows its shape -------------------------


def _documents(index: Index | None) -> Sequence[DocumentRecord]:
    """The indexed documents (source, title, date, counts), sorted by source."""
    return index.documents if index is not None else ()


def _chunk_around(index: Index | None, source: str, start: int,
                  end: int) -> tuple[int, str] | None:
    """(start, text) of an indexed passage of `source` holding [start, end), for a
    citation whose passage was not among the retrieved ones. The index keeps chunks by
    source and start, and a document's chunk ends grow with their starts, so the last
    chunk starting at or before `start` is the one that can hold the span."""
    if index is None:
        return None
    chunks = index.chunks
    i = bisect.bisect_right(chunks, (source, start), key=lambda c: (c.source, c.start))
    chunk = chunks[i - 1] if i else None
    if chunk is None or chunk.source != source or chunk.end < end:
        return None
    return chunk.start, chunk.text


def _document(index: Index | None, source: str) -> DocumentRecord | None:
    """The indexed document `source`, found by bisection (no table built per answer)."""
    documents = _documents(index)
    i = bisect.bisect_left(documents, source, key=lambda d: d.source)
    return documents[i] if i < len(documents) and documents[i].source == source else None


# --- rendering (pure functions: text in, escaped HTML out) ------------------------------


def esc(text: object) -> str:
    """HTML-escape any value (quotes too); newlines become <br> so each message stays on
    one line (Gradio dedents multi-line messages)."""
    out = html.escape(str(text), quote=True)
    return out.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br>")


def _trim_left(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    cut = text[-n:]
    space = cut.find(" ")
    return "…" + (cut[space + 1:] if 0 <= space < 40 else cut)


def _trim_right(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    cut = text[:n]
    space = cut.rfind(" ")
    return (cut[:space] if space > n - 40 else cut) + "…"


def _percent(x: float) -> int:
    return max(0, min(100, round(float(x) * 100)))


def confidence_html(confidence: float, threshold: float | None = None,
                    answerable: bool = True) -> str:
    pct = _percent(confidence)
    level = ("cqa-high" if pct >= 80 else "cqa-medium" if pct >= 50 else "cqa-low") \
        if answerable else "cqa-low"
    note = ""
    if not answerable and threshold is not None:
        note = (f'<span class="cqa-meta">best candidate {pct}%, below the '
                f'{_percent(threshold)}% needed to answer</span>')
    label = f"confidence {pct}%" if answerable else f"{pct}%"
    return (f'<div class="cqa-confidence" title="How sure the assistant is that the quote '
            f'answers the question"><span class="cqa-badge {level}">{label}</span>'
            f'<span class="cqa-bar" role="img" aria-label="confidence {pct} percent">'
            f'<span style="width:{pct}%"></span></span>{note}</div>')


def citation_context(citation: Citation, passages: Sequence[Passage],
                     index: Index | None = None) -> tuple[str, str, str]:
    """(before, quote, after): the quote inside the passage that contains it.

    The passage comes from `passages` (source equal and passage.start <= c.start and
    c.end <= passage.end), else from the index's chunks; (“”, quote, “”) if none does.
    """
    found: tuple[int, str] | None = None
    for p in passages:
        if p.source == citation.source and p.start <= citation.start and \
                citation.end <= p.end:
            found = (p.start, p.text)
            break
    if found is None:
        found = _chunk_around(index, citation.source, citation.start, citation.end)
    if found is None:
        return "", citation.quote, ""
    offset, text = found
    a, b = citation.start - offset, citation.end - offset
    if text[a:b] != citation.quote:  # offsets disagree: show the quote alone, verbatim
        return "", citation.quote, ""
    return text[:a], citation.quote, text[b:]


def _lines(lines: list[str]) -> list[str]:
    """The non-blank lines, white space collapsed. Passages are chunks, which hold no
    boilerplate lines by construction (the indexer chunks only content spans)."""
    return [" ".join(line.split()) for line in lines if line.strip()]


def phrase_html(quote: str, start: int, span: tuple[int, int] | None) -> str:
    """The escaped quote (whose first character is file offset `start`) with the answer
    phrase `span` (file offsets) in bold, when the span lies inside it."""
    quote = flowed(quote)  # PDF line breaks flow on screen; the length stays
    if span is None or not start <= span[0] < span[1] <= start + len(quote):
        return esc(quote)
    a, b = span[0] - start, span[1] - start
    return (f'{esc(quote[:a])}<strong class="cqa-phrase">{esc(quote[a:b])}</strong>'
            f"{esc(quote[b:])}")


def _passage_html(before: str, quote: str, after: str, quote_html: str | None = None) -> str:
    """The quote highlighted inside its passage; the quote itself is always shown
    verbatim (`quote_html`: the quote already rendered, e.g. with its phrase in bold).
    Line breaks inside a paragraph (PDF text) flow; paragraphs keep their lines."""
    before, quote, after = flowed(before), flowed(quote), flowed(after)
    head = before.replace("\r", "").split("\n")
    tail = after.replace("\r", "").split("\n")
    # head[-1] / tail[0] share a line with the quote; the other lines stand alone
    lead = " ".join(head[-1].split()) + (" " if head[-1][-1:].isspace() else "")
    trail = (" " if tail[0][:1].isspace() else "") + " ".join(tail[0].split())
    above = _lines(head[:-1])
    below = _lines(tail[1:])
    before_text = "\n".join([*above, lead]) if above else lead
    after_text = "\n".join([trail, *below]) if below else trail
    before_text = _trim_left(before_text, CONTEXT_CHARS)
    after_text = _trim_right(after_text, CONTEXT_CHARS)
    inner = esc(quote) if quote_html is None else quote_html
    return (f'<blockquote class="cqa-passage">{esc(before_text)}<mark>{inner}</mark>'
            f"{esc(after_text)}</blockquote>")


def _source_head(n: int | None, source: str, index: Index | None, where: str = "") -> str:
    """Title, date and file name of a source (its file name alone if not indexed), and
    where in it the quote stands ("report.pdf, p. 3")."""
    document = _document(index, source)
    title, date = (document.title, document.date) if document is not None else (source, None)
    num = f'<span class="cqa-ref">[{n}]</span> ' if n is not None else ""
    when = f' <span class="cqa-meta">· {esc(date)}</span>' if date else ""
    place = f'<span class="cqa-where">, {esc(where)}</span>' if where else ""
    return (f'<div class="cqa-source-head">{num}<strong>{esc(title)}</strong>{when}<br>'
            f'<span class="cqa-file">{esc(source)}</span>{place}</div>')


def render_answer(answer: Answer, index: Index | None = None,
                  threshold: float | None = None) -> str:
    """The assistant's chat message for an Answer, as escaped HTML."""
    parts = ['<div class="cqa-msg">']
    if answer.searched_for and answer.searched_for != answer.question:
        parts.append(f'<div class="cqa-searched">searched for: “{esc(answer.searched_for)}”'
                     "</div>")
    if answer.answerable and answer.citations:
        refs = "".join(f'<sup class="cqa-ref">[{n}]</sup>'
                       for n in range(1, len(answer.citations) + 1))
        first = answer.citations[0]
        answer_html = phrase_html(first.quote, first.start, answer.answer_span)
        parts.append(f'<p class="cqa-answer-text">{answer_html}{refs}</p>')
        parts.append(confidence_html(answer.confidence))
        parts.append('<div class="cqa-h">Sources</div>')
        for n, c in enumerate(answer.citations, 1):
            parts.append('<div class="cqa-source">')
            parts.append(_source_head(n, c.source, index, c.where))
            parts.append(_passage_html(*citation_context(c, answer.passages, index),
                                       answer_html if n == 1 else None))
            parts.append("</div>")
        if len(answer.citations) > 1:
            others = "; ".join(
                f'<span class="cqa-ref">[{n}]</span> {esc(c.title)} '
                f'(<span class="cqa-file">{esc(c.source)}</span>'
                f'{esc(", " + c.where) if c.where else ""})'
                for n, c in enumerate(answer.citations[1:], 2))
            parts.append(f'<div class="cqa-also"><strong>Also reported by:</strong> '
                         f"{others}</div>")
    else:
        parts.append(f'<p class="cqa-abstain">{esc(NOT_ANSWERED)}</p>')
        parts.append(confidence_html(answer.confidence, threshold, answerable=False))
        related: dict[str, Passage] = {}  # each document once, with its best passage
        for p in answer.passages:
            related.setdefault(p.source, p)
        if related:
            parts.append('<div class="cqa-h">Related material (not an answer)</div>')
            for p in list(related.values())[:RELATED_SHOWN]:
                parts.append('<div class="cqa-related-item">')
                parts.append(_source_head(None, p.source, index))
                lines = _lines(p.text.replace("\r", "").split("\n"))
                snippet = _trim_right("\n".join(lines) or p.text, SNIPPET_CHARS)
                parts.append(f'<blockquote class="cqa-passage">{esc(snippet)}</blockquote>')
                parts.append("</div>")
    total = answer.timings_ms.get("total") if answer.timings_ms else None
    if total is not None:
        parts.append(f'<div class="cqa-timing">answered in {float(total):.0f} ms</div>')
    parts.append("</div>")
    return "".join(parts)


def render_error(message: str) -> str:
    return f'<div class="cqa-msg cqa-error">⚠ {esc(message)}</div>'


def render_question(question: str) -> str:
    return esc(question)


def render_documents(index: Index | None) -> str:
    """The indexed documents as an escaped HTML table."""
    documents = _documents(index)
    if not documents:
        return '<div class="cqa-docs cqa-meta">No documents are indexed.</div>'
    rows = "".join(
        f'<tr><td>{esc(d.title)}<span class="cqa-file cqa-meta">{esc(d.source)}'
        f'{" · uploaded" if d.source.startswith(UPLOADS_PREFIX) else ""}</span></td>'
        f'<td class="cqa-num">{esc(d.date or "—")}</td>'
        f'<td class="cqa-num">{int(d.chunks)}</td></tr>'
        for d in documents)
    n = len(documents)
    return (f'<div class="cqa-docs"><div class="cqa-meta">{n} file{"s" if n != 1 else ""}'
            f'</div><table><thead><tr><th>Document</th><th class="cqa-num">Date</th>'
            f'<th class="cqa-num">Passages</th></tr></thead><tbody>{rows}</tbody></table>'
            "</div>")
