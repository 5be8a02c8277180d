"""The plain methods: truncated SVD, magnitude pruning and round-to-nearest.

They need no calibration data, are the defaults, and are what the data-aware methods
(:mod:`.fwsvd`, :mod:`.obs`, :mod:`.gptq`) must beat at equal bytes.
"""

from __future__ import annotations

import torch

from bitprism.compression.methods.registry import LayerStats, MethodKind, register
from bitprism.compression.quantize import QuantizedMatrix, quantize_symmetric


@register(MethodKind.FACTORISER, "svd")
def truncated_svd(
    weight: torch.Tensor, rank: int, stats: LayerStats | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated SVD: the best rank-r factors in plain Frobenius norm (Eckart-Young).

    Returns (first (rank, in), second (out, rank)); sqrt(S) is split between the factors so
    both have similar ranges for quantisation.
    """
    u, s, vh = torch.linalg.svd(weight.detach().double(), full_matrices=False)
    return split_factors(u, s, vh, rank)


def split_factors(
    u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, rank: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sqrt(S) Vh, U sqrt(S)) truncated to ``rank``, as float32."""
    root = s[:rank].sqrt()
    first = (root.unsqueeze(1) * vh[:rank]).float()
    second = (u[:, :rank] * root.unsqueeze(0)).float()
    return first, second


@register(MethodKind.PRUNER, "magnitude")
def magnitude_prune(
    weight: torch.Tensor, sparsity: float, stats: LayerStats | None = None
) -> torch.Tensor:
    """Magnitude pruning: exactly round(sparsity x numel) smallest |w| set to zero (a copy)."""
    return zero_lowest(weight, weight.detach().abs(), sparsity)


def zero_lowest(weight: torch.Tensor, saliency: torch.Tensor, sparsity: float) -> torch.Tensor:
    """A copy of ``weight`` with the round(sparsity x numel) lowest-``saliency`` entries zeroed
    (ties broken by position, so the result is deterministic)."""
    n_zero = round(sparsity * weight.numel())
    pruned = weight.detach().clone().contiguous()
    if n_zero == 0:
        return pruned
    order = torch.argsort(saliency.reshape(-1), stable=True)
    pruned.view(-1)[order[:n_zero]] = 0.0
    return pruned


def n_of_m_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """The boolean mask keeping the ``n`` largest |w| of every ``m`` consecutive weights along
    the input of the 2-D ``weight`` (ties: the first), the N:M pattern sparse tensor cores run
    (2:4 on NVIDIA GPUs since Ampere).

    Raises:
        ValueError: the input width is not a multiple of ``m``.
    """
    rows, cols = weight.shape
    if cols % m:
        raise ValueError(f"{n}:{m} sparsity needs an input width divisible by {m}, got {cols}")
    groups = weight.detach().abs().reshape(rows, cols // m, m)
    order = torch.argsort(groups, dim=-1, descending=True, stable=True)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order[..., :n], True)
    return keep.reshape(rows, cols)


@register(MethodKind.QUANTISER, "rtn")
def round_to_nearest(
    rows: torch.Tensor, bits: int, group_size: int, stats: LayerStats | None = None
) -> QuantizedMatrix:
    """Round-to-nearest: each weight to its closest code, scales from each group's max |w|."""
    return quantize_symmetric(rows, bits, group_size)
