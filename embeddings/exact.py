"""Arithmetic that gives the same bits on every x86-64 CPU, and the BERT forward pass built
on it (the encoder's and the reader's network).

Why: a CPU's vector width decides the order in which a matrix product or a sum adds its
terms (SSE, AVX2, AVX-512 and AMX kernels all differ), and floating-point addition is not
associative, so the same model gives answers a few ulps apart on different machines. An
int8 model quantises each activation from those values, and a value a hair different
rounds to another integer: a logit then moves by up to 0.3 (issue 28). Here every
operation is chosen so that its result cannot depend on the kernel:

- matrix products multiply *integers* whose sums provably stay below 2**24 (fp32: the
  attention's), or run as int8 x int8 -> int32 (`torch._int_mm`: the linear layers');
  integer sums are exact in any order;
- activations are quantised per row (per token), from the row's largest magnitude (a max
  is exact in any order), so a row's result never depends on the other rows of the batch;
- sums of floats run in a fixed order: a tree of pairwise additions (`tree_sum`) or, in
  the numba kernels (`exact_kernels`), index order on one thread per row; each IEEE
  addition, multiplication, division and square root is correctly rounded on every CPU;
- exp and the normal CDF (GELU) come from tables on a 2**-10 grid (`tables.npz`, made
  once with Python's `decimal`, software arithmetic; `python -m embeddings.exact` writes it
  again and the tests check it).

The price is quantisation noise, measured against the fp32 model in docs/benchmarks.md,
and the speed of int8 products (VNNI/AMX where the CPU has them; every x86-64 CPU computes
the same integers). `tests/test_cpu_independence.py` runs the product under an emulated
older CPU (qemu) and requires identical results: the evidence, not the cure.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from decimal import Decimal, localcontext
from pathlib import Path

import numpy as np

from embeddings.lazy import torch

TABLES = Path(__file__).parent / "data" / "tables.npz"
GRID = 1024  # table step 1/GRID
EXP_SPAN = 16  # exp(-x) tabled for 0 <= x <= EXP_SPAN; below exp(-16) it is 0
PHI_SPAN = 8  # the normal CDF tabled for -8 <= x <= 8; 0 and 1 outside
WEIGHT_MAX = 63  # 7-bit weights: every x86-64 int8 kernel sums them without saturating
ACT_MAX = 127  # int8 activations, per row
QK_MAX = 511  # attention queries/keys: 32 x 511**2 < 2**24, exact in fp32
PV_P = 65536  # attention weights on a 2**-16 grid (a row sums to ~2**16) ...
PV_V = 250  # ... times values |v| <= 250: (2**16 + 512/2) * 250 < 2**24, exact in fp32
VECTOR_GRID = 2048  # vectors leave the encoder as multiples of 2**-11 (see `on_grid`)
VECTOR_FORMAT = "grid-2048"  # recorded in an index's manifest: other vectors are rebuilt


# -- order-fixed sums --------------------------------------------------------------------

def tree_sum(x, axis: int = -1):
    """The sum along `axis` (kept, size 1) as a fixed tree of pairwise additions: zero-pad
    to a power of two, then add neighbours (0+1, 2+3, ...) level by level. Each level is an
    elementwise IEEE addition, so the result is the same on every CPU; trailing zero
    padding never changes it, so neither does the width of a padded batch. Works on
    numpy arrays and torch tensors."""
    is_np = isinstance(x, np.ndarray)
    axis = axis % x.ndim
    n = x.shape[axis]
    size = 1 << max(0, (n - 1).bit_length())
    if size != n:
        pad = list(x.shape)
        pad[axis] = size - n
        zeros = np.zeros(pad, dtype=x.dtype) if is_np else torch().zeros(pad, dtype=x.dtype)
        x = np.concatenate([x, zeros], axis) if is_np else torch().cat([x, zeros], axis)
    while x.shape[axis] > 1:
        even = [slice(None)] * x.ndim
        odd = [slice(None)] * x.ndim
        even[axis], odd[axis] = slice(0, None, 2), slice(1, None, 2)
        x = x[tuple(even)] + x[tuple(odd)]
    return x


def on_grid(vectors: np.ndarray) -> np.ndarray:
    """Unit vectors rounded to multiples of 1/VECTOR_GRID (float32). The inner product of
    two such vectors is a sum of multiples of 2**-22 whose magnitudes add up to at most
    about 2**22 * 2**-22 * |a||b| (Cauchy-Schwarz): every partial sum is exact in fp32, so
    FAISS, BLAS and numpy give the same cosine on every CPU, in any order."""
    v = np.asarray(vectors, dtype=np.float32)
    return (np.round(v * np.float32(VECTOR_GRID)) / np.float32(VECTOR_GRID)).astype(
        np.float32)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows divided by their L2 norm (tree-summed; zero rows stay zero), on the grid."""
    v = np.asarray(vectors, dtype=np.float32)
    norms = np.sqrt(tree_sum(v * v, axis=-1))
    return on_grid(v / np.maximum(norms, np.float32(1e-12)))


