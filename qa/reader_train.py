"""Train the reading model of `qa.reader`: `qa reader train --data FILE... --out DIR`.

Data: JSON lines (optionally gzipped), one question a record, as in `shared/train`:
`{"question", "context", "answers": [str], "answerable": bool}`, optionally
`answer_sentences` (the gold sentence texts), `source_dataset` and `license` (listed in
the model card). Every record becomes windows of consecutive sentences of its context
(split by the product's own sentence splitter, sized like answer-time windows):

- a positive window holding the answer sentence (label: that sentence; span: the answer
  string where it occurs in it);
- a negative window labelled "no answer": half the time the same window with the answer
  sentence taken out (the question's words are still there, the answer is not: the
  adversarial case), otherwise another window of the same context, or of another context
  of the same title that shares the most words with the question (a retrieval-style
  hard negative); none of them contains an answer string;
- unanswerable records give two "no answer" windows.

Loss: cross-entropy over [no answer, sentence 1..n] of each window, plus the span
start/end cross-entropy on positive windows. AdamW with linear warm-up and decay; seeded;
a progress bar; checkpoints at given example counts with held-out figures (the learning
curve). Then the model is exported to ONNX, quantised to int8 (per-channel, 7-bit
weights so AVX2 and AVX-512/VNNI give identical integer results) and checked against
fp32; `reader.json`, `tokenizer.json` and a model card `README.md` go beside it.

Needs torch and transformers (installed with the project); the product never imports
this module when answering.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import math
import os
import random
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embeddings.chunking import split_sentences
from qa.reader import (
    FORMAT,
    FP32_FILE,
    MAX_QUESTION_TOKENS,
    MAX_TOKENS,
    META_FILE,
    MODEL_FILE,
    TOKENIZER_FILE,
    Pieces,
    Window,
    batch_arrays,
    encode_window,
    load_tokenizer,
    sentence_logits,
)

log = logging.getLogger(__name__)

_WORD = re.compile(r"\w+")
_STOP = frozenset(
    "a an the of in on at to for by with from and or is are was were be been what which who "
    "whom whose when where why how did do does that this it its as into than then there".split())

# Fixed windows the export is checked on and whose fp32 outputs go into reader.json, so a
# test can compare the shipped int8 model with fp32 on any CPU.
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


@dataclass(frozen=True)
class Record:
    question: str
    context: str
    answers: tuple[str, ...]
    answerable: bool
    answer_sentences: tuple[str, ...] = ()
    title: str = ""
    dataset: str = ""
    license: str = ""


@dataclass(frozen=True)
class Example:
    window: Window
    label: int  # 0: no answer; k + 1: sentence k of the window
    start: int = -1  # token index of the answer phrase (-1: none)
    end: int = -1
    kind: str = "positive"  # positive | removed | other | cross | unanswerable


@dataclass
class TrainConfig:
    data: list[str]
    out: str
    base: str = "all-MiniLM-L6-v2"
    layers: int | None = None
    epochs: float = 1.0
    max_records: int | None = None
    batch_size: int = 32
    lr: float = 6e-5
    head_lr: float = 6e-4
    warmup: float = 0.06
    weight_decay: float = 0.01
    span_weight: float = 0.5
    dev_fraction: float = 0.02
    checkpoints: list[int] = field(default_factory=list)  # example counts
    seed: int = 13
    threads: int | None = None
    progress: bool = True
    command: str = ""


# --- data ---------------------------------------------------------------------------------


def read_records(paths: Sequence[str | Path]) -> list[Record]:
    """Records from JSON-lines files (gzipped if the name ends in .gz). Raises ValueError
    naming the file and line of a bad record."""
    out = []
    for path in paths:
        path = Path(path)
        opener = gzip.open if path.suffix == ".gz" else open
        if not path.is_file():
            raise ValueError(f"training data {path} does not exist")
        with opener(path, "rt", encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    r = json.loads(line)
                    rec = Record(
                        str(r["question"]), str(r["context"]),
                        tuple(str(a) for a in r.get("answers") or ()),
                        bool(r.get("answerable", bool(r.get("answers")))),
                        tuple(str(s) for s in r.get("answer_sentences") or ()),
                        str(r.get("title") or ""), str(r.get("source_dataset") or path.name),
                        str(r.get("license") or ""))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ValueError(f"{path}:{n}: not a training record ({exc})") from None
                if rec.question.strip() and rec.context.strip():
                    out.append(rec)
    return out


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def _find_all(text: str, needle: str) -> list[int]:
    if not needle.strip():
        return []
    hits, i = [], text.find(needle)
    while i >= 0:
        hits.append(i)
        i = text.find(needle, i + 1)
    if not hits:
        low, nlow = text.lower(), needle.lower()
        i = low.find(nlow)
        while i >= 0:
            hits.append(i)
            i = low.find(nlow, i + 1)
    return hits


def gold(rec: Record, spans: Sequence[tuple[int, int]]) -> tuple[int, int, int] | None:
    """(sentence index, answer start, answer end) in context offsets, or None.

    With `answer_sentences`, the sentence overlapping the first of them most; else each
    occurrence of each answer string, keeping the one whose sentence shares the most
    words with the question.
    """
    if not rec.answerable or not spans:
        return None

    def sentence_at(pos: int) -> int:
        for k, (s, e) in enumerate(spans):
            if pos < e:
                return k if pos >= s else max(0, k - 1)
        return len(spans) - 1

    q = _words(rec.question)
    best = None
    for a in rec.answers:
        for pos in _find_all(rec.context, a):
            k = sentence_at(pos)
            overlap = len(q & _words(rec.context[spans[k][0]:spans[k][1]]))
            key = (overlap, -pos)
            if best is None or key > best[0]:
                best = (key, k, pos, min(pos + len(a), spans[k][1]))
    if rec.answer_sentences:
        where = rec.context.find(rec.answer_sentences[0])
        if where >= 0:
            end = where + len(rec.answer_sentences[0])
            k = max(range(len(spans)), key=lambda k: min(end, spans[k][1])
                    - max(where, spans[k][0]))
            if best is None or best[1] != k:
                return k, spans[k][0], spans[k][1]
    return None if best is None else best[1:]


def _has_answer(text: str, answers: Sequence[str]) -> bool:
    low = text.lower()
    return any(a.strip() and a.lower() in low for a in answers)


class _Builder:
    """Windows of one record, sized to the token budget left after the question."""

    def __init__(self, pieces: Pieces, rng: random.Random) -> None:
        self.pieces, self.rng = pieces, rng

    def budget(self, question: str) -> int:
        return MAX_TOKENS - 3 - min(len(self.pieces(question)[0]), MAX_QUESTION_TOKENS)

    def around(self, sents: list[str], k: int, budget: int) -> tuple[int, int]:
        """A window [a, b) holding sentence k: 1 to 7 sentences (3 most often), within
        budget tokens, k at a random place in it."""
        want = self.rng.choices((1, 2, 3, 4, 5, 7), (12, 15, 30, 15, 13, 15))[0]
        a = max(0, k - self.rng.randrange(want))
        b = min(len(sents), a + want)
        a = max(0, min(a, b - want))
        cost = [len(self.pieces(s)[0]) for s in sents]
        while b - a > 1 and sum(cost[a:b]) > budget:  # drop the end farther from k
            if k - a > b - 1 - k:
                a += 1
            else:
                b -= 1
        return a, b

    def example(self, question: str, sents: list[str], label_k: int | None,
                span: tuple[int, int] | None, kind: str) -> Example | None:
        """Encode a window; label_k is the gold sentence's index in `sents`, span its
        answer phrase in that sentence's offsets."""
        w = encode_window(self.pieces, question, sents)
        if label_k is None:
            return Example(w, 0, kind=kind)
        if label_k >= w.n_sentences:
            return None
        start = end = -1
        if span is not None:
            for t, (k, (s, e)) in enumerate(zip(w.sentence_of, w.offsets, strict=True)):
                if k != label_k:
                    continue
                if start < 0 and e > span[0]:
                    start = t
                if s < span[1]:
                    end = t
            if start < 0 or end < start:
                start = end = -1
        return Example(w, label_k + 1, start, end, kind)


