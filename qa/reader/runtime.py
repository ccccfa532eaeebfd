"""The reading model: reads a question with a window of consecutive sentences and scores
each sentence as the answer, the window as holding no answer, and the answer phrase.

One forward pass reads `[CLS] question [SEP] sentence_1 … sentence_n [SEP]` (question
type 0, sentences type 1). The network (a fine-tuned MiniLM, `qa reader train`) gives
three logits per token (answer start, answer end, "in the answer sentence") and one for
the window from `[CLS]` ("no answer here"). A sentence's logit is the mean of its
tokens' third logit; its *score* is that minus the window's no-answer logit, the
log-odds that it, rather than nothing in the window, answers, which makes scores of
different windows comparable. The phrase is the best start/end pair inside the sentence.

This module needs only numpy, tokenizers and onnxruntime (the int8 ONNX export ships in
`qa/data/reader/`); training lives in `qa.training.loop`. The window encoding below is the
one both use, so what the model reads at answer time is what it was trained on.
"""

from __future__ import annotations

import json
import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embeddings import lazy
from embeddings.errors import Unusable
from embeddings.exact import tree_sum
from embeddings.lexical import LINE_END_HYPHEN
from embeddings.onnx_convert import open_session

READER_DIR = Path(__file__).resolve().parent.parent / "data" / "reader"
MODEL_FILE = "model-int8.onnx"
FP32_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
META_FILE = "reader.json"
FORMAT = 1  # bump when inputs or outputs change meaning

MAX_TOKENS = 192  # the whole input, special tokens included
MAX_QUESTION_TOKENS = 48
MAX_SPAN_TOKENS = 30  # longest answer phrase, in word pieces


class ReaderUnusable(Unusable):
    """The reader folder is missing files or of another format (a broken install, not bad
    input): the message names the fix."""


@dataclass(frozen=True)
class Window:
    """One encoded model input. `sentence_of[t]` is the sentence (0-based, within the
    window) of token t, or -1 for [CLS], the question and [SEP]s; `offsets[t]` are the
    token's character offsets within that sentence. `n_sentences` sentences fit (a longer
    window is cut at MAX_TOKENS, its last sentences dropped or truncated)."""

    ids: tuple[int, ...]
    types: tuple[int, ...]
    sentence_of: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    n_sentences: int


def load_tokenizer(path: Path | str):
    """The word-piece tokenizer from a tokenizer.json, without padding or truncation, that
    reads a word hyphenated at a line end ("infor-\nmation", PDF text) as one word; its
    offsets still point into the text as given."""
    from tokenizers import Regex, Tokenizer, normalizers

    tok = Tokenizer.from_file(str(path))
    tok.no_padding()
    tok.no_truncation()
    joined = normalizers.Replace(Regex(LINE_END_HYPHEN), "")
    tok.normalizer = (normalizers.Sequence([joined, tok.normalizer])
                      if tok.normalizer is not None else joined)
    return tok


class Pieces:
    """Word pieces of texts (ids and character offsets), computed once per text."""

    def __init__(self, tokenizer, cache_size: int = 50_000) -> None:
        self.tokenizer = tokenizer
        self.cls = tokenizer.token_to_id("[CLS]")
        self.sep = tokenizer.token_to_id("[SEP]")
        self._cache: dict[str, tuple[tuple[int, ...], tuple[tuple[int, int], ...]]] = {}
        self._size = cache_size
        self._lock = threading.Lock()

    def __call__(self, text: str) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
        got = self._cache.get(text)
        if got is None:
            e = self.tokenizer.encode(text, add_special_tokens=False)
            got = (tuple(e.ids), tuple(e.offsets))
            with self._lock:
                if len(self._cache) >= self._size:
                    self._cache.clear()
                self._cache[text] = got
        return got

    def many(self, texts: Sequence[str]) -> None:
        """Tokenize the texts not seen yet in one batch call (faster than one by one)."""
        new = [t for t in dict.fromkeys(texts) if t not in self._cache]
        if not new:
            return
        enc = self.tokenizer.encode_batch(new, add_special_tokens=False)
        with self._lock:
            if len(self._cache) + len(new) > self._size:
                self._cache.clear()
            for t, e in zip(new, enc, strict=True):
                self._cache[t] = (tuple(e.ids), tuple(e.offsets))


