"""The ORT CPU backend: real low-bit ops, packed codes, and parity with PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from bitprism.compression.apply import compress_model
from bitprism.compression.quantize import quantize_symmetric
from bitprism.evaluators.accuracy import parity
from bitprism.kernels.base import get_backend
from bitprism.kernels.onnx_export import export_base
from bitprism.kernels.ort_cpu import OrtModule, make_session
from bitprism.kernels.ort_lowering import pack_nbits
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import LayerKind, discover_layers

BACKEND = get_backend("ort-cpu")
OPS = {16: None, 7: "MatMulInteger", 4: "MatMulNBits", 2: "MatMulNBits"}


def _lower(workload, base: bytes, choices: dict):  # type: ignore[no-untyped-def]
    layers = discover_layers(workload.model)
    model, compressed = compress_model(workload.model, layers, Candidate.from_dict(choices))
    artifact = BACKEND.build(base, layers, compressed, workload)
    return model, artifact, BACKEND.load(artifact.data, threads=1)


def _ops(artifact) -> list[str]:  # type: ignore[no-untyped-def]
    return [n.op_type for n in onnx.load_model_from_string(artifact.data).graph.node]


def test_backend_offers_only_kernels_it_has(digits) -> None:
    kinds = {layer.kind: BACKEND.weight_bits(layer) for layer in discover_layers(digits.model)}
    assert sorted(kinds[LayerKind.LINEAR]) == [2, 4, 7, 16]  # no 3-bit MatMulNBits in ORT 1.32
    assert sorted(kinds[LayerKind.CONV2D]) == [8, 16]  # no sub-8-bit Conv kernel


@pytest.mark.parametrize("bits", [4, 2])
def test_pack_nbits_round_trips_codes(bits: int) -> None:
    q = quantize_symmetric(torch.randn(6, 200), bits, 128)
    packed, scales = pack_nbits(q)
    per_byte = 8 // bits
    unpacked = np.stack([(packed >> (bits * i)) & (2**bits - 1) for i in range(per_byte)], axis=-1)
    codes = unpacked.reshape(6, -1)[:, :200].astype(np.int16) - 2 ** (bits - 1)
    np.testing.assert_array_equal(codes, q.codes.numpy())
    np.testing.assert_array_equal(scales, q.scales.numpy().reshape(-1))


@pytest.mark.parametrize("rank_fraction", [1.0, 0.25])
@pytest.mark.parametrize("sparsity", [0.0, 0.5])
@pytest.mark.parametrize("bits", [16, 7, 4, 2])
def test_linear_lowering_matches_pytorch(
    digits, digits_onnx, bits, sparsity, rank_fraction
) -> None:
    choice = {"weight_bits": bits, "sparsity": sparsity, "rank_fraction": rank_fraction}
    model, onnx_model, ort_model = _lower(digits, digits_onnx, {"head.1": choice, "head.3": choice})
    ops = _ops(onnx_model)
    if OPS[bits] is not None:
        assert ops.count(OPS[bits]) == 2 * (2 if rank_fraction < 1 else 1)
    assert "Gemm" in ops  # head.5 untouched
    assert parity(model, ort_model, digits.calibration).rel_err < 0.02


@pytest.mark.parametrize("bits", [16, 8])
def test_conv_lowering_matches_pytorch(digits, digits_onnx, bits: int) -> None:
    choice = {"weight_bits": bits, "sparsity": 0.25}
    model, onnx_model, ort_model = _lower(
        digits, digits_onnx, {"features.0": choice, "features.2": choice}
    )
    ops = _ops(onnx_model)
    assert ops.count("ConvInteger") == (2 if bits == 8 else 0)
    assert parity(model, ort_model, digits.calibration).rel_err < 0.02


def test_int8_low_rank_chain_is_exact_enough(digits, digits_onnx) -> None:
    """Regression: full-range u8s8 MatMulInteger saturated on AVX2 without VNNI (60% error);
    7-bit codes keep every int16 pair sum exact."""
    choice = {"weight_bits": 7, "rank_fraction": 0.25}
    model, _, ort_model = _lower(digits, digits_onnx, {"head.5": choice, "head.3": choice})
    assert parity(model, ort_model, digits.calibration).rel_err < 0.02


def test_stored_bytes_shrink_with_bits(digits, digits_onnx) -> None:
    sizes = []
    for bits in (16, 7, 4, 2):
        choices = {n: {"weight_bits": bits} for n in ("head.1", "head.3", "head.5")}
        sizes.append(_lower(digits, digits_onnx, choices)[1].weight_bytes)
    assert sizes == sorted(sizes, reverse=True)
    head_fp32 = 4 * (1024 * 256 + 256 * 128 + 128 * 10)
    assert sizes[0] - sizes[1] > 0.7 * head_fp32  # int8 saves ~3/4 of the linear weights


@pytest.mark.parametrize("bits", [7, 4])
def test_matmul_pattern_of_3d_inputs(token_mlp, bits: int) -> None:
    """Linear on (batch, tokens, features) exports as MatMul; it lowers the same way."""
    base = export_base(token_mlp)
    choice = {"weight_bits": bits, "rank_fraction": 0.5}
    model, onnx_model, ort_model = _lower(
        token_mlp, base, {"up": choice, "down": {"weight_bits": bits}}
    )
    assert OPS[bits] in _ops(onnx_model)
    assert parity(model, ort_model, token_mlp.calibration).rel_err < 0.02
    assert abs(token_mlp.evaluate(ort_model) - token_mlp.evaluate(model)) <= 1.0


def test_batch_one_examples_export_with_a_dynamic_batch(token_mlp) -> None:
    from bitprism.workloads.base import Workload

    single = Workload("one", token_mlp.model, token_mlp.evaluate, token_mlp.example_inputs[:1])
    session = make_session(export_base(single), threads=1)
    assert session.get_inputs()[0].shape[0] != 1  # symbolic, not specialised to 1
    assert OrtModule(session)(token_mlp.example_inputs).shape[0] == 16


def test_a_width_without_an_ort_kernel_is_named(digits, digits_onnx) -> None:
    with pytest.raises(ValueError, match="'head.1': no ONNX Runtime form for 8-bit linear"):
        _lower(digits, digits_onnx, {"head.1": {"weight_bits": 8}})
