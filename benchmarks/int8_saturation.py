"""Is onnxruntime's MatMulInteger exact on this CPU? u8s8 vs u8u8 vs 7-bit u8s8.

Checks the integer product against numpy and times it, to justify storing int8 weights as
uint8 with zero point 128 (see bitprism.kernels.ort_cpu).

    .venv/bin/python benchmarks/int8_saturation.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

M, K, N = 32, 1024, 256


def _session(weights: np.ndarray, zero_point: int | None) -> ort.InferenceSession:
    inputs = ["A", "W"] + (["", "WZ"] if zero_point is not None else [])
    inits = [numpy_helper.from_array(weights, "W")]
    if zero_point is not None:
        inits.append(numpy_helper.from_array(np.array(zero_point, dtype=weights.dtype), "WZ"))
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", inputs, ["Y"])], "g",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [M, K])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, None)], inits,
    )  # fmt: skip
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def main() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(M, K), dtype=np.uint8)
    codes = rng.integers(-127, 128, size=(K, N)).astype(np.int64)
    variants = {
        "u8s8, codes in [-127, 127]": (codes.astype(np.int8), None, codes),
        "u8u8, codes + 128, zero point 128": ((codes + 128).astype(np.uint8), 128, codes),
        "u8s8, 7-bit codes in [-63, 63]": ((codes // 2).astype(np.int8), None, codes // 2),
    }
    print("| weights | max integer error | latency us |\n|---|---|---|")
    for name, (weights, zero_point, exact_codes) in variants.items():
        session = _session(weights, zero_point)
        error = np.abs(session.run(None, {"A": a})[0] - a.astype(np.int64) @ exact_codes).max()
        samples = []
        for _ in range(200):
            start = time.perf_counter()
            session.run(None, {"A": a})
            samples.append(time.perf_counter() - start)
        print(f"| {name} | {error:,} | {statistics.median(samples) * 1e6:.0f} |")


if __name__ == "__main__":
    main()
