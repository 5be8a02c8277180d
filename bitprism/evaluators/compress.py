"""Apply a candidate to a copy of a model: quantise, prune, factorise.

The integer codes and scales made here are the single source of truth: the PyTorch candidate
uses their dequantised values and the ONNX lowering packs the very same codes, so parity
between the two measures the runtime, not two different roundings.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import torch
from torch import nn

from bitprism.spaces.candidate import OFF_BITS, Candidate, LayerChoice
from bitprism.spaces.knobs import low_rank
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


@dataclass(frozen=True)
class Factor:
    """One weight matrix of a compressed layer: its effective fp32 values and, if quantised, codes.

    ``weight`` keeps the layer's own weight shape (conv kernels stay 4-D).
    """

    weight: torch.Tensor
    quantized: QuantizedMatrix | None


@dataclass(frozen=True)
class CompressedLayer:
    """A layer after compression: ``y = x @ f0.T @ f1.T ... + bias`` (or a conv with ``f0``)."""

    choice: LayerChoice
    factors: tuple[Factor, ...]
    bias: torch.Tensor | None


class InputQuantKind(StrEnum):
    """How a runtime's integer kernel quantises a layer's float input on the fly."""

    PER_TENSOR_U8 = "per_tensor_u8"  # ONNX DynamicQuantizeLinear: asymmetric uint8, one scale
    PER_BLOCK_S8 = "per_block_s8"  # symmetric int8 per row and block of K (MLAS CompInt8)


@dataclass(frozen=True)
class InputQuant:
    """The on-the-fly input quantisation of one integer kernel, reproduced in PyTorch.

    Modelling it makes the PyTorch candidate compute what the runtime computes, so the parity
    check measures the runtime, and a candidate's PyTorch score is its deployed score.
    """

    kind: InputQuantKind
    block: int = 0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` quantised and dequantised as the kernel sees it."""
        if self.kind is InputQuantKind.PER_TENSOR_U8:
            low = torch.clamp(x.min(), max=0.0)
            high = torch.clamp(x.max(), min=0.0)
            scale = (high - low) / 255.0
            if float(scale) == 0.0:
                return x
            zero = torch.clamp(torch.round(-low / scale), 0, 255)
            codes = torch.clamp(torch.round(x / scale) + zero, 0, 255)
            return (codes - zero) * scale
        k = x.shape[-1]
        blocks = math.ceil(k / self.block)
        padded = nn.functional.pad(x, (0, blocks * self.block - k))
        grouped = padded.reshape(*x.shape[:-1], blocks, self.block)
        scale = grouped.abs().amax(dim=-1, keepdim=True) / 127.0
        safe = torch.where(scale > 0, scale, torch.ones_like(scale))
        codes = torch.clamp(torch.round(grouped / safe), -127, 127)
        return (codes * scale).reshape(*x.shape[:-1], blocks * self.block)[..., :k]


# (layer, weight bits, weight group size) -> the input quantisation its kernel applies, if any
InputQuantFor = Callable[[LayerInfo, int, int], InputQuant | None]


class QuantizedInput(nn.Module):
    """Runs ``inner`` on its input as the runtime's integer kernel quantises it."""

    def __init__(self, inner: nn.Module, quant: InputQuant) -> None:
        super().__init__()
        self.inner = inner
        self.quant = quant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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


