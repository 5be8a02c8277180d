"""ONNX Runtime CPU lowering: each compressed layer as the ops stock onnxruntime runs fast.

- Linear, 7 bits: ``DynamicQuantizeLinear`` + ``MatMulInteger`` with int8 weights (u8s8),
  per-channel scales applied after the integer product; the codes lie in [-63, 63]. MLAS's
  u8s8 kernel is the fast one (VNNI's ``vpdpbusd`` multiplies u8 by s8), but on AVX2 CPUs
  without VNNI it sums pairs of products in saturating int16, which silently corrupts
  full-range int8 weights (measured: integer errors of 1e5). With 7-bit codes a pair sum is at
  most 2 * 255 * 63 < 2^15, exact on every x86 CPU: ``quantize_dynamic``'s ``reduce_range``.
  Full 8-bit codes would need u8u8 (zero point 128), exact but measured 1.5x slower than u8s8
  on MiniLM with VNNI (BENCHMARKS.md) for 0.04 Spearman, so 8 bits is not offered on Linear.
- Linear, 2/4 bits: ``com.microsoft.MatMulNBits`` with groups of 128 along the input and
  ``accuracy_level=4`` (int8 compute; the fast path). ORT 1.32 has no 3-bit kernel, so 3 is
  not offered.
- Conv2d, 8 bits: ``DynamicQuantizeLinear`` + ``ConvInteger`` on uint8 weights with zero point
  128 (u8u8, exact everywhere). Unlike MatMulInteger, ORT's ConvInteger is slow with int8
  weights: on the digits CNN (VNNI CPU, b32, 1 thread) u8s8 convs ran at 0.23x fp32 and u8u8
  with the very same codes at 0.66x. It takes only a per-tensor zero point, which symmetric
  codes shifted by 128 satisfy, and per-channel scales are applied after. There is no
  sub-8-bit Conv kernel, so none is offered.
- Low rank: one matmul per factor, each in its own bit width.
- Embedding tables, 8/4/2 bits: ``com.microsoft.GatherBlockQuantized`` on uint8 data packed as
  for MatMulNBits (zero point 2^(bits-1), low bits first), blocks of up to 128 along each row;
  only the gathered rows are dequantised, so the table's bytes shrink at no cost in time.

The weights are packed here by hand (not by ``onnxruntime.quantization``) because the codes
must be exactly those of the PyTorch candidate; ORT's quantisers choose their own scales.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bitprism.compression.apply import CompressedLayer, Factor
from bitprism.compression.quantize import QuantizedMatrix
from bitprism.kernels.onnx_graph import ensure_opset, find_layer_node, initializer, replace_nodes
from bitprism.spaces.candidate import OFF_BITS
from bitprism.spaces.layer import LayerInfo, LayerKind

ACCURACY_LEVEL = 4
MS_DOMAIN = "com.microsoft"
Emitted = tuple[list[onnx.NodeProto], list[onnx.TensorProto]]
Emitter = Callable[[str, str, str, Factor, onnx.NodeProto], Emitted]


Emitters = Mapping[LayerKind, Mapping[int, Emitter]]


def lower_layer(model: onnx.ModelProto, layer: LayerInfo, compressed: CompressedLayer) -> None:
    """Rewrite ``layer``'s node(s) of ``model`` in place into its ORT form."""
    lower_with(EMITTERS, "ONNX Runtime", model, layer, compressed)


def lower_with(
    emitters: Emitters,
    runtime: str,
    model: onnx.ModelProto,
    layer: LayerInfo,
    compressed: CompressedLayer,
) -> None:
    """Rewrite ``layer``'s node(s) of ``model`` in place with ``emitters`` (``runtime``'s forms),
    one emitted op chain per factor, then the bias."""
    found = find_layer_node(model.graph, layer.name)
    nodes, inits = emit_chain(
        emitters,
        runtime,
        layer,
        compressed,
        found.activation,
        found.output,
        found.node,
        bias=found.bias is not None,
    )
    if any(node.domain == MS_DOMAIN for node in nodes):
        ensure_opset(model, MS_DOMAIN, 1)
    replace_nodes(model.graph, found.remove, nodes, inits)


