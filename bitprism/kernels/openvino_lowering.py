"""OpenVINO CPU lowering: each compressed layer as ONNX that OpenVINO's CPU plugin runs fast.

- Linear / Conv2d, 7 bits (``int7``): static int8 in ONNX's QDQ form. The input goes through
  ``QuantizeLinear`` + ``DequantizeLinear`` with the candidate's calibrated uint8 scale and zero
  point; the weight is int8 codes in [-63, 63] behind a per-output-channel ``DequantizeLinear``.
  OpenVINO turns the pairs into FakeQuantize nodes and its low-precision transformations run
  the matmul / conv on the integer codes (u8 x i8, int32 accumulation): the form NNCF emits.
  Seven-bit codes keep u8 x i8 pair sums below 2^15, so the result is exact on CPUs without
  VNNI, whose int8 kernels sum pairs in saturating int16 (NNCF's ``overflow_fix`` is the same
  halving). QuantizeLinear and PyTorch both round half to even, so the file computes the
  candidate up to float rounding.
- Linear, 4/2 bits: ``MatMulNBits`` (u4/u2 FullyConnected, weights decompressed in the
  kernel); Embedding 8/4 bits: ``GatherBlockQuantized``; fp32 layers and low-rank factors: the
  same ops as :mod:`bitprism.kernels.ort_lowering`, which OpenVINO reads as well.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from bitprism.compression.apply import CompressedLayer, Factor
from bitprism.compression.quantize import InputQuantKind
from bitprism.kernels.onnx_graph import initializer
from bitprism.kernels.ort_lowering import (
    Emitted,
    Emitters,
    as_s7,
    codes,
    conv_fp32,
    gather_blocks,
    gather_fp32,
    lower_with,
    matmul_fp32,
    matmul_nbits,
)
from bitprism.spaces.candidate import OFF_BITS
from bitprism.spaces.layer import LayerInfo, LayerKind

INT8_BITS = 7  # the static int8 form's weight codes (see the module docstring)


def lower_layer(model: onnx.ModelProto, layer: LayerInfo, compressed: CompressedLayer) -> None:
    """Rewrite ``layer``'s node(s) of ``model`` in place into its OpenVINO form."""
    lower_with(EMITTERS, "OpenVINO", model, layer, compressed)


def _static_input(prefix: str, x: str, factor: Factor) -> Emitted:
    """QuantizeLinear + DequantizeLinear of ``x`` with the factor's calibrated scale."""
    quant = factor.input_quant
    if quant is None or quant.kind is not InputQuantKind.STATIC_U8 or quant.needs_calibration:
        raise ValueError(f"{prefix}: the int8 form needs a calibrated static input quantiser")
    inits = [
        initializer(f"{prefix}/xs", np.array(quant.scale, dtype=np.float32)),
        initializer(f"{prefix}/xz", np.array(quant.zero_point, dtype=np.uint8)),
    ]
    names = [x, inits[0].name, inits[1].name]
    nodes = [
        helper.make_node("QuantizeLinear", names, [f"{prefix}/xq"], name=f"{prefix}/q"),
        helper.make_node(
            "DequantizeLinear",
            [f"{prefix}/xq", *names[1:]],
            [f"{prefix}/xdq"],
            name=f"{prefix}/dq",
        ),
    ]
    return nodes, inits


def _weight_dq(prefix: str, weight: np.ndarray, scales: np.ndarray, axis: int) -> Emitted:
    """int8 weight codes behind a per-channel DequantizeLinear on ``axis``."""
    inits = [initializer(f"{prefix}/qw", weight), initializer(f"{prefix}/ws", scales)]
    dq = helper.make_node(
        "DequantizeLinear",
        [inits[0].name, inits[1].name],
        [f"{prefix}/wdq"],
        name=f"{prefix}/wdq",
        axis=axis,
    )
    return [dq], inits


def _matmul_qdq(prefix: str, x: str, out: str, factor: Factor, node: onnx.NodeProto) -> Emitted:
    quantized = codes(factor)
    in_nodes, in_inits = _static_input(prefix, x, factor)
    scales = quantized.scales.numpy().astype(np.float32).reshape(-1)
    w_nodes, w_inits = _weight_dq(prefix, as_s7(prefix, quantized).T.copy(), scales, axis=1)
    matmul = helper.make_node(
        "MatMul", [f"{prefix}/xdq", f"{prefix}/wdq"], [out], name=f"{prefix}/matmul"
    )
    return [*in_nodes, *w_nodes, matmul], [*in_inits, *w_inits]


def _conv_qdq(prefix: str, x: str, out: str, factor: Factor, node: onnx.NodeProto) -> Emitted:
    quantized = codes(factor)
    in_nodes, in_inits = _static_input(prefix, x, factor)
    weight = as_s7(prefix, quantized).reshape(factor.weight.shape)
    scales = quantized.scales.numpy().astype(np.float32).reshape(-1)
    w_nodes, w_inits = _weight_dq(prefix, weight, scales, axis=0)
    conv = helper.make_node(
        "Conv", [f"{prefix}/xdq", f"{prefix}/wdq"], [out], name=f"{prefix}/conv"
    )
    conv.attribute.extend(node.attribute)
    return [*in_nodes, *w_nodes, conv], [*in_inits, *w_inits]


EMITTERS: Emitters = {
    LayerKind.LINEAR: {
        OFF_BITS: matmul_fp32,
        INT8_BITS: _matmul_qdq,
        4: matmul_nbits,
        2: matmul_nbits,
    },
    LayerKind.CONV2D: {OFF_BITS: conv_fp32, INT8_BITS: _conv_qdq},
    LayerKind.EMBEDDING: {OFF_BITS: gather_fp32, 8: gather_blocks, 4: gather_blocks},
}
