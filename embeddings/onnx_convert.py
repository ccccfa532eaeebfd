"""Making an export's files: the torch → ONNX export of a transformer (token embeddings
out) with onnxruntime's fusions where they keep the output, and its dynamic int8
quantization with 7-bit weights; each file checked against torch on probe texts before
it is moved into place. The cache around them (folders, metadata, locks) is
`embeddings.onnx_export`'s. `open_session` is how every ONNX file here and in qa/ is
opened (without the fusions in UNFUSED)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from embeddings import files, lazy
from embeddings.pooling import mean_pool

log = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
# onnxruntime fuses a residual Add and LayerNormalization into SkipLayerNormalization,
# once in the transformer optimiser and again when a session loads. Its CPU kernel
# (onnxruntime 1.32) took several times as long as the ops it replaces, and the int8
# encoder ran 5-14% faster without it (benchmarks/onnx_ops.py, docs/benchmarks.md):
# exports keep the two ops apart and sessions are opened without that fusion.
UNFUSED = ["SkipLayerNormFusion"]
# Probe texts checked against torch right after an export (padding, accents, length).
_PROBES = (
    "The quick brown fox jumps over the lazy dog.",
    "Café naïve résumé — “quoted” text, 3.14 and ünïcödé.",
    "Who won the 1998 FIFA World Cup, and where was the final played?",
    "short",
    " ".join(["Shares in the company rose sharply after the results were announced."] * 30),
)


@contextlib.contextmanager
def quiet_logging(level: int) -> Iterator[None]:
    """Drop log records at `level` and below for the duration (process-wide)."""
    previous = logging.root.manager.disable
    logging.disable(max(level, previous))
    try:
        yield
    finally:
        logging.disable(previous)


def install(tmp: Path, final: Path) -> dict:
    record = {"size": tmp.stat().st_size, "sha256": files.sha256_file(tmp)}
    files.move_into_place(tmp, final)
    return record


# --- making the files ---------------------------------------------------------------------


def _reference(transformer_dir: Path, max_tokens: int, texts: Sequence[str]):
    """torch token embeddings of `texts` padded in one batch: (model, hidden, ids, mask)."""
    torch = lazy.load("torch")
    from tokenizers import Tokenizer
    AutoModel = lazy.load("transformers").AutoModel

    tokenizer = Tokenizer.from_file(str(transformer_dir / TOKENIZER_FILE))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_tokens)
    enc = tokenizer.encode_batch(list(texts))
    width = max(len(e.ids) for e in enc)
    ids = np.zeros((len(enc), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    for r, e in enumerate(enc):
        ids[r, : len(e.ids)] = e.ids
        mask[r, : len(e.ids)] = 1
    model = AutoModel.from_pretrained(str(transformer_dir), attn_implementation="eager")
    model.eval()
    with torch.inference_mode():
        hidden = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))[0]
    return model, hidden.float().numpy(), ids, mask


def open_session(path: Path, options: Any = None) -> Any:
    """An onnxruntime CPU session on `path` (default options: quiet), without the
    fusions in UNFUSED."""
    ort = lazy.load("onnxruntime")

    if options is None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=UNFUSED)


def _run_onnx(path: Path, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    session = open_session(path)
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in {i.name for i in session.get_inputs()}:
        feed["token_type_ids"] = np.zeros_like(ids)
    return session.run(["token_embeddings"], feed)[0]


def _agreement(path: Path, ids: np.ndarray, mask: np.ndarray, reference: np.ndarray) -> float:
    """The lowest cosine between the ONNX file's text vectors and `reference`'s (both on
    the 2**-11 grid, so their norms are 1 only to ~1e-4: divided out here)."""
    got = mean_pool(_run_onnx(path, ids, mask), mask).astype(np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    cos = (got * ref).sum(axis=1) / np.sqrt((got * got).sum(axis=1) * (ref * ref).sum(axis=1))
    return float(cos.min())


def export_fp32(transformer_dir: Path, max_tokens: int, folder: Path, final: str) -> dict:
    """torch.onnx.export of the transformer (token embeddings out), then onnxruntime's
    transformer fusions when they keep the output identical."""
    import inspect
    import warnings

    torch = lazy.load("torch")

    model, hidden, ids, mask = _reference(transformer_dir, max_tokens, _PROBES)
    reference = mean_pool(hidden, mask)
    config = model.config
    with_types = "token_type_ids" in inspect.signature(model.forward).parameters and (
        getattr(config, "type_vocab_size", 0) or 0) > 0
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_types else [])

    class _Wrapped(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            return self.inner(**kwargs)[0]

    sample = torch.from_numpy(ids[:2, :16].copy())
    args = (sample, torch.ones_like(sample)) + ((torch.zeros_like(sample),) if with_types else ())
    raw = files.temp_path(folder, "raw.onnx")
    dynamic = {n: {0: "batch", 1: "sequence"} for n in [*names, "token_embeddings"]}
    fused = None
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter("ignore")
            torch.onnx.export(_Wrapped(model), args, str(raw), input_names=names,
                              output_names=["token_embeddings"], dynamic_axes=dynamic,
                              opset_version=17, do_constant_folding=True, dynamo=False)
        agree = _agreement(raw, ids, mask, reference)
        if agree < 0.9999:
            raise ValueError(f"ONNX export disagrees with torch (min cosine {agree:.5f})")
        chosen = raw
        try:
            fused = files.temp_path(folder, "fused.onnx")
            fuse_transformer(raw, fused, config)
            agree = _agreement(fused, ids, mask, reference)
            if agree >= 0.9999:
                chosen = fused
            else:
                log.warning("onnxruntime fusions changed the output (min cosine %.5f); "
                            "keeping the plain export", agree)
        except Exception as exc:  # noqa: BLE001 - fusion is an optimisation only
            log.warning("onnxruntime transformer fusions failed (%s); plain export kept", exc)
        agree = _agreement(chosen, ids, mask, reference)
        record = install(chosen, folder / final)
    finally:
        for p in (raw, fused):
            if p is not None:
                with contextlib.suppress(OSError):
                    p.unlink()
    onnxruntime = lazy.load("onnxruntime")

    return {"file": record, "meta": {
        "dim": int(hidden.shape[-1]), "inputs": names, "fused": chosen is not raw,
        "checks": {"onnx_min_cosine_vs_torch": round(agree, 6)},
        "versions": {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__}}}


def fuse_transformer(src: Path, dst: Path, config: Any) -> None:
    """onnxruntime's transformer fusions (attention, GELU, embeddings) of a BERT-like
    export at `src`, written to `dst`; ValueError for a model type it has no recipe for.
    The residual Add + LayerNormalization stay apart (see UNFUSED)."""
    optimizer = lazy.load("onnxruntime.transformers.optimizer")
    FusionOptions = lazy.load("onnxruntime.transformers.fusion_options").FusionOptions

    kinds = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "distilbert": "bert",
             "electra": "bert", "camembert": "bert"}
    kind = kinds.get(getattr(config, "model_type", ""))
    if kind is None:
        raise ValueError(f"no fusion recipe for model type {config.model_type!r}")
    options = FusionOptions(kind)
    options.enable_skip_layer_norm = False
    optimized = optimizer.optimize_model(
        str(src), model_type=kind, num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size), opt_level=0, optimization_options=options)
    optimized.save_model_to_file(str(dst))


def int8_weight_range(path: Path) -> int:
    """The largest |w| over the int8 weight tensors of an ONNX file: at most 64 for a
    model whose integer products are exact on every x86-64 CPU (see `quantize_int8`)."""
    onnx = lazy.load("onnx")
    numpy_helper = lazy.load("onnx.numpy_helper")

    widest = 0
    for init in onnx.load(str(path)).graph.initializer:
        if init.data_type == onnx.TensorProto.INT8:
            values = numpy_helper.to_array(init).astype(np.int16)
            widest = max(widest, int(np.abs(values).max())) if values.size else widest
    return widest


def quantize_int8(fp32: Path, transformer_dir: Path, max_tokens: int, folder: Path,
              final: str) -> dict:
    """Dynamic int8 quantization: per-channel s8 weights in 7 bits (reduce_range), u8
    activations. With full 8-bit weights, AVX2's u8 x s8 kernel (VPMADDUBSW) saturates
    its 16-bit pair sums where VNNI does not, so the same model gives other vectors on a
    CPU without VNNI; 7-bit weights keep every pair sum in range, and AVX2, AVX-512 and
    AVX-512 VNNI compute the same integers. Checked against torch."""
    QuantType = lazy.load("onnxruntime.quantization").QuantType
    quantize_dynamic = lazy.load("onnxruntime.quantization").quantize_dynamic

    _, hidden, ids, mask = _reference(transformer_dir, max_tokens, _PROBES)
    reference = mean_pool(hidden, mask)
    tmp = files.temp_path(folder, final)
    try:
        with quiet_logging(logging.WARNING):  # "consider pre-processing": not needed here
            quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8,
                             per_channel=True, reduce_range=True,
                             extra_options={"DefaultTensorType": 1})
        widest = int8_weight_range(tmp)
        if widest > 64:
            raise ValueError(f"int8 weights reach {widest}; 7-bit weights (at most 64) "
                             "are needed for the same results on every CPU")
        agree = _agreement(tmp, ids, mask, reference)
        if agree < 0.9:
            raise ValueError(f"int8 model disagrees with torch (min cosine {agree:.4f})")
        record = install(tmp, folder / final)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    return {"file": record, "checks": {"int8_min_cosine_vs_torch": round(agree, 6),
                                       "int8_weight_range": widest}}