def build_examples(records: Sequence[Record], pieces: Pieces, seed: int,
                   progress: bool = False) -> list[Example]:
    """The training windows of `records` (see the module docstring); deterministic for a
    seed."""
    rng = random.Random(seed)
    b = _Builder(pieces, rng)
    by_title: dict[str, list[int]] = {}
    split: list[list[tuple[int, int]]] = []
    for i, r in enumerate(records):
        split.append(split_sentences(r.context))
        if r.title:
            by_title.setdefault(r.title, []).append(i)
    out: list[Example] = []
    iterator: Iterator = iter(range(len(records)))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, total=len(records), desc="windows", unit="q",
                        mininterval=2)
    for i in iterator:
        r = records[i]
        spans = split[i]
        if not spans:
            continue
        sents = [r.context[s:e] for s, e in spans]
        budget = b.budget(r.question)
        g = gold(r, spans)
        if g is None:
            if r.answerable:
                continue
            for _ in range(2):
                a, z = b.around(sents, rng.randrange(len(sents)), budget)
                out.append(b.example(r.question, sents[a:z], None, None, "unanswerable"))
            continue
        k, s0, e0 = g
        a, z = b.around(sents, k, budget)
        span = (s0 - spans[k][0], e0 - spans[k][0])
        ex = b.example(r.question, sents[a:z], k - a, span, "positive")
        if ex is not None:
            out.append(ex)
        neg = _negative(b, records, split, by_title, i, sents, k, a, z, budget)
        if neg is not None:
            out.append(neg)
    return out


