"""Reader training windows as the product reads them: `qa reader windows`.

The windows of `qa.training.data` are cut from the question's own paragraph. In the product
the reader reads the windows that retrieval and the ranker put first, from any document,
with the ranker's mistakes in them. This module makes those windows for training:

1. `pack_corpora`: the training records that have titles become corpora of several
   articles (an article: a title's paragraphs in order, blank lines between; a title of
   more than `ARTICLE_PARAGRAPHS` paragraphs, such as SQuADShifts' single Reddit title,
   is cut into articles of that many), packed until a corpus holds `paragraphs`
   paragraphs, so retrieval meets distractors from other documents of the same kind.
2. `retrieved_windows`: each corpus is indexed with the product's own pipeline
   (`embeddings.indexer.build_index`, the same encoder, chunker and BM25), each question
   runs through retrieval and the ranker (`qa.answering.ranker.rank`), and the windows are those
   `qa.answering.reading.windows_for` gives for the top `reader_windows` candidates, as the answer
   path reads them. A window is labelled with the sentence that overlaps the gold answer
   where the record's paragraph put it in the file, "no answer" when no sentence of it
   holds an answer string, and left out when another sentence holds an answer string (an
   answer in another place: neither label is sure).
3. `qa.training.perturb` turns answerable questions into unanswerable ones; each is read
   with the window that held its gold sentence (the product's own window when retrieval
   found it), labelled "no answer".

Output: JSON lines (gzipped), one window a line, text only (`encode_window` makes the
model input anywhere, a GPU machine included):
`{"question", "sentences": [...], "label": 0 | k+1, "span": [start, end] | null,
"kind", "dataset", "license", "split": "train" | "dev", "corpus", "rank"}`.
A summary (`pool.json`) records the share of answerable questions whose gold sentence is
inside the windows read: the pool's ceiling, the best a reader could do on these
questions.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from qa.training.data import Record, dev_split, read_records
from qa.training.perturb import Names, mentions, perturb

log = logging.getLogger(__name__)

ARTICLE_PARAGRAPHS = 20  # a longer title is cut into articles of this many paragraphs
CORPUS_PARAGRAPHS = 400  # paragraphs a corpus holds (squad-dev: 8 articles, 580)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Corpus:
    """Files of one retrieval corpus and where each record's paragraph stands in them."""

    name: str
    files: dict[str, str] = field(default_factory=dict)  # file name -> text
    where: dict[int, tuple[str, int]] = field(default_factory=dict)  # record -> (file, offset)
    paragraphs: int = 0


def _articles(records: Sequence[Record]) -> list[tuple[str, str, list[str]]]:
    """(dataset, article title, paragraphs in order of first appearance)."""
    by: dict[tuple[str, str], list[str]] = {}
    for r in records:
        if r.title:
            paras = by.setdefault((r.dataset, r.title), [])
            if r.context not in paras:
                paras.append(r.context)
    out = []
    for (dataset, title), paras in by.items():
        if len(paras) > 10 * ARTICLE_PARAGRAPHS:
            for k in range(0, len(paras), ARTICLE_PARAGRAPHS):
                out.append((dataset, f"{title} part {k // ARTICLE_PARAGRAPHS + 1}",
                            paras[k:k + ARTICLE_PARAGRAPHS]))
        else:
            out.append((dataset, title, paras))
    return out


def pack_corpora(records: Sequence[Record], seed: int = 13,
                 paragraphs: int = CORPUS_PARAGRAPHS) -> list[Corpus]:
    """The corpora of the titled records (see the module docstring); deterministic."""
    rng = random.Random(seed)
    by_dataset: dict[str, list[tuple[str, list[str]]]] = {}
    for dataset, title, paras in _articles(records):
        by_dataset.setdefault(dataset, []).append((title, paras))
    corpora: list[Corpus] = []
    located: dict[str, tuple[Corpus, str, int]] = {}
    for dataset in sorted(by_dataset):
        articles = by_dataset[dataset]
        rng.shuffle(articles)
        current = None
        for title, paras in articles:
            if current is None or current.paragraphs >= paragraphs:
                current = Corpus(f"{_SAFE.sub('_', dataset)}-{len(corpora):03d}")
                corpora.append(current)
            name = f"{len(current.files):04d}-{_SAFE.sub('_', title)[:60].strip('_')}.txt"
            text, offset = [], 0
            for p in paras:
                if p in located:
                    continue  # a paragraph under two titles is placed once
                located[p] = (current, name, offset)
                text.append(p)
                offset += len(p) + 2
            if text:
                current.files[name] = "\n\n".join(text) + "\n"
                current.paragraphs += len(text)
    for i, r in enumerate(records):
        if r.title and r.context in located:
            c, name, offset = located[r.context]
            c.where[i] = (name, offset)
    return [c for c in corpora if c.where]


