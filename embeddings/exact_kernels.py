"""The row-wise steps of `embeddings.exact.Bert`, compiled with numba.

Every loop that adds floats runs in index order on one thread (rows are spread over
threads, never a row's sum), and nothing here is compiled with fast-math: LLVM may
vectorise across independent elements but never reorders an addition or fuses a multiply
into an add, so each value is the same on every CPU. All arithmetic is float32 (the
constants are passed in as float32: a Python float would widen it to float64).
"""

from __future__ import annotations

import os
import types

# Compile for x86-64-v2 (SSE4.2, 2009 on), not for the host: every machine then runs the
# same instructions, and the on-disk cache made on one CPU serves any other (an emulated
# CPU in the tests included) instead of compiling again. Without NUMBA_CPU_FEATURES numba
# would add the host's own features to the name.
os.environ.setdefault("NUMBA_CPU_NAME", "x86-64-v2")
os.environ.setdefault("NUMBA_CPU_FEATURES", "")

import numpy as np  # noqa: E402
from numba import njit, prange  # noqa: E402

_OPTS = {"cache": True, "nogil": True, "fastmath": False, "error_model": "numpy"}
PARALLEL_FROM = 1 << 17  # elements: below this a kernel runs on the calling thread only


def _kernel(fn):
    """`fn` compiled twice: on every core (rows spread over threads) and on the calling
    thread alone (small inputs: waking threads costs more than they save, and a busy
    core would stall the others). Calling it with `size=` picks one; both compute the
    same values."""
    parallel = njit(parallel=True, **_OPTS)(fn)
    # a copy under its own name, so that numba's on-disk cache keeps the two apart
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial",
                              fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + "_serial"
    serial = njit(parallel=False, **_OPTS)(copy)

    def run(*args, size: int):
        return (parallel if size >= PARALLEL_FROM else serial)(*args)

    run.__name__, run.__doc__ = fn.__name__, fn.__doc__
    return run


@njit(**_OPTS)
def _quantize_row(row, lv, out):
    """One row to integers |q| <= lv (float32 lv) in `out`, from its largest magnitude;
    returns the scale (row ~ out * scale; 1 for an all-zero row)."""
    amax = np.float32(0)
    for j in range(row.shape[0]):
        a = abs(row[j])
        if a > amax:
            amax = a
    inv = lv / amax if amax > 0 else np.float32(0)
    for j in range(row.shape[0]):
        out[j] = min(max(np.rint(row[j] * inv), -lv), lv)
    return amax / lv if amax > 0 else np.float32(1)


@_kernel
def _quantize_into(x, levels, q, s):
    lv = np.float32(levels)
    for i in prange(x.shape[0]):
        s[i, 0] = _quantize_row(x[i], lv, q[i])