def _negative(b: _Builder, records, split, by_title, i, sents, k, a, z, budget):
    r, rng = records[i], b.rng
    roll = rng.random()
    if roll < 0.5:  # the same window without the answer sentence
        rest = sents[a:k] + sents[k + 1:z]
        if not rest and k + 1 < len(sents):
            rest = sents[k + 1:k + 2]
        if rest and not _has_answer(" ".join(rest), r.answers):
            return b.example(r.question, rest, None, None, "removed")
    if roll < 0.75:  # another window of the same context
        far = [j for j in range(len(sents)) if abs(j - k) > 3]
        if far:
            a2, z2 = b.around(sents, rng.choice(far), budget)
            if not (a2 <= k < z2) and not _has_answer(" ".join(sents[a2:z2]), r.answers):
                return b.example(r.question, sents[a2:z2], None, None, "other")
    # a context of the same title sharing the most words with the question
    q = _words(r.question)
    best, best_key = None, 0
    for j in by_title.get(r.title, ())[:200]:
        if records[j].context == r.context:
            continue
        for s, e in split[j]:
            overlap = len(q & _words(records[j].context[s:e]))
            if overlap > best_key:
                best, best_key = (j, s), overlap
    if best is not None:
        j, s = best
        other = [records[j].context[x:y] for x, y in split[j]]
        kk = next(n for n, (x, _) in enumerate(split[j]) if x == s)
        a2, z2 = b.around(other, kk, budget)
        if not _has_answer(" ".join(other[a2:z2]), r.answers):
            return b.example(r.question, other[a2:z2], None, None, "cross")
    return None


def dev_split(records: Sequence[Record], fraction: float, seed: int
              ) -> tuple[list[Record], list[Record]]:
    """(train, dev): a record is dev when the hash of its context and seed falls below the
    fraction, so questions about one paragraph stay on one side."""
    train, dev = [], []
    for r in records:
        h = hashlib.sha1(f"{seed}\0{r.context}".encode()).digest()
        (dev if int.from_bytes(h[:4], "big") / 2**32 < fraction else train).append(r)
    return train, dev


