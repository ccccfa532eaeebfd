"""The sharded index without Ray: a seeds index written as 3 shards (qa.retrieval.sharded.layout
.reshard) answers exactly as the single index does. BM25 scores bit for bit (corpus-wide
statistics, qa.retrieval.sharded.lexicon), the same chunks, sentences and vectors under the same
global numbers, the same passages from `ShardedIndex.search`, and the same answer object
for every question of the seeds question set."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest

from embeddings.lexical import tokenize
from qa.cluster.assistant import ShardedAssistant
from qa.retrieval.sharded import layout
from qa.retrieval.sharded.view import ShardedIndex
from support import ROOT

QUESTIONS = [json.loads(line)["question"] for line in
             (ROOT / "benchmarks/questions/seeds.jsonl").read_text().splitlines() if line]


@pytest.fixture(scope="module")
def sharded(seeds_assistant, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sharded-seeds")
    layout.reshard(seeds_assistant.index.data, folder, 3)
    return ShardedIndex.open_local(folder)


def test_split_is_contiguous_balanced_and_never_empty():
    sizes = [(f"{i:03d}.txt", 100 + i) for i in range(10)]
    runs = layout.split(sizes, 3)
    assert [s for r in runs for s in r] == [s for s, _ in sizes]
    assert len(runs) == 3 and all(runs)
    assert layout.split(sizes[:2], 5) == [["000.txt"], ["001.txt"]]
    assert layout.split([("a", 10**9), ("b", 1), ("c", 1)], 3) == [["a"], ["b"], ["c"]]


def test_the_shards_hold_the_single_index_rows_in_order(seeds_assistant, sharded):
    single = seeds_assistant.index
    assert len(sharded.clients) == 3
    assert len(sharded.chunks) == len(single.chunks)
    assert len(sharded.sentences) == len(single.sentences)
    assert list(sharded.chunks) == list(single.chunks)
    assert list(sharded.sentences) == list(single.sentences)
    assert np.array_equal(sharded.chunk_vectors[range(len(single.chunks))],
                          single.chunk_vectors)
    assert np.array_equal(sharded.sentence_vectors[range(len(single.sentences))],
                          single.sentence_vectors)
    assert sharded.documents == single.documents
    assert sharded.manifest["files"] == single.manifest["files"]
    assert sharded.manifest["counts"] == single.manifest["counts"]
    for i in range(len(single.sentences)):
        assert sharded.neighbours(i) == single.neighbours(i)
        assert sharded.quote(i, min(i + 1, len(single.sentences) - 1)) == single.quote(
            i, min(i + 1, len(single.sentences) - 1))


def test_bm25_scores_and_idf_are_the_single_index_bit_for_bit(seeds_assistant, sharded):
    single = seeds_assistant.index
    for question in QUESTIONS:
        tokens = tokenize(question)
        whole = single.bm25.scores(tokens)
        parts = np.concatenate([c.reader.index.bm25.scores(tokens) for c in sharded.clients])
        assert whole.dtype == parts.dtype and np.array_equal(whole, parts), question
    for token in single.bm25.vocab:
        assert sharded.idf(token) == single.idf(token), token
    assert sharded.idf("zzzunknown") == single.idf("zzzunknown") == 0.0
    assert sharded.n_chunks == single.n_chunks


def _passages(ps):
    return [(p.source, p.start, p.end, p.text, p.score, p.chunk, p.also, p.dense, p.bm25,
             p.also_chunks) for p in ps]


def test_search_and_answers_are_the_single_index(seeds_assistant, sharded):
    single = seeds_assistant
    clustered = ShardedAssistant(single.settings, single.model, sharded, single.reader)
    for question in QUESTIONS:
        q = single.query(question)
        assert _passages(sharded.search(q, single.search_settings, 5)) == _passages(
            single.index.search(q, single.search_settings, 5)), question
        a, b = single.ask(question), clustered.ask(question)
        da, db = a.to_dict(), b.to_dict()
        da.pop("timings_ms"), db.pop("timings_ms")
        assert da == db, question


def test_a_plain_index_is_one_shard(seeds_assistant):
    view = ShardedIndex.open_local(seeds_assistant.settings.index_dir)
    single = seeds_assistant.index
    assert len(view.clients) == 1 and len(view.chunks) == len(single.chunks)
    q = seeds_assistant.query(QUESTIONS[0])
    assert _passages(view.search(q)) == _passages(single.search(q))
    assert [asdict(d) for d in view.documents] == [asdict(d) for d in single.documents]


def test_a_reload_on_a_sharded_index_says_how_to_rebuild(seeds_assistant, sharded):
    from qa.cluster.assistant import ClusterReloadUnavailable

    clustered = ShardedAssistant(seeds_assistant.settings, seeds_assistant.model, sharded)
    with pytest.raises(ClusterReloadUnavailable, match="qa index --ray"):
        clustered.reload()


def _ray_modules_after(imports: str) -> list[str]:
    import subprocess
    import sys

    code = (f"import sys\n{imports}\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"'))


def test_nothing_of_ray_is_imported_without_ray():
    """`make install` has no Ray; with the extra installed, still nothing of it is imported
    until --ray: the CLI, the engine, the API and every cluster module but serve."""
    assert _ray_modules_after(
        "import qa.cli, qa.engine, qa.api, qa.retrieval.index, embeddings.store\n"
        "import embeddings.indexer\n"
        "import qa.retrieval.folder, qa.evaluation.command\n"
        "import qa.cluster, qa.retrieval.sharded.view, qa.retrieval.sharded.shard\n"
        "import qa.retrieval.sharded.layout\n"
        "import qa.cluster.stages, qa.retrieval.sharded.lexicon, qa.cluster.build\n"
        "import qa.cluster.assistant, qa.cluster.answering\n"
        "qa.cli.build_parser().parse_args(['index', '--ray', 'auto', '--shards', '2'])\n"
        "qa.cli.build_parser().parse_args(['ask', '--ray', 'auto', 'Who?'])\n"
        "qa.cli.build_parser().parse_args(['eval', 'q.jsonl', '--ray'])\n"
        "qa.cli.build_parser().parse_args(['serve', '--ray'])") == []
    try:
        import ray  # noqa: F401
    except ImportError:
        return
    # the check can fail: with the extra, the Serve module does import Ray
    assert "ray" in _ray_modules_after("import qa.cluster.serve")


@pytest.mark.parametrize("point", ["wrote-vectors", "wrote-top-manifest", "top-renamed",
                                   "top-switched"])
def test_a_sharded_build_killed_midway_leaves_the_last_good_index(seeds_assistant, tmp_path,
                                                                 point):
    """A sharded build SIGKILLed inside a shard's write or around the top switch (the one
    `qa index --ray` makes, qa.retrieval.sharded.layout.switch): the previous index stays live and
    whole, or (killed after the switch) the new one is; the next build cleans up."""
    import os
    import signal
    import subprocess
    import sys

    from embeddings import store

    folder = tmp_path / "index"
    single = seeds_assistant.index
    layout.reshard(single.data, folder, 2)
    before = store.current_generation(folder)
    code = ("from embeddings import store\nfrom qa.retrieval.sharded import layout as shards\n"
            f"data, _, _ = store.load_index({str(seeds_assistant.settings.index_dir)!r})\n"
            f"shards.reshard(data, {str(folder)!r}, 3)\n")
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120,
                         env={**os.environ, "QA_FAULT_POINT": point})
    assert run.returncode == -signal.SIGKILL
    view = ShardedIndex.open_local(folder)
    switched = point == "top-switched"
    assert (store.current_generation(folder) == before) is not switched
    assert len(view.clients) == (3 if switched else 2)
    assert list(view.chunks) == list(single.chunks)
    assert len([p for p in folder.iterdir() if p.name.startswith("gen-")]) >= 2  # leftovers
    layout.reshard(single.data, folder, 3)
    assert [p.name for p in folder.iterdir() if p.name.startswith("gen-")] == [
        store.current_generation(folder).name]


def test_bm25_ties_across_shards_merge_as_the_single_index_ranks_them(tmp_path):
    """Twelve files whose chunks score the same BM25 for the question, over five shards,
    with fewer candidates than ties: the merged rankings and the passages are the single
    index's (qa.retrieval.retrieve.top_n breaks ties by the lower chunk number, so the merge needs
    no look at the whole score vector)."""
    from corpora import query_of, tiny_index
    from qa.retrieval.retrieve import SearchSettings

    texts = {f"{i:02d}.txt": f"The ferry leaves the harbour at seven. Crew {i}x{i} waits."
             for i in range(12)}
    single = tiny_index(texts)
    layout.reshard(single.data, tmp_path / "index", 5)
    view = ShardedIndex.open_local(tmp_path / "index")
    assert len(view.clients) == 5
    q = query_of(single, "When does the ferry leave the harbour?")
    scores = single.bm25.scores(list(q.tokens))
    assert len(set(scores.tolist())) < len(scores)  # ties, across the cut of 4
    for s in (SearchSettings(candidates=4), SearchSettings(candidates=7)):
        assert _passages(view.search(q, s)) == _passages(single.search(q, s))
