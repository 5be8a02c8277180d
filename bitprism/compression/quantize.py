"""Weight and input quantisation: integer codes and scales, the single source of truth.

The PyTorch candidate uses the dequantised values of these codes and every backend packs the
very same codes, so parity between the two measures the runtime, not two different roundings.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from bitprism.spaces.layer import LayerInfo, LayerKind

LOW_BIT_GROUP = 128  # group size along the input dimension for <= 4-bit weights


@dataclass(frozen=True)
class QuantizedMatrix:
    """Symmetric round-to-nearest codes of a 2-D weight, one scale per (row, group).

    ``codes`` is int8 of shape (out, in); ``scales`` float32 of shape (out, n_groups); the last
    group of a row may be shorter than ``group_size``.
    """

    codes: torch.Tensor
    scales: torch.Tensor
    bits: int
    group_size: int

    def dequantize(self) -> torch.Tensor:
        expanded = self.scales.repeat_interleave(self.group_size, dim=1)[:, : self.codes.shape[1]]
        return self.codes.float() * expanded


class InputQuantKind(StrEnum):
    """How a runtime's integer kernel quantises a layer's float input on the fly."""

    PER_TENSOR_U8 = "per_tensor_u8"  # ONNX DynamicQuantizeLinear: asymmetric uint8, one scale
    PER_BLOCK_S8 = "per_block_s8"  # symmetric int8 per row and block of K (MLAS CompInt8)
    STATIC_U8 = "static_u8"  # asymmetric uint8 with one scale calibrated ahead (QuantizeLinear)


@dataclass(frozen=True)
class InputQuant:
    """The on-the-fly input quantisation of one integer kernel, reproduced in PyTorch.

    Modelling it makes the PyTorch candidate compute what the runtime computes, so the parity
    check measures the runtime, and a candidate's PyTorch score is its deployed score.
    """

    kind: InputQuantKind
    block: int = 0
    scale: float = 0.0  # STATIC_U8 only: the calibrated scale and zero point
    zero_point: int = 0

    @property
    def needs_calibration(self) -> bool:
        """A static kind whose range has not been measured yet."""
        return self.kind is InputQuantKind.STATIC_U8 and self.scale == 0.0

    def calibrated(self, low: float, high: float) -> InputQuant:
        """This static quantiser fitted to inputs seen in [``low``, ``high``]: the uint8 grid
        spans the range with zero exactly representable (as ONNX's QuantizeLinear wants)."""
        low_t, high_t = torch.tensor(min(low, 0.0)), torch.tensor(max(high, 0.0))
        scale, zero = _u8_grid(low_t, high_t)
        if scale == 0.0:  # an all-zero input: any scale represents it exactly
            scale, zero = 1.0, 0
        return dataclasses.replace(self, scale=scale, zero_point=zero)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` quantised and dequantised as the kernel sees it."""
        if self.kind is InputQuantKind.PER_TENSOR_U8:
            step, zero = _u8_grid(torch.clamp(x.min(), max=0.0), torch.clamp(x.max(), min=0.0))
            return x if step == 0.0 else _fake_u8(x, step, zero)
        if self.kind is InputQuantKind.STATIC_U8:
            if self.needs_calibration:
                raise ValueError("a static input quantiser was used before calibration")
            return _fake_u8(x, self.scale, self.zero_point)
        k = x.shape[-1]
        blocks = math.ceil(k / self.block)
        padded = nn.functional.pad(x, (0, blocks * self.block - k))
        grouped = padded.reshape(*x.shape[:-1], blocks, self.block)
        scale = grouped.abs().amax(dim=-1, keepdim=True) / 127.0
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        codes = torch.clamp(torch.round(grouped / safe), -127, 127)
        return (codes * scale).reshape(*x.shape[:-1], blocks * self.block)[..., :k]


def _u8_grid(low: torch.Tensor, high: torch.Tensor) -> tuple[float, int]:
    """Scale and zero point of the uint8 grid over [low <= 0, high >= 0], in float32 as the
    runtime computes them (DynamicQuantizeLinear's formula)."""
    scale = (high.float() - low.float()) / 255.0
    if float(scale) == 0.0:
        return 0.0, 0
    zero = torch.clamp(torch.round(-low.float() / scale), 0, 255)
    return float(scale), int(zero)


def _fake_u8(x: torch.Tensor, scale: float, zero: int) -> torch.Tensor:
    """``x`` rounded (half to even, as QuantizeLinear) onto the uint8 grid and back."""
    step = torch.tensor(scale, dtype=torch.float32)
    codes = torch.clamp(torch.round(x / step) + zero, 0, 255)
    return (codes - zero) * step


# (layer, weight bits, weight group size) -> the input quantisation its kernel applies, if any
InputQuantFor = Callable[[LayerInfo, int, int], InputQuant | None]


class QuantizedInput(nn.Module):
    """Runs ``inner`` on its input as the runtime's integer kernel quantises it.

    While ``observing`` (calibration), the input passes unquantised and its range is recorded.
    """

    def __init__(self, inner: nn.Module, quant: InputQuant) -> None:
        super().__init__()
        self.inner = inner
        self.quant = quant
        self.observing = False
        self.seen: tuple[float, float] | None = None  # (min, max) while observing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.observing:
            low, high = float(x.min()), float(x.max())
            if self.seen is not None:
                low, high = min(low, self.seen[0]), max(high, self.seen[1])
            self.seen = (low, high)
            return self.inner(x)
        return self.inner(self.quant.apply(x))


def quantize_symmetric(weight: torch.Tensor, bits: int, group_size: int) -> QuantizedMatrix:
    """Round-to-nearest symmetric quantisation of ``weight`` (out, in) per row and group.

    Codes lie in [-(2^(b-1)-1), 2^(b-1)-1], so zero stays exactly zero (sparsity survives).
    """
    if weight.dim() != 2:
        raise ValueError(f"quantize_symmetric wants a 2-D weight, got shape {tuple(weight.shape)}")
    qmax = 2 ** (bits - 1) - 1
    out_features, in_features = weight.shape
    n_groups = math.ceil(in_features / group_size)
    padded = torch.zeros(out_features, n_groups * group_size, dtype=torch.float32)
    padded[:, :in_features] = weight.float()
    groups = padded.view(out_features, n_groups, group_size)
    absmax = groups.abs().amax(dim=2)
    scales = torch.where(absmax > 0, absmax / qmax, torch.ones_like(absmax))
    codes = torch.round(groups / scales.unsqueeze(2)).clamp(-qmax, qmax)
    codes = codes.view(out_features, -1)[:, :in_features].to(torch.int8)
    return QuantizedMatrix(codes=codes, scales=scales, bits=bits, group_size=group_size)


def group_size_for(bits: int, in_features: int, kind: LayerKind = LayerKind.LINEAR) -> int:
    """Groups of 128 along the input for <= 4 bits, the whole row (per channel) above.

    Embedding tables use blocks at every width (the gather kernels want a power of two >= 16
    that divides the row): see :func:`embedding_block`.
    """
    if kind is LayerKind.EMBEDDING:
        return embedding_block(in_features) or in_features
    return LOW_BIT_GROUP if bits <= 4 else in_features


def embedding_block(dim: int) -> int | None:
    """The largest power of two in [16, 128] dividing ``dim`` (None if there is none)."""
    for block in (128, 64, 32, 16):
        if dim % block == 0:
            return block
    return None
