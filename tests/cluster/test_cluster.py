"""On a real Ray cluster of two nodes on this machine (ray.cluster_utils.Cluster, loopback
only, shut down at the end): the sharded build equals the single-machine one (chunks,
texts, vectors, every seeds question answered identically), including an incremental
update; a build whose embedding worker is SIGKILLed still completes (Ray restarts the
actor and retries its batch) and equals the clean one; and the Ray Serve application
answers 20 concurrent questions while one answerer replica is SIGKILLed, every request
getting its answer (retried if it hit the dying replica), and the replica comes back.

Skipped without the `[ray]` extra, unless QA_REQUIRE_RAY=1 (make test) makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from support import ROOT

# Loopback only: without this Ray on Linux advertises the machine's own address, not
# 127.0.0.1 (read when ray is imported, and inherited by every node and worker).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# Serve's proxy must answer its readiness check within 5 s by default, three times: on a
# 2-core box busy with other jobs its start-up takes longer, and Serve kills it in a loop.
os.environ.setdefault("RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S", "60")

if os.environ.get("QA_REQUIRE_RAY"):
    import ray
else:
    ray = pytest.importorskip("ray", reason="the [ray] extra is not installed")

from qa.cluster import runtime_env  # noqa: E402
from qa.cluster.assistant import ShardedAssistant  # noqa: E402
from qa.engine import Assistant  # noqa: E402
from qa.errors import BadInput  # noqa: E402
from qa.retrieval.sharded.view import ShardedIndex  # noqa: E402

QUESTIONS = [json.loads(line)["question"] for line in
             (ROOT / "benchmarks/questions/seeds.jsonl").read_text().splitlines() if line]
OBJECT_STORE = 150 * 2**20


@pytest.fixture(scope="module")
def cluster(seeds_assistant):
    """Two Ray nodes on 127.0.0.1 (a head and a worker node), this process connected.
    seeds_assistant first: the ONNX export the workers load is then cached in QA_HOME."""
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 2, "node_ip_address": "127.0.0.1",
            "object_store_memory": OBJECT_STORE}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    c.add_node(**node)
    c.wait_for_nodes()
    ray.init(address=c.address, runtime_env=runtime_env(), log_to_driver=False)
    try:
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield c
    finally:
        try:
            from ray import serve

            serve.shutdown()
        finally:
            ray.shutdown()
            c.shutdown()


def _answer(assistant, question) -> dict:
    d = assistant.ask(question).to_dict()
    d.pop("timings_ms")
    return d


def _same_as_single(view: ShardedIndex, single) -> None:
    assert list(view.chunks) == list(single.chunks)  # ids, sources, offsets, texts
    assert list(view.sentences) == list(single.sentences)
    assert np.array_equal(view.chunk_vectors[range(len(single.chunks))], single.chunk_vectors)
    assert np.array_equal(view.sentence_vectors[range(len(single.sentences))],
                          single.sentence_vectors)
    assert view.manifest["files"] == single.manifest["files"]


@pytest.fixture(scope="module")
def clean_build(cluster, seeds_assistant, tmp_path_factory):
    from qa.cluster.build import build_on_ray

    settings = seeds_assistant.settings.replace(index=tmp_path_factory.mktemp("ray-index"))
    report = build_on_ray(settings, shards=2)
    assert report.wrote and report.chunks == len(seeds_assistant.index.chunks)
    return settings


def test_sharded_build_on_the_cluster_equals_the_single_machine_build(clean_build,
                                                                       seeds_assistant):
    view = ShardedIndex.open_local(clean_build.index_dir)
    assert len(view.clients) == 2
    _same_as_single(view, seeds_assistant.index)
    clustered = ShardedAssistant(seeds_assistant.settings, seeds_assistant.model, view,
                                 seeds_assistant.reader)
    # and what plain qa ask / qa eval / qa serve load for it, without Ray (issue 26)
    plain = Assistant.load(settings=clean_build)
    assert isinstance(plain.index, ShardedIndex)
    for question in QUESTIONS:
        expected = _answer(seeds_assistant, question)
        assert _answer(clustered, question) == expected, question
        assert _answer(plain, question) == expected, question


def _eval(tmp_path, settings, name, runner=None) -> tuple[dict, list[dict]]:
    """qa eval of the seeds question set (qa.evaluation.command.run_cli, as the CLI runs it):
    metrics.json without the machine, the run and the timings; results.jsonl likewise."""
    import argparse

    from qa.evaluation.command import run_cli

    out = tmp_path / name
    args = argparse.Namespace(questions=str(ROOT / "benchmarks/questions/seeds.jsonl"),
                              corpus=None, index=None, out=str(out), fail_under=[],
                              limit=None)
    assert (run_cli(args, settings) if runner is None else
            run_cli(args, settings, runner=runner)) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    run = metrics.pop("run")
    for key in [k for k in metrics if k.endswith("_ms") or k == "machine"]:
        metrics.pop(key)
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("timings_ms")
        row["judgement"].pop("timings_ms")
    assert "questions/s" in (out / "report.md").read_text()
    return {**metrics, "run": run}, rows


def test_qa_eval_of_the_cluster_build_gives_the_local_figures_plain_and_on_ray(
        clean_build, seeds_assistant, tmp_path):
    """qa eval of the seeds set three ways: the single-machine build, the cluster build
    read by plain qa eval, and qa eval --ray (Ray Data, two workers each loading every
    shard): the same metrics and the same judged rows."""
    from qa.cluster.answering import eval_on_ray

    local, local_rows = _eval(tmp_path, seeds_assistant.settings, "local")
    plain, plain_rows = _eval(tmp_path, clean_build, "plain")
    on_ray, ray_rows = _eval(tmp_path, clean_build, "ray", runner=lambda s, q: eval_on_ray(
        s, q, workers=2))
    runs = {k: m.pop("run") for k, m in (("local", local), ("plain", plain),
                                         ("ray", on_ray))}
    assert plain == local and plain_rows == local_rows
    assert on_ray == local and ray_rows == local_rows
    assert runs["ray"]["where"] == "ray" and runs["ray"]["workers"] == 2
    assert runs["ray"]["questions_per_second"] > 0 and runs["ray"]["worker_rss_mb_max"] > 0
    assert runs["plain"]["where"] == "this machine"


def test_qa_ask_on_ray_answers_as_the_single_machine(clean_build, seeds_assistant):
    from qa.cluster.answering import ask_on_ray

    question = QUESTIONS[0]
    got = ask_on_ray(clean_build, question).to_dict()
    got.pop("timings_ms")
    assert got == _answer(seeds_assistant, question)


def test_an_update_on_the_cluster_embeds_only_the_new_file(cluster, seeds_assistant,
                                                           tmp_path, model):
    from embeddings.indexer import build_index
    from qa.cluster.build import build_on_ray
    from qa.retrieval.index import Index

    corpus = tmp_path / "corpus"
    shutil.copytree(seeds_assistant.settings.corpus, corpus)
    settings = seeds_assistant.settings.replace(corpus=corpus, index=tmp_path / "ray")
    first = build_on_ray(settings, shards=3)
    (corpus / "zz_new.txt").write_text(
        "Harbour news\n\nThe ferry to the island now leaves at seven in the morning. "
        "The harbour master said the change follows complaints about crowding.\n")
    update = build_on_ray(settings, shards=3)
    assert update.added == ("zz_new.txt",) and not update.changed and not update.removed
    assert 0 < update.embedded < first.embedded
    assert build_on_ray(settings, shards=3).wrote is False  # up to date
    single = tmp_path / "single"
    build_index(corpus, single, settings.index_config(), lambda: model)
    _same_as_single(ShardedIndex.open_local(settings.index_dir), Index.load(single))


def test_a_build_whose_embedding_worker_is_killed_completes_and_equals_the_clean_one(
        clean_build, seeds_assistant, tmp_path, monkeypatch):
    from qa.cluster.build import PAUSE_ENV, build_on_ray

    pid_file = tmp_path / "embedder.pid"
    monkeypatch.setenv(PAUSE_ENV, str(pid_file))
    settings = clean_build.replace(index=tmp_path / "index")
    done: dict = {}
    worker = threading.Thread(target=lambda: done.update(report=build_on_ray(
        settings, shards=2)), daemon=True)
    worker.start()
    deadline = time.monotonic() + 300
    while not pid_file.exists():
        assert worker.is_alive() and time.monotonic() < deadline, "no embedding call paused"
        time.sleep(0.2)
    pid = int(pid_file.read_text())
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)  # a Ray worker process: the embedding actor
    worker.join(300)
    assert "report" in done and done["report"].wrote
    _same_as_single(ShardedIndex.open_local(settings.index_dir), seeds_assistant.index)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, deadline: float) -> None:
    """Poll the deployed application's health route until it answers 200 (by `deadline`,
    a time.monotonic() value)."""
    import httpx

    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the application did not come up"
        time.sleep(1)


# Ray Serve has one HTTP proxy per cluster, started by the first deploy: every test of
# this module that serves uses the same port (deploy refuses another one, tested below)
SERVE_PORT = _free_port()


def _answerers() -> dict[str, int]:
    """Replica actor name -> process id of every live answerer replica. From the GCS's
    named actors (Serve names each replica SERVE_REPLICA::APP#DEPLOYMENT#ID), so no
    dashboard is needed; a replica that doesn't answer within 10 s is left out."""
    out = {}
    for actor in ray.util.list_named_actors(all_namespaces=True):
        if not actor["name"].startswith("SERVE_REPLICA::") or "#answerer#" not in actor["name"]:
            continue
        try:
            handle = ray.get_actor(actor["name"], namespace=actor["namespace"])
            out[actor["name"]] = ray.get(handle.__ray_call__.remote(lambda self: os.getpid()),
                                         timeout=10)
        except Exception:  # noqa: BLE001  dead or dying: not a live replica
            continue
    return out


def _single_machine_responses(assistant, questions) -> dict[str, dict]:
    """What `qa serve` on one machine answers (the same app, in a thread), timings out."""
    import httpx

    from qa.api import create_app, serve_in_thread

    out = {}
    with serve_in_thread(create_app(assistant)) as url:
        for q in questions:
            r = httpx.post(f"{url}/api/answer", json={"question": q}, timeout=60)
            assert r.status_code == 200, r.text
            out[q] = r.json()
            out[q].pop("timings_ms")
    return out


def test_serve_answers_every_request_while_a_replica_is_killed(clean_build, seeds_assistant):
    import httpx
    from ray import serve

    from qa.cluster.serve import APP, deploy

    url = deploy(clean_build, host="127.0.0.1", port=SERVE_PORT, replicas=2, build=False)
    try:
        deadline = time.monotonic() + 240
        _wait_until_up(url, deadline)
        assert httpx.get(f"{url}/api/health").json()["chunks"] == len(
            seeds_assistant.index.chunks)
        page = httpx.get(f"{url}/", timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
        while len(_answerers()) < 2:
            assert time.monotonic() < deadline
            time.sleep(1)
        questions = QUESTIONS[:20]
        expected = _single_machine_responses(seeds_assistant, questions)
        attempts: dict[str, int] = {}

        def ask(question: str) -> dict:
            for attempt in range(1, 9):
                attempts[question] = attempt
                try:
                    r = httpx.post(f"{url}/api/answer", json={"question": question},
                                   timeout=60)
                    if r.status_code == 200:
                        return r.json()
                except httpx.HTTPError:
                    pass
                time.sleep(1)
            raise AssertionError(f"no answer for {question!r}")

        victim, victim_pid = sorted(_answerers().items())[0]
        assert victim_pid != os.getpid()
        with ThreadPoolExecutor(20) as pool:
            futures = [pool.submit(ask, q) for q in questions]
            time.sleep(0.5)
            os.kill(victim_pid, signal.SIGKILL)
            answers = [f.result() for f in futures]
        assert len(answers) == 20
        for q, got in zip(questions, answers, strict=True):
            got.pop("timings_ms")
            assert got == expected[q], q
        deadline = time.monotonic() + 180
        while True:  # Ray Serve replaces the dead replica
            status = serve.status().applications[APP].deployments["answerer"]
            running = status.replica_states.get("RUNNING", 0)
            live = _answerers()
            if running == 2 and len(live) == 2 and victim not in live and not os.path.exists(
                    f"/proc/{victim_pid}"):
                break
            assert time.monotonic() < deadline, f"the replica did not come back: {status}"
            time.sleep(1)
        assert httpx.post(f"{url}/api/answer", json={"question": questions[0]},
                          timeout=60).status_code == 200
    finally:
        serve.delete(APP)


def test_serve_on_ray_with_a_key_refuses_requests_without_it(clean_build):
    """QA_API_KEY under `qa serve --ray`: the same app code as `qa serve`, so every route
    but health needs the key, on the Ray Serve proxy too."""
    import httpx
    from ray import serve

    from qa.cluster.serve import APP, deploy

    key = "k" * 40
    url = deploy(clean_build.replace(api_key=key), host="127.0.0.1", port=SERVE_PORT,
                 replicas=1, build=False)
    try:
        _wait_until_up(url, time.monotonic() + 240)  # health stays open, key or not
        question = {"question": QUESTIONS[0]}
        r = httpx.post(f"{url}/api/answer", json=question, timeout=60)
        assert r.status_code == 401 and "error" in r.json()
        wrong = httpx.post(f"{url}/api/answer", json=question, timeout=60,
                           headers={"Authorization": "Bearer " + "x" * 40})
        assert wrong.status_code == 401
        assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 401
        ok = httpx.post(f"{url}/api/answer", json=question, timeout=60,
                        headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.json()["question"] == QUESTIONS[0]
        # Serve already listens on SERVE_PORT: another port is refused, not silently ignored
        with pytest.raises(BadInput, match=f"already listens on 127.0.0.1:{SERVE_PORT}"):
            deploy(clean_build, host="127.0.0.1", port=_free_port(), replicas=1, build=False)
    finally:
        serve.delete(APP)
