"""The OpenAI-compatible API (/v1) against a live server, driven by the official `openai`
package and by the requests Open WebUI sends: real model, real index of seeds/, the app
built as `qa serve` builds it (chat page mounted)."""

from __future__ import annotations

import json
import re

import httpx
import openai
import pytest
from test_chat import TAGS_PROMPT, TITLE_PROMPT

from qa.answering.answer import ABSTAIN_TEXT
from qa.api import create_app, mount_uis, serve_in_thread
from support import ROOT

AUSTIN = "Who declined to meet Lloyd Austin?"
AUSTIN_SOURCE = "001_340206877254da52.txt"
KEY = "sk-test-0123456789"


@pytest.fixture(scope="module")
def counting(seeds_assistant):
    """The seeds assistant, counting the questions it is asked."""
    from qa.engine import Assistant

    class Counting(Assistant):
        asked: list[str] = []

        def ask(self, question, **kwargs):
            self.asked.append(question)
            return super().ask(question, **kwargs)

    return Counting(seeds_assistant.settings, seeds_assistant.model, seeds_assistant.index,
                    seeds_assistant.reader)


@pytest.fixture(scope="module")
def base_url(counting):
    app, mounted = mount_uis(create_app(counting), counting)
    assert mounted == ["chat"], "the chat page entry point is not installed (pip install -e .)"
    with serve_in_thread(app) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key="not-needed", max_retries=0,
                         timeout=120)


@pytest.fixture(scope="module")
def model_id(client):
    return client.models.list().data[0].id


def file_text(assistant, source: str) -> str:
    return (assistant.settings.corpus / source).read_bytes().decode("utf-8")


def test_models_names_the_product_and_its_reader(client):
    models = client.models.list()
    assert len(models.data) == 1
    model = models.data[0]
    assert model.id.startswith("cited-qa-reader-") and len(model.id) == len("cited-qa-reader-") + 8
    assert model.owned_by == "cited-qa" and model.object == "model"


def test_plain_completion_is_the_cited_quote(client, model_id, counting):
    completion = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": AUSTIN}])
    assert completion.object == "chat.completion" and completion.model == model_id
    choice = completion.choices[0]
    assert choice.finish_reason == "stop" and choice.message.role == "assistant"
    content = choice.message.content
    assert "Li Shangfu" in content and AUSTIN_SOURCE in content
    answer, first = content.split("\n\n")[:2]
    assert answer.endswith(" [1]") and first.startswith(f"[1] {AUSTIN_SOURCE}: “")
    cited = completion.cited_qa  # the extra field, kept by the client's models
    assert cited["answerable"] is True and 0 < cited["confidence"] <= 1
    quote = cited["citations"][0]
    assert quote["source"] == AUSTIN_SOURCE
    assert file_text(counting, AUSTIN_SOURCE)[quote["start"]:quote["end"]] == quote["quote"]
    assert quote["quote"] in content
    span = cited["answer_span"]
    assert "Li Shangfu" in file_text(counting, AUSTIN_SOURCE)[span["start"]:span["end"]]
    assert completion.usage.total_tokens == (completion.usage.prompt_tokens
                                             + completion.usage.completion_tokens) > 0


