"""Read a corpus folder into documents, and mark which parts of each are article text.

A `Document` keeps the file's text exactly as read (after decoding), so that every
offset computed later is an offset into that text. Cleaning never edits the text: it
returns the character spans (`Document.spans`) of the paragraphs that are article
content, leaving out web boilerplate such as "ADVERTISEMENT" or "58 views0 comments".
"""

from __future__ import annotations

import hashlib
import html
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from embeddings.errors import BadInput
from embeddings.files import sha256_file

log = logging.getLogger(__name__)

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
PDF_SUFFIXES = (".pdf",)
WORD_SUFFIXES = (".docx",)
SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES + PDF_SUFFIXES + WORD_SUFFIXES
UPLOADS_PREFIX = "uploads/"  # the sources of uploaded files (qa.settings.uploads_dir)
FALLBACK_ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")


@dataclass(frozen=True)
class Document:
    """One file of the corpus.

    source: path relative to the corpus folder, with forward slashes.
    text: the file's text as read (HTML, PDF, Word: the extracted text).
    spans: (start, end) character offsets into `text` of the content paragraphs.
    sha256: hex digest of the file's bytes.
    pages: PDF only, the offset in `text` at which each page starts (page i + 1 at
        pages[i]).
    headings: Word only, (offset, text) of each heading.
    """

    source: str
    text: str
    title: str
    date: str | None
    spans: tuple[tuple[int, int], ...]
    sha256: str
    pages: tuple[int, ...] = ()
    headings: tuple[tuple[int, str], ...] = ()


# --- boilerplate -----------------------------------------------------------------------

