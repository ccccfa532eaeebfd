"""Training windows for the reader (`qa reader train`), from question/paragraph records.

Data: JSON lines (optionally gzipped), one question a record, as in `shared/train`:
`{"question", "context", "answers": [str], "answerable": bool}`, optionally
`answer_sentences` (the gold sentence texts), `title`, `source_dataset` and `license`
(listed in the model card). Every record becomes windows of consecutive sentences of its
context (split by the product's own sentence splitter, sized like answer-time windows):

- a positive window holding the answer sentence (label: that sentence; span: the answer
  string where it occurs in it);
- a negative window labelled "no answer": half the time the same window with the answer
  sentence taken out (the question's words are still there, the answer is not: the
  adversarial case), otherwise another window of the same context, or of another context
  of the same title that shares the most words with the question (a retrieval-style
  hard negative); none of them contains an answer string;
- unanswerable records give two "no answer" windows;
- with `generated` > 0, that share of the answerable records also gives an unanswerable
  question made from it (`qa.training.perturb`) read with the positive window, labelled
  "no answer" (kind `generated-<how>`), when what the change put in is not in the window.

`pool_examples` turns the windows of `qa reader windows` (`qa.training.pool`: what the
product's retrieval puts before the reader) into examples of the same form.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from embeddings.chunking import split_sentences
from qa.reader.runtime import MAX_QUESTION_TOKENS, MAX_TOKENS, Pieces, Window, encode_window

_WORD = re.compile(r"\w+")
_STOP = frozenset(
    "a an the of in on at to for by with from and or is are was were be been what which who "
    "whom whose when where why how did do does that this it its as into than then there".split())

# Fixed windows the export is checked on and whose fp32 outputs go into reader.json, so a
# test can compare the shipped int8 model with fp32 on any CPU.

@dataclass(frozen=True)
class Record:
    question: str
    context: str
    answers: tuple[str, ...]
    answerable: bool
    answer_sentences: tuple[str, ...] = ()
    title: str = ""
    dataset: str = ""
    license: str = ""


@dataclass(frozen=True)
class Example:
    window: Window
    label: int  # 0: no answer; k + 1: sentence k of the window
    start: int = -1  # token index of the answer phrase (-1: none)
    end: int = -1
    kind: str = "positive"  # positive | removed | other | cross | unanswerable



def read_records(paths: Sequence[str | Path]) -> list[Record]:
    """Records from JSON-lines files (gzipped if the name ends in .gz). Raises ValueError
    naming the file and line of a bad record."""
    out = []
    for path in paths:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        if not path.is_file():
            raise ValueError(f"training data {path} does not exist")
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    rec = Record(
                        str(r["question"]), str(r["context"]),
                        tuple(str(a) for a in r.get("answers") or ()),
                        bool(r.get("answerable", bool(r.get("answers")))),
                        tuple(str(s) for s in r.get("answer_sentences") or ()),
                        str(r.get("title") or ""), str(r.get("source_dataset") or path.name),
                        str(r.get("license") or ""))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{n}: not a training record ({exc})") from None
                if rec.question.strip() and rec.context.strip():
                    out.append(rec)
    return out


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _find_all(text: str, needle: str) -> list[int]:
    if not needle.strip():
        return []
    hits, i = [], text.find(needle)
    while i >= 0:
        hits.append(i)
        i = text.find(needle, i + 1)
    if not hits:
        low, nlow = text.lower(), needle.lower()
        i = low.find(nlow)
        while i >= 0:
            hits.append(i)
            i = low.find(nlow, i + 1)
    return hits


def gold(rec: Record, spans: Sequence[tuple[int, int]]) -> tuple[int, int, int] | None:
    """(sentence index, answer start, answer end) in context offsets, or None.

    With `answer_sentences`, the sentence overlapping the first of them most; else each
    occurrence of each answer string, keeping the one whose sentence shares the most
    words with the question.
    """
    if not rec.answerable or not spans:
        return None

    def sentence_at(pos: int) -> int:
        for k, (s, e) in enumerate(spans):
            if pos < e:
                return k if pos >= s else max(0, k - 1)
        return len(spans) - 1

    q = _words(rec.question)
    best = None
    for a in rec.answers:
        for pos in _find_all(rec.context, a):
            k = sentence_at(pos)
            overlap = len(q & _words(rec.context[spans[k][0]:spans[k][1]]))
            key = (overlap, -pos)
            if best is None or key > best[0]:
                best = (key, k, pos, min(pos + len(a), spans[k][1]))
    if rec.answer_sentences:
        where = rec.context.find(rec.answer_sentences[0])
        if where >= 0:
            end = where + len(rec.answer_sentences[0])
            k = max(range(len(spans)), key=lambda k: min(end, spans[k][1])
                    - max(where, spans[k][0]))
            if best is None or best[1] != k:
                return k, spans[k][0], spans[k][1]
    return None if best is None else best[1:]


def _has_answer(text: str, answers: Sequence[str]) -> bool:
    low = text.lower()
    return any(a.strip() and a.lower() in low for a in answers)


class _Builder:
    """Windows of one record, sized to the token budget left after the question."""

    def __init__(self, pieces: Pieces, rng: random.Random) -> None:
        self.pieces, self.rng = pieces, rng

    def budget(self, question: str) -> int:
        return MAX_TOKENS - 3 - min(len(self.pieces(question)[0]), MAX_QUESTION_TOKENS)

    def around(self, sents: list[str], k: int, budget: int) -> tuple[int, int]:
        """A window [a, b) holding sentence k: 1 to 7 sentences (3 most often), within
        budget tokens, k at a random place in it."""
        want = self.rng.choices((1, 2, 3, 4, 5, 7), (12, 15, 30, 15, 13, 15))[0]
        a = max(0, k - self.rng.randrange(want))
        b = min(len(sents), a + want)
        a = max(0, min(a, b - want))
        cost = [len(self.pieces(s)[0]) for s in sents]
        while b - a > 1 and sum(cost[a:b]) > budget:  # drop the end farther from k
            if k - a > b - 1 - k:
                a += 1
            else:
                b -= 1
        return a, b

    def example(self, question: str, sents: list[str], label_k: int | None,
                span: tuple[int, int] | None, kind: str) -> Example | None:
        """Encode a window; label_k is the gold sentence's index in `sents`, span its
        answer phrase in that sentence's offsets."""
        w = encode_window(self.pieces, question, sents)
        if label_k is None:
            return Example(w, 0, kind=kind)
        if label_k >= w.n_sentences:
            return None
        start = end = -1
        if span is not None:
            for t, (k, (s, e)) in enumerate(zip(w.sentence_of, w.offsets, strict=True)):
                if k != label_k:
                    continue
                if start < 0 and e > span[0]:
                    start = t
                if s < span[1]:
                    end = t
            if start < 0 or end < start:
                start = end = -1
        return Example(w, label_k + 1, start, end, kind)


