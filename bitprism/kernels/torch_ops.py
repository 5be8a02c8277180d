"""bitprism's GPU kernels as torch operators, so a deployed model is a plain ``torch.export``
program (a ``.pt2`` file) that names them: ``torch.ops.bitprism.nbits_matmul`` (W4A16 /
W2A16) and ``torch.ops.bitprism.w8a8_linear`` (W8A8).

An operator hides what tracing must not see: the Triton launch, and the row padding
``torch._int_mm`` needs on CUDA, which depends on the batch size (a dynamic dimension of
the export). Each has a fake (shape-only) version for the exporter, and runs on CUDA with
the real kernel, elsewhere with the same arithmetic in torch, so a CPU computes what the
GPU does, only not faster. Importing this module registers them: loading a ``torch-cuda``
artifact imports it first.
"""

from __future__ import annotations

import torch
from torch import nn

from bitprism.compression.quantize import QuantizedMatrix
from bitprism.kernels import triton_nbits
from bitprism.kernels.ort_lowering import pack_nbits
from bitprism.kernels.torch_w8a8 import int8_linear, padded_codes

__all__ = ["NBitsLinear", "W8A8Linear"]


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a kernel computes ``x`` in: autocast's, when it is on for ``x``'s device (a
    loaded program in fp16 / bf16 runs under it), else ``x``'s own."""
    kind = x.device.type
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype


@torch.library.custom_op("bitprism::nbits_matmul", mutates_args=())
def nbits_matmul(
    x: torch.Tensor,
    packed: torch.Tensor,
    scales: torch.Tensor,
    bias: torch.Tensor | None,
    bits: int,
    group: int,
) -> torch.Tensor:
    """``x @ w.T + bias`` for the MatMulNBits-packed ``w`` (:mod:`.triton_nbits`)."""
    x = x.to(compute_dtype(x))
    if x.is_cuda:
        out = triton_nbits.nbits_matmul(x, packed, scales, bits, group)
    else:
        weight = triton_nbits.dequantize(packed, scales, bits, group, x.shape[-1])
        out = (x.float() @ weight.T).to(x.dtype)
    return out if bias is None else out + bias.to(out.dtype)


@nbits_matmul.register_fake
def _(x, packed, scales, bias, bits, group):  # type: ignore[no-untyped-def]
    return x.new_empty((*x.shape[:-1], packed.shape[0]), dtype=compute_dtype(x))


@torch.library.custom_op("bitprism::w8a8_linear", mutates_args=())
def w8a8_linear(
    x: torch.Tensor,
    codes: torch.Tensor,
    scales: torch.Tensor,
    bias: torch.Tensor | None,
    out_features: int,
) -> torch.Tensor:
    """``x`` quantised per token times the padded int8 ``codes``, rescaled, plus ``bias``."""
    out = int8_linear(x.to(compute_dtype(x)), codes, scales, out_features)
    return out if bias is None else out + bias.to(out.dtype)


@w8a8_linear.register_fake
def _(x, codes, scales, bias, out_features):  # type: ignore[no-untyped-def]
    return x.new_empty((*x.shape[:-1], out_features), dtype=compute_dtype(x))


class NBitsLinear(nn.Module):
    """A Linear layer of 2- or 4-bit group-wise codes, packed as ONNX's MatMulNBits packs them.

    Example:
        >>> layer = NBitsLinear(quantize_symmetric(linear.weight, 4, 128), linear.bias)
    """

    packed: torch.Tensor  # (N, blocks, group*bits/8) uint8
    scales: torch.Tensor  # (N, blocks) float32
    bias: torch.Tensor | None

    def __init__(self, quantized: QuantizedMatrix, bias: torch.Tensor | None) -> None:
        super().__init__()
        if quantized.bits not in triton_nbits.BITS:
            raise ValueError(
                f"NBitsLinear packs {triton_nbits.BITS}-bit codes, not {quantized.bits}"
            )
        packed, scales = pack_nbits(quantized)
        out_features, self.in_features = quantized.codes.shape
        self.bits, self.group = quantized.bits, quantized.group_size
        self.register_buffer("packed", torch.from_numpy(packed).contiguous())
        self.register_buffer("scales", torch.from_numpy(scales).reshape(out_features, -1))
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.bitprism.nbits_matmul(
            x, self.packed, self.scales, self.bias, self.bits, self.group
        )


class W8A8Linear(nn.Module):
    """A Linear layer of 8-bit per-channel codes run as an int8 GEMM (through the operator)."""

    codes: torch.Tensor
    scales: torch.Tensor
    bias: torch.Tensor | None

    def __init__(self, quantized: QuantizedMatrix, bias: torch.Tensor | None) -> None:
        super().__init__()
        codes, scales = padded_codes(quantized)
        self.out_features = quantized.codes.shape[0]
        self.register_buffer("codes", codes)  # (N, K) rounded up to multiples of 8
        self.register_buffer("scales", scales)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.bitprism.w8a8_linear(
            x, self.codes, self.scales, self.bias, self.out_features
        )
