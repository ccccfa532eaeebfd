"""Reader v2's training data and loop: generated unanswerable questions, windows as the
product reads them, and a resumable run that follows the uninterrupted one."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from qa.training.data import Record, build_examples, pool_examples, read_pool
from qa.training.perturb import ANTONYMS, Names, names, perturb

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)

PARA = ("The Hydra ferry was built by Aegean Lines in 1998. It leaves Piraeus at nine every "
        "morning. Captain Nikos Pappas has steered it for twenty years. The crossing takes "
        "two hours in calm weather.")
ARTICLE = PARA + "\n\n" + (
    "Aegean Lines later bought the Spetses ferry from Hellenic Seaways in 2004. The Spetses "
    "ferry sails daily. Hellenic Seaways sold three ships to Minoan Lines.")


def _records(n: int = 24) -> list[Record]:
    base = [
        ("Who built the Hydra ferry?", "Aegean Lines"),
        ("When does the ferry leave Piraeus?", "at nine every morning"),
        ("Who has steered the ferry for twenty years?", "Captain Nikos Pappas"),
        ("How long does the crossing take?", "two hours"),
    ]
    out = []
    for i in range(n):
        q, a = base[i % len(base)]
        ctx = PARA.replace("Hydra", ["Hydra", "Poros", "Aegina"][i % 3])
        out.append(Record(q.replace("Hydra", ["Hydra", "Poros", "Aegina"][i % 3]), ctx, (a,),
                          True, title=f"Ferries {i % 3}", dataset="made", license="CC0"))
    return out


@pytest.mark.parametrize("seed", range(40))
def test_a_generated_question_never_finds_what_it_put_in_in_its_paragraph(seed):
    rng = random.Random(seed)
    for q, answers in [("Who built the Hydra ferry in 1998?", ("Aegean Lines",)),
                       ("Who has steered it for twenty years?", ("Captain Nikos Pappas",)),
                       ("What is the first port of the ferry?", ("Piraeus",))]:
        made = perturb(q, PARA, ARTICLE, answers, rng)
        if made is None:
            continue
        new_q, kind, inserted = made
        assert new_q != q and kind in ("entity", "number", "condition", "antonym",
                                       "negation")
        assert inserted.lower() not in PARA.lower() or kind == "negation"
        assert not any(a.lower() in inserted.lower() for a in answers)


def test_each_kind_of_change():
    rng = random.Random(1)
    pool = Names(ARTICLE)
    from qa.training import perturb as p

    # a name the paragraph never mentions, of as many words, seen after the same word
    assert p._entity("Who built the Hydra ferry?", PARA, pool, rng) == (
        "Who built the Spetses ferry?", "Spetses")
    got = p._entity("Who bought ships from Aegean Lines?", PARA, pool, rng)
    assert got[1] in ("Hellenic Seaways", "Minoan Lines")
    got = p._number("Who built the ferry in 1998?", PARA, ARTICLE, rng)
    assert got and got[1] != "1998" and got[1] not in PARA
    got = p._condition("Who built the ferry?", PARA, ARTICLE, rng)
    assert got and got[0].endswith(f"{got[1]}?") and got[1] not in PARA
    assert p._antonym("What is the first port?", PARA, rng)[0] == "What is the last port?"
    assert ANTONYMS["last"] == "first"
    assert p._negation("Who was the captain?", PARA)[0] == "Who was not the captain?"
    # a paragraph that negates something could answer the negated question: no negation
    assert p._negation("Who was the captain?", PARA + " It is not fast.") is None


def test_names_are_capitalised_spans_not_sentence_starts():
    found = [n for n, _ in names("The ferry left. Later Captain Nikos Pappas met Aegean Lines "
                                 "in Piraeus.")]
    assert "Later" not in found and "Piraeus" in found and "Aegean Lines" in found


def test_generated_windows_are_no_answer_windows_of_changed_questions(pieces):
    recs = _records()
    plain = build_examples(recs, pieces, seed=3)
    more = build_examples(recs, pieces, seed=3, generated=1.0)
    gen = [e for e in more if e.kind.startswith("generated-")]
    assert gen and all(e.label == 0 and e.start == -1 for e in gen)
    # the records' own windows are the same with and without them
    assert [e.window.ids for e in more if not e.kind.startswith("generated-")] == \
        [e.window.ids for e in plain]


def test_pool_rows_become_examples_with_the_answer_span(pieces, tmp_path):
    rows = [{"question": "Who built the ferry?", "sentences": PARA.split(". ")[:2],
             "label": 1, "span": [PARA.find("Aegean"), PARA.find(" in 1998")],
             "kind": "retrieved", "split": "train"},
            {"question": "Who built the ferry?", "sentences": ["It rained."], "label": 0,
             "span": None, "kind": "retrieved", "split": "dev"},
            {"_question": True, "answerable": True, "gold_read": True, "split": "train"}]
    path = tmp_path / "c.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    got = read_pool([path])
    assert len(got) == 2
    train = pool_examples(got, pieces, "train")
    assert len(train) == 1 and train[0].label == 1
    w = train[0].window
    start, end = w.offsets[train[0].start][0], w.offsets[train[0].end][1]
    assert PARA.split(". ")[0][start:end] == "Aegean Lines"
    assert [e.label for e in pool_examples(got, pieces, "dev")] == [0]


def test_corpora_pack_articles_and_place_every_paragraph():
    from qa.training.pool import pack_corpora

    recs = _records(12)
    corpora = pack_corpora(recs, seed=1, paragraphs=2)
    placed = {i for c in corpora for i in c.where}
    assert placed == set(range(12))
    for c in corpora:
        for i, (name, offset) in c.where.items():
            assert c.files[name][offset:offset + len(recs[i].context)] == recs[i].context


@pytest.fixture(scope="module")
def pieces():
    from qa.reader.runtime import READER_DIR, TOKENIZER_FILE, Pieces, load_tokenizer

    return Pieces(load_tokenizer(READER_DIR / TOKENIZER_FILE))


def _tiny(tmp_path, **kw):
    from qa.training.loop import TrainConfig

    tmp_path.mkdir(parents=True, exist_ok=True)
    data = tmp_path / "d.jsonl"
    if not data.exists():
        data.write_text("".join(json.dumps({
            "question": r.question, "context": r.context, "answers": list(r.answers),
            "answerable": True, "title": r.title}) + "\n" for r in _records(40)),
            encoding="utf-8")
    kw = {"bf16": "off", "dev_fraction": 0.1, "epochs": 1.0, **kw}
    return TrainConfig(data=[str(data)], out=str(tmp_path / "out"), layers=1, batch_size=4,
                       progress=False, threads=1, generated=0.5, **kw)


def test_a_run_stopped_and_resumed_follows_the_uninterrupted_loss_curve(tmp_path):
    """fp32 on one thread: the resumed run's losses equal the uninterrupted run's (the
    tolerance, 1e-6, is for the printing of floats, not for drift)."""
    from qa.training.loop import train

    whole: dict[int, float] = {}
    got = train(_tiny(tmp_path / "a", stop_after=14), on_step=whole.__setitem__)
    assert got["stopped"] and len(whole) == 14
    parts: dict[int, float] = {}
    first = train(_tiny(tmp_path / "b", stop_after=5), on_step=parts.__setitem__)
    assert sorted(parts) == [1, 2, 3, 4, 5]
    second = train(_tiny(tmp_path / "b", stop_after=9, resume=first["state"]),
                   on_step=parts.__setitem__)
    train(_tiny(tmp_path / "b", stop_after=14, resume=second["state"]),
          on_step=parts.__setitem__)
    assert sorted(parts) == sorted(whole)
    for step in whole:
        assert parts[step] == pytest.approx(whole[step], abs=1e-6), step


def test_resuming_another_run_is_refused(tmp_path):
    from qa.training.loop import train

    first = train(_tiny(tmp_path / "a", stop_after=2))
    other = _tiny(tmp_path / "a", stop_after=2, resume=first["state"])
    other.batch_size = 8
    with pytest.raises(ValueError, match="of another run"):
        train(other)


def test_held_out_figures_under_bf16_autocast(tmp_path):
    """A checkpoint's held-out figures are computed in bf16 when training is (numpy has
    no bf16: the outputs are widened first)."""
    from qa.training.loop import train

    got = train(_tiny(tmp_path, bf16="on", stop_after=3, checkpoints=[8], dev_fraction=0.7))
    point = got["curve"][0]
    assert point["examples"] >= 8 and point["positive_windows"] > 0
    assert 0 <= point["answer_sentence_first"] <= 1 and 0 <= point["span_exact"] <= 1


def test_reader_windows_bad_input_exits_2(tmp_path, capsys):
    from qa.cli import main

    assert main(["reader", "windows", "--data", str(tmp_path / "missing.jsonl"), "--out",
                 str(tmp_path / "pool")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["reader", "train", "--data", str(tmp_path / "d.jsonl"), "--out",
                 str(tmp_path / "o"), "--generated", "1.5"]) == 2
    assert "--generated" in capsys.readouterr().err


def test_window_counts_sum_the_unanswerable_and_retrieved_and_keep_every_kind():
    from qa.training.data import Example
    from qa.training.windows import window_counts

    kinds = (["positive"] * 5 + ["unanswerable"] * 2 + ["generated-entity"] * 3
             + ["retrieved"] * 4 + ["retrieved-unanswerable"])
    counts = window_counts([Example(None, 0, kind=k) for k in kinds])
    assert counts["unanswerable"] == 2 + 3 + 1
    assert counts["retrieved"] == 4 + 1
    assert counts["unanswerable-records"] == 2 and counts["retrieved-answerable"] == 4
    raw = {k: n for k, n in counts.items() if k not in ("unanswerable", "retrieved")}
    assert sum(raw.values()) == len(kinds)  # every window counted once among the kinds


def test_windows_by_kind_count_what_a_fraction_of_an_epoch_trained_on(tmp_path):
    from qa.training.loop import train

    got = train(_tiny(tmp_path, epochs=0.5, export=False))
    kinds = {k: n for k, n in got["windows"].items() if k not in ("unanswerable", "retrieved")}
    assert sum(kinds.values()) == got["trained_windows"] > 0
    whole = train(_tiny(tmp_path / "whole", export=False))
    assert whole["trained_windows"] > got["trained_windows"]