def dot(weights, values) -> float:
    """sum(w * x) of two short float sequences, correctly rounded (math.fsum), so the
    same on every CPU (numpy's dot calls BLAS, whose order depends on the CPU)."""
    return math.fsum(float(w) * float(x) for w, x in zip(weights, values, strict=True))


def exact_sigmoid(z: float) -> float:
    """1 / (1 + e**-z) in decimal (software) arithmetic, rounded once to a float: the C
    library's exp may differ by an ulp between CPUs with and without FMA."""
    with localcontext() as ctx:
        ctx.prec = 30
        return float(1 / (1 + (-Decimal(z)).exp()))


# -- tables ------------------------------------------------------------------------------

def make_tables() -> dict[str, np.ndarray]:
    """exp(-k/GRID) for k = 0..EXP_SPAN*GRID and Phi(k/GRID) for k = -PHI_SPAN*GRID ..
    PHI_SPAN*GRID, computed in decimal (software) arithmetic, rounded once to float32."""
    with localcontext() as ctx:
        ctx.prec = 60
        step = Decimal(1) / GRID
        exp = [float((Decimal(-k) * step).exp()) for k in range(EXP_SPAN * GRID + 1)]
        root2 = Decimal(2).sqrt()
        phi = []
        for k in range(0, PHI_SPAN * GRID + 1):
            phi.append(Decimal(1) / 2 * (1 + _erf(Decimal(k) * step / root2)))
        full = [1 - p for p in reversed(phi[1:])] + phi
    return {"exp": np.array(exp, dtype=np.float32),
            "phi": np.array([float(p) for p in full], dtype=np.float32)}


def _erf(z: Decimal) -> Decimal:
    """erf by its Maclaurin series in the current decimal context (z <= 6)."""
    total, term, n = Decimal(0), z, 0
    z2 = z * z
    tiny = Decimal(10) ** -40
    while True:
        add = term / (2 * n + 1)
        total += add
        if abs(add) < tiny:
            break
        n += 1
        term = -term * z2 / n
    return 2 / _PI.sqrt() * total


_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")


_TABLES: dict = {}


def tables() -> tuple[np.ndarray, np.ndarray]:
    """(exp, phi) as float32 arrays, loaded once."""
    if not _TABLES:
        with np.load(TABLES) as data:
            _TABLES["exp"] = np.ascontiguousarray(data["exp"], dtype=np.float32)
            _TABLES["phi"] = np.ascontiguousarray(data["phi"], dtype=np.float32)
    return _TABLES["exp"], _TABLES["phi"]


# -- the network -------------------------------------------------------------------------

