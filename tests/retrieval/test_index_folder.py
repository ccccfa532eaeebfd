"""Any index folder through the plain commands (qa.retrieval.folder, issue 26): a sharded index
(as `qa index --ray` writes it; here `qa.retrieval.sharded.layout.reshard` of the seeds index) is
answered by plain `qa ask` / `Assistant.load` exactly as the single-machine build, with 1
shard and with 3; `qa index --status` says what a folder is; and an index of another
layout or version gets a message saying exactly that and what to run, "damaged" only
when a file truly is (one test per case)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from embeddings import store
from qa.cli import main
from qa.engine import Assistant
from qa.retrieval.folder import describe, open_index
from qa.retrieval.sharded import layout
from support import ROOT

QUESTIONS = [json.loads(line)["question"] for line in
             (ROOT / "benchmarks/questions/seeds.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def sharded_folders(seeds_assistant, tmp_path_factory) -> dict[int, Path]:
    out = {}
    for n in (1, 3):
        folder = tmp_path_factory.mktemp(f"seeds-{n}-shards")
        layout.reshard(seeds_assistant.index.data, folder, n)
        out[n] = folder
    return out


def _answer(assistant, question) -> dict:
    d = assistant.ask(question).to_dict()
    d.pop("timings_ms")
    return d


def _copy(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "index"
    shutil.copytree(folder, target, symlinks=True)
    return target


def _edit_manifest(gen: Path, **changes) -> None:
    path = gen / "manifest.json"
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    path.write_text(json.dumps(manifest))


def test_plain_ask_answers_from_1_and_3_shards_as_from_the_plain_build(seeds_assistant,
                                                                      sharded_folders):
    """Every seeds question: the same answer object (passages, confidences, citations)
    from the plain build and from 1-shard and 3-shard builds read by plain Assistant.load
    (what qa ask, qa eval and qa serve call), the corpus unchanged so nothing is built."""
    from qa.retrieval.sharded.view import ShardedIndex

    views = {}
    for n, folder in sharded_folders.items():
        views[n] = Assistant.load(settings=seeds_assistant.settings.replace(index=folder))
        assert isinstance(views[n].index, ShardedIndex) and len(views[n].index.clients) == n
    for question in QUESTIONS:
        expected = _answer(seeds_assistant, question)
        for n, view in views.items():
            assert _answer(view, question) == expected, (n, question)


def test_qa_ask_on_a_sharded_index_answers_as_the_plain_one(seeds_assistant,
                                                          sharded_folders):
    """The issue's report, end to end: `qa ask --index SHARDED` in a fresh process."""
    question = "Who declined to meet Lloyd Austin?"
    corpus = str(seeds_assistant.settings.corpus)

    def ask(index):
        run = subprocess.run(
            [sys.executable, "-m", "qa.cli", "ask", "--json", "--corpus", corpus, "--index",
             str(index), question], capture_output=True, text=True, cwd=ROOT, timeout=300,
            env=os.environ)
        assert run.returncode == 0, run.stderr
        assert "damaged" not in run.stderr
        out = json.loads(run.stdout)
        out.pop("timings_ms")
        return out

    assert ask(sharded_folders[3]) == ask(seeds_assistant.settings.index_dir)


