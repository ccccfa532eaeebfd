"""Lexical side of the index: one tokenizer for everything, and BM25 over chunks (bm25s).

Source: BM25 and its IDF, S. Robertson and H. Zaragoza, "The Probabilistic Relevance
Framework: BM25 and Beyond", Foundations and Trends in IR 3(4), 2009; scored with the
Lucene variant of the IDF, as bm25s computes it (X. H. Lù, "BM25S: Orders of magnitude
faster lexical search via eager sparse scoring", 2024; `lucene_idf` below).
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

# A compact English stop-word list: function words that carry no topic.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself yourselves
    also said says say according did does done get got made make many much one ones upon s t
    shall may might must ought whose within without per via""".split()
)
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)


@lru_cache(maxsize=1)
def _stemmer():
    try:
        import Stemmer

        return Stemmer.Stemmer("english")
    except ImportError:  # pragma: no cover - PyStemmer is a dependency
        return None


_CJK = re.compile(r"[\u3400-\u9fff]")
_STEMS: dict[str, str] = {}  # word -> stem, filled as words are met (a few MB at most)


def _stem_all(words: list[str]) -> list[str]:
    """Stems of `words`, each new word stemmed once per process (in one C call)."""
    new = [w for w in dict.fromkeys(words) if w not in _STEMS]
    if new:
        stemmer = _stemmer()
        stems = stemmer.stemWords(new) if stemmer else new
        if len(_STEMS) > 500_000:
            _STEMS.clear()
        _STEMS.update(zip(new, stems, strict=True))
    return [_STEMS[w] for w in words]


# A word hyphenated at a line end, as PDF text has it: "infor-\nmation". The reader's
# tokenizer drops the same match in its normalizer (`qa.reader.runtime.load_tokenizer`).
LINE_END_HYPHEN = r"(?<=[^\W\d_])-[ \t]*\r?\n[ \t]*(?=[^\W\d_A-Z])"
_LINE_END_HYPHEN = re.compile(LINE_END_HYPHEN)
JOINER = "\u200b"  # zero width: BERT tokenizers drop it, so the word reads whole


def reading_form(text: str) -> str:
    """`text` as the index reads it: a word hyphenated at a line end ("infor-\nmation")
    reads as one word. The hyphen and line break become zero-width characters, so the
    length, and every offset into the text, stays the same; quotes stay verbatim."""
    if "-" not in text or "\n" not in text:
        return text
    return _LINE_END_HYPHEN.sub(lambda m: JOINER * len(m.group()), text)


def tokenize(text: str, keep_stopwords: bool = False) -> list[str]:
    """Lower-cased, stemmed word tokens of `text`, stop words dropped (unless kept).

    Possessives lose their "'s"; CJK characters count as one token each; a word
    hyphenated at a line end is one word (`reading_form`).
    """
    words = []
    if "-" in text:
        text = reading_form(text).replace(JOINER, "")
    for word in _WORD.findall(text.lower()):
        if word.endswith(("'s", "’s")):
            word = word[:-2]
        if not keep_stopwords and word in STOPWORDS:
            continue
        if not word.isascii() and _CJK.search(word):
            words.extend(word)  # one token per CJK character (never stemmed)
            continue
        words.append(word)
    if not words:
        return []
    # CJK characters pass through the stemmer unchanged, so one call serves all.
    return _stem_all(words)


def _bm25s():
    import logging

    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it sets itself to DEBUG
    return bm25s


class BM25:
    """BM25 over a list of texts (bm25s, Lucene variant), saved as plain numpy/json files."""

    def __init__(self, retriever) -> None:
        self._retriever = retriever
        self.vocab: dict[str, int] = retriever.vocab_dict
        indptr = retriever.scores["indptr"]
        self._df = np.diff(indptr)
        self.n_docs = int(retriever.scores["num_docs"])

    @classmethod
    def build(cls, texts: list[str]) -> BM25:
        """Index `texts` (one document each)."""
        retriever = _bm25s().BM25()
        retriever.index([tokenize(t) for t in texts] or [[]], show_progress=False)
        return cls(retriever)

    def save(self, folder: Path) -> None:
        """Write the index files into `folder` (no pickle)."""
        self._retriever.save(str(folder), show_progress=False)

    @classmethod
    def load(cls, folder: Path) -> BM25:
        """Read an index written by `save`."""
        retriever = _bm25s().BM25.load(str(folder), show_progress=False, verbosity=0)
        return cls(retriever)

    def scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every indexed text for the query `tokens` (float32 array)."""
        known = [t for t in tokens if t in self.vocab]
        if not known:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._retriever.get_scores(known), dtype=np.float32)

    def idf(self, token: str) -> float:
        """Inverse document frequency of a token over the indexed texts (0 if unknown), as
        the BM25 scores weigh it (`lucene_idf`)."""
        tid = self.vocab.get(token)
        df = int(self._df[tid]) if tid is not None and tid < len(self._df) else 0
        if df == 0:
            return 0.0
        return lucene_idf(df, self.n_docs)


def lucene_idf(df: int, n_docs: int) -> float:
    """BM25's Lucene IDF of a token found in `df` of `n_docs` texts:
    log(1 + (n_docs - df + 0.5) / (df + 0.5)).

    The formula of bm25s's default method ("lucene"), which `BM25` scores with: bm25s
    computes it in `bm25s.scoring._score_idf_lucene`, a private function, so it is
    written out here (tests/embeddings/test_lexical.py checks the two agree).
    """
    return math.log(1 + (n_docs - df + 0.5) / (df + 0.5))