_BOILERPLATE_LINE = re.compile(
    r"""^(?:
        advertisement | advertisements | sponsored(?:\s+content)? | image | photo | video
      | (?:photo|image|picture|credit|source)s?\s*:\s*\S.{0,60}
      | top\s+of\s+page | bottom\s+of\s+page | back\s+to\s+top | skip\s+to\s+(?:main\s+)?content
      | \d+\s*views?\s*\d*\s*comments? | \d+\s*comments? | \d+\s*views?
      | comments? | sign\s+in\s+to\s+comment | log\s*in\s+to\s+comment | leave\s+a\s+comment
      | powered\s+by\s+.{1,60} | published\s+on | share(?:\s+this(?:\s+article)?)? | print | email
      | read\s+(?:also|more)\s*[|:].* | also\s+read\s*[|:].* | related\s*[|:].*
      | enable\s+notifications.* | remind\s+me\s+next\s+month | subscribe(?:\s+now)?
      | (?:support|join)\s+the\s+.{1,40} | sign\s+up(?:\s+now)? | newsletter
      | ©.* | \(c\)\s*\d{4}.* | copyright\s+(?:©\s*)?\d{4}.* | all\s+rights\s+reserved\.?
      | home\s*[>»/|].* | home[A-Z][a-z]+[A-Z].*
      | follow\s+us.* | tags?\s*:.* | cookie(?:s)?\s+(?:policy|settings).*
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
# "HomeWorldUS Secretary ..." is a breadcrumb run together; the case-sensitive part above
# needs its own check because IGNORECASE makes [A-Z] match any letter.
_BREADCRUMB = re.compile(r"^Home(?:[A-Z][a-z]+){1,3}[A-Z]")

_PITCH_CUES = re.compile(
    r"support(?:ing)?\s+(?:us|the\s+post|our\s+journalism|independent)|as\s+little\s+as\s+\$"
    r"|subscri(?:be|ption)|sign(?:ing)?\s+up|privacy\s+policy|terms\s+of\s+(?:use|service)"
    r"|personal\s+data|do\s+not\s+sell|newsletter|can[’']t\s+be\s+cancelled|free\s+thinkers"
    r"|donat(?:e|ion)|paywall|unlimited\s+access|become\s+a\s+member",
    re.IGNORECASE,
)
# Every pitch cue holds one of these words, so a line holding none of them (lower-cased)
# has no cue; that test is exact unless the line holds a character IGNORECASE folds onto
# an ASCII letter (İ ı → i, K → k, ſ → s), and then the pattern decides.
_PITCH_WORDS = ("support", "little", "subscri", "sign", "privacy", "terms", "personal",
                "sell", "newsletter", "cancelled", "thinkers", "donat", "paywall",
                "unlimited", "member")
_FOLDS_TO_ASCII = frozenset("İıKſ")


def _pitch_cues(text: str) -> int:
    """How many subscription-pitch cues `text` holds (matches of _PITCH_CUES)."""
    if _FOLDS_TO_ASCII.isdisjoint(text):
        low = text.lower()
        if not any(word in low for word in _PITCH_WORDS):
            return 0  # the pattern is slow: it tries every cue at every character
    return len(_PITCH_CUES.findall(text))


_LIST_HEADERS = re.compile(
    r"^(?:latest(?:\s+(?:articles|news|stories))?|more\s+like\s+this|related(?:\s+(?:articles|stories|news))?"
    r"|recommended(?:\s+for\s+you)?|most\s+(?:read|popular)|you\s+may\s+also\s+like|trending(?:\s+now)?"
    r"|more\s+(?:stories|news|from\s+.{1,40})|read\s+next|top\s+stories)\s*:?$",
    re.IGNORECASE,
)
_TEASER_END = re.compile(r"(?:\.\.\.|…)\s*$")


def _is_boilerplate_line(line: str, web: bool = True) -> bool:
    """True for a line that is page furniture. `web=False` (PDF and Word paragraphs):
    only the exact widget lines ("58 views0 comments", "Share this article"); the
    subscription-pitch and teaser rules would drop real prose about privacy policies or a
    sentence ending in "..."."""
    text = line.strip()
    if not text:
        return True
    if _BOILERPLATE_LINE.match(text) or _BREADCRUMB.match(text):
        return True
    if not web:
        return False
    if _TEASER_END.search(text):
        return True  # a truncated teaser of another story
    cues = _pitch_cues(text)
    return cues >= 2 or (cues == 1 and len(text) < 120 and not text.endswith((".", '"', "”")))


def _is_headline(text: str) -> bool:
    """A short line with no closing punctuation: a headline in a list of other stories."""
    return len(text) <= 160 and not re.search(r"[.!?\"”’]$", text)


INVISIBLE = "\ufeff\u200b\u200c\u200d\u2060\u200e\u200f"  # BOM, zero-width, direction marks


def _blank(ch: str) -> bool:
    return ch.isspace() or ch in INVISIBLE


def _lines(text: str) -> Iterator[tuple[int, int]]:
    """Yield (start, end) of each line of `text`, without surrounding white space, byte-order
    marks or zero-width characters. Lines end at \n, \r\n or \r."""
    for m in re.finditer(r"[^\r\n]+", text):
        start, end = m.start(), m.end()
        while start < end and _blank(text[start]):
            start += 1
        while end > start and _blank(text[end - 1]):
            end -= 1
        if start < end:
            yield start, end


def _paragraphs(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each paragraph of `text`: a run of lines up to a blank line."""
    for m in re.finditer(r"\S(?:.|\n(?![ \t]*\n))*", text):
        start, end = m.start(), m.end()
        while end > start and _blank(text[end - 1]):
            end -= 1
        yield start, end


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """`content_spans` by paragraph (lines up to a blank line) instead of by line, and
    with only the exact widget patterns: for extracted PDF and Word text, whose line ends
    fall inside sentences and whose prose is not a web page's."""
    return _content(text, _paragraphs(text), web=False)


def content_spans(text: str) -> list[tuple[int, int]]:
    """Return the (start, end) offsets of the lines of `text` that are article content.

    Drops boilerplate lines (ads, share/comment widgets, subscription pitches, truncated
    teasers) and whole "Latest articles" / "More like this" blocks: the header and the
    headlines and teasers under it, up to the first line that is neither.
    """
    return _content(text, _lines(text))


def _content(text: str, units: Iterator[tuple[int, int]],
             web: bool = True) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    in_list = False
    for start, end in units:
        line = text[start:end]
        parts = None  # a single line: judging it by its lines would judge it again
        if "\n" in line:  # a paragraph: judged whole, and by its lines
            parts = [p for p in line.split("\n") if p.strip()]
            line = " ".join(line.split())
        if _LIST_HEADERS.match(line):
            in_list = True
            continue
        if in_list:
            if _is_headline(line) or _is_boilerplate_line(line, web):
                continue
            in_list = False
        if not (_is_boilerplate_line(line, web)
                or (parts is not None and all(_is_boilerplate_line(p, web) for p in parts))):
            spans.append((start, end))
    return spans


# --- title and date --------------------------------------------------------------------

_MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
)
_DAY = r"(?P<d>\d{1,2})(?:st|nd|rd|th)?"
_DATE_PATTERNS = (
    re.compile(rf"^{_DAY},?\s+(?P<m>{_MONTHS}),?\s+(?P<y>\d{{4}})$", re.I),
    re.compile(rf"^(?P<m>{_MONTHS})\s+{_DAY},?\s+(?P<y>\d{{4}})$", re.I),
    re.compile(r"^(?P<y>\d{4})-(?P<mm>\d{2})-(?P<d>\d{2})$"),
)