def test_status_says_what_an_index_is(seeds_assistant, sharded_folders, capsys):
    plain = describe(seeds_assistant.settings.index_dir)
    assert plain["layout"] == "plain" and plain["problem"] is None
    assert plain["chunks"] == len(seeds_assistant.index.chunks)
    assert plain["built_by"] == store.program_version() and plain["built_at"]
    sharded = describe(sharded_folders[3])
    assert sharded["layout"] == "sharded" and sharded["problem"] is None
    assert [s["chunks"] for s in sharded["shards"]] and sum(
        s["chunks"] for s in sharded["shards"]) == plain["chunks"]
    assert (sharded["documents"], sharded["model"]) == (plain["documents"], plain["model"])
    assert main(["index", "--status", str(sharded_folders[3])]) == 0
    text = capsys.readouterr().out
    assert "sharded: 3 shards" in text and "shard-002" in text and "usable" in text
    assert main(["index", "--status", str(sharded_folders[3]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layout"] == "sharded"


def test_status_and_load_of_no_index(tmp_path, capsys):
    assert main(["index", "--status", str(tmp_path / "nothing")]) == 1
    assert "no index at" in capsys.readouterr().err
    with pytest.raises(store.IndexUnusable, match="no index at"):
        open_index(tmp_path / "nothing")


def test_the_plain_loader_names_a_sharded_index_not_damage(sharded_folders):
    with pytest.raises(store.IndexSharded, match="is sharded") as err:
        store.load_index(sharded_folders[3])
    assert "damaged" not in str(err.value)


@pytest.mark.parametrize("version, says", [
    (2, "format version 2, written by cited-qa .*upgrade cited-qa to read it, or rebuild "
        "it with: qa index --rebuild"),
    (0, "format version 0 \\(an older cited-qa .*\\); this program reads version 1: rebuild "
        "it with: qa index --rebuild"),
    (None, "without a format version: it was not written by cited-qa"),
])
def test_a_plain_index_of_another_version(seeds_assistant, tmp_path, capsys, version, says):
    folder = _copy(seeds_assistant.settings.index_dir, tmp_path)
    _edit_manifest(store.current_generation(folder), format_version=version)
    with pytest.raises(store.IndexUnusable, match=says) as err:
        open_index(folder)
    assert "damaged" not in str(err.value)
    assert main(["index", "--status", str(folder)]) == 1
    captured = capsys.readouterr()
    assert "NOT USABLE" in captured.out and "damaged" not in captured.err


@pytest.mark.parametrize("change, says", [
    ({"format_version": 2}, "format version 2, .*upgrade cited-qa.*qa index --ray --rebuild"),
    ({"layout": {"kind": "sharded", "version": 2}},
     "sharded in layout version 2, .*reads sharded layout 1: upgrade cited-qa"),
])
def test_a_sharded_index_of_another_version(sharded_folders, tmp_path, capsys, change, says):
    folder = _copy(sharded_folders[3], tmp_path)
    _edit_manifest(store.current_generation(folder), **change)
    with pytest.raises(store.IndexUnusable, match=says) as err:
        open_index(folder)
    assert "damaged" not in str(err.value)
    assert main(["index", "--status", str(folder)]) == 1
    assert "damaged" not in capsys.readouterr().err


def test_a_truly_broken_plain_index_is_damaged(seeds_assistant, tmp_path, capsys):
    folder = _copy(seeds_assistant.settings.index_dir, tmp_path)
    gen = store.current_generation(folder)
    (gen / "chunks.jsonl").write_text('{"source": "x.txt", "start"\n')
    with pytest.raises(store.IndexUnusable, match="is damaged .*qa index --rebuild"):
        open_index(folder)
    (gen / "vectors.faiss").unlink()
    assert main(["index", "--status", str(folder)]) == 1
    assert "damaged: gen-" in capsys.readouterr().err and "vectors.faiss" in str(
        describe(folder)["problem"])


@pytest.mark.parametrize("breakage", ["shard file", "lexicon", "top manifest"])
def test_a_truly_broken_sharded_index_is_damaged(sharded_folders, tmp_path, breakage):
    folder = _copy(sharded_folders[3], tmp_path)
    gen = store.current_generation(folder)
    if breakage == "shard file":
        (store.current_generation(gen / "shard-001") / "sentence_vectors.npy").unlink()
        says = "sharded and a shard is damaged .*qa index --ray --rebuild"
    elif breakage == "lexicon":
        (gen / "lexicon.json").unlink()
        says = "damaged .*qa index --ray --rebuild"
    else:
        (gen / "manifest.json").write_text("{not json")
        says = "no index|damaged"
    with pytest.raises(store.IndexUnusable, match=says):
        open_index(folder)
    assert describe(folder)["problem"] and "damaged" in describe(folder)["problem"]


def test_plain_qa_index_on_a_sharded_index_says_which_command(seeds_assistant,
                                                             sharded_folders, tmp_path,
                                                             capsys):
    folder = _copy(sharded_folders[3], tmp_path)
    before = store.current_generation(folder)
    corpus = str(seeds_assistant.settings.corpus)
    (tmp_path / "corpus").mkdir()
    assert main(["index", "--corpus", corpus, "--index", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is sharded" in err and "qa index --ray --corpus" in err
    assert "qa index --rebuild --corpus" in err and "damaged" not in err
    assert store.current_generation(folder) == before  # left as it was


def test_a_stale_sharded_index_answers_as_built_with_a_warning(seeds_assistant,
                                                               sharded_folders, tmp_path,
                                                               caplog):
    """Plain commands don't rebuild a sharded index (the cluster does): a file added to
    the corpus gives a warning naming qa index --ray, and the index is left sharded."""
    corpus = tmp_path / "corpus"
    shutil.copytree(seeds_assistant.settings.corpus, corpus)
    (corpus / "zz_new.txt").write_text("Harbour news\n\nThe ferry now leaves at seven.\n")
    folder = _copy(sharded_folders[3], tmp_path)
    before = store.current_generation(folder)
    with caplog.at_level("WARNING"):
        stale = Assistant.load(settings=seeds_assistant.settings.replace(
            corpus=corpus, index=folder))
    assert "does not reflect the corpus" in caplog.text and "qa index --ray" in caplog.text
    assert store.current_generation(folder) == before
    question = QUESTIONS[0]
    assert _answer(stale, question) == _answer(seeds_assistant, question)
    # /api/reload on it re-opens the live generation and builds nothing
    assert stale.reload() is None and store.current_generation(folder) == before


def test_a_sharded_index_of_other_settings_names_the_cluster_rebuild(seeds_assistant,
                                                                    sharded_folders,
                                                                    tmp_path):
    folder = _copy(sharded_folders[1], tmp_path)
    settings = seeds_assistant.settings.replace(index=folder, chunk_tokens=96)
    with pytest.raises(store.IndexUnusable, match="sharded and was built with other "
                                                  "settings .*qa index --ray --rebuild"):
        Assistant.load(settings=settings)