def emit_chain(
    emitters: Emitters,
    runtime: str,
    layer: LayerInfo,
    compressed: CompressedLayer,
    x: str,
    y: str,
    node: onnx.NodeProto,
    *,
    bias: bool,
    stand_in: bool = False,
) -> Emitted:
    """The op chain of ``layer``'s form from ``x`` to ``y``: one emitted chain per factor, then
    the bias when ``bias``. ``node`` is the layer's node in the export (a convolution's
    attributes). ``stand_in``: a model priced or timed apart, where an uncalibrated static input
    quantiser is emitted as calibrated to [-1, 1] (its bytes and time do not depend on it)."""
    bits = compressed.choice.weight_bits
    emit = emitters[layer.kind].get(bits)
    if emit is None:
        raise ValueError(
            f"layer {layer.name!r}: no {runtime} form for {bits}-bit {layer.kind.value} "
            f"weights; offered: {sorted(emitters[layer.kind])}"
        )
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    current = x
    last = len(compressed.factors) - 1
    for i, factor in enumerate(compressed.factors):
        quant = factor.input_quant
        if stand_in and quant is not None and quant.needs_calibration:
            factor = dataclasses.replace(factor, input_quant=quant.calibrated(-1.0, 1.0))
        prefix = f"bp/{layer.name}/f{i}"
        out = y if i == last and not bias else f"{prefix}/out"
        new_nodes, new_inits = emit(prefix, current, out, factor, node)
        nodes += new_nodes
        inits += new_inits
        current = out
    if bias:
        nodes.append(_add_bias(layer, current, y))
        inits.append(_bias_initializer(layer, compressed))
    return nodes, inits


def emitted_bytes(
    emitters: Emitters, runtime: str, layer: LayerInfo, compressed: CompressedLayer
) -> int:
    """The bytes ``layer``'s compressed form takes in a file lowered with ``emitters``: its
    initializers as stored, bias included, without building a graph (the warm start prices
    every form of every layer this way)."""
    _, inits = _alone(emitters, runtime, layer, compressed, onnx.NodeProto())
    return sum(numpy_helper.to_array(init).nbytes for init in inits)


def layer_model(
    emitters: Emitters,
    runtime: str,
    layer: LayerInfo,
    compressed: CompressedLayer,
    node: onnx.NodeProto,
    input_shape: tuple[int, ...],
    opsets: Sequence[onnx.OperatorSetIdProto],
) -> bytes:
    """A model of ``layer`` alone in its compressed form, input ``x`` of ``input_shape``
    (int64 indices for an embedding), to time it apart from the rest. ``node`` is the layer's
    node in the exported graph, ``opsets`` the export's."""
    nodes, inits = _alone(emitters, runtime, layer, compressed, node)
    dtype = TensorProto.INT64 if layer.kind is LayerKind.EMBEDDING else TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", dtype, list(input_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=list(opsets))
    if any(n.domain == MS_DOMAIN for n in nodes):
        ensure_opset(model, MS_DOMAIN, 1)
    return model.SerializeToString()


def _alone(
    emitters: Emitters,
    runtime: str,
    layer: LayerInfo,
    compressed: CompressedLayer,
    node: onnx.NodeProto,
) -> Emitted:
    """``layer``'s whole form (bias included) from ``x`` to ``y``, outside any graph."""
    bias = compressed.bias is not None
    return emit_chain(
        emitters, runtime, layer, compressed, "x", "y", node, bias=bias, stand_in=True
    )


