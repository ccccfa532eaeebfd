"""Train the reading model of `qa.reader.runtime`: `qa reader train --data FILE... --out DIR`.

The training windows come from `qa.training.data`; the export, the int8 check and the
model card from `qa.training.export`.

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

import hashlib
import json
import logging
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from embeddings import lazy
from qa.reader.runtime import TOKENIZER_FILE, Pieces, batch_arrays, best_span, load_tokenizer
from qa.training.data import Example, Record, batches, read_records
from qa.training.export import export, write_card, write_meta
from qa.training.net import build_net
from qa.training.state import load_weights, prefetch, rng_state, set_rng_state, use_bf16
from qa.training.state import save_state as save_checkpoint
from qa.training.windows import run_windows, window_counts

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
    resume_at: int = 0  # the training windows a weights-only checkpoint had seen
    windows: list[str] = field(default_factory=list)  # `qa reader windows` files
    init: str | None = None  # starting weights of the whole net (.pt or .safetensors)
    generated: float = 0.0  # share of answerable records that also give a generated
    # unanswerable window (qa.training.perturb)
    device: str = "cpu"  # cpu | cuda
    bf16: str = "auto"  # auto: on CUDA, and on CPUs with AVX512-BF16 (else emulated: slow)
    state_minutes: float = 5.0  # minutes between resumable checkpoints (state.pt)
    for_minutes: float | None = None  # stop after this long with a resumable checkpoint
    stop_after: int | None = None  # stop after this many batches (the resume test)
    deadline: float | None = None  # time.time() at which to stop (the GPU script's limit)
    workers: int = 1  # processes building the epochs' windows (one epoch each)
    export: bool = True  # False: leave reader.pt and training.json (a GPU machine without
    # onnx: export here with `qa reader export`)



def _torch():
    torch = lazy.load("torch")

    return torch


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
            b = {k: v.to(next(net.parameters()).device) for k, v in b.items()}
            tok, null = net(b["input_ids"], b["attention_mask"], b["token_type_ids"])
            tok, null = tok.float().cpu(), null.float().cpu()  # bf16 has no numpy type
            b = {k: v.cpu() for k, v in b.items()}
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


def _figures(net, dev, pool_dev, autocast) -> dict:
    with autocast():
        figures = evaluate_examples(net, dev)
        if pool_dev:
            figures.update({f"retrieved_{k}": v for k, v in
                            evaluate_examples(net, pool_dev).items()})
    return figures


def train(cfg: TrainConfig, on_step=None) -> dict:
    """Train, checkpoint, export and write the card; returns the summary written to
    reader.json's "training". With `for_minutes` or `stop_after` it may stop early with
    a resumable `checkpoints/state.pt` and return {"stopped": ...} instead. `on_step`,
    if given, is called with (batch number, loss) after every batch."""
    torch = _torch()
    import contextlib

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
    net, source = build_net(cfg.base, cfg.layers, pretrained=not cfg.init)
    if cfg.init:
        net.load_state_dict(load_weights(cfg.init))

    def autocast():
        if not bf16:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    pieces = Pieces(load_tokenizer(source / TOKENIZER_FILE), cache_size=10**7)
    train_recs, dev_recs, per_epoch, dev, pool_dev = run_windows(cfg, pieces, records)
    device = torch.device(cfg.device)  # after the windows: no fork after CUDA starts
    net.to(device)
    bf16 = use_bf16(cfg.bf16, cfg.device)
    examples = [x for part in per_epoch for x in part]
    kinds = window_counts(per_epoch[0])
    log.info("%d records (%d dev); %d training windows an epoch %s", len(records),
             len(dev_recs), len(per_epoch[0]), kinds)
    rng = random.Random(cfg.seed)
    plan: list[list[int]] = []
    offset = 0
    n_epochs = len(per_epoch)
    for part in per_epoch:
        plan.extend([[offset + i for i in idx] for idx in batches(part, cfg.batch_size, rng)])
        offset += len(part)
    if cfg.epochs != n_epochs:
        plan = plan[: int(len(plan) * cfg.epochs / n_epochs)]
    # what the plan trains on, all epochs together (a fraction of an epoch counted as run)
    kinds = window_counts([examples[i] for batch in plan for i in batch])
    heads = [p for n, p in net.named_parameters() if not n.startswith("bert.")]
    body = [p for n, p in net.named_parameters() if n.startswith("bert.")]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr},
                             {"params": heads, "lr": cfg.head_lr}],
                            weight_decay=cfg.weight_decay)
    warm = max(1, int(len(plan) * cfg.warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (len(plan) - s) / (len(plan) - warm))))
    # what makes two runs the same run: the batches in order and the flags that shape them
    fingerprint = hashlib.sha1(repr((plan, cfg.lr, cfg.head_lr, cfg.warmup, cfg.weight_decay,
                                     cfg.span_weight, cfg.batch_size, cfg.seed, cfg.base,
                                     cfg.layers)).encode()).hexdigest()
    curve: list[dict] = []
    marks = sorted(c for c in cfg.checkpoints if c > 0)
    seen = start = 0
    running = None
    spent = 0.0  # training seconds of earlier runs of this training (resumed)
    ck = out / "checkpoints"
    ck.mkdir(exist_ok=True)
    if cfg.resume:
        state = torch.load(cfg.resume, map_location="cpu", weights_only=False)
        if isinstance(state, dict) and "optimizer" in state:
            # everything the uninterrupted run had: weights, AdamW's moments, the
            # schedule, the random streams (dropout), the curve; the plan is seeded, so
            # the same data and flags give the same batches from here on
            if state.get("plan") != fingerprint:
                raise ValueError(f"{cfg.resume} is of another run (other data, windows, seed "
                                 "or flags: its plan of batches differs): resume with the "
                                 "same --data, --windows and flags")
            net.load_state_dict(state["net"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start, seen, running = state["step"], state["seen"], state["running"]
            curve, spent = state["curve"], state["train_seconds"]
            set_rng_state(state["rng"])
        else:  # weights only (an examples-N.pt): AdamW's moments restart from zero
            net.load_state_dict(state)
            while start < len(plan) and seen < cfg.resume_at:
                seen += len(plan[start])
                start += 1
            if seen < cfg.resume_at:
                raise ValueError(f"--resume-at {cfg.resume_at} is past the end of the plan "
                                 f"({seen} windows)")
            for _ in range(start):
                sched.step()
        marks = [m for m in marks if m > seen]
        log.info("resumed from %s at %d windows (batch %d of %d)", cfg.resume, seen,
                 start, len(plan))
    bar = None
    if cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=len(plan), initial=start, desc="training", unit="batch",
                   mininterval=5)
    net.train()
    t_run = time.time()
    last_state = time.time()

    def save_state(step: int) -> None:
        save_checkpoint(ck / "state.pt", net=net.state_dict(), optimizer=opt.state_dict(),
                    scheduler=sched.state_dict(), step=step, seen=seen, running=running,
                    curve=curve, train_seconds=spent + time.time() - t_run,
                    rng=rng_state(), plan=fingerprint)

    def to_device(b):
        return {k: v.to(device, non_blocking=True) for k, v in b.items()}

    stopped = None
    batches_iter = prefetch(lambda idx: (len(idx), _tensors([examples[i] for i in idx])),
                            plan[start:])
    for step, (size, b) in enumerate(batches_iter, start + 1):
        b = to_device(b)
        with autocast():
            loss, _ = loss_of(net, b, cfg.span_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        seen += size
        value = loss.item()
        if on_step is not None:
            on_step(step, value)
        running = value if running is None else 0.98 * running + 0.02 * value
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", seen=seen)
        if step % 200 == 0:
            print(json.dumps({"step": step, "seen": seen, "loss": round(running, 4),
                              "elapsed_s": round(spent + time.time() - t_run)}), flush=True)
        while marks and seen >= marks[0]:
            mark = marks.pop(0)
            point = {"examples": seen, "questions": _questions_seen(examples, plan[:step]),
                     "elapsed_s": round(spent + time.time() - t_run),
                     **_figures(net, dev, pool_dev, autocast)}
            curve.append(point)
            print(json.dumps({"checkpoint": point}), flush=True)
            torch.save(net.state_dict(), ck / f"examples-{mark}.pt")
        if cfg.stop_after is not None and step >= cfg.stop_after:
            stopped = f"after {step} batches"
        elif cfg.for_minutes is not None and time.time() - t_run >= 60 * cfg.for_minutes:
            stopped = f"after {cfg.for_minutes:g} minutes"
        elif cfg.deadline is not None and time.time() >= cfg.deadline:
            stopped = "at its deadline"
        if stopped or time.time() - last_state >= 60 * cfg.state_minutes:
            save_state(step)
            last_state = time.time()
        if stopped:
            break
    batches_iter.close()  # tells the collating thread to stop
    if bar is not None:
        bar.close()
    if stopped:
        log.info("stopped %s at %d windows; go on with --resume %s", stopped, seen,
                 ck / "state.pt")
        return {"stopped": stopped, "seen": seen, "state": str(ck / "state.pt"),
                "curve": curve, "loss": running, **_about(cfg, records, dev_recs, kinds,
                                                         seen, train_recs, threads, bf16,
                                                         device, dev, pool_dev),
                "train_seconds": round(spent + time.time() - t_run)}
    final = _figures(net, dev, pool_dev, autocast)
    net.to("cpu")
    curve.append({"examples": seen, "questions": _questions_seen(examples, plan),
                  "elapsed_s": round(spent + time.time() - t_run), **final})
    print(json.dumps({"final": curve[-1]}), flush=True)
    torch.save(net.state_dict(), out / "reader.pt")
    train_seconds = round(spent + time.time() - t_run)
    summary = {**_about(cfg, records, dev_recs, kinds, seen, train_recs, threads, bf16,
                        device, dev, pool_dev),
               "curve": curve, "train_seconds": train_seconds}
    if not cfg.export:
        (out / "training.json").write_text(json.dumps(summary, indent=1, default=str) + "\n",
                                           encoding="utf-8")
        return summary
    export(net, source, out, summary)
    summary["total_seconds"] = round(time.time() - began)
    write_meta(out, summary)
    write_card(out)
    return summary


def _about(cfg, records, dev_recs, kinds, seen, train_recs, threads, bf16, device, dev,
           pool_dev) -> dict:
    """What reader.json and the card say of a run, finished or stopped."""
    return {"config": {k: v for k, v in asdict(cfg).items() if k not in ("progress",)},
            "records": len(records), "dev_records": len(dev_recs), "windows": kinds,
            "trained_windows": seen, "dev_windows": len(dev),
            "dev_retrieved_windows": len(pool_dev), "bf16": bf16, "device": str(device),
            "datasets": _datasets(train_recs), "threads": threads, "versions": _versions()}


def _questions_seen(examples, plan) -> int:
    return sum(1 for idx in plan for i in idx if examples[i].kind in ("positive",
                                                                         "unanswerable"))


def _datasets(records: Sequence[Record]) -> list[dict]:
    counts = Counter((r.dataset, r.license) for r in records)
    return [{"dataset": d, "license": lic, "records": n}
            for (d, lic), n in sorted(counts.items())]


def _versions() -> dict:
    transformers = lazy.load("transformers")

    torch = _torch()
    out = {"torch": torch.__version__, "transformers": transformers.__version__,
           "python": sys.version.split()[0]}
    try:
        onnxruntime = lazy.load("onnxruntime")

        out["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # a GPU machine that trains only
        pass
    return out