def encode_window(pieces: Pieces, question: str, sentences: Sequence[str],
                  max_tokens: int = MAX_TOKENS) -> Window:
    """The model input for `question` read with `sentences` (consecutive, in order)."""
    q_ids = pieces(question)[0][:MAX_QUESTION_TOKENS]
    ids = [pieces.cls, *q_ids, pieces.sep]
    types = [0] * len(ids)
    sentence_of = [-1] * len(ids)
    offsets: list[tuple[int, int]] = [(0, 0)] * len(ids)
    room = max_tokens - len(ids) - 1
    n = 0
    for k, text in enumerate(sentences):
        if room <= 0:
            break
        s_ids, s_off = pieces(text)
        if not s_ids:
            continue
        s_ids, s_off = s_ids[:room], s_off[:room]
        ids.extend(s_ids)
        types.extend([1] * len(s_ids))
        sentence_of.extend([k] * len(s_ids))
        offsets.extend(s_off)
        room -= len(s_ids)
        n = k + 1
    ids.append(pieces.sep)
    types.append(1)
    sentence_of.append(-1)
    offsets.append((0, 0))
    return Window(tuple(ids), tuple(types), tuple(sentence_of), tuple(offsets), n)


def batch_arrays(windows: Sequence[Window]) -> dict[str, np.ndarray]:
    """Pad windows into the model's int64 inputs."""
    width = max(len(w.ids) for w in windows)
    ids = np.zeros((len(windows), width), dtype=np.int64)
    types = np.zeros_like(ids)
    mask = np.zeros_like(ids)
    for r, w in enumerate(windows):
        n = len(w.ids)
        ids[r, :n] = w.ids
        types[r, :n] = w.types
        mask[r, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@dataclass(frozen=True)
class SentenceReading:
    """What the reader made of one sentence of a window.

    logit: the sentence's own logit; score: logit minus the window's no-answer logit;
    span: the answer phrase as character offsets within the sentence (None if no token
    of the sentence fit), span_score its start + end logit.
    """

    logit: float
    score: float
    span: tuple[int, int] | None
    span_score: float


@dataclass(frozen=True)
class WindowReading:
    null: float  # the window's no-answer logit
    sentences: tuple[SentenceReading, ...]  # one per sentence that fit


def sentence_logits(token_logits: np.ndarray, sentence_of: Sequence[int],
                    n_sentences: int) -> np.ndarray:
    """Mean of the tokens' sentence logit (column 2) per sentence 0..n_sentences-1."""
    of = np.asarray(sentence_of)
    out = np.full(n_sentences, -np.inf)
    for k in range(n_sentences):
        sel = of == k
        if sel.any():
            out[k] = float(tree_sum(token_logits[sel, 2].astype(np.float64))[0] / sel.sum())
    return out


def best_span(start: np.ndarray, end: np.ndarray,
              max_len: int = MAX_SPAN_TOKENS) -> tuple[int, int, float]:
    """(i, j, start[i] + end[j]) maximising the sum with i <= j < i + max_len."""
    n = len(start)
    total = start[:, None] + end[None, :]
    i, j = np.indices((n, n))
    total = np.where((j >= i) & (j - i < max_len), total, -np.inf)
    flat = int(np.argmax(total))
    bi, bj = divmod(flat, n)
    return bi, bj, float(total[bi, bj])


def interpret(window: Window, token_logits: np.ndarray, null_logit: float) -> WindowReading:
    """Turn one window's raw outputs (its rows of token logits, unpadded) into readings."""
    of = np.asarray(window.sentence_of)
    logits = sentence_logits(token_logits, window.sentence_of, window.n_sentences)
    out = []
    for k in range(window.n_sentences):
        rows = np.flatnonzero(of == k)
        if not len(rows):
            out.append(SentenceReading(float(logits[k]), float(logits[k] - null_logit),
                                       None, -np.inf))
            continue
        i, j, s = best_span(token_logits[rows, 0], token_logits[rows, 1])
        span = (window.offsets[rows[i]][0], window.offsets[rows[j]][1])
        out.append(SentenceReading(float(logits[k]), float(logits[k] - null_logit), span, s))
    return WindowReading(float(null_logit), tuple(out))


class ExactNet:
    """The reader's network from its int8 ONNX file (`qa reader export`), computed with
    `embeddings.exact`: the same logits, bit for bit, on every x86-64 CPU. The file's
    7-bit weights and scales are used as they are; its 8-bit embedding tables are
    dequantised once. The arrays are kept as a .npz under $QA_HOME/models/ (named by the
    file's hash), so later loads skip the onnx package (~0.7 s to import)."""

    def __init__(self, path: Path) -> None:
        from embeddings.exact import Bert, Layer, QLinear

        w = reader_weights(path)
        emb = {"word": w["emb.word"], "position": w["emb.position"], "type": w["emb.type"],
               "ln": (w["emb.ln.w"], w["emb.ln.b"])}

        def linear(name):
            return QLinear.from_int8(w[f"{name}.w"], w[f"{name}.s"], w[f"{name}.b"])

        layers = [Layer(linear(f"{i}.qkv"), linear(f"{i}.out"), (w[f"{i}.ln1.w"],
                                                                   w[f"{i}.ln1.b"]),
                        linear(f"{i}.up"), linear(f"{i}.down"),
                        (w[f"{i}.ln2.w"], w[f"{i}.ln2.b"]))
                  for i in range(int(w["layers"]))]
        self.bert = Bert(emb, layers, int(w["heads"]), float(w["eps"]))
        self.tokens = linear("tokens")
        self.null = linear("null")
        self.bert.warm()  # compile or load every kernel variant now

    def __call__(self, arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Padded model inputs (`batch_arrays`) -> token logits (b, n, 3), null logits (b,).
        A window's outputs depend on that window alone."""
        from embeddings import exact_kernels as k
        from embeddings.exact import ACT_MAX

        hidden = self.bert(arrays["input_ids"], arrays["attention_mask"],
                           arrays["token_type_ids"])
        b, n, h = hidden.shape
        flat = hidden.reshape(b * n, h)
        q, s = k.quantize(flat, ACT_MAX)
        tok = k.dequantize(self.tokens.acc(q), s, self.tokens.scale, self.tokens.bias)
        cls = np.ascontiguousarray(hidden[:, 0])
        q, s = k.quantize(cls, ACT_MAX)
        null = k.dequantize(self.null.acc(q), s, self.null.scale, self.null.bias)
        return tok.reshape(b, n, -1), null[:, 0]


def reader_weights(path: Path) -> dict[str, np.ndarray]:
    """The arrays ExactNet needs from an int8 reader export, from the .npz cache when it
    holds this file's (by SHA-256), else read from the ONNX file and cached."""
    from embeddings import files

    cache = files.qa_home() / "models" / f"reader-{files.sha256_file(path)[:16]}.npz"
    if cache.is_file():
        try:
            with np.load(cache) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):  # damaged: read again
            pass
    weights = _weights_from_onnx(path)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = files.temp_path(cache.parent, cache.name)
        with open(tmp, "wb") as f:
            np.savez(f, **weights)
        files.move_into_place(tmp, cache)
    except OSError:  # a read-only home: answer anyway, just slower to start
        pass
    return weights


def _weights_from_onnx(path: Path) -> dict[str, np.ndarray]:
    onnx = lazy.load("onnx")
    numpy_helper = lazy.load("onnx.numpy_helper")

    model = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = model.graph.node
    matmuls = {n.output[0]: n for n in nodes if n.op_type == "MatMulInteger"}
    out: dict[str, np.ndarray] = {}

    def deq(name):
        q = init[f"{name}_quantized"].astype(np.float32)
        zp = np.float32(init[f"{name}_zero_point"])
        return np.ascontiguousarray((q - zp) * np.float32(init[f"{name}_scale"]))

    def find(part):
        hits = [n for o, n in matmuls.items() if part in o]
        if len(hits) != 1:
            raise ReaderUnusable(f"{path} is not a reader export this version reads "
                                 f"({part}): export it again with `qa reader export`")
        return hits[0]

    def linear(key, node, bias):
        w, zp = init[node.input[1]], init[node.input[3]]
        if np.any(zp != 0):
            raise ReaderUnusable(f"{path}: asymmetric weights are not supported")
        out[f"{key}.w"] = w
        out[f"{key}.s"] = init[node.input[1][: -len("quantized")] + "scale"]
        out[f"{key}.b"] = bias

    attention = [n for n in nodes if n.op_type == "QAttention"]
    embed = [n for n in nodes if n.op_type == "QEmbedLayerNormalization"]
    if not attention or len(embed) != 1:
        raise ReaderUnusable(f"{path} is not a fused int8 reader export: export it again "
                             "with `qa reader export`")
    out["heads"] = np.array(next(int(onnx.helper.get_attribute_value(a))
                                 for a in attention[0].attribute if a.name == "num_heads"))
    out["eps"] = np.array(next((float(onnx.helper.get_attribute_value(a))
                                for a in embed[0].attribute if a.name == "epsilon"), 1e-12))
    out["layers"] = np.array(len(attention))
    e = "bert.embeddings."
    for key, name in (("word", "word_embeddings.weight"),
                      ("position", "position_embeddings.weight"),
                      ("type", "token_type_embeddings.weight"),
                      ("ln.w", "LayerNorm.weight"), ("ln.b", "LayerNorm.bias")):
        out[f"emb.{key}"] = deq(e + name)
    for i, node in enumerate(attention):
        a = f"bert.encoder.layer.{i}."
        out[f"{i}.qkv.w"], out[f"{i}.qkv.s"] = init[node.input[1]], init[node.input[4]]
        out[f"{i}.qkv.b"] = init[node.input[2]]
        linear(f"{i}.out", find(f"layer.{i}/attention/output/dense"),
               init[a + "attention.output.dense.bias"])
        linear(f"{i}.up", find(f"layer.{i}/intermediate/dense"),
               init[a + "intermediate.dense.bias"])
        linear(f"{i}.down", find(f"layer.{i}/output/dense"), init[a + "output.dense.bias"])
        for key, name in (("ln1", "attention.output.LayerNorm"), ("ln2", "output.LayerNorm")):
            out[f"{i}.{key}.w"] = init[a + name + ".weight"]
            out[f"{i}.{key}.b"] = init[a + name + ".bias"]
    linear("tokens", find("/tokens/"), init["tokens.bias"])
    linear("null", find("/null/"), init["null.bias"])
    return out


class Reader:
    """A trained reader loaded from its folder (tokenizer.json, reader.json and the ONNX
    model). Thread-safe. By default the network runs on `ExactNet` (the same figures on
    every CPU; windows batched together, each window's figures its own); `fp32=True`
    runs the fp32 ONNX file with onnxruntime instead (checks and calibration), one window
    per pass, up to `workers` side by side."""

    def __init__(self, folder: Path | str = READER_DIR, *, fp32: bool = False,
                 workers: int | None = None) -> None:
        import os

        self.folder = Path(folder)
        meta_path = self.folder / META_FILE
        model_path = self.folder / (FP32_FILE if fp32 else MODEL_FILE)
        for p in (meta_path, model_path, self.folder / TOKENIZER_FILE):
            if not p.is_file():
                raise ReaderUnusable(
                    f"reader folder {self.folder} has no {p.name}: reinstall the project "
                    f"(make install), point QA_READER at a folder written by "
                    f"`qa reader train`, or set QA_READER=off")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if self.meta.get("format") != FORMAT:
            raise ReaderUnusable(
                f"{meta_path} is reader format {self.meta.get('format')!r}, this version "
                f"reads {FORMAT}: retrain it with `qa reader train` or set QA_READER=off")
        self.max_tokens = int(self.meta.get("max_tokens", MAX_TOKENS))
        self.pieces = Pieces(load_tokenizer(self.folder / TOKENIZER_FILE))
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
        self.workers = max(1, workers or cores)
        self._pool = None
        self._pool_lock = threading.Lock()
        self.exact = None if fp32 else ExactNet(model_path)
        if self.exact is not None:
            return
        ort = lazy.load("onnxruntime")

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self.session = open_session(model_path, options)

    def encode(self, question: str, sentences: Sequence[str]) -> Window:
        return encode_window(self.pieces, question, sentences, self.max_tokens)

    def _one(self, w: Window) -> tuple[np.ndarray, float]:
        tok, null = self.session.run(["token_logits", "null_logit"], batch_arrays([w]))
        return tok[0, : len(w.ids)], float(null[0])

    def run(self, windows: Sequence[Window]) -> list[tuple[np.ndarray, float]]:
        """Raw outputs per window: (token logits (len, 3), no-answer logit), in order."""
        if self.exact is not None:
            if not windows:
                return []
            tok, null = self.exact(batch_arrays(windows))
            return [(tok[r, : len(w.ids)], float(null[r])) for r, w in enumerate(windows)]
        if self.workers == 1 or len(windows) < 2:
            return [self._one(w) for w in windows]
        with self._pool_lock:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="reader")
        # longest first, so the last window to finish is a short one
        order = sorted(range(len(windows)), key=lambda i: -len(windows[i].ids))
        futures = {i: self._pool.submit(self._one, windows[i]) for i in order}
        return [futures[i].result() for i in range(len(windows))]

    def read(self, question: str, windows: Sequence[Sequence[str]]) -> list[WindowReading]:
        """Read `question` with each window of consecutive sentences."""
        texts = [t for w in windows for t in w]
        self.pieces.many([question, *texts])
        encoded = [self.encode(question, w) for w in windows]
        return [interpret(w, tok, null) for w, (tok, null) in
                zip(encoded, self.run(encoded), strict=True)]
