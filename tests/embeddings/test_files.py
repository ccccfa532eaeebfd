"""embeddings/files.py: QA_HOME, hashes, durable and atomic writes, the file lock."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from embeddings import files
from embeddings.errors import Busy

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


def test_qa_home_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("QA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.qa_home() == tmp_path / "home"
    monkeypatch.setenv("QA_HOME", "")  # empty counts as unset
    assert files.qa_home() == tmp_path / "xdg" / "cited-qa"
    monkeypatch.delenv("QA_HOME")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert files.qa_home() == Path(os.path.expanduser("~/.cache")) / "cited-qa"


def test_sha256_file(tmp_path):
    path = tmp_path / "f.bin"
    data = os.urandom(3 << 20)  # more than one read block
    path.write_bytes(data)
    assert files.sha256_file(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(OSError):
        files.sha256_file(tmp_path / "missing")


def test_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path):
    path = tmp_path / "deep" / "er" / "meta.json"  # parent folders are created
    files.atomic_write(path, b"first")
    old_mask = os.umask(0o077)
    try:
        files.atomic_write(path, b"second")
    finally:
        os.umask(old_mask)
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # whatever the umask
    assert [p.name for p in path.parent.iterdir()] == ["meta.json"]


def test_atomic_write_that_fails_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "meta.json"
    files.atomic_write(path, b"old")

    def boom(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["meta.json"]


def test_synced_writes_and_fsyncs(tmp_path, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    with files.synced(tmp_path / "rows.jsonl", "w", encoding="utf-8") as f:
        f.write("ünï\n")
        assert synced == []  # only once the block ends
    assert len(synced) == 1
    assert (tmp_path / "rows.jsonl").read_text(encoding="utf-8") == "ünï\n"


def test_temp_paths_are_hidden_unique_and_beside_the_file(tmp_path):
    names = {files.temp_path(tmp_path, "model.onnx") for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.parent == tmp_path
        assert name.name.startswith(".model.onnx.") and name.name.endswith(".tmp")


def test_move_into_place(tmp_path):
    tmp = files.temp_path(tmp_path, "x")
    tmp.write_bytes(b"data")
    (tmp_path / "x").write_bytes(b"older")
    files.move_into_place(tmp, tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == b"data" and not tmp.exists()
    files.fsync_dir(tmp_path)  # a folder can be fsynced


def _hold(path, ready, release):
    with files.locked(path, wait=False):
        ready.set()
        release.wait(10)


def test_a_held_lock_names_its_holder(tmp_path):
    lock = tmp_path / "sub" / ".lock"
    ctx = multiprocessing.get_context("fork")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold, args=(lock, ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(Busy, match=f"pid {holder.pid}"):
            with files.locked(lock, wait=False):
                pass
        with pytest.raises(KeyError, match=f"held by {holder.pid}"):
            with files.locked(lock, wait=False, busy=lambda pid: KeyError(f"held by {pid}")):
                pass
    finally:
        release.set()
        holder.join(10)
    with files.locked(lock, wait=False):  # free again, and it records its holder
        assert lock.read_text() == str(os.getpid())


def test_a_waiting_lock_waits_for_the_holder(tmp_path):
    lock = tmp_path / ".lock"
    order = []
    inside = threading.Event()

    def first():
        with files.locked(lock):
            inside.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    assert inside.wait(10)
    with pytest.raises(Busy):  # another open of the file holds it: no waiting asked
        with files.locked(lock, wait=False):
            pass
    with files.locked(lock):  # waits for the thread's lock
        order.append("second in")
    t.join(10)
    assert order == ["first done", "second in"]
