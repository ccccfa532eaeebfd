"""Cited extractive question answering over a folder of articles.

    from qa import Assistant
    answer = Assistant.load(corpus="seeds").ask("Does the US support Taiwan independence?")

Names are imported on first use, so `import qa` (and `qa --help`) stays fast.
"""

from __future__ import annotations

__all__ = ["Answer", "Assistant", "Citation", "Passage", "QuestionError", "Settings"]

_WHERE = {
    "Answer": "qa.answering.answer",
    "Citation": "qa.answering.answer",
    "Assistant": "qa.engine",
    "QuestionError": "qa.errors",
    "Passage": "qa.retrieval.retrieve",
    "Settings": "qa.settings",
}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'qa' has no attribute {name!r}")
