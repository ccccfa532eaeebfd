"""The reading stage: the reader (`qa.reader`) re-reads the ranker's best candidates in
their context and decides which sentence answers and whether to abstain."""

from __future__ import annotations

from qa.settings import Settings


def load_stage(settings: Settings):
    """The reading stage the settings ask for, or None (QA_READER=off: the ranker decides)."""
    return None
