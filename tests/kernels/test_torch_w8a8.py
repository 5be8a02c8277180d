"""W8A8 Linear: the int8 GEMM computes exactly the integer products of the candidate's codes
and the per-token activation codes, and lands close to the float layer."""

from __future__ import annotations

import pytest
import torch

from bitprism.compression.quantize import quantize_symmetric
from bitprism.kernels.torch_ops import W8A8Linear
from bitprism.kernels.torch_w8a8 import quantize_tokens


def _layer(n: int = 48, k: int = 64, seed: int = 0) -> tuple[torch.nn.Linear, W8A8Linear]:
    torch.manual_seed(seed)
    linear = torch.nn.Linear(k, n)
    return linear, W8A8Linear(quantize_symmetric(linear.weight.detach(), 8, k), linear.bias)


def test_the_int8_gemm_is_the_exact_integer_product() -> None:
    linear, layer = _layer()
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(1))
    codes, scale = quantize_tokens(x)
    weights = quantize_symmetric(linear.weight.detach(), 8, 64)
    integer = codes.double() @ weights.codes.double().T  # exact in float64 at these sizes
    expected = (integer * scale.double() * weights.scales.double().T).float() + linear.bias
    torch.testing.assert_close(layer(x), expected.detach(), rtol=1e-6, atol=1e-6)


def test_it_lands_close_to_the_float_layer_with_any_leading_shape() -> None:
    linear, layer = _layer(n=64, k=128, seed=3)
    x = torch.randn(2, 7, 128, generator=torch.Generator().manual_seed(4))
    out = layer(x)
    assert out.shape == (2, 7, 64) and out.dtype == torch.float32
    reference = linear(x).detach()
    assert ((out - reference).norm() / reference.norm()).item() < 0.02
    assert layer(x.bfloat16()).dtype == torch.bfloat16


def test_an_all_zero_token_gives_the_bias() -> None:
    linear, layer = _layer()
    out = layer(torch.zeros(3, 64))
    torch.testing.assert_close(out, linear.bias.detach().expand(3, -1))


def test_codes_it_cannot_run_are_refused() -> None:
    weight = torch.randn(48, 64)
    with pytest.raises(ValueError, match="8-bit codes with one scale per output channel"):
        W8A8Linear(quantize_symmetric(weight, 4, 64), None)
    with pytest.raises(ValueError, match="8-bit codes with one scale per output channel"):
        W8A8Linear(quantize_symmetric(weight, 8, 32), None)  # two groups a row


def test_widths_off_the_gemms_multiple_of_8_are_padded_with_zero_codes() -> None:
    torch.manual_seed(5)
    linear = torch.nn.Linear(60, 45)
    layer = W8A8Linear(quantize_symmetric(linear.weight.detach(), 8, 60), linear.bias)
    assert tuple(layer.codes.shape) == (48, 64)
    x = torch.randn(4, 60, generator=torch.Generator().manual_seed(6))
    codes, scale = quantize_tokens(x)
    weights = quantize_symmetric(linear.weight.detach(), 8, 60)
    integer = codes.double() @ weights.codes.double().T
    expected = (integer * scale.double() * weights.scales.double().T).float() + linear.bias
    torch.testing.assert_close(layer(x), expected.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_few_tokens_are_padded_for_cublaslt() -> None:
    linear, layer = _layer()
    x = torch.randn(3, 64)
    expected = layer(x)
    torch.testing.assert_close(layer.cuda()(x.cuda()).cpu(), expected, rtol=1e-5, atol=1e-5)