def quantize(x: np.ndarray, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows and per-row scales (n, 1): x ~ q * s, |q| <= levels."""
    q = np.empty(x.shape, dtype=np.int8)
    s = np.empty((x.shape[0], 1), dtype=np.float32)
    _quantize_into(x, levels, q, s, size=x.size)
    return q, s


@_kernel
def _dequantize_into(acc, s, ws, bias, out):
    n, m = acc.shape
    for i in prange(n):
        si = s[i, 0]
        for j in range(m):
            out[i, j] = np.float32(acc[i, j]) * si * ws[j] + bias[j]


def dequantize(acc, s, ws, bias) -> np.ndarray:
    """float32 (n, m): acc * s (per row) * ws (per column) + bias."""
    out = np.empty(acc.shape, dtype=np.float32)
    _dequantize_into(acc, s, ws, bias, out, size=acc.size)
    return out


@_kernel
def _ln_into(x, res, w, b, eps, levels, out, q, s):
    n, m = x.shape
    lv = np.float32(levels)
    fm = np.float32(m)
    for i in prange(n):
        total = np.float32(0)
        for j in range(m):
            v = x[i, j] + res[i, j] if res.shape[0] else x[i, j]
            out[i, j] = v
            total += v
        mean = total / fm
        var = np.float32(0)
        for j in range(m):
            d = out[i, j] - mean
            var += d * d
        den = np.sqrt(var / fm + eps)
        for j in range(m):
            out[i, j] = (out[i, j] - mean) / den * w[j] + b[j]
        s[i, 0] = _quantize_row(out[i], lv, q[i])


def layer_norm_quantize_residual(x, res, w, b, eps, levels):
    """LayerNorm(x + res) (res may be None), and its int8 rows and scales."""
    out = np.empty(x.shape, dtype=np.float32)
    q = np.empty(x.shape, dtype=np.int8)
    s = np.empty((x.shape[0], 1), dtype=np.float32)
    none = np.empty((0, x.shape[1]), dtype=np.float32)
    _ln_into(x, none if res is None else res, w, b, eps, levels, out, q, s, size=x.size)
    return out, q, s


@_kernel
def _gelu_into(acc, s, ws, bias, phi, grid, half, levels, row, q, qs):
    n, m = acc.shape
    lv = np.float32(levels)
    top = 2 * half
    for i in prange(n):
        si = s[i, 0]
        for j in range(m):
            y = np.float32(acc[i, j]) * si * ws[j] + bias[j]
            k = int(np.rint(y * grid)) + half
            k = min(max(k, 0), top)
            row[i, j] = y * phi[k]
        qs[i, 0] = _quantize_row(row[i], lv, q[i])


def gelu_quantize(acc, s, ws, bias, phi, grid, half, levels):
    """GELU(acc * s * ws + bias) with Phi from the table, as int8 rows and scales."""
    row = np.empty(acc.shape, dtype=np.float32)
    q = np.empty(acc.shape, dtype=np.int8)
    qs = np.empty((acc.shape[0], 1), dtype=np.float32)
    _gelu_into(acc, s, ws, bias, phi, grid, half, levels, row, q, qs, size=acc.size)
    return q, qs


@_kernel
def _split_into(qkv, valid, b, n, h, d, qk_levels, v_levels, inv_sqrt_d,
                qi, qs, ki, ks, vi, vs):
    hid = h * d
    ql = np.float32(qk_levels)
    vl = np.float32(v_levels)
    for r in prange(b * h):
        bb = r // h
        hh = r % h
        for t in range(n):
            for part in range(2):
                base = part * hid + hh * d
                amax = np.float32(0)
                for j in range(d):
                    a = abs(qkv[bb * n + t, base + j])
                    if a > amax:
                        amax = a
                sc = amax / ql if amax > 0 else np.float32(1)
                dst = qi if part == 0 else ki
                for j in range(d):
                    v = np.rint(qkv[bb * n + t, base + j] / sc)
                    dst[bb, hh, t, j] = min(max(v, -ql), ql)
                if part == 0:
                    qs[bb, hh, t] = sc * inv_sqrt_d
                else:
                    ks[bb, hh, t] = sc
        base = 2 * hid + hh * d
        for j in range(d):
            amax = np.float32(0)
            for t in range(n):
                if valid[bb, t]:
                    a = abs(qkv[bb * n + t, base + j])
                    if a > amax:
                        amax = a
            sc = amax / vl if amax > 0 else np.float32(1)
            vs[bb, hh, j] = sc
            for t in range(n):
                if valid[bb, t]:
                    v = np.rint(qkv[bb * n + t, base + j] / sc)
                    vi[bb, hh, t, j] = min(max(v, -vl), vl)
                else:
                    vi[bb, hh, t, j] = 0


def split_heads(qkv, valid, b, n, h, d, qk_levels, v_levels, inv_sqrt_d):
    """Queries and keys as integers per (text, head, token) row with scales (the query's
    times 1/sqrt(d)); values as integers per (text, head, channel) over the text's real
    tokens (padding zeroed), with scales. All integer-valued float32."""
    qi = np.empty((b, h, n, d), dtype=np.float32)
    ki = np.empty_like(qi)
    vi = np.empty_like(qi)
    qs = np.empty((b, h, n), dtype=np.float32)
    ks = np.empty_like(qs)
    vs = np.empty((b, h, d), dtype=np.float32)
    _split_into(qkv, valid, b, n, h, d, qk_levels, v_levels, inv_sqrt_d,
                qi, qs, ki, ks, vi, vs, size=qkv.size)
    return qi, qs, ki, ks, vi, vs


def softmax_grid(scores, qs, ks, lengths, table, grid, pv_p):
    """In place: integer dot products (b, h, n, n) -> softmax weights times pv_p, rounded
    (integer-valued float32), with exp(-x) from `table` at x on the 1/grid grid (its last
    entry 0: past the table); keys at or past a text's length (b,) weigh 0."""
    _softmax_into(scores, qs, ks, lengths, table, grid, pv_p, size=scores.size)


@_kernel
def _softmax_into(scores, qs, ks, lengths, table, grid, pv_p):
    b, h, n, _ = scores.shape
    limit = table.shape[0] - 1  # table[limit] == 0
    for r in prange(b * h * n):
        bb = r // (h * n)
        hh = (r // n) % h
        i = r % n
        c = qs[bb, hh, i]
        nv = lengths[bb]
        row = scores[bb, hh, i]
        kk = ks[bb, hh]
        top = -np.inf
        for j in range(nv):
            v = row[j] * c * kk[j]
            row[j] = v
            if v > top:
                top = v
        a0 = np.float32(0)
        a1 = np.float32(0)
        a2 = np.float32(0)
        a3 = np.float32(0)
        lim = np.float32(limit)
        whole = nv - nv % 4
        for j in range(0, whole, 4):  # four running sums in a fixed pattern (j mod 4)
            e0 = table[int(min(np.rint((top - row[j]) * grid), lim))]
            e1 = table[int(min(np.rint((top - row[j + 1]) * grid), lim))]
            e2 = table[int(min(np.rint((top - row[j + 2]) * grid), lim))]
            e3 = table[int(min(np.rint((top - row[j + 3]) * grid), lim))]
            row[j], row[j + 1], row[j + 2], row[j + 3] = e0, e1, e2, e3
            a0 += e0
            a1 += e1
            a2 += e2
            a3 += e3
        for j in range(whole, nv):
            e = table[int(min(np.rint((top - row[j]) * grid), lim))]
            row[j] = e
            a0 += e
        inv = pv_p / ((a0 + a1) + (a2 + a3))
        for j in range(nv):
            row[j] = np.rint(row[j] * inv)
        for j in range(nv, n):
            row[j] = 0


@_kernel
def _merge_into(pv, vs, pv_p, levels, q, s):
    b, h, n, d = pv.shape
    lv = np.float32(levels)
    for r in prange(b * n):
        row = np.empty(h * d, dtype=np.float32)
        bb = r // n
        t = r % n
        for hh in range(h):
            for j in range(d):
                row[hh * d + j] = pv[bb, hh, t, j] / pv_p * vs[bb, hh, j]
        s[r, 0] = _quantize_row(row, lv, q[r])


def merge_heads_quantize(pv, vs, pv_p, levels):
    """The attention's output (b, h, n, d) integer sums / pv_p * value scales, as int8
    rows (b * n, h * d) and scales."""
    b, h, n, d = pv.shape
    q = np.empty((b * n, h * d), dtype=np.int8)
    s = np.empty((b * n, 1), dtype=np.float32)
    _merge_into(np.ascontiguousarray(pv), vs, pv_p, levels, q, s, size=pv.size)
    return q, s
