"""The API against its own OpenAPI document, checked by an outside tool: schemathesis.

A live server on loopback (real model, an index of seeds/, the chat page mounted as
`qa serve` does) is run through `schemathesis run --checks all`: every status, header,
content type and body must match the schema, every request the schema admits must be
accepted and every one it rules out refused, undeclared methods must get 405 with
`Allow`. Deterministic (a fixed seed, one worker, no example database: the same requests
every run) and a few hundred cases, so it takes seconds, not minutes. (Schemathesis's
`--generation-deterministic` mode was tried: its cases never send an integral float such
as `"top_k": 5.0`, so it missed a bug this run finds.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from qa.api import create_app, mount_uis, question_pattern, serve_in_thread

SEED = 1
# POST /api/documents: every byte string is a schema-valid file, but only readable documents
# are taken, so a refusal for the content (400 empty or unreadable, 409 indexed already, 413
# over the size limit, 415 not a document) answers a schema-valid request too; and most
# generated files are refused, which schemathesis would warn about. DELETE and the job
# route find nothing to delete or follow in generated names (403/404), likewise.
UPLOAD_CONFIG = """
[[operations]]
include-path = "/api/documents"
include-method = "POST"
warnings = false
checks.positive_data_acceptance.expected-statuses = [
  "2xx", "3xx", "400", "401", "403", "404", "409", "413", "415", "429", "5xx"]

[[operations]]
include-path = "/api/documents/{source}"
include-method = "DELETE"
warnings = false

[[operations]]
include-path = "/api/jobs/{job_id}"
include-method = "GET"
warnings = false
"""
MAX_EXAMPLES = 200  # per operation; about 300 cases in all (most go to /api/answer)
MIN_CASES = 250


@pytest.fixture(scope="module")
def live_url(model, settings, seeds_copy, tmp_path_factory):
    """The app as `qa serve` builds it, over its own index (schemathesis calls
    /api/reload too)."""
    from qa.engine import Assistant

    index = tmp_path_factory.mktemp("conformance-index")
    assistant = Assistant.load(settings=settings.replace(
        corpus=seeds_copy, index=index, uploads=tmp_path_factory.mktemp("uploads")))
    app, mounted = mount_uis(create_app(assistant), assistant)
    assert mounted == ["chat"], "the chat page entry point is not installed (pip install -e .)"
    with serve_in_thread(app) as url:
        yield url


def run_schemathesis(url: str, workdir) -> tuple[subprocess.CompletedProcess, dict | None]:
    """`schemathesis run` against the live server; (the process, its JSON report)."""
    config = workdir / "schemathesis.toml"
    # No cache: it would replay cases stored by earlier runs, so one run's outcome would
    # depend on the last (and it would write .schemathesis/ into the current folder).
    config.write_text("[cache]\nenabled = false\n" + UPLOAD_CONFIG, encoding="utf-8")
    report = workdir / "schemathesis.json"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color",
        "run", f"{url}/openapi.json",
        "--checks", "all",
        "--seed", str(SEED),  # the same cases every run (byte for byte)
        "--generation-database", "none",  # nothing remembered between runs
        "--max-examples", str(MAX_EXAMPLES),
        "--continue-on-failure",
        "--workers", "1",
        "--request-timeout", "60",
        # Hypothesis's "too slow" health check times data generation: on busy cores it
        # would fail a run for the machine's load, not for anything the API did.
        "--suppress-health-check", "too_slow",
        "--report", "json", "--report-json-path", str(report),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=workdir)
    data = json.loads(report.read_text(encoding="utf-8")) if report.exists() else None
    return run, data


def test_schemathesis_finds_nothing(live_url, tmp_path):
    run, report = run_schemathesis(live_url, tmp_path)
    output = (run.stdout + run.stderr)[-6000:]
    assert report is not None, output
    assert run.returncode == 0 and report["exit_code"] == 0, output
    assert report["failures"] == [] and report["errors"] == [], output
    assert report["complete"] and report["stop_reason"] == "completed", output
    assert report["operations"]["tested"] == report["operations"]["total"] == 10, output
    for phase in ("examples", "coverage", "fuzzing"):
        assert report["phases"][phase]["status"] == "success", (phase, output)
    cases = report["test_cases"]
    print(f"schemathesis: {cases['generated']} cases, {len(report['failures'])} failures, "
          f"{report['running_time']:.1f} s; valid rates {report['valid_rates']}")
    assert cases["generated"] >= MIN_CASES, output
    assert cases["with_failures"] == cases["errored"] == 0, output
    warnings = {kind: found for kind, found in report["warnings"].items() if found}
    assert not warnings, (warnings, output)


def test_question_pattern_is_the_engines_rule():
    """The schema's `pattern` for a question matches a one-character string exactly when
    the engine does not find that question empty, under Python's `re` (what schemathesis
    generates from) and the Rust engine it validates with, for every code point."""
    import jsonschema_rs

    from qa.engine import clean_question
    from qa.errors import QuestionError

    pattern = question_pattern()
    python_re = re.compile(pattern)
    rust = jsonschema_rs.Draft202012Validator({"pattern": pattern}).is_valid
    wrong = []
    for cp in range(sys.maxunicode + 1):
        if 0xD800 <= cp <= 0xDFFF:
            continue  # no JSON string of a schema holds a lone surrogate
        ch = chr(cp)
        try:
            clean_question(ch, 10)
            kept = True
        except QuestionError:
            kept = False
        if bool(python_re.search(ch)) != kept or rust(ch) != kept:
            wrong.append(f"U+{cp:04X}")
            if len(wrong) > 20:
                break
    assert not wrong, f"pattern and clean_question disagree on {wrong}"