def parse_date(line: str) -> str | None:
    """Return an ISO date (YYYY-MM-DD) if `line` is only a date such as "1, March, 2024"."""
    text = line.strip()
    if len(text) > 40:
        return None
    text = re.sub(r"^(?:published|updated|posted)(?:\s+on)?\s*:?\s*", "", text, flags=re.I)
    for pattern in _DATE_PATTERNS:
        m = pattern.match(text)
        if not m:
            continue
        groups = m.groupdict()
        month = int(groups["mm"]) if groups.get("mm") else _MONTHS.split("|").index(
            groups["m"].lower()) + 1
        day, year = int(groups["d"]), int(groups["y"])
        if 1 <= month <= 12 and 1 <= day <= 31:
            return f"{year:04d}-{month:02d}-{day:02d}"
    return None


def _title_and_date(
    text: str, spans: list[tuple[int, int]], fallback: str
) -> tuple[str, str | None, list[tuple[int, int]]]:
    """Find a date line among the first lines, and take the first content line as title.

    Returns (title, date, spans without the date line). A first line that is a long
    sentence is shortened to about 90 characters at a word boundary.
    """
    date = None
    kept = []
    for i, (start, end) in enumerate(spans):
        if date is None and i < 4 and (found := parse_date(text[start:end])):
            date = found
            continue
        kept.append((start, end))
    if not kept:
        return fallback, date, kept
    first = " ".join(text[kept[0][0] : kept[0][1]].split())
    if len(first) > 110:
        cut = first[:90].rsplit(" ", 1)[0].rstrip(",;:")
        first = cut + "…"
    return first, date, kept


# --- reading ---------------------------------------------------------------------------


def decode(data: bytes, source: str) -> str:
    """Decode file bytes as UTF-8, falling back (with a warning) to cp1252, then latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    for encoding in FALLBACK_ENCODINGS[1:]:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue  # cp1252 leaves five bytes undefined; latin-1 decodes everything
        log.warning("%s: not UTF-8, decoded as %s", source, encoding)
        return text
    return data.decode("latin-1")  # unreachable: latin-1 maps every byte


def _looks_binary(data: bytes) -> bool:
    head = data[:8192]
    if b"\x00" in head:
        return True
    control = sum(1 for b in head if b < 9 or 13 < b < 32)
    return bool(head) and control / len(head) > 0.05


def html_to_text(markup: str) -> str:
    """Extract the main text of an HTML page (trafilatura; a tag-stripping fallback)."""
    try:
        import trafilatura

        text = trafilatura.extract(markup, include_comments=False, include_tables=True)
    except Exception:  # noqa: BLE001 - any extractor failure falls back to tag stripping
        text = None
    if not text:
        body = re.sub(r"(?is)<(script|style|noscript)[^>]*>.*?</\1>", " ", markup)
        body = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</h\d>|</li>", "\n", body)
        text = html.unescape(re.sub(r"<[^>]+>", " ", body))
        text = "\n".join(" ".join(line.split()) for line in text.splitlines())
    return text


class Skipped(ValueError):
    """A file that can't be used as a document; the message says why."""


def read_document(path: Path, source: str, sha256: str | None = None) -> Document | None:
    """Read one file into a `Document`; return None (after a warning) if it can't be used.

    Binary, empty and unreadable files are skipped with a one-line warning. `sha256` is
    the file's hash when the caller has it already (`file_sha256`); without it the bytes
    read are hashed.
    """
    try:
        return load_document(path, source, sha256)
    except Skipped as exc:
        log.warning("%s: skipped, %s", source, exc)
        return None


