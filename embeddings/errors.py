"""Errors by kind, for every layer (qa re-exports them from `qa.errors`).

- `BadInput`: what the caller gave can't be used (a question, a setting, a corpus path,
  a question file): HTTP 4xx, exit status 2. Fixed by changing the input.
- `Unusable`: files the program needs (an index, a model export, a calibration, a
  reader) are missing, damaged or of another version: HTTP 5xx, exit status 1. The
  message names the command that fixes it.
- `Busy`: another process holds a lock the operation needs: HTTP 409, exit status 1.
"""

from __future__ import annotations


class BadInput(ValueError):
    """The input can't be used; the message says what is wrong with it."""


class Unusable(RuntimeError):
    """A file the program needs is missing, damaged or of another version; the message
    names the command that fixes it."""


class Busy(RuntimeError):
    """Another process holds the lock; try again when it is done."""
