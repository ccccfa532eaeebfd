"""Files written so that a crash never leaves half of one, locks, hashes, and QA_HOME.

- `qa_home()`: the one place QA_HOME is resolved.
- `sha256_file(path)`: hex SHA-256 of a file, read in blocks.
- `synced(path, mode)`: `open` whose data is flushed and fsynced when the block ends.
- `atomic_write(path, data)`, `move_into_place(tmp, final)`, `temp_path(folder, name)`:
  a file appears under its final name complete or not at all (temp file in the same
  folder, fsync, rename).
- `fsync_dir(path)`: make renames and new entries in a folder durable.
- `locked(path, wait=...)`: an exclusive `flock` on a lock file that records the holder's
  pid; without waiting, a held lock raises `Busy` naming that pid.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from embeddings.errors import Busy


def qa_home() -> Path:
    """$QA_HOME, else $XDG_CACHE_HOME/cited-qa, else ~/.cache/cited-qa: where exported
    models, default index folders and benchmark copies live."""
    return Path(os.environ.get("QA_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cited-qa"))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of the file's bytes (OSError if it can't be read)."""
    with open(path, "rb") as f:
        if hasattr(hashlib, "file_digest"):  # Python 3.11+
            return hashlib.file_digest(f, "sha256").hexdigest()
        digest = hashlib.sha256()  # pragma: no cover - Python 3.10
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
        return digest.hexdigest()


@contextlib.contextmanager
def synced(path: Path, mode: str = "wb", **kwargs) -> Iterator[IO]:
    """`open(path, mode, **kwargs)`; when the block ends without an error the data is
    flushed and fsynced before the file is closed."""
    with open(path, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def temp_path(folder: Path, name: str) -> Path:
    """A fresh hidden temporary name for `name` in `folder`, unique per process and thread:
    `.<name>.<pid>-<thread>-<ns>.tmp`."""
    return Path(folder) / f".{name}.{os.getpid()}-{threading.get_ident()}-{time.time_ns()}.tmp"


def move_into_place(tmp: Path, final: Path) -> None:
    """fsync `tmp` and rename it to `final` (in the same folder, so atomically)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` (mode 0644, parent folders created) through a temporary file
    in the same folder, fsynced and renamed over `path`; the temporary file is removed if
    anything fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path.parent, path.name)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.fchmod(fd, 0o644)  # whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def fsync_dir(path: Path) -> None:
    """fsync a folder, so that the entries created or renamed in it survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _default_busy(path: Path) -> Callable[[str], Exception]:
    return lambda pid: Busy(f"another process (pid {pid}) holds {path}; "
                            "try again when it is done")


@contextlib.contextmanager
def locked(path: Path, *, wait: bool = True,
           busy: Callable[[str], Exception] | None = None) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created, with its folder, if missing)
    for the block; the file records the holder's pid.

    wait=True blocks until the lock is free. wait=False raises at once if another process
    (or another open of the file) holds it: `busy(pid)` (pid as the holder recorded it,
    "?" if unknown), by default a `Busy` naming the pid and the file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise (busy or _default_busy(path))(holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
