"""SQuAD-format question sets (SQuAD 1.1 and 2.0 JSON as published, and the many sets
published in that shape) for `qa eval`.

Such a file carries its own articles: `read` returns them with the questions, and
`write_corpus` writes them as a corpus, one text file per article (its title as the file
name, its paragraphs in order, a blank line between them: the shape of
../shared/bench/squad-dev/corpus), into a folder of the file's own under
`$QA_HOME/squad/`, so its index is its own too. Each question cites its article's file;
its gold answers are the annotators' answer texts (judged by containment for accuracy, by
`qa.evaluation.squad` for exact match and F1); a 2.0 question marked `is_impossible` is
unanswerable.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path

from embeddings.files import atomic_write, qa_home
from qa.evaluation.run import Question

_UNSAFE = re.compile(r"[\x00-\x1f/\\:*?\"<>|]+")


@dataclass(frozen=True)
class Article:
    source: str  # the file name it is written under
    title: str
    paragraphs: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n\n".join(self.paragraphs) + "\n"


@dataclass(frozen=True)
class SquadSet:
    path: Path
    version: str
    articles: tuple[Article, ...]
    questions: tuple[Question, ...]

    def describe(self) -> str:
        unanswerable = sum(1 for q in self.questions if not q.answerable)
        return (f"{self.path.name}: SQuAD {self.version or '(no version)'}, "
                f"{len(self.articles)} articles, {len(self.questions)} questions "
                f"({unanswerable} unanswerable)")


def file_name(title: str, taken: set[str]) -> str:
    """A file name for an article: its title with characters a path can't hold replaced,
    numbered when another article took it."""
    base = _UNSAFE.sub("_", " ".join(title.split())).strip(" .") or "article"
    name, n = f"{base}.txt", 2
    while name.casefold() in taken:
        name, n = f"{base}-{n}.txt", n + 1
    taken.add(name.casefold())
    return name


def _text(value, where: str, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where}: {what} must be a non-empty string")
    return value


def _list(value, where: str) -> list:
    if not isinstance(value, list):
        raise ValueError(f"{where}: expected a list")
    return value


def read(path: Path) -> SquadSet | None:
    """The SQuAD set in `path` (a JSON object with a "data" list of articles), or None
    when the file is JSON lines (`qa.evaluation.run.load_questions` reads it). Raises ValueError
    naming the file and the place of the first problem."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read question set {path}: {exc}") from None
    except json.JSONDecodeError:
        return None  # JSON lines (or broken JSON, which load_questions reports by line)
    if isinstance(data, dict) and "question" in data:
        return None  # JSON lines of one question
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError(f"{path}: a JSON document, but not a SQuAD set (an object with a "
                         "\"data\" list of articles) nor JSON lines of questions")
    version = str(data.get("version", ""))
    articles: list[Article] = []
    questions: list[Question] = []
    taken: set[str] = set()
    seen: set[str] = set()
    for a, article in enumerate(data["data"]):
        where = f"{path}: data[{a}]"
        if not isinstance(article, dict):
            raise ValueError(f"{where}: expected an object")
        title = str(article.get("title") or f"article {a + 1}")
        source = file_name(title, taken)
        paragraphs = []
        for p, paragraph in enumerate(_list(article.get("paragraphs"), f"{where}.paragraphs")):
            here = f"{where}.paragraphs[{p}]"
            if not isinstance(paragraph, dict):
                raise ValueError(f"{here}: expected an object")
            paragraphs.append(" ".join(_text(paragraph.get("context"), here,
                                             "context").split()))
            for i, qa in enumerate(_list(paragraph.get("qas", []), f"{here}.qas")):
                questions.append(_question(qa, f"{here}.qas[{i}]", source, seen))
        if paragraphs:
            articles.append(Article(source, title, tuple(paragraphs)))
    if not questions:
        raise ValueError(f"{path}: no questions")
    return SquadSet(path, version, tuple(articles), tuple(questions))


def _question(qa, where: str, source: str, seen: set[str]) -> Question:
    if not isinstance(qa, dict):
        raise ValueError(f"{where}: expected an object")
    qid = qa.get("id")
    if not isinstance(qid, (str, int)) or isinstance(qid, bool) or str(qid) in seen:
        raise ValueError(f"{where}: id must be a string, once in the file (got {qid!r})")
    seen.add(str(qid))
    text = _text(qa.get("question"), where, "question")
    answers = []
    for j, answer in enumerate(_list(qa.get("answers", []), f"{where}.answers")):
        if not isinstance(answer, dict) or not isinstance(answer.get("text"), str):
            raise ValueError(f"{where}.answers[{j}]: expected an object with a text")
        answers.append(answer["text"].strip())
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):
        raise ValueError(f"{where}: is_impossible must be true or false")
    answers = list(dict.fromkeys(a for a in answers if a))
    if impossible:
        return Question(str(qid), text, (), (), False)
    if not answers:
        raise ValueError(f"{where}: an answerable question needs at least one answer")
    return Question(str(qid), text, tuple(answers), (source,), True)


def corpus_dir(squad_set: SquadSet) -> Path:
    """The set's own corpus folder: `$QA_HOME/squad/<file name>-<8 hex of its articles>`."""
    digest = hashlib.sha256()
    for article in squad_set.articles:
        digest.update(f"{article.source}\0{article.text}\0".encode())
    return qa_home() / "squad" / f"{squad_set.path.stem}-{digest.hexdigest()[:8]}"


def write_corpus(squad_set: SquadSet, folder: Path | None = None) -> Path:
    """Write the articles into `folder` (default `corpus_dir`), each file only when it is
    missing or differs; return the folder."""
    folder = Path(folder) if folder is not None else corpus_dir(squad_set)
    folder.mkdir(parents=True, exist_ok=True)
    for article in squad_set.articles:
        path = folder / article.source
        data = article.text.encode("utf-8")
        if not path.is_file() or path.read_bytes() != data:
            atomic_write(path, data)
    return folder


def against(questions: tuple[Question, ...], corpus: Path) -> list[Question]:
    """The questions asked of another corpus (--corpus): each keeps as its source only an
    article file that corpus holds too, else it names none (any file may be cited)."""
    corpus = Path(corpus)
    return [replace(q, sources=tuple(s for s in q.sources if (corpus / s).is_file()))
            for q in questions]