def _label(index, window: list[int], gold: tuple[str, int, int] | None,
           answers: Sequence[str]) -> tuple[int, tuple[int, int] | None] | None:
    """(label, span in the labelled sentence) of a window of index rows, or None when
    it can't be labelled surely (an answer string in a sentence that is not the gold
    one)."""
    hit = None
    for k, i in enumerate(window):
        s = index.sentences[i]
        if gold is not None and s.source == gold[0] and s.start < gold[2] and gold[1] < s.end:
            hit = (k + 1, (max(gold[1], s.start) - s.start, min(gold[2], s.end) - s.start))
            break
    if hit is not None:
        return hit
    text = " ".join(index.sentences[i].text for i in window)
    if any(a.strip() and mentions(text, a) for a in answers):
        return None
    return 0, None


def _gold_in_file(r: Record, offset: int) -> tuple[int, int] | None:
    """File offsets of the record's gold answer (its first answer string found in the
    paragraph, preferring an answer sentence the record names)."""
    from embeddings.chunking import split_sentences
    from qa.training.data import gold

    spans = split_sentences(r.context)
    g = gold(r, spans)
    if g is None:
        return None
    return offset + g[1], offset + g[2]


def retrieved_windows(corpus: Corpus, records: Sequence[Record], dev: set[int],
                      work: Path, settings, model, ranker, perturb_seed: int = 13,
                      split: tuple[int, float] = (13, 0.02)) -> Iterator[dict]:
    """The windows of every question of `corpus` as the product reads them, then the
    perturbed questions' windows (see the module docstring). Builds the corpus's index in
    `work`. `split` is the (seed, fraction) of `dev_split` that made `dev`: each row
    carries it, so that training can refuse windows split another way."""
    from embeddings.indexer import build_index
    from qa.answering.ranker import rank
    from qa.answering.reading import windows_for
    from qa.engine import Assistant
    from qa.retrieval.index import Index

    folder = work / corpus.name
    docs = folder / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for name, text in corpus.files.items():
        (docs / name).write_text(text, encoding="utf-8")
    s = settings.replace(corpus=docs, index=folder / "index")
    build_index(s.corpus, s.index_dir, s.index_config(), lambda: model,
                batch_size=s.batch_size)
    index = Index.load(s.index_dir)
    assistant = Assistant(s, model, index, None)
    rng = random.Random(f"{perturb_seed}:{corpus.name}")
    corpus_names = None
    file_names: dict[str, Names] = {}
    for i, (name, offset) in sorted(corpus.where.items()):
        r = records[i]
        base = {"dataset": r.dataset, "license": r.license,
                "split": "dev" if i in dev else "train", "corpus": corpus.name,
                "split_seed": split[0], "dev_fraction": split[1]}
        g = _gold_in_file(r, offset) if r.answerable else None
        if r.answerable and g is None:
            continue
        gold = (name, *g) if g else None
        query = assistant.query(r.question)
        passages = index.search(query, assistant.search_settings, s.top_k)
        ranking = rank(query, index, passages, ranker, s.answer_passages)
        windows = windows_for(index, ranking.candidates[:s.reader_windows])
        found = None
        out = []
        for k, w in enumerate(windows):
            lab = _label(index, w, gold, r.answers)
            if lab is None:
                continue
            label, span = lab
            if label:
                found = w
            out.append({"question": query.searched_for,
                        "sentences": [index.sentences[j].text for j in w],
                        "label": label, "span": list(span) if span else None,
                        "kind": "retrieved" if r.answerable else "retrieved-unanswerable",
                        "rank": k, **base})
        yield {"_question": True, "answerable": r.answerable, "gold_read": found is not None,
               **base}
        yield from out
        if gold is None:
            continue
        if name not in file_names:  # names to swap in: the article's, or the corpus's
            own = Names(corpus.files[name])
            if len(own.before) < 20:
                corpus_names = corpus_names or Names("\n\n".join(corpus.files.values()))
                own = corpus_names
            file_names[name] = own
        made = perturb(r.question, r.context, corpus.files[name], r.answers, rng,
                       file_names[name])
        if made is None:
            continue
        question, how, inserted = made
        if found is None:  # the gold sentence with its neighbours, as a candidate's window
            row = next((j for j, x in enumerate(index.sentences) if x.source == name
                        and x.start < gold[2] and gold[1] < x.end), None)
            if row is None:
                continue
            found = [j for j in (row - 1, row, row + 1) if 0 <= j < len(index.sentences)
                     and index.sentences[j].source == name]
        texts = [index.sentences[j].text for j in found]
        if inserted and inserted.lower() in " ".join(texts).lower():
            continue
        yield {"question": question, "sentences": texts, "label": 0, "span": None,
               "kind": f"generated-{how}", "rank": 0, "original": r.question, **base}


