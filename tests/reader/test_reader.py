"""qa/reader/runtime.py: the window encoding both training and answering use, and the turning of
raw logits into sentence scores and answer phrases (hand-made logits, no model); the
shipped int8 reader against its recorded fp32 outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from qa.reader import runtime as R


@pytest.fixture(scope="module")
def pieces():
    from embeddings.onnx_export import model_folder, transformer_folder

    folder = transformer_folder(model_folder("all-MiniLM-L6-v2"))
    return R.Pieces(R.load_tokenizer(folder / R.TOKENIZER_FILE))


def test_a_window_is_cls_question_sep_sentences_sep(pieces):
    w = R.encode_window(pieces, "Who paid?", ["It cost 38 euros.", "Lyon paid."])
    tokens = [pieces.tokenizer.id_to_token(i) for i in w.ids]
    assert tokens == ["[CLS]", "who", "paid", "?", "[SEP]", "it", "cost", "38", "euros", ".",
                      "lyon", "paid", ".", "[SEP]"]
    assert w.types == (0,) * 5 + (1,) * 9
    assert w.sentence_of == (-1,) * 5 + (0,) * 5 + (1,) * 3 + (-1,)
    assert w.offsets[5:10] == ((0, 2), (3, 7), (8, 10), (11, 16), (16, 17))
    assert w.n_sentences == 2


def test_long_windows_are_cut_at_the_token_limit(pieces):
    long = " ".join(["word"] * 300) + "."
    w = R.encode_window(pieces, "What?", ["Short one.", long, "Never reached."], max_tokens=40)
    assert len(w.ids) == 40 and w.ids[-1] == pieces.sep
    assert w.n_sentences == 2 and 2 not in w.sentence_of
    q = R.encode_window(pieces, " ".join(["why"] * 100), ["A."])
    assert q.sentence_of.count(-1) == R.MAX_QUESTION_TOKENS + 3


def test_sentence_logits_are_token_means():
    tok = np.zeros((6, 3))
    tok[:, 2] = [9, 1, 3, 5, 7, 9]
    logits = R.sentence_logits(tok, [-1, 0, 0, 1, 1, -1], 3)
    assert logits[0] == pytest.approx((1 + 3) / 2) and logits[1] == pytest.approx(6)
    assert logits[2] == -np.inf


def test_best_span_respects_order_and_length():
    start = np.array([0.0, 5.0, 0.0, 0.0])
    end = np.array([8.0, 0.0, 0.0, 4.0])  # (0, 0) scores 8, (1, 3) 9; (1, 0) is not allowed
    assert R.best_span(start, end) == (1, 3, 9.0)
    assert R.best_span(start, end, max_len=2) == (0, 0, 8.0)  # (1, 3) is 3 tokens long


def test_interpret_gives_scores_against_no_answer_and_phrases_in_sentence_offsets(pieces):
    w = R.encode_window(pieces, "Who paid?", ["It cost 38 euros.", "Lyon paid."])
    tok = np.zeros((len(w.ids), 3))
    tok[5:10, 2] = 2.0  # sentence 0
    tok[10:13, 2] = -1.0
    tok[7, 0], tok[8, 1] = 3.0, 3.0  # phrase "38 euros" in sentence 0
    r = R.interpret(w, tok, null_logit=0.5)
    assert r.null == 0.5 and len(r.sentences) == 2
    first = r.sentences[0]
    assert first.logit == 2.0 and first.score == 1.5 and first.span_score == 6.0
    assert "It cost 38 euros."[slice(*first.span)] == "38 euros"
    assert r.sentences[1].score == -1.5


def test_a_missing_reader_folder_names_the_fix(tmp_path):
    with pytest.raises(R.ReaderUnusable, match="QA_READER=off"):
        R.Reader(tmp_path)
    (tmp_path / R.META_FILE).write_text(json.dumps({"format": 999}))
    (tmp_path / R.MODEL_FILE).write_bytes(b"")
    (tmp_path / R.TOKENIZER_FILE).write_text("{}")
    with pytest.raises(R.ReaderUnusable, match="retrain"):
        R.Reader(tmp_path)


# What the shipped int8 reader, as answering runs it (embeddings.exact), may differ from
# its fp32 export on the probes, in logits (sentence score against no answer). Measured
# at export: reader.json "checks" "exact_vs_fp32" (0.544 for the reader of 2026-12-06;
# "int8_vs_fp32" is onnxruntime's dynamic int8 of the same file, 1.006, kept for
# comparison); the bound keeps a margin above it.
INT8_TOLERANCE = 0.6


@pytest.fixture(scope="module")
def shipped():
    from qa.reader.runtime import READER_DIR

    if not (READER_DIR / R.MODEL_FILE).is_file():
        pytest.fail(f"no shipped reader in {READER_DIR}: the package data is incomplete")
    return R.Reader(READER_DIR, workers=1)


def test_shipped_int8_reader_matches_its_fp32_outputs_on_the_probes(shipped):
    from qa.training.export import PROBES

    probes = shipped.meta["probes"]
    assert [p["question"] for p in probes] == [q for q, _ in PROBES]
    assert shipped.meta["checks"]["exact_vs_fp32"] <= INT8_TOLERANCE
    for p, (question, sentences) in zip(probes, PROBES, strict=True):
        result = shipped.read(question, [sentences])[0]
        fp32 = np.array(p["fp32"]["sentences"]) - p["fp32"]["null"]
        int8 = np.array([s.score for s in result.sentences])
        assert np.abs(int8 - fp32).max() <= INT8_TOLERANCE, p["question"]
        # the same decisions: the same best sentence, and the same side of "no answer"
        # wherever fp32 is not within the tolerance of a tie
        assert int(np.argmax(int8)) == int(np.argmax(fp32)), p["question"]
        for a, b in zip(int8, fp32, strict=True):
            if abs(b) > INT8_TOLERANCE:
                assert (a > 0) == (b > 0), p["question"]


def test_shipped_reader_has_7_bit_weights_so_every_cpu_computes_the_same_integers():
    from embeddings.onnx_convert import int8_weight_range
    from qa.reader.runtime import READER_DIR

    assert int8_weight_range(READER_DIR / R.MODEL_FILE) <= 64


def test_exact_net_weights_are_cached_by_file_hash_and_a_damaged_cache_is_redone(
        tmp_path, monkeypatch):
    from embeddings import files
    from qa.reader.runtime import READER_DIR

    monkeypatch.setenv("QA_HOME", str(tmp_path))
    first = R.reader_weights(READER_DIR / R.MODEL_FILE)
    (cache,) = (files.qa_home() / "models").glob("reader-*.npz")
    again = R.reader_weights(READER_DIR / R.MODEL_FILE)  # from the .npz, no onnx import
    assert first.keys() == again.keys() and int(first["layers"]) == 6
    for key in first:
        np.testing.assert_array_equal(first[key], again[key])
    cache.write_bytes(b"not a zip")
    redone = R.reader_weights(READER_DIR / R.MODEL_FILE)
    np.testing.assert_array_equal(redone["0.qkv.w"], first["0.qkv.w"])