@dataclass(frozen=True)
class QLinear:
    """y = x W + b with W as 7-bit integers (in, out) and one scale per output."""

    weight: object  # torch int8 (in, out), |w| <= WEIGHT_MAX
    scale: np.ndarray  # float32 (out,)
    bias: np.ndarray  # float32 (out,)

    @staticmethod
    def from_float(weight, bias) -> QLinear:
        """From an nn.Linear-style float weight (out, in) and bias (out,)."""
        t = torch()
        w = t.as_tensor(weight).detach().to(t.float32)
        amax = w.abs().amax(dim=1)
        scale = t.where(amax > 0, amax / WEIGHT_MAX, t.ones_like(amax))
        q = t.round(w / scale[:, None]).clamp_(-WEIGHT_MAX, WEIGHT_MAX).to(t.int8)
        return QLinear.from_int8(q.t(), scale, bias)

    @staticmethod
    def from_int8(weight, scale, bias) -> QLinear:
        """From 7-bit integer weights (in, out) and their per-output scales."""
        t = torch()
        w = weight if isinstance(weight, t.Tensor) else t.from_numpy(np.array(weight))
        w = w.to(t.int8).contiguous()
        if int(w.abs().max()) > WEIGHT_MAX + 1:  # 7-bit: -64..63, 255 * 64 * 2 < 2**15
            raise ValueError("weights beyond 7 bits saturate AVX2's int8 kernel")
        return QLinear(w, np.ascontiguousarray(np.asarray(scale, dtype=np.float32)),
                       np.ascontiguousarray(np.asarray(bias, dtype=np.float32)))

    def acc(self, q: np.ndarray) -> np.ndarray:
        """int8 rows (n, in) -> int32 (n, out): exact integer sums on every CPU."""
        t = torch()
        return t._int_mm(t.from_numpy(q), self.weight).numpy()


@dataclass(frozen=True)
class Layer:
    qkv: QLinear
    out: QLinear
    ln1: tuple  # (weight, bias) float32 arrays
    up: QLinear
    down: QLinear
    ln2: tuple


def _f32(x) -> np.ndarray:
    t = torch()
    if isinstance(x, t.Tensor):
        x = x.detach().to(t.float32).numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=np.float32))


_RUN_LOCK = threading.RLock()


