"""Errors by kind (see `embeddings.errors`): `BadInput` -> HTTP 4xx / exit 2, `Unusable`
-> HTTP 5xx / exit 1 naming the fix, `Busy` -> HTTP 409 / exit 1."""

from __future__ import annotations

from embeddings.errors import BadInput, Busy, Unusable

__all__ = ["BadInput", "Busy", "Unusable", "QuestionError", "SettingError"]


class QuestionError(BadInput):
    """The question can't be asked (empty, too long, not text)."""


class SettingError(BadInput):
    """A setting (flag, QA_* variable, API argument) is out of range or of the wrong type."""
