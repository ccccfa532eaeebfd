"""embeddings/exact.py and exact_kernels.py on hand-made numbers: the properties the
CPU-independence rests on (exact integer sums, fixed-order float sums, tables made by
software arithmetic, a row's result independent of its batch). The whole product under
an emulated CPU is tests/test_cpu_independence.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embeddings import exact
from embeddings import exact_kernels as k

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


def test_tree_sum_is_a_fixed_tree_unchanged_by_zero_padding():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 37)).astype(np.float32)
    got = exact.tree_sum(x)
    assert got.shape == (5, 1)
    padded = np.concatenate([x, np.zeros((5, 91), np.float32)], axis=1)
    np.testing.assert_array_equal(exact.tree_sum(padded), got)
    # the same pairs as written out by hand for 3 numbers: (a + b) + (c + 0)
    a, b, c = np.float32(1e8), np.float32(1.0), np.float32(-1e8)
    assert exact.tree_sum(np.array([a, b, c]))[0] == (a + b) + c
    np.testing.assert_allclose(exact.tree_sum(x.astype(np.float64), axis=1)[:, 0],
                               x.astype(np.float64).sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(exact.tree_sum(x, axis=0), exact.tree_sum(x.T)[:, 0][None])


def test_grid_vectors_have_exact_inner_products_in_any_order():
    rng = np.random.default_rng(1)
    v = exact.normalise(rng.standard_normal((50, 384)).astype(np.float32))
    assert np.array_equal(v * 2048, np.round(v * 2048))
    exact_ip = (v.astype(np.float64) @ v.astype(np.float64).T)
    np.testing.assert_array_equal((v @ v.T).astype(np.float64), exact_ip)  # BLAS, fp32
    np.testing.assert_array_equal(np.float32(np.flip(v, 1) @ np.flip(v, 1).T), v @ v.T)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=5e-3)
    assert not exact.normalise(np.zeros((1, 384), np.float32)).any()


def test_shipped_tables_are_the_decimal_ones():
    made = exact.make_tables()
    exp_table, phi = exact.tables()
    np.testing.assert_array_equal(made["exp"], exp_table)
    np.testing.assert_array_equal(made["phi"], phi)
    assert exp_table[0] == 1.0 and abs(exp_table[1024] - math.exp(-1)) < 1e-7
    assert phi[exact.PHI_SPAN * exact.GRID] == 0.5 and phi[-1] == 1.0


def test_dot_and_sigmoid_are_correctly_rounded():
    assert exact.dot((1e16, 1.0, -1e16), (1.0, 1.0, 1.0)) == 1.0  # naive order gives 0.0
    assert exact.exact_sigmoid(0.0) == 0.5
    assert abs(exact.exact_sigmoid(2.0) - 1 / (1 + math.exp(-2.0))) < 1e-15


def test_quantize_rows_and_integer_products_are_exact():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, 384)).astype(np.float32)
    x[3] = 0
    q, s = k.quantize(x, exact.ACT_MAX)
    assert q.dtype == np.int8 and np.abs(q).max() == exact.ACT_MAX and s[3, 0] == 1
    assert np.abs(q.astype(np.float32) * s - x).max() <= s.max() / 2 * 1.0001
    w = rng.standard_normal((1536, 384)).astype(np.float32)
    layer = exact.QLinear.from_float(w, np.zeros(1536, np.float32))
    assert int(np.abs(layer.weight.numpy()).max()) <= exact.WEIGHT_MAX
    want = q.astype(np.int64) @ layer.weight.numpy().astype(np.int64)
    np.testing.assert_array_equal(layer.acc(q), want)
    with pytest.raises(ValueError, match="7 bits"):
        exact.QLinear.from_int8(np.full((4, 4), 100, np.int8), np.ones(4), np.zeros(4))


def test_a_rows_result_never_depends_on_its_batch():
    rng = np.random.default_rng(3)
    hidden, heads, inter = 64, 4, 128
    state = {"embeddings.word_embeddings.weight": rng.standard_normal((50, hidden)),
             "embeddings.position_embeddings.weight": rng.standard_normal((32, hidden)),
             "embeddings.token_type_embeddings.weight": rng.standard_normal((2, hidden)),
             "embeddings.LayerNorm.weight": np.ones(hidden),
             "embeddings.LayerNorm.bias": np.zeros(hidden)}
    p = "encoder.layer.0."
    for name, shape in (("attention.self.query", (hidden, hidden)),
                        ("attention.self.key", (hidden, hidden)),
                        ("attention.self.value", (hidden, hidden)),
                        ("attention.output.dense", (hidden, hidden)),
                        ("intermediate.dense", (inter, hidden)),
                        ("output.dense", (hidden, inter))):
        state[p + name + ".weight"] = rng.standard_normal(shape) * 0.1
        state[p + name + ".bias"] = rng.standard_normal(shape[0]) * 0.1
    for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
        state[p + ln + ".weight"], state[p + ln + ".bias"] = np.ones(hidden), np.zeros(hidden)
    import torch

    net = exact.Bert.from_state({n: torch.tensor(v, dtype=torch.float32)
                                 for n, v in state.items()}, heads)
    ids = rng.integers(1, 50, (3, 20))
    mask = np.ones_like(ids)
    mask[1, 12:] = 0
    together = net(ids, mask)
    for r in range(3):
        n = int(mask[r].sum())
        alone = net(ids[r : r + 1, :n], mask[r : r + 1, :n])
        np.testing.assert_array_equal(alone[0], together[r, :n])