class Bert:
    """A BERT encoder (embeddings + layers) computed with the arithmetic above.

    `from_state(state, heads)` takes a transformers-style state dict (names as
    BertModel's, with or without a "bert." prefix) of float tensors."""

    def __init__(self, embeddings: dict, layers: list[Layer], heads: int, eps: float):
        """embeddings: float32 arrays "word", "position", "type" and "ln" (weight, bias)."""
        self.emb, self.layers, self.heads = embeddings, layers, heads
        self.eps = np.float32(eps)
        self.hidden = int(embeddings["word"].shape[1])
        self.max_positions = int(embeddings["position"].shape[0])

    @classmethod
    def from_state(cls, state: dict, heads: int, eps: float = 1e-12) -> Bert:
        p = "bert." if any(k.startswith("bert.") for k in state) else ""

        def f(name):
            return state[p + name]

        emb = {"word": _f32(f("embeddings.word_embeddings.weight")),
               "position": _f32(f("embeddings.position_embeddings.weight")),
               "type": _f32(f("embeddings.token_type_embeddings.weight")),
               "ln": (_f32(f("embeddings.LayerNorm.weight")),
                      _f32(f("embeddings.LayerNorm.bias")))}
        layers = []
        i = 0
        t = torch()
        while f"{p}encoder.layer.{i}.attention.self.query.weight" in state:
            a = f"encoder.layer.{i}."
            parts = ("query", "key", "value")
            qkv_w = t.cat([t.as_tensor(f(a + f"attention.self.{n}.weight")) for n in parts])
            qkv_b = t.cat([t.as_tensor(f(a + f"attention.self.{n}.bias")) for n in parts])
            layers.append(Layer(
                QLinear.from_float(qkv_w, _f32(qkv_b)),
                QLinear.from_float(f(a + "attention.output.dense.weight"),
                                   _f32(f(a + "attention.output.dense.bias"))),
                (_f32(f(a + "attention.output.LayerNorm.weight")),
                 _f32(f(a + "attention.output.LayerNorm.bias"))),
                QLinear.from_float(f(a + "intermediate.dense.weight"),
                                   _f32(f(a + "intermediate.dense.bias"))),
                QLinear.from_float(f(a + "output.dense.weight"),
                                   _f32(f(a + "output.dense.bias"))),
                (_f32(f(a + "output.LayerNorm.weight")), _f32(f(a + "output.LayerNorm.bias")))))
            i += 1
        if not layers:
            raise ValueError("state dict has no encoder layers")
        return cls(emb, layers, heads, eps)

    def __call__(self, ids, mask, types=None) -> np.ndarray:
        """(batch, seq) int ids and 0/1 mask [and token types] -> (batch, seq, hidden)
        float32 hidden states. A row's result depends on that row alone."""
        from embeddings import exact_kernels as k

        with _RUN_LOCK:  # one pass at a time: each already uses every core
            return self._run(ids, mask, types, k)

    def warm(self) -> None:
        """Run a short and a long input once, so that every kernel variant (one thread and
        all threads) is compiled or loaded from numba's cache now, not inside a request."""
        for b, n in ((1, 8), (2, 192)):
            ids = np.full((b, n), 100, dtype=np.int64)
            self(ids, np.ones_like(ids), np.zeros_like(ids))

    def _run(self, ids, mask, types, k) -> np.ndarray:
        ids = np.asarray(ids, dtype=np.int64)
        valid = np.ascontiguousarray(np.asarray(mask) != 0)
        b, n = ids.shape
        if n > self.max_positions:
            raise ValueError(f"{n} tokens: the model reads at most {self.max_positions}")
        types = np.zeros_like(ids) if types is None else np.asarray(types, dtype=np.int64)
        e = self.emb
        x = (e["word"][ids] + e["position"][:n][None]) + e["type"][types]
        x = np.ascontiguousarray(x.reshape(b * n, self.hidden))
        x, q, s = k.layer_norm_quantize_residual(x, None, *e["ln"], self.eps, ACT_MAX)
        exp, phi = tables()
        exp = np.concatenate([exp, np.zeros(1, dtype=np.float32)])  # 0 past the table
        lengths = valid.sum(axis=1).astype(np.int64)  # masks are prefixes of each row
        for layer in self.layers:
            x, q, s = self._layer(layer, x, q, s, valid, lengths, b, n, exp, phi, k)
        return x.reshape(b, n, self.hidden)

    def _layer(self, layer: Layer, x, q, s, valid, lengths, b, n, exp, phi, k):
        t = torch()
        h, d = self.heads, self.hidden // self.heads
        qkv = k.dequantize(layer.qkv.acc(q), s, layer.qkv.scale, layer.qkv.bias)
        qi, qs, ki, ks, vi, vs = k.split_heads(qkv, valid, b, n, h, d, QK_MAX, PV_V,
                                               np.float32(1 / math.sqrt(d)))
        scores = t.matmul(t.from_numpy(qi), t.from_numpy(ki).transpose(-1, -2)).numpy()
        k.softmax_grid(scores, qs, ks, lengths, exp, np.float32(GRID), np.float32(PV_P))
        pv = t.matmul(t.from_numpy(scores), t.from_numpy(vi)).numpy()
        q, s = k.merge_heads_quantize(pv, vs, np.float32(PV_P), ACT_MAX)
        x, q, s = k.layer_norm_quantize_residual(
            k.dequantize(layer.out.acc(q), s, layer.out.scale, layer.out.bias), x,
            *layer.ln1, self.eps, ACT_MAX)
        q2, s2 = k.gelu_quantize(layer.up.acc(q), s, layer.up.scale, layer.up.bias, phi,
                                 np.float32(GRID), PHI_SPAN * GRID, ACT_MAX)
        return k.layer_norm_quantize_residual(
            k.dequantize(layer.down.acc(q2), s2, layer.down.scale, layer.down.bias), x,
            *layer.ln2, self.eps, ACT_MAX)


def main() -> None:  # pragma: no cover - writes the shipped tables
    TABLES.parent.mkdir(parents=True, exist_ok=True)
    np.savez(TABLES, **make_tables())
    print(f"wrote {TABLES}")


if __name__ == "__main__":  # pragma: no cover
    main()
