"""W8A8 arithmetic: int8 weights with one scale per output channel, int8 activations with one
scale per token, an int8 GEMM with int32 accumulation (``torch._int_mm``: cuBLASLt on CUDA,
a CPU kernel elsewhere), then one float rescale.

The weight codes are the candidate's own (:func:`bitprism.compression.quantize.
quantize_symmetric` at 8 bits, per channel), so the layer computes exactly what the search
measured. Activations are quantised on the fly, symmetric, per row of the flattened input:
``s = max|x| / 127``, ``q = round(x / s)``. :func:`quantize_tokens` is that step alone, for
the PyTorch candidate to apply the same rounding.

``torch._int_mm`` is private but is the int8 GEMM torch itself uses (torchao's W8A8 calls
it); CUDA wants more than 16 rows and both matrix widths a multiple of 8, so rows are padded
on CUDA and the codes are padded with zeros (:func:`padded_codes`). The layer itself is
:class:`bitprism.kernels.torch_ops.W8A8Linear`, which runs :func:`int8_linear` as an operator.
"""

from __future__ import annotations

import torch

from bitprism.compression.quantize import QuantizedMatrix

__all__ = ["check_w8a8", "int8_linear", "quantize_tokens"]

QMAX = 127
_CUDA_MIN_ROWS = 17  # cuBLASLt's int8 GEMM through torch._int_mm wants M > 16


def quantize_tokens(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (rows, K) as int8 codes and one float32 scale per row (an all-zero row gets 1)."""
    absmax = x.abs().amax(dim=-1, keepdim=True).float()
    scale = torch.where(absmax > 0, absmax / QMAX, torch.ones_like(absmax))
    codes = torch.round(x.float() / scale).clamp(-QMAX, QMAX).to(torch.int8)
    return codes, scale


def check_w8a8(quantized: QuantizedMatrix) -> None:
    """Raise ValueError unless ``quantized`` is what the int8 GEMM runs: 8-bit codes with one
    scale per output channel."""
    out_features = quantized.codes.shape[0]
    if quantized.bits != 8 or quantized.scales.shape != (out_features, 1):
        raise ValueError(
            f"W8A8 wants 8-bit codes with one scale per output channel, got {quantized.bits} "
            f"bits and scales of shape {tuple(quantized.scales.shape)}"
        )


def padded_codes(quantized: QuantizedMatrix) -> tuple[torch.Tensor, torch.Tensor]:
    """The int8 codes (N, K) zero-padded to widths that are multiples of 8, as the GEMM wants,
    and the scales (1, N) padded with ones: zero codes add nothing to any product."""
    check_w8a8(quantized)
    n, k = quantized.codes.shape
    codes = torch.zeros((-(-n // 8) * 8, -(-k // 8) * 8), dtype=torch.int8)
    codes[:n, :k] = quantized.codes
    scales = torch.ones((1, codes.shape[0]), dtype=torch.float32)
    scales[0, :n] = quantized.scales.reshape(-1).float()
    return codes, scales


def int8_linear(
    x: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor, out_features: int
) -> torch.Tensor:
    """``x`` (..., K) quantised per token, times the padded int8 ``codes`` (:func:`padded_codes`)
    with int32 accumulation, rescaled by the token scales and the per-channel ``scales``; the
    first ``out_features`` outputs, in ``x``'s dtype."""
    k = x.shape[-1]
    rows = x.reshape(-1, k)
    quantized, scale = quantize_tokens(rows)
    count = quantized.shape[0]
    pad_rows = _CUDA_MIN_ROWS - count if quantized.is_cuda and count < _CUDA_MIN_ROWS else 0
    quantized = torch.nn.functional.pad(quantized, (0, codes.shape[1] - k, 0, pad_rows))
    accumulated = torch._int_mm(quantized, codes.t())[:count]  # int32, exact
    out = (accumulated.float() * scale * scales.float())[:, :out_features]
    return out.to(x.dtype).reshape(*x.shape[:-1], out_features)
