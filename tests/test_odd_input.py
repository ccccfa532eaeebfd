"""Odd corpora: offsets stay exact whatever the files look like (real model, real index)."""

from __future__ import annotations

import os

import pytest

from embeddings.chunking import split_sentences
from support import write_corpus

ODD = {
    "crlf.txt": "Harbour report\r\n\r\nThe ferry to Kinmen resumed service on Friday.\r\n"
                "Officials said demand was high.\r\n",
    "bom.txt": "\ufeffThe observatory on Mauna Kea recorded a new comet last week.",
    "zero width.txt": "The river\u200b festival in Luang\u200d Prabang drew 9,000 visitors.",
    "rtl.txt": "The envoy quoted the phrase \u202bשלום עליכם\u202c in Jerusalem on Sunday. "
               "Talks continued into the night.",
    "中文/报告.txt": "習近平在北京會見了布林肯。雙方討論了台灣問題。"
                  "The meeting lasted three hours.",
    "a/same.txt": "The orchard in Kent lost its cherry crop to frost.",
    "b/same.txt": "The vineyard in Mendoza had an excellent malbec harvest.",
    "deep/er/and/deeper/note.md": "# Note\n\nThe lighthouse at Hook Head is 800 years old.",
    "ünïcödé – name.txt": "Café Dürer in Nürnberg served 1,200 pretzels at the fair.",
}


@pytest.fixture(scope="module")
def odd_assistant(tmp_path_factory, model):
    from qa.engine import Assistant
    from qa.settings import Settings

    root = tmp_path_factory.mktemp("odd")
    corpus = write_corpus(root / "corpus", ODD)
    os.symlink("loop2.txt", corpus / "a" / "loop1.txt")  # a link loop: skipped with a warning
    os.symlink("loop1.txt", corpus / "a" / "loop2.txt")
    os.symlink(corpus / "a", corpus / "a" / "again")  # a link to a folder: not followed
    settings = Settings.load(env={}, corpus=corpus, index=root / "index")
    return Assistant.load(settings=settings), corpus


def _raw_text(corpus, source):
    data = (corpus / source).read_bytes()
    return data.decode("utf-8")


QUESTIONS = [
    ("When did the ferry to Kinmen resume service?", "crlf.txt", "Friday"),
    ("What did the Mauna Kea observatory record?", "bom.txt", "comet"),
    ("How many visitors did the river festival draw?", "zero width.txt", "9,000"),
    ("How long did the meeting with Blinken last?", "中文/报告.txt", "three hours"),
    ("What happened to the cherry crop in Kent?", "a/same.txt", "frost"),
    ("How was the malbec harvest in Mendoza?", "b/same.txt", "excellent"),
    ("How old is the lighthouse at Hook Head?", "deep/er/and/deeper/note.md", "800 years"),
    ("How many pretzels did Café Dürer serve?", "ünïcödé – name.txt", "1,200"),
]


@pytest.mark.parametrize("question,source,expected", QUESTIONS)
def test_offsets_exact_in_odd_files(odd_assistant, question, source, expected):
    assistant, corpus = odd_assistant
    answer = assistant.ask(question, abstain=False)
    assert answer.citations[0].source == source, answer
    assert expected in answer.answer
    for c in answer.citations:
        assert _raw_text(corpus, c.source)[c.start:c.end] == c.quote
    for p in answer.passages:
        assert _raw_text(corpus, p.source)[p.start:p.end] == p.text


def test_every_stored_offset_is_exact(odd_assistant):
    assistant, corpus = odd_assistant
    data = assistant.index.data
    assert {d.source for d in data.documents} == set(ODD)
    for s in data.sentences:
        assert _raw_text(corpus, s.source)[s.start:s.end] == s.text
        assert not s.text[0].isspace() and s.text[0] != "\ufeff"
    for c in data.chunks:
        assert _raw_text(corpus, c.source)[c.start:c.end] == c.text


def test_cjk_sentences_split_at_full_stops():
    text = "習近平在北京會見了布林肯。雙方討論了台灣問題。The meeting lasted three hours."
    assert [text[s:e] for s, e in split_sentences(text)] == [
        "習近平在北京會見了布林肯。", "雙方討論了台灣問題。", "The meeting lasted three hours."]


def test_non_utf8_file_name_is_skipped(tmp_path):
    from embeddings.documents import list_files

    corpus = write_corpus(tmp_path / "c", {"ok.txt": "Fine."})
    with open(os.path.join(bytes(corpus), b"bad\xff.txt"), "wb") as f:
        f.write(b"Bad name.")
    assert [s for _, s in list_files(corpus)] == ["ok.txt"]
