"""What an encoder is given: texts checked and put in the index's reading form, each
distinct one once, and the progress bar of an encoding."""

from __future__ import annotations

from collections.abc import Sequence

from embeddings.lexical import reading_form


def distinct_texts(texts: Sequence[str]) -> list[str]:
    """The texts `Encoder.encode_spans` runs through the model for `texts`: each distinct
    one once (in its reading form), in first-seen order."""
    return list(dict.fromkeys(check_texts(texts)))


def check_texts(texts: Sequence[str]) -> list[str]:
    """The texts as a list, in the index's reading form (a word hyphenated at a line
    end reads whole)."""
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"texts must be strings, got {type(t).__name__}")
    return [reading_form(t) for t in texts]


def progress_bar(total: int, progress: bool):
    if not progress or not total:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc="embedding", unit="text")