def build_examples(records: Sequence[Record], pieces: Pieces, seed: int,
                   progress: bool = False, generated: float = 0.0) -> list[Example]:
    """The training windows of `records` (see the module docstring); deterministic for a
    seed."""
    from qa.training.perturb import Names, perturb

    rng = random.Random(seed)
    gen_rng = random.Random(seed + 7)  # its own stream: generated=0 gives the old windows
    b = _Builder(pieces, rng)
    by_title: dict[str, list[int]] = {}
    split: list[list[tuple[int, int]]] = []
    for i, r in enumerate(records):
        split.append(split_sentences(r.context))
        if r.title:
            by_title.setdefault(r.title, []).append(i)
    names: dict[str, Names] = {}
    words_of: dict[int, list[set[str]]] = {}  # record -> its sentences' words, made once
    out: list[Example] = []
    iterator: Iterator = iter(range(len(records)))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(records), desc="windows", unit="q",
                        mininterval=2)
    for i in iterator:
        r = records[i]
        spans = split[i]
        if not spans:
            continue
        sents = [r.context[s:e] for s, e in spans]
        budget = b.budget(r.question)
        g = gold(r, spans)
        if g is None:
            if r.answerable:
                continue
            for _ in range(2):
                a, z = b.around(sents, rng.randrange(len(sents)), budget)
                out.append(b.example(r.question, sents[a:z], None, None, "unanswerable"))
            continue
        k, s0, e0 = g
        a, z = b.around(sents, k, budget)
        span = (s0 - spans[k][0], e0 - spans[k][0])
        ex = b.example(r.question, sents[a:z], k - a, span, "positive")
        if ex is not None:
            out.append(ex)
        if generated and gen_rng.random() < generated:
            key = r.title or r.context
            if key not in names:
                names[key] = Names("\n\n".join(dict.fromkeys(
                    records[j].context for j in by_title.get(r.title, [i]))))
            made = perturb(r.question, r.context, r.context, r.answers, gen_rng, names[key])
            if made and made[2].lower() not in " ".join(sents[a:z]).lower():
                out.append(b.example(made[0], sents[a:z], None, None,
                                     f"generated-{made[1]}"))
        neg = _negative(b, records, split, by_title, i, sents, k, a, z, budget, words_of)
        if neg is not None:
            out.append(neg)
    return out