def batches(examples: Sequence[Example], size: int, rng: random.Random) -> list[list[int]]:
    """Index batches of similar length (less padding): shuffle, sort within groups of 50
    batches by length, cut, shuffle the batches."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    group = size * 50
    out = []
    for g in range(0, len(order), group):
        part = sorted(order[g:g + group], key=lambda i: len(examples[i].window.ids))
        out.extend(part[j:j + size] for j in range(0, len(part), size))
    rng.shuffle(out)
    return out


# --- model --------------------------------------------------------------------------------


def _torch():
    import torch

    return torch


def build_net(base: str, layers: int | None):
    """The base transformer (cut to `layers`) with the reader's two heads."""
    torch = _torch()
    from transformers import AutoModel

    from embeddings.encoder import model_folder, transformer_folder

    source = transformer_folder(model_folder(base))

    class ReaderNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(source), attn_implementation="eager")
            if layers is not None and layers < len(self.bert.encoder.layer):
                self.bert.encoder.layer = self.bert.encoder.layer[:layers]
                self.bert.config.num_hidden_layers = layers
            hidden = self.bert.config.hidden_size
            self.tokens = torch.nn.Linear(hidden, 3)  # start, end, in-answer-sentence
            self.null = torch.nn.Linear(hidden, 1)  # from [CLS]: no answer in the window

        def forward(self, input_ids, attention_mask, token_type_ids):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state
            return self.tokens(h), self.null(h[:, 0]).squeeze(-1)

    return ReaderNet(), source


def _tensors(examples: Sequence[Example]):
    torch = _torch()
    arrays = batch_arrays([e.window for e in examples])
    width = arrays["input_ids"].shape[1]
    of = np.full((len(examples), width), -1, dtype=np.int64)
    for r, e in enumerate(examples):
        of[r, : len(e.window.sentence_of)] = e.window.sentence_of
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    t["sentence_of"] = torch.from_numpy(of)
    t["label"] = torch.tensor([e.label for e in examples])
    t["start"] = torch.tensor([e.start for e in examples])
    t["end"] = torch.tensor([e.end for e in examples])
    return t


def window_logits(tok, null, sentence_of):
    """[no answer, sentence 1..n] logits per window (n = most sentences in the batch;
    absent sentences -inf), sentence logit = mean of its tokens' third logit."""
    torch = _torch()
    n = int(sentence_of.max().item()) + 1
    n = max(n, 1)
    onehot = torch.nn.functional.one_hot((sentence_of + 1).clamp(min=0), n + 1)[..., 1:]
    onehot = onehot.to(tok.dtype)
    sums = torch.einsum("btn,bt->bn", onehot, tok[..., 2])
    counts = onehot.sum(1)
    mean = sums / counts.clamp(min=1)
    mean = mean.masked_fill(counts == 0, float("-inf"))
    return torch.cat([null[:, None], mean], dim=1)


