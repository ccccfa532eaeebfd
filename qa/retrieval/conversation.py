"""Follow-up questions: what to search for, given the earlier turns of a conversation.

A follow-up borrows names from the previous question only when it needs them: it points
back ("What did he say about North Korea?", "Why did they do that?") or it is elliptic
("And Japan?", "What about 2019?", "Why?"). A complete question with its own subject
("What is the capital of France?") is searched as it is, so an earlier topic never leaks
into an unrelated question.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from embeddings.lexical import tokenize

# Words that point back to something said before.
_REFERENCES = frozenset("""he she him her his hers they them their theirs it its this that
    these those there then else""".split())
_PERSONAL = re.compile(r"\b(he|she|him|her|his|hers)\b", re.I)
# "that" followed by one of these (or by a name) opens a clause ("Who said that the US…"),
# and "there" next to a form of "be" is existential ("Is there a ceasefire?"): neither
# points back.
_CLAUSE_START = frozenset("""the a an he she it they we you i there this these those his
    her its their our my""".split())
_BE = frozenset("is are was were be been will has have had".split())
# Auxiliaries: a short question holding one gives itself a frame ("Who is Xi?").
_AUXILIARIES = frozenset("""is are was were be been am do does did has have had will would
    can could should shall may might must""".split())
_ELLIPTIC_OPENING = re.compile(r"^\W*(?:(?:and|or|but|so|also)\s+)?(?:what|how)\s+(?:about|of)\b",
                               re.I)
_NOT_NAMES = {"what", "who", "when", "where", "why", "how", "which", "did", "does", "do", "is",
              "are", "was", "were", "the", "a", "an", "can", "could", "would", "should", "has",
              "have", "in", "on", "i", "tell", "me", "and", "or"}


def points_back(question: str) -> bool:
    """Whether the question holds a pronoun or reference to an earlier turn."""
    words = re.findall(r"\w+", question)
    for i, word in enumerate(words):
        lower = word.lower()
        before = words[i - 1].lower() if i else ""
        after = words[i + 1] if i + 1 < len(words) else ""
        if lower == "same" and before == "the":
            return True
        if lower not in _REFERENCES:
            continue
        if lower == "that" and after and (after[0].isupper() or after.lower() in _CLAUSE_START):
            continue
        if lower == "there" and (after.lower() in _BE or (before in _BE and after)):
            continue
        return True
    return False


def is_elliptic(question: str) -> bool:
    """Whether the question leaves its subject or its verb to an earlier turn: "What
    about …?", or at most one content word and no auxiliary ("And Japan?", "Why?", "In
    which year?"), while "Who is Xi?" and "What is the capital of France?" stand alone."""
    if _ELLIPTIC_OPENING.search(question):
        return True
    words = {w.lower() for w in re.findall(r"\w+", question)}
    return len(tokenize(question)) <= 1 and not words & _AUXILIARIES


def names_in(text: str) -> list[str]:
    """The names in `text`, in order and once each: runs of capitalised words, less
    question words and a possessive 's ("What did Blinken's team say?" -> ["Blinken"])."""
    names = []
    for name in re.findall(r"\b[A-Z][\w’'-]*(?:\s+[A-Z][\w’'-]*)*", text):
        words = [re.sub(r"['’]s$", "", w) for w in name.split() if w.lower() not in _NOT_NAMES]
        if words:
            names.append(" ".join(words))
    return list(dict.fromkeys(names))


def contextualize(question: str, history: Sequence[dict] | None) -> str:
    """The text to search for, given earlier turns of a conversation.

    A follow-up that needs an earlier turn (`points_back` or `is_elliptic`) is searched
    together with names from the previous question: "he"/"she" take its first name,
    other references all of them. "What did he say about North Korea?" after "What did
    Blinken say about Taiwan?" searches "What did he say about North Korea? (Blinken)".
    Any other question is searched as it is. `history` items are {"question": str,
    "answer": str}, oldest first.
    """
    if not history:
        return question
    previous = next((h["question"] for h in reversed(history)
                     if isinstance(h, dict) and isinstance(h.get("question"), str)
                     and h["question"].strip()), "")
    if not previous or not (points_back(question) or is_elliptic(question)):
        return question
    own = set(tokenize(question))
    names = [name for name in names_in(previous) if not set(tokenize(name)) <= own]
    if names and _PERSONAL.search(question):
        # "he"/"she" point at a person: skip acronyms such as "US" or "UN"
        people = [n for n in names if not n.isupper()]
        names = people[:1] or names[:1]
    if not names:
        names = [w for w in re.findall(r"\w+", previous)
                 if tokenize(w) and not set(tokenize(w)) <= own][:4]
    return f"{question} ({', '.join(names)})" if names else question
