"""Train the reader on a lent GPU machine in one run of under 8 minutes (docs/reader.md).

The GPU machine has its own PyTorch and transformers, no network and no model weights;
what it needs travels with the checkout (64 MiB in all, the checkout's ~25 MB included),
and what comes back is at most 8 files of at most 16 MiB. So, in three steps:

    # here: pack the starting weights (int8 rows), the base's config and tokenizer, the
    # records and the windows of `qa reader windows` into gpu-pack/ (git-ignored)
    python benchmarks/reader_gpu.py pack \
        --init ../shared/reader-init/reader-3ep.safetensors \
        --data ../shared/train/qa_train.jsonl.gz \
               ../shared/train/more_squad_v2_train_unansq.jsonl.gz \
        --windows runs/pool/*.jsonl.gz --out gpu-pack

    # there (the device tool's run, carrying gpu-pack): train, bring back the weights in parts
    python benchmarks/reader_gpu.py train --pack gpu-pack --out "$OUT" --epochs 2

    # here: join the parts, export to int8 ONNX (7-bit weights), check, write the card
    python benchmarks/reader_gpu.py unpack --parts FILES_AT --out runs/reader-gpu

The train step imports only torch, transformers, tokenizers, numpy and the project's own
modules (PYTHONPATH=.; the project is not installed there), builds the epochs' windows
in parallel processes, trains with bf16 autocast and stops with what it has
`--minutes` (default 6.5) after the script started (window building and loading
included), so the run always ends in time and always brings weights back; the parts'
count and sha256 go into training.json and `unpack` checks them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PART_BYTES = 15 * 2**20  # under the 16 MiB a returned file may have
BUDGET = 64 * 2**20  # the checkout and what it carries
BASE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
              "special_tokens_map.json")


def _tree_bytes() -> int:
    import subprocess

    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names
               if n and (ROOT / n.decode()).is_file())


def pack(args: argparse.Namespace) -> int:
    from embeddings.onnx_export import model_folder, transformer_folder
    from qa.training.state import load_weights, pack_int8

    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    (out / "base").mkdir(parents=True)
    (out / "data").mkdir()
    source = transformer_folder(model_folder(args.base))
    for name in BASE_FILES:
        if (source / name).is_file():
            shutil.copy(source / name, out / "base" / name)
    import numpy as np

    np.savez_compressed(out / "init.npz", **pack_int8(load_weights(args.init)))
    data, windows = [], []
    for group, target in ((args.data, data), (args.windows, windows)):
        for i, path in enumerate(group):
            name = f"{len(data) + len(windows):03d}-{Path(path).name}"
            shutil.copy(path, out / "data" / name)
            target.append(f"data/{name}")
            del i
    (out / "pack.json").write_text(json.dumps({
        "init": str(args.init), "data": data, "windows": windows,
        "packed_at": time.strftime("%Y-%m-%d %H:%M")}, indent=1) + "\n", encoding="utf-8")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    tree = _tree_bytes()
    print(f"{out}: {size / 2**20:.1f} MiB; with the checkout ({tree / 2**20:.1f} MiB) "
          f"{(size + tree) / 2**20:.1f} of {BUDGET / 2**20:.0f} MiB")
    if size + tree > BUDGET:
        print("too big to carry: fewer --windows files, or leave a --data file out",
              file=sys.stderr)
        return 1
    return 0


def train_there(args: argparse.Namespace) -> int:
    import torch

    from qa.training.loop import TrainConfig, train

    began = time.time()
    p = Path(args.pack)
    meta = json.loads((p / "pack.json").read_text(encoding="utf-8"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    work = Path(args.work)
    cfg = TrainConfig(
        data=[str(p / d) for d in meta["data"]], out=str(work), base=str(p / "base"),
        init=str(p / "init.npz"), windows=[str(p / w) for w in meta["windows"]],
        epochs=args.epochs, generated=args.generated, lr=args.lr, head_lr=args.head_lr,
        batch_size=args.batch_size, max_records=args.max_records, device=device,
        bf16="auto", deadline=began + 60 * args.minutes, state_minutes=1e9, export=False,
        checkpoints=[], workers=args.workers, progress=False,
        command="python benchmarks/reader_gpu.py " + " ".join(sys.argv[1:]))
    got = train(cfg)
    weights = work / "reader.pt"
    if "stopped" in got:  # out of time: the weights it has
        state = torch.load(got["state"], map_location="cpu", weights_only=False)
        torch.save(state["net"], weights)
        got = {**got, "config": {k: v for k, v in vars(cfg).items() if k != "progress"}}
    half = {k: v.half() for k, v in torch.load(weights, map_location="cpu").items()}
    blob = work / "reader-fp16.pt"
    torch.save(half, blob)
    data = blob.read_bytes()
    for k in range(0, len(data), PART_BYTES):
        (out / f"reader-fp16.pt.part{k // PART_BYTES}").write_bytes(data[k:k + PART_BYTES])
    import hashlib

    got["parts"] = {"count": -(-len(data) // PART_BYTES),
                    "sha256": hashlib.sha256(data).hexdigest()}
    got["device_name"] = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
    got["wall_seconds"] = round(time.time() - began)
    (out / "training.json").write_text(json.dumps(got, indent=1, default=str) + "\n",
                                       encoding="utf-8")
    print(json.dumps({k: got.get(k) for k in ("trained_windows", "seen", "stopped",
                                              "train_seconds", "wall_seconds")}))
    return 0


def unpack(args: argparse.Namespace) -> int:
    import torch

    from qa.training.export import export_checkpoint

    src = Path(args.parts)
    parts = sorted(src.glob("reader-fp16.pt.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not parts:
        print(f"no reader-fp16.pt.part* in {src}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    blob = out / "reader-fp16.pt"
    data = b"".join(p.read_bytes() for p in parts)
    summary = {}
    if (src / "training.json").is_file():
        summary = json.loads((src / "training.json").read_text(encoding="utf-8"))
        want = summary.get("parts") or {}
        import hashlib

        if want and (want["count"] != len(parts)
                     or want["sha256"] != hashlib.sha256(data).hexdigest()):
            print(f"{src}: {len(parts)} parts that do not make the file the run wrote "
                  f"({want['count']} parts, sha256 {want['sha256'][:12]}…): fetch them "
                  "again", file=sys.stderr)
            return 1
    blob.write_bytes(data)
    state = {k: v.float() for k, v in torch.load(blob, map_location="cpu").items()}
    torch.save(state, out / "reader.pt")
    blob.unlink()
    if summary:  # the run's summary becomes reader.json's, so the card has data and curve
        keep = ("config", "records", "dev_records", "windows", "trained_windows",
                "dev_windows", "dev_retrieved_windows", "bf16", "device", "datasets",
                "curve", "train_seconds", "threads", "versions", "stopped", "device_name",
                "wall_seconds")
        (out / "reader.json").write_text(json.dumps(
            {k: summary[k] for k in keep if k in summary}, indent=1) + "\n", encoding="utf-8")
    export_checkpoint(out / "reader.pt", out, args.base, None)
    if summary.get("datasets"):
        from qa.training.export import write_card

        write_card(out)
    print(f"exported {out}")
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="step", required=True)
    a = sub.add_parser("pack", help="here: what the GPU machine needs, in a folder")
    a.add_argument("--init", required=True, help="starting reader weights")
    a.add_argument("--data", nargs="+", required=True)
    a.add_argument("--windows", nargs="*", default=[])
    a.add_argument("--base", default="all-MiniLM-L6-v2")
    a.add_argument("--out", default="gpu-pack")
    a.set_defaults(func=pack)
    t = sub.add_parser("train", help="there: train and write the weights in parts")
    t.add_argument("--pack", default="gpu-pack")
    t.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    t.add_argument("--work", default="/tmp/reader-gpu")
    t.add_argument("--epochs", type=float, default=2.0)
    t.add_argument("--generated", type=float, default=0.6)
    t.add_argument("--lr", type=float, default=3e-5)
    t.add_argument("--head-lr", type=float, default=3e-4)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--max-records", type=int)
    t.add_argument("--minutes", type=float, default=6.5, help="stop training after this")
    t.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="processes building the epochs' windows")
    t.set_defaults(func=train_there)
    u = sub.add_parser("unpack", help="here: join the parts and export a reader folder")
    u.add_argument("--parts", required=True, help="the folder the run's files came back in")
    u.add_argument("--out", required=True)
    u.add_argument("--base", default="all-MiniLM-L6-v2")
    u.set_defaults(func=unpack)
    args = p.parse_args()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