def test_the_readme_lines_work(base_url, capsys):
    """The README's five lines of Python, pointed at this server, print the cited answer."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"```python\n(from openai import OpenAI\n.*?)```", readme, re.S).group(1)
    assert len([line for line in code.splitlines() if line.strip()]) == 5
    exec(compile(code.replace("http://127.0.0.1:7860", base_url), "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "Li Shangfu" in out and AUSTIN_SOURCE in out


def test_streamed_completion_carries_the_same_answer(client, model_id):
    plain = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": AUSTIN}])
    chunks = list(client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": AUSTIN}], stream=True,
        stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert "Li Shangfu" in text and AUSTIN_SOURCE in text
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    last = next(c for c in chunks if c.choices and c.choices[0].finish_reason)
    assert last.choices[0].finish_reason == "stop"
    assert last.cited_qa["citations"][0]["source"] == AUSTIN_SOURCE
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_streamed_events_end_with_done(base_url):
    body = {"model": "anything", "stream": True,
            "messages": [{"role": "user", "content": AUSTIN}]}
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body,
                      timeout=120) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert "usage" not in chunks[-1]  # only when stream_options.include_usage asks for it


def test_abstention_says_so_plainly(client, model_id):
    completion = client.chat.completions.create(
        model=model_id, messages=[{"role": "user", "content": "Who won the 2024 Super Bowl?"}])
    content = completion.choices[0].message.content
    assert content.startswith(ABSTAIN_TEXT)
    assert "Closest material (not an answer):" in content
    assert completion.cited_qa["answerable"] is False
    assert completion.cited_qa["citations"] == [] and completion.cited_qa["answer_span"] is None


def test_follow_up_uses_the_earlier_turns(client, model_id):
    first = client.chat.completions.create(
        model=model_id,
        messages=[{"role": "user", "content": "When did Blinken arrive in China?"}])
    completion = client.chat.completions.create(model=model_id, messages=[
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "When did Blinken arrive in China?"},
        {"role": "assistant", "content": first.choices[0].message.content},
        # "What did he say about Taiwan?" abstains since Reader v2 (confidence 0.20 with
        # "(Blinken)" added, 0.33 written out in full, threshold 0.34; reader-init 0.37)
        {"role": "user", "content": "What did he say about Taiwan independence?"}])
    cited = completion.cited_qa
    assert cited["searched_for"].endswith("(Blinken)")
    assert cited["answerable"]
    content = completion.choices[0].message.content
    assert "Taiwan" in content and "Blinken" in content
    assert content.endswith(f"(searched for: {cited['searched_for']})")


def test_unknown_parameters_are_accepted_and_ignored(client, model_id):
    completion = client.chat.completions.create(
        model="gpt-4o", temperature=0.2, max_tokens=5, top_p=0.5, n=1, user="ann",
        presence_penalty=0.1, seed=7,
        messages=[{"role": "developer", "content": "Answer in French."},
                  {"role": "user", "content": [{"type": "text", "text": AUSTIN}]}],
        extra_body={"top_k": 40, "repeat_penalty": 1.1})
    assert completion.model == model_id  # whatever was asked for, this server's model
    assert "Li Shangfu" in completion.choices[0].message.content


# --- what Open WebUI sends -------------------------------------------------------------


def open_webui_body(messages, **extra) -> dict:
    """A chat request as Open WebUI forwards it to an OpenAI connection: its own fields
    besides OpenAI's, the last message's content as parts with a cache_control mark."""
    return {"model": "cited-qa", "messages": messages, "stream": True,
            "stream_options": {"include_usage": True},
            "params": {"temperature": 0.8}, "temperature": 0.8, "max_tokens": 2048,
            "features": {"image_generation": False, "code_interpreter": False,
                         "web_search": False, "memory": False},
            "variables": {"{{USER_NAME}}": "Ann", "{{CURRENT_DATE}}": "2026-12-04"},
            "metadata": {"chat_id": "c1", "message_id": "m1", "session_id": "s1"},
            "chat_id": "c1", "id": "m1", "session_id": "s1", "tool_servers": [],
            "background_tasks": {"title_generation": True, "tags_generation": True,
                                 "follow_up_generation": True}, **extra}


def test_open_webui_chat_request(base_url):
    body = open_webui_body([
        {"role": "system", "content": "You are a helpful assistant. Today is 2026-12-04."},
        {"role": "user", "content": [{"type": "text", "text": AUSTIN,
                                      "cache_control": {"type": "ephemeral"}}]}])
    with httpx.stream("POST", f"{base_url}/v1/chat/completions", json=body,
                      headers={"Authorization": "Bearer none", "X-OpenWebUI-User-Name": "Ann"},
                      timeout=120) as r:
        assert r.status_code == 200, r.read()
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert "Li Shangfu" in text and AUSTIN_SOURCE in text
    assert chunks[-1]["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("prompt,key", [(TITLE_PROMPT, "title"), (TAGS_PROMPT, "tags")])
def test_open_webui_title_and_tag_requests_are_answered_without_searching(
        base_url, counting, prompt, key):
    asked = len(counting.asked)
    body = {"model": "cited-qa", "messages": [{"role": "user", "content": prompt}],
            "stream": False, "max_tokens": 1000}
    r = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    reply = r.json()
    assert reply["cited_qa"] is None
    out = json.loads(reply["choices"][0]["message"]["content"])
    assert list(out) == [key] and out[key]
    assert len(counting.asked) == asked  # nothing was searched


def test_a_message_that_cant_be_asked_gets_a_reply(client, model_id, counting):
    asked = len(counting.asked)
    for content in ("   ", [{"type": "image_url", "image_url": {"url": "data:,"}}],
                    "why " * 400):
        completion = client.chat.completions.create(
            model=model_id, messages=[{"role": "user", "content": content}])
        assert completion.choices[0].message.content.startswith(
            "This message can't be asked as a question: question is ")
        assert completion.cited_qa is None
    assert len(counting.asked) == asked


# --- errors and the key ----------------------------------------------------------------

BAD = [
    # (id, body, words the message must hold)
    ("invalid JSON", b'{"messages": ', "not valid JSON"),
    ("no body", b"", "request body is missing"),
    ("no messages", b'{"model": "x"}', "messages"),
    ("empty messages", b'{"messages": []}', "messages"),
    ("messages not a list", b'{"messages": "hi"}', "messages"),
    ("unknown role", b'{"messages": [{"role": "robot", "content": "hi"}]}',
     "messages[0].role"),
    ("content a number", b'{"messages": [{"role": "user", "content": 5}]}',
     "messages[0].content"),
    ("part without type", b'{"messages": [{"role": "user", "content": [{"text": "hi"}]}]}',
     "type"),
    ("stream not a bool", b'{"stream": "yes", "messages": [{"role": "user", "content": "hi"}]}',
     "stream"),
]


@pytest.mark.parametrize("body,words", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_openai_shaped_errors(base_url, body, words):
    r = httpx.post(f"{base_url}/v1/chat/completions", content=body,
                   headers={"content-type": "application/json"}, timeout=60)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and words in error["message"]


def test_the_client_raises_openai_errors(client, base_url):
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model="cited-qa", messages=[])
    assert err.value.body["type"] == "invalid_request_error"
    assert err.value.body["param"] == "messages"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("cited-qa")  # not served: an OpenAI-shaped 404
    r = httpx.get(f"{base_url}/v1/chat/completions")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert r.json()["error"]["type"] == "invalid_request_error"
    big = httpx.post(f"{base_url}/v1/chat/completions", timeout=60, json={"messages": [
        {"role": "user", "content": "x" * (1024 * 1024 + 1)}]})
    assert big.status_code == 413 and "limit" in big.json()["error"]["message"]


def test_openapi_documents_v1(base_url):
    spec = httpx.get(f"{base_url}/openapi.json").json()
    post = spec["paths"]["/v1/chat/completions"]["post"]
    assert {"application/json", "text/event-stream"} <= set(post["responses"]["200"]["content"])
    assert "400" in post["responses"] and "security" not in post  # open: no key is set
    assert "/v1/models" in spec["paths"]


def test_api_key_protects_v1(counting):
    from qa.engine import Assistant

    keyed = Assistant(counting.settings.replace(api_key=KEY), counting.model, counting.index,
                      counting.reader)
    with serve_in_thread(create_app(keyed)) as url:
        wrong = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as err:
            wrong.models.list()
        assert err.value.body["code"] == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            wrong.chat.completions.create(model="m", messages=[{"role": "user",
                                                                "content": AUSTIN}])
        r = httpx.post(f"{url}/v1/chat/completions", json={"messages": []})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert httpx.get(f"{url}/v1/nothing").status_code == 401  # every /v1 path
        right = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)
        completion = right.chat.completions.create(
            model=right.models.list().data[0].id,
            messages=[{"role": "user", "content": AUSTIN}])
        assert "Li Shangfu" in completion.choices[0].message.content
        assert httpx.get(f"{url}/openapi.json").status_code == 401  # the key guards it too
        spec = httpx.get(f"{url}/openapi.json",
                         headers={"Authorization": f"Bearer {KEY}"}).json()
        assert spec["paths"]["/v1/chat/completions"]["post"]["security"] == [{"apiKey": []}]
        assert spec["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
