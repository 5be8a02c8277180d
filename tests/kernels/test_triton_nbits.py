"""The W4A16 / W2A16 Triton kernel, under the interpreter on CPU (compiled on a GPU): it reads
the very bytes the ONNX export packs for MatMulNBits, dequantises them exactly and multiplies
as torch does."""

from __future__ import annotations

import os

import pytest
import torch

from bitprism.compression.quantize import quantize_symmetric
from bitprism.kernels import triton_nbits
from bitprism.kernels.ort_lowering import pack_nbits


@pytest.fixture(autouse=True)
def _needs_triton() -> None:
    if not triton_nbits.available():
        if os.environ.get("BITPRISM_REQUIRE_TRITON"):  # CI: a skip would hide a failure
            pytest.fail(
                "CI runs the Triton kernels under TRITON_INTERPRET=1: install bitprism[gpu]"
            )
        pytest.skip("triton is not installed (pip install 'bitprism[gpu]')")


def _packed(n: int, k: int, bits: int, group: int, seed: int = 0):  # type: ignore[no-untyped-def]
    weight = torch.randn(n, k, generator=torch.Generator().manual_seed(seed))
    quantized = quantize_symmetric(weight, bits, group)
    packed, scales = pack_nbits(quantized)
    return quantized, torch.from_numpy(packed), torch.from_numpy(scales)


@pytest.mark.parametrize(("bits", "group", "k"), [(4, 128, 200), (4, 32, 96), (2, 64, 130)])
def test_the_onnx_packing_dequantises_to_the_candidates_exact_weights(
    bits: int, group: int, k: int
) -> None:
    quantized, packed, scales = _packed(48, k, bits, group)
    weight = triton_nbits.dequantize(packed, scales, bits, group, k)
    assert torch.equal(weight, quantized.dequantize())


@pytest.mark.parametrize(("bits", "group", "k"), [(4, 128, 200), (4, 32, 96), (2, 64, 130)])
@pytest.mark.parametrize("rows", [1, 17])
def test_the_kernel_multiplies_as_torch_does(bits: int, group: int, k: int, rows: int) -> None:
    quantized, packed, scales = _packed(96, k, bits, group, seed=rows)  # N not a tile multiple
    x = torch.randn(rows, k, generator=torch.Generator().manual_seed(1))
    out = triton_nbits.nbits_matmul(x, packed, scales, bits, group)
    expected = x @ quantized.dequantize().T
    assert out.shape == (rows, 96) and out.dtype == x.dtype
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_half_precision_activations_and_leading_dimensions() -> None:
    quantized, packed, scales = _packed(64, 128, 4, 128)
    x = torch.randn(2, 3, 128, generator=torch.Generator().manual_seed(2)).half()
    out = triton_nbits.nbits_matmul(x, packed, scales, 4, 128)
    assert out.shape == (2, 3, 64) and out.dtype == torch.float16
    expected = x.float() @ quantized.dequantize().T
    torch.testing.assert_close(out.float(), expected, rtol=2e-2, atol=5e-2)


def test_a_packing_that_does_not_match_is_refused() -> None:
    _, packed, scales = _packed(32, 128, 4, 128)
    x = torch.randn(1, 128)
    with pytest.raises(ValueError, match="bits must be one of"):
        triton_nbits.nbits_matmul(x, packed, scales, 3, 128)
    with pytest.raises(ValueError, match="do not hold 32 rows of 2 blocks"):
        triton_nbits.nbits_matmul(torch.randn(1, 129), packed, scales, 4, 128)
    with pytest.raises(ValueError, match="must be uint8"):
        triton_nbits.nbits_matmul(x, packed.to(torch.int32), scales, 4, 128)