def pack_nbits(quantized: QuantizedMatrix) -> tuple[np.ndarray, np.ndarray]:
    """MatMulNBits layout: uint8 (N, blocks, block*bits/8), low bits first; scales (N*blocks,)."""
    bits, block = quantized.bits, quantized.group_size
    zero_point = 2 ** (bits - 1)
    n_out, k = quantized.codes.shape
    blocks = quantized.scales.shape[1]
    unsigned = np.full((n_out, blocks * block), zero_point, dtype=np.uint8)
    unsigned[:, :k] = (quantized.codes.numpy().astype(np.int16) + zero_point).astype(np.uint8)
    per_byte = 8 // bits
    grouped = unsigned.reshape(n_out, blocks, block // per_byte, per_byte).astype(np.uint16)
    shifts = (np.arange(per_byte, dtype=np.uint16) * bits).reshape(1, 1, 1, per_byte)
    packed = (grouped << shifts).sum(axis=3).astype(np.uint8)
    return packed, quantized.scales.numpy().astype(np.float32).reshape(-1)


def matmul_fp32(prefix: str, x: str, out: str, factor: Factor, node: onnx.NodeProto) -> Emitted:
    weight = initializer(f"{prefix}/w", factor.weight.numpy().T)
    return [helper.make_node("MatMul", [x, weight.name], [out], name=f"{prefix}/matmul")], [weight]


def matmul_nbits(prefix: str, x: str, out: str, factor: Factor, node: onnx.NodeProto) -> Emitted:
    quantized = codes(factor)
    packed, scales = pack_nbits(quantized)
    inits = [initializer(f"{prefix}/qw", packed), initializer(f"{prefix}/scales", scales)]
    matmul = helper.make_node(
        "MatMulNBits",
        [x, inits[0].name, inits[1].name],
        [out],
        name=f"{prefix}/matmulnbits",
        domain=MS_DOMAIN,
        K=quantized.codes.shape[1],
        N=quantized.codes.shape[0],
        bits=quantized.bits,
        block_size=quantized.group_size,
        accuracy_level=ACCURACY_LEVEL,
    )
    return [matmul], inits


def gather_fp32(prefix: str, x: str, out: str, factor: Factor, node: onnx.NodeProto) -> Emitted:
    table = initializer(f"{prefix}/table", factor.weight.numpy())
    return [helper.make_node("Gather", [table.name, x], [out], name=f"{prefix}/gather")], [table]


def gather_blocks(prefix: str, x: str, out: str, factor: Factor, node: onnx.NodeProto) -> Emitted:
    quantized = codes(factor)
    packed, scales = pack_nbits(quantized)
    rows = quantized.codes.shape[0]
    inits = [
        initializer(f"{prefix}/qtable", packed.reshape(rows, -1)),
        initializer(f"{prefix}/scales", scales.reshape(rows, -1)),
    ]
    gather = helper.make_node(
        "GatherBlockQuantized",
        [inits[0].name, x, inits[1].name],
        [out],
        name=f"{prefix}/gatherblockquantized",
        domain=MS_DOMAIN,
        bits=quantized.bits,
        block_size=quantized.group_size,
        gather_axis=0,
        quantize_axis=1,
    )
    return [gather], inits


def _matmul_s8(prefix: str, x: str, out: str, factor: Factor, node: onnx.NodeProto) -> Emitted:
    quantized = codes(factor)
    weight = initializer(f"{prefix}/qw", as_s7(prefix, quantized).T)
    scales = initializer(f"{prefix}/scales", quantized.scales.numpy().reshape(-1))
    integer = helper.make_node(
        "MatMulInteger",
        _integer_inputs(prefix, weight.name),
        [f"{prefix}/acc"],
        name=f"{prefix}/matmulinteger",
    )
    nodes = [_dynamic_quantize(prefix, x), integer, *_rescale(prefix, scales.name, out)]
    return nodes, [weight, scales, _s8_zero_point(prefix)]


def conv_fp32(prefix: str, x: str, out: str, factor: Factor, node: onnx.NodeProto) -> Emitted:
    weight = initializer(f"{prefix}/w", factor.weight.numpy())
    conv = helper.make_node("Conv", [x, weight.name], [out], name=f"{prefix}/conv")
    conv.attribute.extend(node.attribute)
    return [conv], [weight]


def _conv_u8(prefix: str, x: str, out: str, factor: Factor, node: onnx.NodeProto) -> Emitted:
    quantized = codes(factor)
    weight = initializer(f"{prefix}/qw", _as_u8(quantized).reshape(factor.weight.shape))
    scales = initializer(f"{prefix}/scales", quantized.scales.numpy().reshape(1, -1, 1, 1))
    conv = helper.make_node(
        "ConvInteger",
        _integer_inputs(prefix, weight.name),
        [f"{prefix}/acc"],
        name=f"{prefix}/convinteger",
    )
    conv.attribute.extend(node.attribute)
    nodes = [_dynamic_quantize(prefix, x), conv, *_rescale(prefix, scales.name, out)]
    return nodes, [weight, scales, _u8_zero_point(prefix)]


def as_s7(prefix: str, quantized: QuantizedMatrix) -> np.ndarray:
    """The codes as int8, checked to be 7-bit (u8s8 pair sums saturate above that)."""
    if quantized.bits > 7:
        raise ValueError(f"{prefix}: u8s8 integer kernels saturate without VNNI above 7 bits")
    return quantized.codes.numpy().astype(np.int8)


def _s8_zero_point(prefix: str) -> onnx.TensorProto:
    return initializer(f"{prefix}/wz", np.array(0, dtype=np.int8))


def _as_u8(quantized: QuantizedMatrix) -> np.ndarray:
    """Symmetric codes shifted into uint8 around zero point 128."""
    return (quantized.codes.numpy().astype(np.int16) + 128).astype(np.uint8)


def _u8_zero_point(prefix: str) -> onnx.TensorProto:
    return initializer(f"{prefix}/wz", np.array(128, dtype=np.uint8))


def _integer_inputs(prefix: str, weight: str) -> list[str]:
    return [f"{prefix}/xq", weight, f"{prefix}/xz", f"{prefix}/wz"]


def _dynamic_quantize(prefix: str, x: str) -> onnx.NodeProto:
    outputs = [f"{prefix}/xq", f"{prefix}/xs", f"{prefix}/xz"]
    return helper.make_node("DynamicQuantizeLinear", [x], outputs, name=f"{prefix}/dql")


def _rescale(prefix: str, weight_scales: str, out: str) -> list[onnx.NodeProto]:
    """int32 accumulator -> float, times activation scale times per-channel weight scales."""
    return [
        helper.make_node(
            "Cast",
            [f"{prefix}/acc"],
            [f"{prefix}/accf"],
            to=TensorProto.FLOAT,
            name=f"{prefix}/cast",
        ),
        helper.make_node(
            "Mul", [f"{prefix}/xs", weight_scales], [f"{prefix}/scale"], name=f"{prefix}/mulscale"
        ),
        helper.make_node("Mul", [f"{prefix}/accf", f"{prefix}/scale"], [out], name=f"{prefix}/mul"),
    ]


def _add_bias(layer: LayerInfo, x: str, out: str) -> onnx.NodeProto:
    return helper.make_node("Add", [x, f"bp/{layer.name}/bias"], [out], name=f"bp/{layer.name}/add")


def _bias_initializer(layer: LayerInfo, compressed: CompressedLayer) -> onnx.TensorProto:
    bias = compressed.bias
    if bias is None:
        raise ValueError(f"layer {layer.name!r}: graph adds a bias the module does not have")
    shape = (1, -1, 1, 1) if layer.kind is LayerKind.CONV2D else (-1,)
    return initializer(f"bp/{layer.name}/bias", bias.numpy().reshape(shape))


def codes(factor: Factor) -> QuantizedMatrix:
    if factor.quantized is None:
        raise ValueError("a quantised emitter got an fp32 factor")
    return factor.quantized


EMITTERS: dict[LayerKind, dict[int, Emitter]] = {
    LayerKind.LINEAR: {OFF_BITS: matmul_fp32, 7: _matmul_s8, 4: matmul_nbits, 2: matmul_nbits},
    LayerKind.CONV2D: {OFF_BITS: conv_fp32, 8: _conv_u8},
    LayerKind.EMBEDDING: {
        OFF_BITS: gather_fp32,
        8: gather_blocks,
        4: gather_blocks,
        2: gather_blocks,
    },
}
