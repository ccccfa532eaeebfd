"""Train the reading model of `qa.reader`: `qa reader train --data FILE... --out DIR`.

The training windows come from `qa.reader_data`; the export, the int8 check and the
model card from `qa.reader_export`.

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

import json
import logging
import math
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from qa.reader import TOKENIZER_FILE, Pieces, batch_arrays, best_span, load_tokenizer
from qa.reader_data import Example, Record, batches, build_examples, dev_split, read_records
from qa.reader_export import export, write_card, write_meta

log = logging.getLogger(__name__)


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
    resume: str | None = None  # a checkpoint of this same run (same data and flags)
    resume_at: int = 0  # the training windows that checkpoint had seen



def _torch():
    import torch

    return torch


def build_net(base: str, layers: int | None):
    """The base transformer (cut to `layers`) with the reader's two heads."""
    torch = _torch()
    from transformers import AutoModel

    from embeddings.onnx_export import model_folder, transformer_folder

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
    start = 0
    if cfg.resume:
        # the plan is seeded, so the same data and flags give the same batches: skip the
        # ones the checkpoint saw and put the schedule where it was. AdamW's moments were
        # not saved; they restart from zero (bias correction keeps the first steps small).
        net.load_state_dict(torch.load(cfg.resume, map_location="cpu"))
        while start < len(plan) and seen < cfg.resume_at:
            seen += len(plan[start])
            start += 1
        if seen < cfg.resume_at:
            raise ValueError(f"--resume-at {cfg.resume_at} is past the end of the plan "
                             f"({seen} windows)")
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min((s + start + 1) / warm,
                               max(0.0, (len(plan) - s - start) / (len(plan) - warm))))
        marks = [m for m in marks if m > seen]
        log.info("resumed from %s at %d windows (batch %d of %d)", cfg.resume, seen,
                 start, len(plan))
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), initial=start, desc="training", unit="batch",
                   mininterval=5)
    net.train()
    running = None
    for step, idx in enumerate(plan[start:], start + 1):
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
    write_meta(out, summary)
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


