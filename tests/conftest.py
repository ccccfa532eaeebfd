"""Shared fixtures: the real model (loaded once per session) and a real index of seeds/."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support import CHROMIUM, CHROMIUM_ARGS, ROOT, SEEDS, write_corpus  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory):
    """Keep default index folders of every test out of the user's cache."""
    home = tmp_path_factory.mktemp("qa-home")
    old = os.environ.get("QA_HOME")
    os.environ["QA_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("QA_HOME", None)
    else:
        os.environ["QA_HOME"] = old


@pytest.fixture(autouse=True)
def _quick_tests_load_no_model(request, monkeypatch):
    """A test marked `quick` (pytest -m quick: the model-free unit tests) fails if it
    loads the encoder or the reader's network."""
    if request.node.get_closest_marker("quick") is None:
        return
    from embeddings import encoder
    from qa.reader import runtime

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} is marked quick but loads a model: "
                             "drop the mark or the model")

    for cls in (encoder.TorchEncoder, encoder.ExactEncoder, encoder.OnnxEncoder,
                runtime.Reader, runtime.ExactNet):
        monkeypatch.setattr(cls, "__init__", refuse)


@pytest.fixture(scope="session")
def settings():
    from qa.settings import Settings

    return Settings.load(env={})


@pytest.fixture(scope="session")
def model(settings):
    """The real model (all-MiniLM-L6-v2, bundled offline) through the encoder the product
    uses by default (ONNX Runtime, exported once into this session's QA_HOME)."""
    from qa.engine import load_encoder_for

    return load_encoder_for(settings)


@pytest.fixture(scope="session")
def seeds_copy(tmp_path_factory) -> Path:
    """A private copy of seeds/ for tests that index it."""
    target = tmp_path_factory.mktemp("seeds") / "seeds"
    shutil.copytree(SEEDS, target)
    return target


@pytest.fixture(scope="session")
def seeds_assistant(model, seeds_copy, tmp_path_factory, settings):
    """An Assistant over a copy of seeds/, with its index built once for the session."""
    from qa.engine import Assistant

    index = tmp_path_factory.mktemp("seeds-index")
    return Assistant.load(settings=settings.replace(corpus=seeds_copy, index=index))


# --- the browser tests' Chromium (tests/ui/test_ui_browser.py, test_ui_documents_browser.py) ---

@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        message = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
        if os.environ.get("QA_REQUIRE_BROWSER"):  # set by `make test`: CI must not skip
            pytest.fail(message)
        pytest.skip(message)
    from playwright import sync_api
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("dialog", lambda d: (errors.append(f"dialog: {d.message}"), d.dismiss()))
    pg.errors = errors
    yield pg
    context.close()