def loss_of(net, batch, span_weight: float):
    torch = _torch()
    f = torch.nn.functional
    tok, null = net(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    logits = window_logits(tok, null, batch["sentence_of"])
    loss = f.cross_entropy(logits, batch["label"])
    has_span = batch["start"] >= 0
    if span_weight and bool(has_span.any()):
        ctx = batch["sentence_of"][has_span] >= 0
        s = tok[has_span][..., 0].masked_fill(~ctx, -1e4)
        e = tok[has_span][..., 1].masked_fill(~ctx, -1e4)
        loss = loss + span_weight * 0.5 * (f.cross_entropy(s, batch["start"][has_span])
                                           + f.cross_entropy(e, batch["end"][has_span]))
    return loss, logits


def evaluate_examples(net, examples: Sequence[Example], batch_size: int = 64) -> dict:
    """Held-out figures: top choice right on positive windows (the sentence, and beating
    no-answer), no-answer chosen on negative windows, and the span's exact match."""
    torch = _torch()
    net.eval()
    right_pos = pos = right_neg = neg = span_ok = spans = 0
    with torch.inference_mode():
        for i in range(0, len(examples), batch_size):
            part = examples[i:i + batch_size]
            b = _tensors(part)
            tok, null = net(b["input_ids"], b["attention_mask"], b["token_type_ids"])
            logits = window_logits(tok, null, b["sentence_of"])
            pred = logits.argmax(1)
            best_sent = logits[:, 1:].argmax(1) + 1
            for r, e in enumerate(part):
                if e.label:
                    pos += 1
                    right_pos += int(pred[r] == e.label)
                    if e.start >= 0:
                        spans += 1
                        sel = (b["sentence_of"][r] == e.label - 1).nonzero().flatten()
                        st, en = tok[r, sel, 0].numpy(), tok[r, sel, 1].numpy()
                        from qa.reader import best_span

                        bi, bj, _ = best_span(st, en)
                        span_ok += int(sel[bi] == e.start and sel[bj] == e.end)
                else:
                    neg += 1
                    right_neg += int(pred[r] == 0)
            del best_sent
    net.train()
    return {"positive_windows": pos, "answer_sentence_first": round(right_pos / max(pos, 1), 4),
            "negative_windows": neg, "no_answer_first": round(right_neg / max(neg, 1), 4),
            "span_exact": round(span_ok / max(spans, 1), 4)}


def train(cfg: TrainConfig) -> dict:
    """Train, checkpoint, export and write the card; returns the summary written to
    reader.json's "training"."""
    torch = _torch()
    began = time.time()
    threads = cfg.threads or max(1, len(os.sched_getaffinity(0)))
    torch.set_num_threads(threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    records = read_records(cfg.data)
    if cfg.max_records:
        records = random.Random(cfg.seed).sample(records, min(cfg.max_records, len(records)))
    if not records:
        raise ValueError("no training records in " + ", ".join(cfg.data))
    train_recs, dev_recs = dev_split(records, cfg.dev_fraction, cfg.seed)
    net, source = build_net(cfg.base, cfg.layers)
    pieces = Pieces(load_tokenizer(source / TOKENIZER_FILE), cache_size=10**7)
    pieces.many([r.question for r in records])
    # fresh windows (other negatives, other window sizes) for every epoch
    n_epochs = max(1, math.ceil(cfg.epochs))
    per_epoch = [build_examples(train_recs, pieces, cfg.seed + 100 * e, cfg.progress)
                 for e in range(n_epochs)]
    dev = build_examples(dev_recs, pieces, cfg.seed + 1)
    examples = [x for part in per_epoch for x in part]
    kinds = Counter(e.kind for e in per_epoch[0])
    log.info("%d records (%d dev); %d training windows an epoch %s", len(records),
             len(dev_recs), len(per_epoch[0]), dict(kinds))
    rng = random.Random(cfg.seed)
    plan: list[list[int]] = []
    offset = 0
    for part in per_epoch:
        plan.extend([[offset + i for i in idx] for idx in batches(part, cfg.batch_size, rng)])
        offset += len(part)
    if cfg.epochs != n_epochs:
        plan = plan[: int(len(plan) * cfg.epochs / n_epochs)]
    heads = [p for n, p in net.named_parameters() if not n.startswith("bert.")]
    body = [p for n, p in net.named_parameters() if n.startswith("bert.")]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr},
                             {"params": heads, "lr": cfg.head_lr}],
                            weight_decay=cfg.weight_decay)
    warm = max(1, int(len(plan) * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (len(plan) - s) / (len(plan) - warm))))
    curve = []
    marks = sorted(c for c in cfg.checkpoints if c > 0)
    seen = 0
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), desc="training", unit="batch", mininterval=5)
    net.train()
    running = None
    for step, idx in enumerate(plan, 1):
        b = _tensors([examples[i] for i in idx])
        loss, _ = loss_of(net, b, cfg.span_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        seen += len(idx)
        value = loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", seen=seen)
        if step % 200 == 0:
            print(json.dumps({"step": step, "seen": seen, "loss": round(running, 4),
                              "elapsed_s": round(time.time() - began)}), flush=True)
        while marks and seen >= marks[0]:
            mark = marks.pop(0)
            figures = evaluate_examples(net, dev)
            point = {"examples": seen, "questions": _questions_seen(examples, plan[:step]),
                     "elapsed_s": round(time.time() - began), **figures}
            curve.append(point)
            print(json.dumps({"checkpoint": point}), flush=True)
            ck = out / "checkpoints"
            ck.mkdir(exist_ok=True)
            torch.save(net.state_dict(), ck / f"examples-{mark}.pt")
    if bar is not None:
        bar.close()
    final = evaluate_examples(net, dev)
    curve.append({"examples": seen, "questions": _questions_seen(examples, plan),
                  "elapsed_s": round(time.time() - began), **final})
    print(json.dumps({"final": curve[-1]}), flush=True)
    torch.save(net.state_dict(), out / "reader.pt")
    train_seconds = round(time.time() - began)
    summary = {
        "config": {k: v for k, v in asdict(cfg).items() if k not in ("progress",)},
        "records": len(records), "dev_records": len(dev_recs),
        "windows": dict(kinds), "dev_windows": len(dev),
        "datasets": _datasets(train_recs), "curve": curve, "train_seconds": train_seconds,
        "threads": threads, "versions": _versions(),
    }
    export(net, source, out, summary)
    summary["total_seconds"] = round(time.time() - began)
    _write_meta(out, summary)
    write_card(out)
    return summary


def _questions_seen(examples, plan) -> int:
    return sum(1 for idx in plan for i in idx if examples[i].kind in ("positive",
                                                                         "unanswerable"))


def _datasets(records: Sequence[Record]) -> list[dict]:
    counts = Counter((r.dataset, r.license) for r in records)
    return [{"dataset": d, "license": lic, "records": n}
            for (d, lic), n in sorted(counts.items())]


def _versions() -> dict:
    import onnxruntime
    import transformers

    torch = _torch()
    return {"torch": torch.__version__, "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__, "python": sys.version.split()[0]}


# --- export -------------------------------------------------------------------------------


def probe_windows(pieces: Pieces) -> list[Window]:
    return [encode_window(pieces, q, s) for q, s in PROBES]


def _onnx_outputs(path: Path, windows: Sequence[Window]) -> list[tuple[np.ndarray, float]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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

    torch = _torch()

    from embeddings.encoder import fuse_transformer

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
    checks["int8_vs_fp32"] = round(max_difference(ref, q), 4)
    summary["checks"] = checks
    summary["probes"] = [{"question": qq, "sentences": s, "fp32": r}
                         for (qq, s), r in zip(PROBES, ref, strict=True)]
    summary["fused"] = chosen is fused


def export_checkpoint(checkpoint: Path, out: Path, base: str = "all-MiniLM-L6-v2",
                      layers: int | None = None) -> None:
    """Export a saved checkpoint (a state dict of `train`) to a reader folder, keeping the
    training summary of `out/reader.json` if there is one (for figures of a point on the
    learning curve)."""
    torch = _torch()
    net, source = build_net(base, layers)
    net.load_state_dict(torch.load(checkpoint, map_location="cpu"))
    out.mkdir(parents=True, exist_ok=True)
    old = out / META_FILE
    summary = json.loads(old.read_text()) if old.is_file() else {}
    summary = {k: v for k, v in summary.items() if k not in ("format", "max_tokens",
                                                              "max_question_tokens")}
    summary["checkpoint"] = str(checkpoint)
    export(net, source, out, summary)
    _write_meta(out, summary)


def quantize_int8(fp32: Path, dst: Path) -> None:
    """Dynamic int8: per-channel s8 weights in 7 bits (reduce_range). u8 activations times
    7-bit weights never overflow AVX2's 16-bit pair sums (VPMADDUBSW), so AVX2,
    AVX-512 and AVX-512 VNNI compute the same integers."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from embeddings.encoder import quiet_logging

    with quiet_logging(logging.WARNING):
        quantize_dynamic(str(fp32), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                         reduce_range=True, extra_options={"DefaultTensorType": 1})


def _write_meta(out: Path, summary: dict) -> None:
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
        "holding none, and marks the answer phrase (see `qa/reader.py`).", "",
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
        f"Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + ".", "",
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
    """Copy what the product loads (int8 model, tokenizer, reader.json, card) to dest."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in (MODEL_FILE, TOKENIZER_FILE, META_FILE, "README.md"):
        shutil.copyfile(out / name, dest / name)
