"""Why int8 results can depend on the CPU, and the cure, tested on whatever CPU runs this.

ONNX Runtime's u8 x s8 integer matrix product uses VPMADDUBSW on AVX2, which adds pairs of
u8*s8 products into a saturating 16-bit sum: 255*127 + 255*127 = 64,770 overflows it, so
a model with full 8-bit weights computes other integers on AVX2 than on AVX-512 VNNI
(which sums in 32 bits). With 7-bit weights (|w| <= 64, onnxruntime's reduce_range) a pair
sum stays below 2 * 255 * 64 = 32,640 < 32,767: exact on every x86-64 CPU. The encoder
and the reader are quantised that way; these tests check the kernel and the files.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def _matmul_integer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    from onnx import TensorProto, helper, numpy_helper

    k, n = b.shape
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B", "az", "bz"], ["Y"])], "g",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, list(a.shape))],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [a.shape[0], n])],
        [numpy_helper.from_array(b, "B"), numpy_helper.from_array(np.array(0, np.uint8), "az"),
         numpy_helper.from_array(np.array(0, np.int8), "bz")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"A": a})[0]


@pytest.mark.parametrize("seed", range(3))
def test_seven_bit_weights_give_exact_integers_on_this_cpu(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(200, 256, size=(4, 384)).astype(np.uint8)  # near the top of u8
    b = rng.integers(-64, 65, size=(384, 64)).astype(np.int8)
    b[:, 0] = 64  # the worst case: every pair at the largest product
    b[:, 1] = -64
    exact = a.astype(np.int64) @ b.astype(np.int64)
    assert np.array_equal(_matmul_integer(a, b), exact)
