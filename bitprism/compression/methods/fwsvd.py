"""Data-aware low rank: SVD in the metric the calibration data gives each side of the weight.

Plain SVD minimises ||W - W'||_F, as if every input direction and every output were alike. To
second order the loss a perturbation D of a Linear's weight costs is tr(D G D^T S) under the
Kronecker-factored Fisher (K-FAC): G = E[x x^T] the input Gram matrix, S the covariance of the
loss gradient at the outputs. With S diagonal, the best rank r minimises
||diag(sqrt(s)) (W - W') L||_F for G = L L^T, which one SVD of diag(sqrt(s)) W L solves exactly
(un-weighted afterwards). Two methods use it:

- ``whitened``: the input side only (s = 1): the rank-r weight with the least layer-output
  error on the calibration data (the whitening of SVD-LLM, Wang et al. 2024).
- ``fwsvd``: both sides, the output weights from the Fisher diagonal's row sums (Hsu et al.,
  "Language model compression with weighted low-rank factorization", ICLR 2022; under K-FAC
  row i of F sums to s_i tr(G)). Hsu et al. weight rows only; measured on digits-cnn and
  digits-mixer that lost to plain SVD on most layers (a Monte Carlo Fisher of 128 samples is
  noisy), while adding the input side won on all but the classifiers, so it has both.

Without its statistics (none measured for the layer) either is plain SVD.
"""

from __future__ import annotations

import torch

from bitprism.compression.methods.compensate import DAMPING
from bitprism.compression.methods.gptq import check_gram
from bitprism.compression.methods.plain import split_factors, truncated_svd
from bitprism.compression.methods.registry import LayerStats, MethodKind, Stat, register

FLOOR = 1e-3  # of the mean row importance: rows the data never moved still count a little


@register(MethodKind.FACTORISER, "whitened", needs=frozenset({Stat.INPUT_GRAM}))
def whitened_svd(
    weight: torch.Tensor, rank: int, stats: LayerStats
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whitened SVD: the rank-r weight with least output error on the calibration inputs."""
    if stats.input_gram is None:
        return truncated_svd(weight, rank)
    return weighted_svd(weight, rank, torch.ones(weight.shape[0], dtype=torch.float64), stats)


@register(MethodKind.FACTORISER, "fwsvd", needs=frozenset({Stat.FISHER, Stat.INPUT_GRAM}))
def fisher_weighted_svd(
    weight: torch.Tensor, rank: int, stats: LayerStats
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fisher-weighted SVD: outputs weighted by Fisher importance, inputs whitened."""
    if stats.fisher is None or stats.input_gram is None:
        return truncated_svd(weight, rank)
    if tuple(stats.fisher.shape) != tuple(weight.shape):
        raise ValueError(
            f"Fisher diagonal of shape {tuple(stats.fisher.shape)} does not fit a weight of "
            f"shape {tuple(weight.shape)}"
        )
    importance = stats.fisher.double().sum(dim=1)
    floor = FLOOR * float(importance.mean())
    return weighted_svd(weight, rank, importance.clamp(min=floor) if floor > 0 else None, stats)


def weighted_svd(
    weight: torch.Tensor, rank: int, rows: torch.Tensor | None, stats: LayerStats
) -> tuple[torch.Tensor, torch.Tensor]:
    """Factors (first (rank, in), second (out, rank)) minimising
    ||diag(sqrt(rows)) (W - second @ first) L||_F, L the Cholesky factor of the damped input
    Gram matrix (``rows`` None: equal weights)."""
    assert stats.input_gram is not None
    w = weight.detach().double()
    check_gram(stats.input_gram, w)
    gram = stats.input_gram.double().clone()
    gram.diagonal().add_(DAMPING * float(gram.diagonal().mean()) or 1.0)
    lower = torch.linalg.cholesky(gram)
    root = (torch.ones(w.shape[0], dtype=torch.float64) if rows is None else rows.sqrt())[:, None]
    u, s, vh = torch.linalg.svd(root * w @ lower, full_matrices=False)
    unwhitened = torch.linalg.solve_triangular(lower.T, vh[:rank].T, upper=True).T
    return split_factors(u[:, :rank] / root, s[:rank], unwhitened, rank)