def load_document(path: Path, source: str, sha256: str | None = None) -> Document:
    """`read_document`, raising `Skipped` with the reason instead of warning."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise Skipped(f"cannot read ({exc.strerror or exc})") from None
    if not data.strip():
        raise Skipped("empty file")
    suffix = path.suffix.lower()
    pages: tuple[int, ...] = ()
    headings: tuple[tuple[int, str], ...] = ()
    known_title = None
    if suffix in PDF_SUFFIXES or suffix in WORD_SUFFIXES:
        from embeddings import pdf, word

        try:
            if suffix in PDF_SUFFIXES:
                extracted = pdf.extract(data)
                pages = extracted.pages
                if extracted.empty_pages:
                    log.warning("%s: page%s %s without text (scanned, or a figure?) left "
                                "out; OCR is not done", source,
                                "s" if len(extracted.empty_pages) > 1 else "",
                                ", ".join(map(str, extracted.empty_pages)))
            else:
                extracted = word.extract(data)
                headings = extracted.headings
        except (pdf.Unreadable, word.Unreadable) as exc:
            raise Skipped(str(exc)) from None
        text, known_title = extracted.text, extracted.title
        spans = paragraph_spans(text)
    else:
        if _looks_binary(data):
            raise Skipped("looks like a binary file")
        text = decode(data, source)
        if suffix in HTML_SUFFIXES:
            text = html_to_text(text)
        spans = content_spans(text)
    fallback = Path(source).stem.replace("_", " ").replace("-", " ")
    title, date, spans = _title_and_date(text, spans, fallback)
    if not spans:
        raise Skipped("no article text found")
    return Document(
        source=source,
        text=text,
        title=known_title or title,
        date=date,
        spans=tuple(spans),
        sha256=sha256 if sha256 is not None else hashlib.sha256(data).hexdigest(),
        pages=pages,
        headings=headings,
    )


def list_files(corpus: Path, exclude: tuple[str, ...] = ()) -> list[tuple[Path, str]]:
    """List (path, source) for the corpus files with a known suffix, sorted by source.

    Walks sub-folders, follows symbolic links to files but not into linked folders
    (so a link loop cannot hang the walk), and skips hidden files and folders.
    `exclude` holds source paths (relative, forward slashes) to leave out. Raises
    BadInput if `corpus` is missing or not a folder.
    """
    corpus = Path(corpus)
    if not corpus.exists():
        raise BadInput(f"corpus folder does not exist: {corpus}")
    if not corpus.is_dir():
        raise BadInput(f"corpus is not a folder: {corpus}")
    found = []
    for root, dirs, files in os.walk(corpus, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or not name.lower().endswith(SUFFIXES):
                continue
            path = Path(root) / name
            source = path.relative_to(corpus).as_posix()
            try:
                source.encode("utf-8")
            except UnicodeEncodeError:
                log.warning("%r: skipped, the file name is not valid UTF-8", source)
                continue
            if source not in exclude:
                found.append((path, source))
    return sorted(found, key=lambda item: item[1])


def corpus_files(corpus: Path, exclude: tuple[str, ...] = (),
                 uploads: Path | None = None) -> list[tuple[Path, str]]:
    """`list_files(corpus, exclude)`, then the `uploads` folder's files (if it exists) as
    sources "uploads/<name>"; an uploaded file whose source a corpus file already has is
    left out with a warning (the corpus's own file wins)."""
    files = list_files(corpus, exclude)  # first: a missing corpus is reported first
    if uploads is None or not Path(uploads).is_dir():
        return files
    taken = {s for _, s in files}
    for path, name in list_files(uploads):
        source = UPLOADS_PREFIX + name
        if source in taken:
            log.warning("%s: left out, the corpus has a file of that name", path)
        else:
            files.append((path, source))
    return sorted(files, key=lambda item: item[1])


def file_sha256(path: Path) -> str | None:
    """Hex SHA-256 of a file's bytes, or None if it can't be read."""
    try:
        return sha256_file(path)
    except OSError:
        return None
