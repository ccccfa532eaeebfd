"""`qa reader windows|train|export`: the command line of the reader's training (parsed by
`qa.cli`). The training modules, and torch with them, are imported only when one of these
actions runs.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_reader_parser(sub) -> None:
    """Add `reader` and its actions to the `qa` command's subparsers."""
    p = sub.add_parser("reader", help="train or export the reading model",
                       description="The reading model scores candidate sentences and the "
                       "decision to abstain (docs/reader.md).")
    rsub = p.add_subparsers(dest="reader_command", metavar="ACTION")
    rsub.required = True
    t = rsub.add_parser(
        "train", help="fine-tune a reader on question/paragraph records",
        description="Fine-tune MiniLM into a reader on JSON-lines records {question, "
        "context, answers, answerable} (as ../shared/train/qa_train.jsonl.gz), export it "
        "to ONNX (fp32 and int8) and write a model card. Point QA_READER at --out to use "
        "it. Seeded: the same data and flags give the same model.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--data", nargs="+", required=True, metavar="FILE",
                   help="training records (.jsonl or .jsonl.gz)")
    t.add_argument("--out", required=True, metavar="DIR", help="folder for the trained reader")
    t.add_argument("--base", default="all-MiniLM-L6-v2", metavar="MODEL",
                   help="starting weights: the bundled model or a local folder")
    t.add_argument("--layers", type=int, metavar="N", help="keep the first N layers")
    t.add_argument("--epochs", type=float, default=1.0)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=6e-5, help="learning rate of the transformer")
    t.add_argument("--head-lr", type=float, default=6e-4, help="learning rate of the heads")
    t.add_argument("--max-records", type=int, metavar="N", help="a random sample of N records")
    t.add_argument("--checkpoints", default="", metavar="N,N,...",
                   help="training-window counts at which to save and score a checkpoint")
    t.add_argument("--seed", type=int, default=13)
    t.add_argument("--windows", nargs="+", default=[], metavar="FILE",
                   help="windows from `qa reader windows` (the product's retrieval), "
                   "trained on beside the records' own windows")
    t.add_argument("--generated", type=float, default=0.0, metavar="SHARE",
                   help="share of answerable records that also give a generated "
                   "unanswerable question's window (0-1)")
    t.add_argument("--init", metavar="WEIGHTS",
                   help="start from these reader weights (.pt or .safetensors, e.g. "
                   "../shared/reader-init/reader-3ep.safetensors)")
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    t.add_argument("--bf16", default="auto", choices=("auto", "on", "off"),
                   help="bf16 autocast (auto: on CUDA and on CPUs with AVX512-BF16; "
                   "elsewhere it is emulated, about 100x slower)")
    t.add_argument("--for-minutes", type=float, metavar="M",
                   help="stop after M minutes with a resumable checkpoint")
    t.add_argument("--state-minutes", type=float, default=5.0, metavar="M",
                   help="minutes between resumable checkpoints (DIR/checkpoints/state.pt)")
    t.add_argument("--resume", metavar="CK",
                   help="go on from DIR/checkpoints/state.pt of this run (same data and "
                   "flags): weights, optimizer, schedule and random state; or from a "
                   "weights-only examples-N.pt with --resume-at")
    t.add_argument("--resume-at", type=int, default=0, metavar="N",
                   help="the training windows a weights-only --resume checkpoint had seen")
    t.add_argument("--threads", type=int, help="CPU threads (default: all this process may use)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    t.set_defaults(func=cmd_reader_train)
    w = rsub.add_parser(
        "windows", help="training windows as the product reads them (retrieval + ranker)",
        description="Pack the titled records into corpora of several articles, index each "
        "with the product's pipeline, run every question through retrieval and the ranker "
        "and write the windows the reader would read, labelled; plus unanswerable "
        "questions made from the answerable ones (qa/training/pool.py, qa/training/perturb.py). "
        "Give the files to `qa reader train --windows DIR/*.jsonl.gz`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    w.add_argument("--data", nargs="+", required=True, metavar="FILE",
                   help="training records (.jsonl or .jsonl.gz) with titles")
    w.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the windows, a .jsonl.gz per corpus (kept: run again "
                   "to go on), and pool.json (the summary)")
    w.add_argument("--paragraphs", type=int, default=400,
                   help="paragraphs per retrieval corpus")
    w.add_argument("--corpora", type=int, metavar="N", help="only the first N corpora")
    w.add_argument("--seed", type=int, default=13)
    w.add_argument("--quiet", action="store_true", help="no progress bars")
    w.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    w.set_defaults(func=cmd_reader_windows)
    e = rsub.add_parser("export", help="export a training checkpoint to a reader folder",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    e.add_argument("checkpoint", help="a .pt file written by `qa reader train`")
    e.add_argument("--out", required=True, metavar="DIR")
    e.add_argument("--base", default="all-MiniLM-L6-v2", metavar="MODEL")
    e.add_argument("--layers", type=int, metavar="N")
    e.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    e.set_defaults(func=cmd_reader_export)


def cmd_reader_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qa.training.loop import TrainConfig, train

    try:
        marks = [int(x) for x in args.checkpoints.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--checkpoints takes counts such as 5000,20000, got "
                         f"{args.checkpoints!r}") from None
    for name in ("epochs", "batch_size", "lr", "head_lr"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be positive")
    cfg = TrainConfig(
        data=list(args.data), out=args.out, base=args.base, layers=args.layers,
        epochs=args.epochs, max_records=args.max_records, batch_size=args.batch_size,
        lr=args.lr, head_lr=args.head_lr, checkpoints=marks, seed=args.seed,
        threads=args.threads, progress=not args.quiet,
        command="qa " + " ".join(sys.argv[1:]), resume=args.resume,
        resume_at=args.resume_at, windows=list(args.windows), init=args.init,
        generated=args.generated, device=args.device, bf16=args.bf16,
        state_minutes=args.state_minutes, for_minutes=args.for_minutes)
    if not 0 <= args.generated <= 1:
        raise ValueError("--generated is a share from 0 to 1")
    if (args.resume and args.resume_at <= 0 and Path(args.resume).name != "state.pt"):
        raise ValueError("--resume needs DIR/checkpoints/state.pt, or --resume-at N with a "
                         "weights-only checkpoint")
    summary = train(cfg)
    if "stopped" in summary:
        print(json.dumps({"out": args.out, "stopped": summary["stopped"],
                          "seen": summary["seen"], "resume": summary["state"]}))
        return 0
    print(json.dumps({"out": args.out, "train_seconds": summary["train_seconds"],
                      "final": summary["curve"][-1], "checks": summary["checks"]}))
    return 0


def cmd_reader_windows(args: argparse.Namespace) -> int:
    from qa.training.pool import build_pool

    if args.paragraphs <= 0:
        raise ValueError("--paragraphs must be positive")
    summary = build_pool(args.data, args.out, seed=args.seed, paragraphs=args.paragraphs,
                         limit_corpora=args.corpora, progress=not args.quiet)
    print(json.dumps(summary))
    return 0


def cmd_reader_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qa.training.export import export_checkpoint

    export_checkpoint(Path(args.checkpoint), Path(args.out), args.base, args.layers)
    print(f"exported {args.checkpoint} -> {args.out}")
    return 0
