"""The reader's export: ONNX fp32 (fused where onnxruntime's optimiser keeps the
output), int8 with 7-bit weights (the same integers on AVX2 and AVX-512/VNNI), checked on
fixed probes whose fp32 outputs go into reader.json, and the model card."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from embeddings import lazy
from qa.reader.runtime import (
    FORMAT,
    FP32_FILE,
    MAX_QUESTION_TOKENS,
    MAX_TOKENS,
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    ExactNet,
    Pieces,
    Window,
    batch_arrays,
    encode_window,
    load_tokenizer,
    sentence_logits,
)
from qa.training.net import build_net

log = logging.getLogger(__name__)

PROBES = (
    ("How much did the bridge cost?",
     ["The bridge was opened by the mayor on Monday.", "It cost 38 million euros.",
      "Traffic is expected to ease."]),
    ("Who did Blinken meet in Beijing?",
     ["Blinken arrived in Beijing on Sunday.",
      "On Monday he met with Chinese President Xi Jinping for 35 minutes."]),
    ("When was the treaty signed?",
     ["The treaty ended the war.", "Both sides had lost thousands of soldiers."]),
    ("What is the capital of France?", ["Paris is the capital and largest city of France."]),
    ("Does the US support Taiwan independence?",
     ["\"We do not support Taiwan independence.\"", "Blinken said after the talks."]),
    ("Which river flows through the city?",
     ["The city lies on the banks of the Danube.", "It has two million inhabitants.",
      "Its university was founded in 1348.", "The old town is a World Heritage Site."]),
)



def probe_windows(pieces: Pieces) -> list[Window]:
    return [encode_window(pieces, q, s) for q, s in PROBES]


def _exact_outputs(path: Path, windows: Sequence[Window]) -> list[tuple[np.ndarray, float]]:
    net = ExactNet(path)
    out = []
    for w in windows:
        tok, null = net(batch_arrays([w]))
        out.append((tok[0, : len(w.ids)], float(null[0])))
    return out


def _onnx_outputs(path: Path, windows: Sequence[Window]) -> list[tuple[np.ndarray, float]]:
    ort = lazy.load("onnxruntime")

    from embeddings.onnx_convert import open_session

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = open_session(path, options)
    out = []
    for w in windows:
        tok, null = session.run(["token_logits", "null_logit"], batch_arrays([w]))
        out.append((tok[0, : len(w.ids)], float(null[0])))
    return out


def probe_figures(outputs, windows) -> list[dict]:
    """Per probe: the no-answer logit and each sentence's logit (what reader.json keeps of
    fp32, to compare other builds with)."""
    rows = []
    for (tok, null), w in zip(outputs, windows, strict=True):
        logits = sentence_logits(tok, w.sentence_of, w.n_sentences)
        rows.append({"null": round(null, 5), "sentences": [round(float(x), 5) for x in logits]})
    return rows


def max_difference(a: list[dict], b: list[dict]) -> float:
    """Largest absolute difference of any score (sentence logit minus no-answer logit)."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        for sx, sy in zip(x["sentences"], y["sentences"], strict=True):
            worst = max(worst, abs((sx - x["null"]) - (sy - y["null"])))
    return worst


