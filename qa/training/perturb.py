"""Unanswerable questions made from answerable ones, for training the reader to say "no
answer" when a window looks as if it answers (SQuAD 2.0's kinds of unanswerable
question: Rajpurkar, Jia & Liang 2018, "Know What You Don't Know", section 3).

`perturb(question, paragraph, article, answers, rng)` changes the question so that its
own paragraph no longer answers it, in one of five ways, and checks each against the
paragraph before returning it:

- entity: a capitalised name of the question swapped for another of as many words from
  the same article (or corpus) that the paragraph never mentions;
- number: a number or year of the question swapped for one the paragraph never mentions;
- condition: an impossible condition added ("... in 1874?"), a year the paragraph never
  mentions, when the question has none;
- antonym: a word swapped for its opposite (first/last, largest/smallest, ...) that the
  paragraph never uses;
- negation: "not"/"never" put into the question, only when the paragraph negates nothing
  (so nothing in it can answer the negated question).

Rules only (capitalised spans, numbers, a word list): no NER model is installed. Returns
(question, kind, inserted text) or None when no way applies.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

_CAP = re.compile(r"\b(?:[A-Z][\w'’.-]*[a-z0-9][\w'’-]*)(?:\s+(?:of\s+|the\s+|de\s+)?"
                  r"[A-Z][\w'’.-]*[a-z0-9][\w'’-]*)*")
_NUMBER = re.compile(r"(?<![\w.,])\d{1,3}(?:,\d{3})+(?![\w,]|\.\d)"
                     r"|(?<![\w.,])\d+(?:\.\d+)?(?![\w,]|\.\d)")
_YEAR = re.compile(r"^(1[5-9]\d\d|20[0-4]\d)$")
_NEGATION = re.compile(r"\b(?:not|never|no|none|nor|neither|nobody|nothing|without)\b|n't\b",
                       re.IGNORECASE)
_WH = re.compile(r"^(what|who|whom|which|where|when|why|how(?: many| much| long| old)?)\s+"
                 r"(is|was|are|were|did|does|do|can|could|has|have|had|will|would)\s+",
                 re.IGNORECASE)
_WH_VERB = re.compile(r"^(what|who|which)\s+([a-z]+(?:ed|s))\s+", re.IGNORECASE)
_STOP_CAPS = frozenset("""The A An In On At Of For To By From With And Or But What Who Whom
Which Where When Why How Is Was Are Were Did Does Do Can Could Has Have Had Will Would
This That These Those It Its He She They His Her Their I We You Mr Mrs Ms Dr
January February March April May June July August September October November December
Monday Tuesday Wednesday Thursday Friday Saturday Sunday""".split())
_PAIRS = """first last; largest smallest; biggest smallest; highest lowest; most least;
earliest latest; before after; increase decrease; increased decreased; north south;
east west; northern southern; eastern western; older younger; oldest youngest;
longest shortest; longer shorter; maximum minimum; major minor; win lose; won lost;
winning losing; best worst; better worse; top bottom; inside outside; upper lower;
beginning end; start end; started ended; open closed; opened closed; more fewer;
higher lower; larger smaller; rise fall; rose fell; above below; male female; men women;
positive negative; strong weak; strongest weakest; rich poor; richest poorest;
private public; modern ancient; internal external; import export; imported exported;
buy sell; bought sold; accept reject; accepted rejected; allowed banned;
legal illegal; success failure; successful unsuccessful""".replace("\n", " ")
ANTONYMS: dict[str, str] = {}
for _pair in _PAIRS.split(";"):
    _a, _b = _pair.split()
    ANTONYMS.setdefault(_a, _b)
    ANTONYMS.setdefault(_b, _a)
_WORD = re.compile(r"[A-Za-z]+")
KINDS = ("entity", "number", "condition", "antonym", "negation")
_WEIGHTS = (35, 15, 10, 15, 20)  # condition: only when drawn first (it nearly always
# applies, and as everyone's fallback it would teach "a year at the end: no answer")


def mentions(text: str, phrase: str) -> bool:
    """Whether `phrase` occurs in `text` as whole words, ignoring case."""
    return re.search(r"(?<!\w)" + re.escape(phrase.lower()) + r"(?!\w)", text.lower()) is not None


def names(text: str) -> list[tuple[str, str]]:
    """Capitalised spans of `text` that look like names (not a lone sentence-initial
    word, not a function word, month or weekday alone), each with the word before it
    (lower-cased; "" at a sentence start): "the town of X" and "President X" say what
    kind of name X is."""
    out = []
    for m in _CAP.finditer(text):
        span = m.group().rstrip(".")
        words = span.split()
        stripped = []
        while words and words[0] in _STOP_CAPS:
            stripped.append(words.pop(0))
        if not words:
            continue
        before = text[:m.start()].rstrip(" \t\"'“‘(")
        if not stripped and len(words) == 1 and (not before or before[-1] in ".!?:\n"):
            continue  # a lone capitalised word that starts a sentence: not a name
        prev = [w.lower() for w in stripped] or _WORD.findall(before[-30:])
        out.append((" ".join(words), prev[-1].lower() if prev else ""))
    return out


class Names:
    """The names of a text (an article or a corpus) with the words seen before each."""

    def __init__(self, text: str) -> None:
        self.before: dict[str, set[str]] = {}
        self.count: dict[str, int] = {}
        for name, prev in names(text):
            self.before.setdefault(name, set()).add(prev)
            self.count[name] = self.count.get(name, 0) + 1

    def like(self, old: str, context: set[str], k: int) -> list[str]:
        """Names of `k` words ranked by the words before them shared with `old`'s
        (`context`), then by how often they occur; single words seen once are left out."""
        scored = []
        for n, seen in self.before.items():
            if len(n.split()) != k or n == old:
                continue
            if k == 1 and self.count[n] < 2:
                continue
            scored.append((-len(seen & context), -self.count[n], n))
        scored.sort()
        return [n for *_, n in scored]


def _entity(question: str, paragraph: str, pool: Names, rng: random.Random):
    found = [(n, p) for n, p in names(question[1:]) if mentions(paragraph, n)]
    rng.shuffle(found)
    for old, prev in found:
        context = (pool.before.get(old, set()) | {prev}) - {""}
        choices = [n for n in pool.like(old, context, len(old.split()))
                   if not mentions(paragraph, n) and not mentions(question, n)
                   and n.lower() not in old.lower() and old.lower() not in n.lower()][:8]
        if choices:
            new = rng.choice(choices)
            return question.replace(old, new, 1), new
    return None


def _number(question: str, paragraph: str, pool_text: str, rng: random.Random):
    found = list(_NUMBER.finditer(question))
    rng.shuffle(found)
    for m in found:
        old = m.group()
        if _YEAR.match(old):
            years = sorted({y for y in re.findall(r"\b1[5-9]\d\d\b|\b20[0-4]\d\b", pool_text)
                            if y != old and not mentions(paragraph, y)})
            new = rng.choice(years) if years else str(int(old) + rng.choice((-1, 1))
                                                     * rng.randint(3, 40))
        else:
            value = float(old.replace(",", ""))
            factor = rng.choice((2, 3, 0.5, 10, 0.25, 1.5))
            v = value * factor if value else rng.randint(2, 9)
            new = f"{v:,.0f}" if "," in old else (f"{v:g}" if "." in old else str(int(v)))
        if new != old and not mentions(paragraph, new):
            return question[:m.start()] + new + question[m.end():], new
    return None


def _condition(question: str, paragraph: str, pool_text: str, rng: random.Random):
    if not question.rstrip().endswith("?") or re.search(r"\b1[5-9]\d\d\b|\b20[0-4]\d\b",
                                                         question):
        return None
    years = sorted({y for y in re.findall(r"\b1[5-9]\d\d\b|\b20[0-4]\d\b", pool_text)
                    if not mentions(paragraph, y)})
    year = rng.choice(years) if years else str(rng.randint(1800, 2020))
    if mentions(paragraph, year):
        return None
    word = rng.choice(("in", "in", "before", "after"))
    return question.rstrip()[:-1].rstrip() + f" {word} {year}?", year


def _antonym(question: str, paragraph: str, rng: random.Random):
    words = [m for m in _WORD.finditer(question) if m.group().lower() in ANTONYMS]
    rng.shuffle(words)
    for m in words:
        w = m.group()
        new = ANTONYMS[w.lower()]
        if mentions(paragraph, new):
            continue
        if w[0].isupper():
            new = new.capitalize()
        return question[:m.start()] + new + question[m.end():], new
    return None


def _negation(question: str, paragraph: str):
    if _NEGATION.search(paragraph) or _NEGATION.search(question):
        return None
    m = _WH.match(question)
    if m:
        return question[:m.end()] + "not " + question[m.end():], "not"
    m = _WH_VERB.match(question)
    if m:
        return question[:m.start(2)] + "never " + question[m.start(2):], "never"
    return None


def perturb(question: str, paragraph: str, pool_text: str, answers: Sequence[str],
            rng: random.Random, pool_names: Names | None = None
            ) -> tuple[str, str, str] | None:
    """An unanswerable variant of `question` (see the module docstring): (question,
    kind, inserted text), or None. `pool_text` is where swapped-in names and years come
    from (the article, or the corpus); `pool_names` its `Names`, if already made."""
    kinds = list(KINDS)
    order = []
    weights = list(_WEIGHTS)
    while kinds:
        k = rng.choices(range(len(kinds)), weights)[0]
        order.append(kinds.pop(k))
        weights.pop(k)
    for n, kind in enumerate(order):
        if kind == "entity":
            got = _entity(question, paragraph,
                          pool_names if pool_names is not None else Names(pool_text), rng)
        elif kind == "number":
            got = _number(question, paragraph, pool_text, rng)
        elif kind == "condition":
            got = _condition(question, paragraph, pool_text, rng) if n == 0 else None
        elif kind == "antonym":
            got = _antonym(question, paragraph, rng)
        else:
            got = _negation(question, paragraph)
        if got is None:
            continue
        new_q, inserted = got
        if new_q == question or any(a.strip() and mentions(inserted, a) for a in answers):
            continue
        return new_q, kind, inserted
    return None
