"""What a training run of the reader needs besides the loop (`qa.training.loop`): the
device and number format, starting weights, collation in a thread ahead of the loop, and
the resumable state (weights, AdamW's moments, the schedule, the random streams) written
atomically every few minutes, so a run stopped at any point goes on where it was."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from embeddings import lazy


def _torch():
    torch = lazy.load("torch")

    return torch


def cpu_has_bf16() -> bool:
    """True when the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere torch
    emulates it about a hundred times slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def use_bf16(choice: str, device: str) -> bool:
    """Whether to train in bf16 autocast: "on"/"off", or "auto" (CUDA, or a CPU that
    computes bf16 natively)."""
    choice = choice.lower()
    if choice in ("on", "yes", "true", "1"):
        return True
    if choice in ("off", "no", "false", "0"):
        return False
    return device.startswith("cuda") or cpu_has_bf16()


def pack_int8(state: dict) -> dict[str, np.ndarray]:
    """A state dict made small for carrying (a GPU machine takes 64 MiB): matrices as
    int8 rows with a float32 scale per row (absmax / 127), the rest float16. About a
    quarter of float32; `load_weights` reads it back."""
    out = {}
    for k, v in state.items():
        a = v.detach().float().cpu().numpy()
        if a.ndim == 2 and a.size >= 4096:
            scale = np.maximum(np.abs(a).max(axis=1), 1e-12) / 127
            out[f"{k}::q"] = np.round(a / scale[:, None]).astype(np.int8)
            out[f"{k}::s"] = scale.astype(np.float32)
        else:
            out[k] = a.astype(np.float16)
    return out


def load_weights(path: str) -> dict:
    """A state dict from a .pt (`torch.save`, or a state.pt's "net"), a .safetensors or
    a `pack_int8` .npz file, as float32."""
    torch = _torch()
    if str(path).endswith(".npz"):
        packed = np.load(path)
        state = {}
        for k in packed.files:
            if k.endswith("::s"):
                continue
            if k.endswith("::q"):
                name = k[:-3]
                state[name] = torch.from_numpy(
                    packed[k].astype(np.float32) * packed[f"{name}::s"][:, None])
            else:
                state[k] = torch.from_numpy(packed[k].astype(np.float32))
        return state
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if "net" in state and "optimizer" in state:
            state = state["net"]
    return {k: v.float() for k, v in state.items()}


def prefetch(make, items, depth: int = 6):
    """`make(item)` for each item, computed in a thread ahead of the consumer (collation
    off the training loop). Closing the generator (or leaving it by an exception) stops
    the thread."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(depth)
    done = object()
    stop = threading.Event()

    def put(x) -> bool:
        while not stop.is_set():
            try:
                q.put(x, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for it in items:
                if not put(make(it)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(exc)
            return
        put(done)

    threading.Thread(target=work, daemon=True, name="collate").start()
    try:
        while True:
            got = q.get()
            if got is done:
                return
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()


def rng_state() -> dict:
    torch = _torch()
    state = {"python": random.getstate(), "numpy": np.random.get_state(),
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch = _torch()
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: Path, **state) -> None:
    """A resumable checkpoint, written whole or not at all."""
    torch = _torch()
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