def export(net, source: Path, out: Path, summary: dict) -> None:
    """fp32 ONNX (fused where onnxruntime's optimiser keeps the output), int8 from it,
    both checked on the probes; the tokenizer copied beside them."""
    import warnings

    torch = lazy.load("torch")

    from embeddings.onnx_convert import fuse_transformer

    net.eval()
    shutil.copyfile(source / TOKENIZER_FILE, out / TOKENIZER_FILE)
    pieces = Pieces(load_tokenizer(out / TOKENIZER_FILE))
    windows = probe_windows(pieces)
    with torch.inference_mode():
        reference = []
        for w in windows:
            t = {k: torch.from_numpy(v) for k, v in batch_arrays([w]).items()}
            tok, null = net(t["input_ids"], t["attention_mask"], t["token_type_ids"])
            reference.append((tok[0].numpy(), float(null[0])))
    ref = probe_figures(reference, windows)
    sample = {k: torch.from_numpy(v) for k, v in batch_arrays(windows[:2]).items()}
    raw = out / "raw.onnx"
    names = ["input_ids", "attention_mask", "token_type_ids"]
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic["token_logits"] = {0: "batch", 1: "sequence"}
    dynamic["null_logit"] = {0: "batch"}
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, tuple(sample[n] for n in names), str(raw), input_names=names,
                          output_names=["token_logits", "null_logit"], dynamic_axes=dynamic,
                          opset_version=17, do_constant_folding=True, dynamo=False)
    plain = probe_figures(_onnx_outputs(raw, windows), windows)
    checks = {"onnx_vs_torch": round(max_difference(ref, plain), 6)}
    chosen = raw
    fused = out / "fused.onnx"
    try:
        fuse_transformer(raw, fused, net.bert.config)
        fused_fig = probe_figures(_onnx_outputs(fused, windows), windows)
        if max_difference(ref, fused_fig) < 1e-3:
            chosen, checks["fused_vs_torch"] = fused, round(max_difference(ref, fused_fig), 6)
    except Exception as exc:  # noqa: BLE001 - fusion is an optimisation only
        log.warning("onnxruntime fusions failed (%s); plain export kept", exc)
    os.replace(chosen, out / FP32_FILE)
    for p in (raw, fused):
        with contextlib.suppress(OSError):
            p.unlink()
    quantize_int8(out / FP32_FILE, out / MODEL_FILE)
    q = probe_figures(_onnx_outputs(out / MODEL_FILE, windows), windows)
    checks["int8_vs_fp32"] = round(max_difference(ref, q), 4)  # onnxruntime's int8
    # what answering runs: the same int8 file on embeddings.exact (qa.reader.runtime)
    e = probe_figures(_exact_outputs(out / MODEL_FILE, windows), windows)
    checks["exact_vs_fp32"] = round(max_difference(ref, e), 4)
    summary["checks"] = checks
    summary["probes"] = [{"question": qq, "sentences": s, "fp32": r}
                         for (qq, s), r in zip(PROBES, ref, strict=True)]
    summary["fused"] = chosen is fused


def export_checkpoint(checkpoint: Path, out: Path, base: str = "all-MiniLM-L6-v2",
                      layers: int | None = None) -> None:
    """Export a saved checkpoint (a state dict of `train`) to a reader folder, keeping the
    training summary of `out/reader.json` if there is one (for figures of a point on the
    learning curve)."""
    torch = lazy.load("torch")


    net, source = build_net(base, layers)
    net.load_state_dict(torch.load(checkpoint, map_location="cpu"))
    out.mkdir(parents=True, exist_ok=True)
    old = out / META_FILE
    summary = json.loads(old.read_text()) if old.is_file() else {}
    summary = {k: v for k, v in summary.items() if k not in ("format", "max_tokens",
                                                              "max_question_tokens")}
    summary["checkpoint"] = str(checkpoint)
    export(net, source, out, summary)
    write_meta(out, summary)


def quantize_int8(fp32: Path, dst: Path) -> None:
    """Dynamic int8: per-channel s8 weights in 7 bits (reduce_range). u8 activations times
    7-bit weights never overflow AVX2's 16-bit pair sums (VPMADDUBSW), so AVX2,
    AVX-512 and AVX-512 VNNI compute the same integers."""
    QuantType = lazy.load("onnxruntime.quantization").QuantType
    quantize_dynamic = lazy.load("onnxruntime.quantization").quantize_dynamic

    from embeddings.onnx_convert import quiet_logging

    with quiet_logging(logging.WARNING):
        quantize_dynamic(str(fp32), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True, extra_options={"DefaultTensorType": 1})


