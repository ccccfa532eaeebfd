"""Property-based fuzzing of POST /api/answer on a live server: every response is a
valid answer object (200) or a JSON error with a 4xx status."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.api import create_app, serve_in_thread

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(), children,
                                                                       max_size=3),
    max_leaves=8)
BODIES = st.one_of(
    st.fixed_dictionaries({"question": st.text(max_size=400)}),
    st.fixed_dictionaries({"question": st.text(max_size=80)},
                          optional={"top_k": JSON_VALUES, "history": JSON_VALUES,
                                    "extra": JSON_VALUES}),
    st.dictionaries(st.sampled_from(["question", "top_k", "history"]), JSON_VALUES),
    JSON_VALUES,
)


@pytest.fixture(scope="module")
def client(seeds_assistant):
    with serve_in_thread(create_app(seeds_assistant)) as url, \
            httpx.Client(base_url=url, timeout=60) as c:
        yield c


def _check(response: httpx.Response) -> None:
    body = response.json()
    if response.status_code == 200:
        assert {"answer", "answerable", "confidence", "citations", "passages"} <= set(body)
        assert 0 <= body["confidence"] <= 1
    else:
        assert 400 <= response.status_code < 500, (response.status_code, body)
        assert isinstance(body.get("error"), str) and body["error"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(body=BODIES)
def test_any_json_body(client, body):
    _check(client.post("/api/answer", json=body))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_any_bytes(client, raw):
    _check(client.post("/api/answer", content=raw,
                       headers={"Content-Type": "application/json"}))


def test_server_is_still_healthy_after_fuzzing(client):
    assert client.get("/api/health").json()["status"] == "ok"
    ok = client.post("/api/answer", content=json.dumps({"question": "Who met Xi?"}),
                     headers={"Content-Type": "application/json"})
    assert ok.status_code == 200
