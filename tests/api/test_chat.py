"""qa/api/chat.py and qa/api/auth.py: a chat request read as a question, Open WebUI's
housekeeping tasks, the reply's text, and the API key check. No model: hand-made
answers and Open WebUI's own prompt templates."""

# ruff: noqa: E501 - Open WebUI's prompts below are kept verbatim, long lines and all

from __future__ import annotations

import json

import pytest

from qa.answering.answer import ABSTAIN_TEXT, Answer, Citation
from qa.api.auth import bearer_token, key_matches
from qa.api.chat import (
    Conversation,
    conversation_of,
    reply_text,
    task_of,
    task_reply,
    text_of,
    unaskable,
)
from qa.retrieval.retrieve import Passage

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)

# Open WebUI's default task prompts (backend/open_webui/config.py), with the chat history
# filled in as its task templates do ("USER: ..." / "ASSISTANT: ..." lines).
HISTORY = ("USER: Who declined to meet Lloyd Austin?\n"
           "ASSISTANT: Chinese Defense Minister Li Shangfu, however, has declined to meet "
           "with US counterpart Lloyd Austin until Washington lifts sanctions against him. "
           "[1]\n\n[1] 001_340206877254da52.txt: “Chinese Defense Minister Li Shangfu …”")
TITLE_PROMPT = f"""### Task:
Generate a concise, 3-5 word title with an emoji summarizing the chat history.
### Guidelines:
- The title should clearly represent the main theme or subject of the conversation.
- Use emojis that enhance understanding of the topic, but avoid quotation marks or special formatting.
### Output:
JSON format: {{ "title": "your concise title here" }}
### Examples:
- {{ "title": "📉 Stock Market Trends" }},
- {{ "title": "🍪 Perfect Chocolate Chip Recipe" }}
### Chat History:
<chat_history>
{HISTORY}
</chat_history>"""
TAGS_PROMPT = f"""### Task:
Generate 1-3 broad tags categorizing the main themes of the chat history, along with 1-3 more specific subtopic tags.

### Guidelines:
- Start with high-level domains (e.g. Science, Technology, Philosophy, Arts, Politics, Business, Health, Sports, Entertainment, Education)
- If content is too short (less than 3 messages) or too diverse, use only ["General"]

### Output:
JSON format: {{ "tags": ["tag1", "tag2", "tag3"] }}

### Chat History:
<chat_history>
{HISTORY}
</chat_history>"""
FOLLOW_UP_PROMPT = f"""### Task:
Suggest 3-5 relevant follow-up questions or prompts that the user might naturally ask next in this conversation as a **user**, based on the chat history, to help continue or deepen the discussion.
### Output:
JSON format: {{ "follow_ups": ["Question 1?", "Question 2?", "Question 3?"] }}
### Chat History:
<chat_history>
{HISTORY}
</chat_history>"""
QUERY_PROMPT = f"""### Task:
Analyze the chat history to determine the necessity of generating search queries, in the given language.
### Output:
Strictly return in JSON format:
{{
  "queries": ["query1", "query2"]
}}
### Chat History:
<chat_history>
{HISTORY}
</chat_history>"""