def write_meta(out: Path, summary: dict) -> None:
    meta = {"format": FORMAT, "max_tokens": MAX_TOKENS,
            "max_question_tokens": MAX_QUESTION_TOKENS, **summary}
    (out / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")


def write_card(out: Path, evaluation: str = "") -> None:
    """The model card (README.md) from reader.json, with an optional evaluation section."""
    meta = json.loads((out / META_FILE).read_text(encoding="utf-8"))
    cfg = meta["config"]
    lines = [
        "# cited-qa reader", "",
        "A reading model for cited-qa's extractive answerer: given a question and a window "
        "of consecutive sentences, it scores each sentence as the answer, the window as "
        "holding none, and marks the answer phrase (see `qa/reader/runtime.py`).", "",
        "## Model", "",
        f"- Base: `{cfg['base']}` (MiniLM, BERT architecture, Apache-2.0), "
        f"{cfg['layers'] or 'all'} layers, fine-tuned with two heads (per token: answer "
        "start, answer end, in-answer-sentence; per window from [CLS]: no answer).",
        f"- Inputs: at most {meta['max_tokens']} word pieces "
        f"(question ≤ {meta['max_question_tokens']}).",
        "- Files: `model-int8.onnx` (dynamic int8, per-channel 7-bit weights: the same "
        "integers on AVX2 and AVX-512/VNNI), `tokenizer.json`, `reader.json` (format, "
        "training summary, fp32 outputs on fixed probes). The fp32 `model.onnx` and "
        "`reader.pt` stay in the training folder.", "",
        "## Training data", "",
        "| dataset | licence | records |", "|---|---|---|",
        *[f"| {d['dataset']} | {d['license']} | {d['records']:,} |" for d in meta["datasets"]],
        "",
        f"{meta['records']:,} records read, {meta['dev_records']:,} held out (by paragraph) "
        f"for the figures below; training windows: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(meta["windows"].items())) + ".",
        "The licences above carry over to this model: attribute the datasets (SQuAD 2.0, "
        "Rajpurkar, Jia & Liang 2018; SQuADShifts, Miller et al. 2020; QED, Lamm et al. "
        "2021; SelQA, Jurczyk et al. 2016) when you redistribute it.", "",
        "## Command", "",
        "```sh", meta["config"].get("command") or "qa reader train ...", "```", "",
        f"Seed {cfg['seed']}, batch {cfg['batch_size']}, learning rate {cfg['lr']} (heads "
        f"{cfg['head_lr']}), {cfg['epochs']} epoch(s), {meta['threads']} CPU threads. "
        f"Wall time: training {meta['train_seconds'] / 60:.0f} min, "
        f"with export {meta.get('total_seconds', meta['train_seconds']) / 60:.0f} min. "
        f"Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".",
        *([f"Note: {meta['stopped']}."] if meta.get("stopped") else []), "",
        "## Figures on the held-out windows (learning curve)", "",
        "| training windows | questions | answer sentence first | no-answer first "
        "(negative windows) | span exact | minutes |", "|---|---|---|---|---|---|",
        *[f"| {p['examples']:,} | {p['questions']:,} | {p['answer_sentence_first']:.3f} | "
          f"{p['no_answer_first']:.3f} | {p['span_exact']:.3f} | {p['elapsed_s'] / 60:.0f} |"
          for p in meta["curve"]],
        "",
        f"int8 against fp32 on the probes: largest score difference "
        f"{meta['checks']['int8_vs_fp32']} (logits).", "",
    ]
    if evaluation:
        lines += ["## In the product", "", evaluation.strip(), ""]
    (out / "README.md").write_text("\n".join(lines), encoding="utf-8")


def ship(out: Path, dest: Path) -> None:
    """Copy what the product loads (int8 model, tokenizer, reader.json, stack.json, card)
    to dest."""
    from qa.answering.reading import STACK_FILE

    dest.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, TOKENIZER_FILE, META_FILE, "README.md", STACK_FILE):
        if name == STACK_FILE and not (out / name).is_file():
            continue
        shutil.copyfile(out / name, dest / name)
