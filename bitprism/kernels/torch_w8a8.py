"""W8A8 Linear: int8 weights with one scale per output channel, int8 activations with one
scale per token, an int8 GEMM with int32 accumulation (``torch._int_mm``: cuBLASLt on CUDA,
a CPU kernel elsewhere), then one float rescale.

The weight codes are the candidate's own (:func:`bitprism.compression.quantize.
quantize_symmetric` at 8 bits, per channel), so the module computes exactly what the search
measured. Activations are quantised on the fly, symmetric, per row of the flattened input:
``s = max|x| / 127``, ``q = round(x / s)``. :func:`quantize_tokens` is that step alone, for
the PyTorch candidate to apply the same rounding.

``torch._int_mm`` is private but is the int8 GEMM torch itself uses (torchao's W8A8 calls
it); CUDA wants more than 16 rows and both matrix widths a multiple of 8, so rows are padded
on CUDA and other widths are refused at construction.
"""

from __future__ import annotations

import torch
from torch import nn

from bitprism.compression.quantize import QuantizedMatrix

__all__ = ["W8A8Linear", "quantize_tokens"]

QMAX = 127
_CUDA_MIN_ROWS = 17  # cuBLASLt's int8 GEMM through torch._int_mm wants M > 16


def quantize_tokens(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (rows, K) as int8 codes and one float32 scale per row (an all-zero row gets 1)."""
    absmax = x.abs().amax(dim=-1, keepdim=True).float()
    scale = torch.where(absmax > 0, absmax / QMAX, torch.ones_like(absmax))
    codes = torch.round(x.float() / scale).clamp(-QMAX, QMAX).to(torch.int8)
    return codes, scale


class W8A8Linear(nn.Module):
    """A Linear layer of 8-bit per-channel codes, run as an int8 GEMM.

    Example:
        >>> layer = W8A8Linear(quantize_symmetric(linear.weight, 8, linear.in_features),
        ...                    linear.bias)
        >>> y = layer(x)  # x: (..., in_features) float
    """

    codes: torch.Tensor  # (out, in) int8
    scales: torch.Tensor  # (1, out) float32
    bias: torch.Tensor | None

    def __init__(self, quantized: QuantizedMatrix, bias: torch.Tensor | None) -> None:
        super().__init__()
        out_features, in_features = quantized.codes.shape
        if quantized.bits != 8 or quantized.scales.shape != (out_features, 1):
            raise ValueError(
                f"W8A8 wants 8-bit codes with one scale per output channel, got {quantized.bits} "
                f"bits and scales of shape {tuple(quantized.scales.shape)}"
            )
        if in_features % 8 or out_features % 8:
            raise ValueError(
                f"the int8 GEMM wants both widths a multiple of 8, got {in_features} -> "
                f"{out_features}"
            )
        self.in_features, self.out_features = in_features, out_features
        self.register_buffer("codes", quantized.codes.to(torch.int8).contiguous())  # (N, K)
        self.register_buffer("scales", quantized.scales.reshape(1, -1).float())
        self.register_buffer("bias", None if bias is None else bias.detach().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        codes, scale = quantize_tokens(rows)
        count = codes.shape[0]
        if codes.is_cuda and count < _CUDA_MIN_ROWS:
            codes = torch.nn.functional.pad(codes, (0, 0, 0, _CUDA_MIN_ROWS - count))
        accumulated = torch._int_mm(codes, self.codes.t())[:count]  # int32, exact
        out = accumulated.float() * scale * self.scales
        if self.bias is not None:
            out = out + self.bias
        return out.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