def _negative(b: _Builder, records, split, by_title, i, sents, k, a, z, budget, words_of):
    r, rng = records[i], b.rng
    roll = rng.random()
    if roll < 0.5:  # the same window without the answer sentence
        rest = sents[a:k] + sents[k + 1:z]
        if not rest and k + 1 < len(sents):
            rest = sents[k + 1:k + 2]
        if rest and not _has_answer(" ".join(rest), r.answers):
            return b.example(r.question, rest, None, None, "removed")
    if roll < 0.75:  # another window of the same context
        far = [j for j in range(len(sents)) if abs(j - k) > 3]
        if far:
            a2, z2 = b.around(sents, rng.choice(far), budget)
            if not (a2 <= k < z2) and not _has_answer(" ".join(sents[a2:z2]), r.answers):
                return b.example(r.question, sents[a2:z2], None, None, "other")
    # a context of the same title sharing the most words with the question
    q = _words(r.question)
    best, best_key = None, 0
    for j in by_title.get(r.title, ())[:200]:
        if records[j].context == r.context:
            continue
        if j not in words_of:
            words_of[j] = [_words(records[j].context[s:e]) for s, e in split[j]]
        for (s, _), w in zip(split[j], words_of[j], strict=True):
            overlap = len(q & w)
            if overlap > best_key:
                best, best_key = (j, s), overlap
    if best is not None:
        j, s = best
        other = [records[j].context[x:y] for x, y in split[j]]
        kk = next(n for n, (x, _) in enumerate(split[j]) if x == s)
        a2, z2 = b.around(other, kk, budget)
        if not _has_answer(" ".join(other[a2:z2]), r.answers):
            return b.example(r.question, other[a2:z2], None, None, "cross")
    return None


def pool_examples(rows, pieces: Pieces, split: str | None = None) -> list[Example]:
    """Examples of `qa reader windows` rows (dicts; only those of `split` if given):
    label 0 or k + 1 for sentence k, the span in that sentence's offsets."""
    b = _Builder(pieces, random.Random(0))
    out = []
    for row in rows:
        if split is not None and row.get("split", "train") != split:
            continue
        label = int(row["label"])
        span = tuple(row["span"]) if row.get("span") else None
        ex = b.example(row["question"], list(row["sentences"]),
                       label - 1 if label else None, span, row["kind"])
        if ex is not None:
            out.append(ex)
    return out


def read_pool(paths: Sequence[str | Path]) -> list[dict]:
    """The rows of `qa reader windows` files."""
    rows = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"windows file {path} does not exist")
        with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else \
                open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        row = json.loads(line)
                        if row.get("_question"):
                            continue  # a question's record (pool.json's ceiling)
                        row["question"], row["sentences"], row["label"], row["kind"]
                    except (json.JSONDecodeError, KeyError, TypeError) as exc:
                        raise ValueError(f"{path}:{n}: not a window ({exc})") from None
                    rows.append(row)
    return rows


def dev_split(records: Sequence[Record], fraction: float, seed: int
              ) -> tuple[list[Record], list[Record]]:
    """(train, dev): a record is dev when the hash of its context and seed falls below the
    fraction, so questions about one paragraph stay on one side."""
    train, dev = [], []
    for r in records:
        h = hashlib.sha1(f"{seed}\0{r.context}".encode()).digest()
        (dev if int.from_bytes(h[:4], "big") / 2**32 < fraction else train).append(r)
    return train, dev


def batches(examples: Sequence[Example], size: int, rng: random.Random) -> list[list[int]]:
    """Index batches of similar length (less padding): shuffle, sort within groups of 50
    batches by length, cut, shuffle the batches."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    group = size * 50
    out = []
    for g in range(0, len(order), group):
        part = sorted(order[g:g + group], key=lambda i: len(examples[i].window.ids))
        out.extend(part[j:j + size] for j in range(0, len(part), size))
    rng.shuffle(out)
    return out