def test_text_of_reads_strings_and_text_parts():
    assert text_of("Who?") == "Who?"
    assert text_of(None) == ""
    parts = [{"type": "text", "text": "Who declined"},
             {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
             {"type": "text", "text": "to meet Lloyd Austin?", "cache_control": {"type": "x"}}]
    assert text_of(parts) == "Who declined\nto meet Lloyd Austin?"
    assert text_of([{"type": "image_url"}]) == ""


def test_the_last_user_message_is_the_question_and_earlier_turns_the_history():
    conv = conversation_of([
        ("system", "You are a helpful assistant."),
        ("user", "What did Blinken say about Taiwan?"),
        ("assistant", "We do not support Taiwan independence. [1]"),
        ("developer", "Be brief."),
        ("user", "What did he say about North Korea?"),
    ])
    assert conv == Conversation(
        "What did he say about North Korea?",
        ({"question": "What did Blinken say about Taiwan?",
          "answer": "We do not support Taiwan independence. [1]"},))
    # an assistant prefill after the last question is read past; no user message: no question
    assert conversation_of([("user", "Who?"), ("assistant", "Li")]).question == "Who?"
    assert conversation_of([("system", "Be kind.")]) == Conversation("")


@pytest.mark.parametrize("prompt,task", [(TITLE_PROMPT, "title"), (TAGS_PROMPT, "tags"),
                                         (FOLLOW_UP_PROMPT, "follow_ups"),
                                         (QUERY_PROMPT, "queries")])
def test_open_webui_tasks_are_recognised(prompt, task):
    assert task_of(prompt) == task


def test_questions_are_not_tasks():
    for question in ("Who declined to meet Lloyd Austin?", "What is the task of NATO?",
                     "Summarise ### Task: in JSON { \"title\": 1 }"):
        assert task_of(question) is None


def test_task_replies_come_from_the_chat_history():
    assert json.loads(task_reply("title", TITLE_PROMPT)) == {
        "title": "Who declined to meet Lloyd Austin"}
    assert json.loads(task_reply("tags", TAGS_PROMPT)) == {"tags": ["Lloyd Austin"]}
    assert json.loads(task_reply("follow_ups", FOLLOW_UP_PROMPT)) == {"follow_ups": []}
    assert json.loads(task_reply("queries", QUERY_PROMPT)) == {
        "queries": ["Who declined to meet Lloyd Austin?"]}
    assert json.loads(task_reply("title", "### Task:\nGenerate a title\n{ \"title\": \"\" }")) \
        == {"title": "Questions about the documents"}
    assert json.loads(task_reply("tags", "### Task: tags, no history")) == {"tags": ["General"]}
    assert json.loads(task_reply("", "### Task: something else")) == {}


def _answer(**changes) -> Answer:
    first = Citation("report.pdf", "Report", "Li Shangfu declined\nto meet Austin.", 100, 135,
                     0.8, page=3)
    also = Citation("b.txt", "B", "Li declined the meeting.", 7, 31, 0.9)
    fields = dict(question="Who declined to meet Austin?", answer=first.quote,
                  answerable=True, confidence=0.8, citations=(first, also), passages=(),
                  searched_for="Who declined to meet Austin?", answer_span=(100, 110))
    fields.update(changes)
    return Answer(**fields)


def test_reply_quotes_the_answer_with_numbered_references():
    text = reply_text(_answer())
    assert text == ("Li Shangfu declined to meet Austin. [1]\n\n"
                    "[1] report.pdf, p. 3: “Li Shangfu declined to meet Austin.”\n\n"
                    "[2] b.txt (also reported): “Li declined the meeting.”")


def test_reply_to_a_follow_up_says_what_was_searched():
    text = reply_text(_answer(question="Who declined?",
                              searched_for="Who declined? (Lloyd Austin)"))
    assert text.endswith("\n\n(searched for: Who declined? (Lloyd Austin))")


def test_an_abstention_says_so_plainly_with_the_closest_material():
    passages = (Passage("a.txt", "Near miss.", 0, 10, 0.9),
                Passage("a.txt", "Second.", 20, 27, 0.5),
                Passage("b.txt", "x " * 150, 0, 300, 0.4))
    text = reply_text(_answer(answer=ABSTAIN_TEXT, answerable=False, citations=(),
                              passages=passages, answer_span=None))
    paragraphs = text.split("\n\n")
    assert paragraphs[0] == ABSTAIN_TEXT == "The documents don't contain an answer to this " \
                                            "question."
    assert paragraphs[1] == "Closest material (not an answer):"
    assert paragraphs[2] == "- a.txt: Near miss."  # each file once, with its best passage
    assert paragraphs[3].startswith("- b.txt: x x") and paragraphs[3].endswith("…")
    assert len(paragraphs) == 4


def test_a_message_that_cant_be_asked_gets_a_reply_saying_why():
    from qa.engine import clean_question
    from qa.errors import QuestionError

    with pytest.raises(QuestionError) as err:
        clean_question("why " * 400, 1000)
    assert unaskable(err.value) == ("This message can't be asked as a question: question is "
                                    "1599 characters long; the limit is 1000. Ask a question "
                                    "about the documents.")


def test_bearer_key_check():
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None and bearer_token(None) is None
    assert key_matches("abc", "abc") and not key_matches("abd", "abc")
    assert not key_matches(None, "abc") and not key_matches("", "abc")
    assert key_matches("schlüssel", "schlüssel")