def magnitude_prune(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A copy of ``weight`` with exactly ``round(sparsity * numel)`` smallest magnitudes zeroed."""
    n_zero = round(sparsity * weight.numel())
    pruned = weight.detach().clone().contiguous()
    if n_zero == 0:
        return pruned
    flat = pruned.view(-1)
    order = torch.argsort(flat.abs(), stable=True)
    flat[order[:n_zero]] = 0.0
    return pruned


def truncated_svd(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors (first (rank, in), second (out, rank)) of a 2-D weight.

    ``second @ first`` is the Eckart-Young optimum; sqrt(S) is split between the factors so
    both have similar ranges for quantisation.
    """
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    root = s[:rank].sqrt()
    first = (root.unsqueeze(1) * vh[:rank]).float()
    second = (u[:, :rank] * root.unsqueeze(0)).float()
    return first, second


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


def compress_layer(
    layer: LayerInfo, weight: torch.Tensor, bias: torch.Tensor | None, choice: LayerChoice
) -> CompressedLayer:
    """Factorise (SVD), then prune each factor exactly, then quantise each factor."""
    if choice.rank_fraction < 1.0:
        if layer.kind is not LayerKind.LINEAR:
            raise ValueError(f"layer {layer.name!r}: low rank is only defined for Linear layers")
        matrices = list(truncated_svd(weight, low_rank(layer, choice.rank_fraction)))
    else:
        matrices = [weight.detach()]
    factors = []
    for matrix in matrices:
        pruned = magnitude_prune(matrix, choice.sparsity)
        quantized = None
        if choice.weight_bits != OFF_BITS:
            rows = pruned.reshape(pruned.shape[0], -1)
            group = group_size_for(choice.weight_bits, rows.shape[1], layer.kind)
            quantized = quantize_symmetric(rows, choice.weight_bits, group)
            pruned = quantized.dequantize().reshape(pruned.shape)
        factors.append(Factor(weight=pruned.float(), quantized=quantized))
    return CompressedLayer(
        choice=choice,
        factors=tuple(factors),
        bias=None if bias is None else bias.detach().float().clone(),
    )


def compress_model(
    model: nn.Module,
    layers: tuple[LayerInfo, ...],
    candidate: Candidate,
    input_quant: InputQuantFor | None = None,
) -> tuple[nn.Module, dict[str, CompressedLayer]]:
    """A compressed deep copy of ``model`` and each changed layer's compressed form.

    The original model is left untouched. Layers whose choice is the identity are skipped;
    structured pruning (``keep``) is applied before this, by ``prune.prune_model``, so
    ``model`` may already be the pruned one.
    ``input_quant`` (the backend's) says how each quantised matmul's input is quantised at run
    time; the copy reproduces it, so it computes what the deployed file computes.
    """
    compressed_model = copy.deepcopy(model).eval()
    compressed: dict[str, CompressedLayer] = {}
    for layer in layers:
        choice = candidate[layer.name]
        if dataclasses.replace(choice, keep=1.0).is_identity:  # pruning is done before this
            continue
        module = compressed_model.get_submodule(layer.name)
        weight = module.get_parameter("weight")
        layer = dataclasses.replace(layer, weight_shape=tuple(weight.shape))  # maybe pruned
        result = compress_layer(
            layer, module.get_parameter("weight"), getattr(module, "bias", None), choice
        )
        compressed[layer.name] = result
        replaced = _as_module(module, result, layer, input_quant)
        _set_submodule(compressed_model, layer.name, replaced)
    return compressed_model, compressed


def _as_module(
    original: nn.Module,
    layer: CompressedLayer,
    info: LayerInfo,
    input_quant: InputQuantFor | None,
) -> nn.Module:
    if len(layer.factors) == 1:
        replaced = copy.deepcopy(original)
        with torch.no_grad():
            replaced.get_parameter("weight").copy_(layer.factors[0].weight)
        return _with_input_quant(replaced, layer.factors[0], info, input_quant)
    chain: list[nn.Module] = []
    for i, factor in enumerate(layer.factors):
        last = i == len(layer.factors) - 1
        out_features, in_features = factor.weight.shape
        linear = nn.Linear(in_features, out_features, bias=last and layer.bias is not None)
        with torch.no_grad():
            linear.weight.copy_(factor.weight)
            if linear.bias is not None and layer.bias is not None:
                linear.bias.copy_(layer.bias)
        chain.append(_with_input_quant(linear, factor, info, input_quant))
    return nn.Sequential(*chain)


def _with_input_quant(
    module: nn.Module, factor: Factor, info: LayerInfo, input_quant: InputQuantFor | None
) -> nn.Module:
    if input_quant is None or factor.quantized is None:
        return module
    quant = input_quant(info, factor.quantized.bits, factor.quantized.group_size)
    return module if quant is None else QuantizedInput(module, quant)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)