def build_pool(data: Sequence[str], out: Path, *, seed: int = 13,
               dev_fraction: float = 0.02, paragraphs: int = CORPUS_PARAGRAPHS,
               limit_corpora: int | None = None, settings=None, progress: bool = True
               ) -> dict:
    """Write the windows of each corpus to `out/<corpus>.jsonl.gz` (a corpus already
    written is kept: a stopped run goes on where it was) and a summary `out/pool.json`;
    returns the summary. The dev split is `qa.training.data.dev_split`'s, so a record's
    windows sit on the side `qa reader train` puts it."""
    from qa.answering import calibration
    from qa.engine import load_encoder_for
    from qa.settings import Settings

    began = time.time()
    records = read_records(data)
    _, dev_recs = dev_split(records, dev_fraction, seed)
    dev_ctx = {r.context for r in dev_recs}
    dev = {i for i, r in enumerate(records) if r.context in dev_ctx}
    corpora = pack_corpora(records, seed, paragraphs)
    # round robin over the datasets, SQuAD's kind first, so that a run stopped early (or
    # --corpora N) has some of every kind
    by: dict[str, list[Corpus]] = {}
    for c in corpora:
        by.setdefault(c.name.rsplit("-", 1)[0], []).append(c)
    order = sorted(by, key=lambda d: (not d.startswith("squad"), d))
    corpora = [by[d][k] for k in range(len(corpora)) for d in order if k < len(by[d])]
    corpora = corpora[:limit_corpora]
    settings = settings or Settings.load()
    model = load_encoder_for(settings)
    ranker = calibration.load()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / "corpora"
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(c.where) for c in corpora), desc="questions", unit="q",
                   mininterval=5)
    for c in corpora:
        target = out / f"{c.name}.jsonl.gz"
        if target.is_file():
            if bar is not None:
                bar.update(len(c.where))
            continue
        tmp = target.with_suffix(".tmp")
        with gzip.open(tmp, "wt", encoding="utf-8") as f:
            for row in retrieved_windows(c, records, dev, work, settings, model, ranker,
                                         seed, (seed, dev_fraction)):
                if row.get("_question") and bar is not None:
                    bar.update(1)
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(target)
    if bar is not None:
        bar.close()
    summary = summarize(sorted(out.glob("*.jsonl.gz")))
    summary.update({"data": [str(d) for d in data], "seed": seed,
                    "paragraphs_per_corpus": paragraphs,
                    "seconds_this_run": round(time.time() - began),
                    "reader_windows": settings.reader_windows})
    (out / "pool.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    return summary


def summarize(files: Sequence[Path]) -> dict:
    """Questions, the pool's ceiling (answerable questions whose gold sentence is in the
    windows read) and windows by split and kind, of written corpus files."""
    kinds: Counter = Counter()
    asked: Counter = Counter()
    read_gold: Counter = Counter()
    for path in files:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                if row.get("_question"):
                    if row["answerable"]:
                        asked[row["split"]] += 1
                        read_gold[row["split"]] += int(row["gold_read"])
                    continue
                lab = "answer" if row["label"] else "no-answer"
                kinds[f"{row['split']}/{row['kind']}/{lab}"] += 1
    return {"corpora": len(files), "questions": dict(asked),
            "ceiling": {k: round(read_gold[k] / max(asked[k], 1), 4) for k in asked},
            "windows": dict(sorted(kinds.items()))}
