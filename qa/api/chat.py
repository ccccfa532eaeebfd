"""A chat request read as a question, and the reply written as a chat message: plain
functions under the OpenAI-compatible API (qa/api/openai_routes.py).

- `conversation_of`: the last user message is the question; the user and assistant
  messages before it are the conversation (`qa.retrieval.conversation` completes a follow-up from
  them); system and developer messages are read past.
- `task_of` / `task_reply`: chat front-ends ask the model for housekeeping too: Open
  WebUI sends "### Task: Generate a concise, 3-5 word title ..." with the conversation in
  `<chat_history>`, and likewise for tags, follow-up suggestions, search queries and
  autocompletion. Those are answered with the JSON they ask for, made from the
  conversation's own words, without searching the documents.
- `reply_text`: the quoted answer with numbered references (file, page or heading, quote),
  or the plain statement that the documents don't answer, with the closest material.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from qa.answering.answer import Answer, flowed
from qa.retrieval.conversation import names_in

TEXT_PARTS = ("text", "input_text")  # content parts whose text is read (chat, responses)


def text_of(content) -> str:
    """A message's text: the string, or its text parts joined by line breaks (parts are
    objects with `type` and `text`, or dicts)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else getattr(part, "type", None)
        text = part.get("text") if isinstance(part, dict) else getattr(part, "text", None)
        if kind in TEXT_PARTS and isinstance(text, str):
            texts.append(text)
    return "\n".join(texts)


@dataclass(frozen=True)
class Conversation:
    """What a chat request asks: the last user message, and the turns before it
    ({"question", "answer"}, oldest first, as /api/answer takes `history`)."""

    question: str
    history: tuple[dict, ...] = ()


def conversation_of(messages: Iterable[tuple[str, str]]) -> Conversation:
    """The Conversation of (role, text) messages, oldest first. Messages after the last
    user message (an assistant's prefill) are read past."""
    turns: list[dict] = []
    for role, text in messages:
        if role == "user":
            turns.append({"question": text, "answer": ""})
        elif role == "assistant" and turns and not turns[-1]["answer"]:
            turns[-1]["answer"] = text
    if not turns:
        return Conversation("")
    return Conversation(turns[-1]["question"], tuple(turns[:-1]))


# --- front-end housekeeping tasks -----------------------------------------------------

_TASK = re.compile(r"^\s*#{2,3}\s*Task\s*:", re.IGNORECASE)
_FIRST_KEY = re.compile(r"\{\s*\"(\w+)\"\s*:")
_HISTORY = re.compile(r"<chat_history>(.*?)</chat_history>", re.DOTALL)
_TURN = re.compile(r"^(USER|ASSISTANT)\s*:\s*", re.MULTILINE)
TASKS = ("title", "tags", "follow_ups", "queries", "text", "prompt")
TITLE_WORDS = 6
MAX_TAGS = 3


def task_of(text: str) -> str | None:
    """The housekeeping task a user message asks for, by the first JSON key of the output
    it wants ("title", "tags", "follow_ups", "queries", "text"...), "" for a task whose
    output names no key; None for a message that is not such a task (a question)."""
    if not _TASK.match(text):
        return None
    output = text.rfind("### Output")
    found = _FIRST_KEY.search(text, output if output >= 0 else 0) or _FIRST_KEY.search(text)
    return found.group(1) if found else ""


def history_questions(text: str) -> list[str]:
    """The USER lines of a task prompt's <chat_history>, oldest first."""
    found = _HISTORY.search(text)
    block = found.group(1) if found else ""
    parts = _TURN.split(block)
    # [before, role, text, role, text, ...]
    return [" ".join(parts[i + 1].split()) for i in range(1, len(parts) - 1, 2)
            if parts[i] == "USER" and parts[i + 1].strip()]


def title_of(questions: Sequence[str]) -> str:
    """A short title: the first question's first words, without its question mark."""
    if not questions:
        return "Questions about the documents"
    words = questions[0].rstrip("?!.… ").split()
    title = " ".join(words[:TITLE_WORDS])
    return title + ("…" if len(words) > TITLE_WORDS else "")


def tags_of(questions: Sequence[str]) -> list[str]:
    """Up to three tags: the names the questions mention, else ["General"]."""
    names = list(dict.fromkeys(n for q in questions for n in names_in(q)))
    return names[:MAX_TAGS] or ["General"]


def task_reply(task: str, text: str) -> str:
    """The JSON a housekeeping task asks for, from the conversation in its prompt alone."""
    questions = history_questions(text)
    if task == "title":
        out: dict = {"title": title_of(questions)}
    elif task == "tags":
        out = {"tags": tags_of(questions)}
    elif task == "queries":
        out = {"queries": questions[-1:]}
    elif task in ("follow_ups", "text", "prompt"):
        out = {task: [] if task == "follow_ups" else ""}
    elif task:
        out = {task: ""}
    else:
        out = {}
    return json.dumps(out, ensure_ascii=False)


# --- the reply ------------------------------------------------------------------------


def unaskable(problem: Exception) -> str:
    """The reply to a message that can't be asked (`problem`: the QuestionError saying
    why, e.g. "question is empty"): a chat front-end shows replies, not errors."""
    return f"This message can't be asked as a question: {problem}. Ask a question about " \
           "the documents."

SNIPPET_CHARS = 200
RELATED = 3


def _one_line(text: str, limit: int | None = None) -> str:
    text = " ".join(flowed(text).split())
    if limit is not None and len(text) > limit:
        return text[: limit - 1] + "…"
    return text


def reply_text(answer: Answer) -> str:
    """The reply's text. An answer: the quote verbatim and "[1]", then one paragraph per
    citation: "[n] file, p. 3: “quote”" (later ones "also reported"). An abstention: the
    abstention sentence and the closest passages, marked as not an answer. A follow-up
    ends with what was searched for."""
    if answer.answerable and answer.citations:
        paragraphs = [f"{_one_line(answer.answer)} [1]"]
        for n, c in enumerate(answer.citations, 1):
            where = f", {c.where}" if c.where else ""
            also = " (also reported)" if n > 1 else ""
            paragraphs.append(f"[{n}] {c.source}{where}{also}: “{_one_line(c.quote)}”")
    else:
        paragraphs = [answer.answer]
        related = list(dict.fromkeys(p.source for p in answer.passages))[:RELATED]
        if related:
            best = {p.source: p for p in reversed(answer.passages)}
            paragraphs.append("Closest material (not an answer):")
            paragraphs += [f"- {s}: {_one_line(best[s].text, SNIPPET_CHARS)}" for s in related]
    if answer.searched_for and answer.searched_for != answer.question:
        paragraphs.append(f"(searched for: {answer.searched_for})")
    return "\n\n".join(paragraphs)


def cited_answer(answer: Answer) -> dict:
    """The structured answer that rides along with a reply (`cited_qa`): the answer object
    of /api/answer less its passages and timings."""
    out = answer.to_dict()
    return {key: out[key] for key in ("question", "answerable", "confidence", "citations",
                                      "answer_span", "searched_for")}
