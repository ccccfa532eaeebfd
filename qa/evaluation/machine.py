"""The machine a figure was measured on: CPU model and the instruction sets that change
int8 kernels (AVX2, AVX-512, AVX-512 VNNI), recorded beside every quality and speed
figure (`qa eval`'s metrics.json, the benchmarks)."""

from __future__ import annotations

import os
import platform
from functools import lru_cache


def _cpuinfo() -> tuple[str, set[str]]:
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def instruction_set(flags: set[str]) -> str:
    """The widest of AVX-512 VNNI, AVX-512, AVX2 the flags show ("other" if none)."""
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "AVX-512 VNNI"
    if "avx512f" in flags:
        return "AVX-512"
    if "avx2" in flags:
        return "AVX2"
    return "other"


@lru_cache(maxsize=1)
def describe() -> dict:
    """{"cpu": model name, "isa": instruction_set, "cores": CPUs this process may use}."""
    model, flags = _cpuinfo()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return {"cpu": model, "isa": instruction_set(flags), "cores": cores}


def line() -> str:
    """One line for tables: "AMD EPYC, AVX2, 2 cores"."""
    d = describe()
    return f"{d['cpu']}, {d['isa']}, {d['cores']} cores"
