"""qa/cli.py: the console script, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from support import write_corpus


def qa(*args, env=None, timeout=180):
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "qa.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def test_help_lists_every_subcommand():
    out = qa("--help")
    assert out.returncode == 0
    for cmd in ("index", "ask", "serve", "eval"):
        assert cmd in out.stdout
    assert "--corpus" in qa("ask", "--help").stdout


def test_bad_questions_exit_2_with_one_line(tmp_path):
    for question in ("", "   ", "x" * 5000):
        out = qa("ask", question, "--index", str(tmp_path / "i"))
        assert out.returncode == 2
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("qa ask: error: question")


def test_missing_and_empty_corpus(tmp_path):
    out = qa("ask", "Who?", "--corpus", str(tmp_path / "nope"))
    assert out.returncode == 2 and "does not exist" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    out = qa("index", "--corpus", str(tmp_path / "nope"), "--quiet")  # no "indexing" line
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        next(line for line in out.stderr.splitlines() if "does not exist" in line)]
    (tmp_path / "empty").mkdir()
    index = tmp_path / "empty-index"
    out = qa("index", "--corpus", str(tmp_path / "empty"), "--index", str(index), "--quiet")
    assert out.returncode == 2 and "no readable documents" in out.stderr
    assert not index.exists()  # no folder holding only a lock file is left behind


def test_a_damaged_index_exits_1_naming_the_fix(tmp_path):
    corpus = write_corpus(tmp_path / "c", {"a.txt": "The ferry to Hydra leaves at nine."})
    index = tmp_path / "index"
    assert qa("index", "--corpus", str(corpus), "--index", str(index), "--quiet").returncode == 0
    (index / "current" / "sentence_vectors.npy").write_bytes(b"not numpy")
    out = qa("ask", "When does the ferry leave?", "--corpus", str(corpus), "--index",
             str(index))
    assert out.returncode == 1 and "qa index --rebuild" in out.stderr


def test_ask_builds_the_index_then_answers_as_json(tmp_path):
    corpus = write_corpus(tmp_path / "c", {
        "port.txt": "The port of Rotterdam handled 440 million tonnes of cargo in 2023.",
        "bad.txt": b"\xff\xfe\x00\x00binary\x00junk" * 50,
    })
    index = tmp_path / "index"
    out = qa("ask", "How much cargo did Rotterdam handle?", "--json", "--corpus", str(corpus),
             "--index", str(index))
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["answerable"] and "440 million tonnes" in answer["answer"]
    c = answer["citations"][0]
    text = (corpus / "port.txt").read_text(encoding="utf-8")
    assert c["source"] == "port.txt" and text[c["start"]:c["end"]] == c["quote"]
    assert "bad.txt: skipped" in out.stderr
    assert (index / "current" / "manifest.json").exists()
    out = qa("index", "--corpus", str(corpus), "--index", str(index), "--quiet")
    assert out.returncode == 0 and "up to date" in out.stdout


def test_another_corpus_never_writes_into_the_qa_index_of_the_usual_one(tmp_path):
    usual = write_corpus(tmp_path / "usual", {"a.txt": "The ferry to Hydra leaves at nine."})
    other = write_corpus(tmp_path / "other", {"b.txt": "The tram to Sintra leaves at ten."})
    env = {"QA_CORPUS": str(usual), "QA_INDEX": str(tmp_path / "usual-index"),
           "QA_HOME": str(tmp_path / "home")}
    assert qa("index", "--quiet", env=env).returncode == 0
    out = qa("index", "--corpus", str(other), "--quiet", env=env)
    assert out.returncode == 0, out.stderr
    assert "usual-index" not in out.stderr and str(tmp_path / "home") in out.stderr
    manifest = json.loads((tmp_path / "usual-index" / "current" / "manifest.json").read_text())
    assert list(manifest["files"]) == ["a.txt"]  # untouched


def test_reader_train_resume_needs_the_windows_seen(tmp_path, capsys):
    from qa.cli import main

    data = tmp_path / "d.jsonl"
    data.write_text("{}\n", encoding="utf-8")
    code = main(["reader", "train", "--data", str(data), "--out", str(tmp_path / "o"),
                 "--resume", str(tmp_path / "ck.pt")])
    assert code == 2
    assert "--resume-at N with a weights-only checkpoint" in capsys.readouterr().err
