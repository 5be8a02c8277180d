"""OBS pruning: the weights whose removal costs least layer-output error are zeroed, and the
remaining weights are updated to compensate (optimal brain surgeon, applied column by column
as in SparseGPT).

Saliency of weight (i, j) is w_ij^2 / [H^-1]_jj with H = 2 E[x x^T] over calibration inputs:
the increase of ||W X - W' X||^2 when it alone is removed and the rest of its row re-fit. The
exactly round(sparsity x numel) least salient weights are chosen over the whole matrix, as
magnitude pruning does, so both give the same count of zeros (the same bytes). Without an
input Gram matrix it falls back to magnitude pruning (see :mod:`.gptq` for when that is).
"""

from __future__ import annotations

import torch

from bitprism.compression.methods.compensate import inverse_cholesky, round_compensated
from bitprism.compression.methods.gptq import check_gram
from bitprism.compression.methods.plain import magnitude_prune, zero_lowest
from bitprism.compression.methods.registry import LayerStats, MethodKind, Stat, register


@register(MethodKind.PRUNER, "obs", needs=frozenset({Stat.INPUT_GRAM}))
def obs_prune(weight: torch.Tensor, sparsity: float, stats: LayerStats) -> torch.Tensor:
    """OBS: least-saliency weights zeroed, the rest updated to keep the layer's output."""
    if stats.input_gram is None or round(sparsity * weight.numel()) == 0:
        return magnitude_prune(weight, sparsity)
    rows = weight.detach().reshape(weight.shape[0], -1)
    check_gram(stats.input_gram, rows)
    upper = inverse_cholesky(stats.input_gram)
    inverse_diagonal = (upper * upper).sum(dim=0)  # diag(H^-1) = diag(U^T U)
    saliency = rows.double().square() / inverse_diagonal.unsqueeze(0)
    removed = zero_lowest(torch.ones_like(rows), saliency, sparsity) == 0

    def keep_unremoved(j: int, column: torch.Tensor) -> torch.Tensor:
        return torch.where(removed[:, j], 0.0, column)

    pruned = round_compensated(rows, stats.input_gram, keep_unremoved)
    return pruned.float().reshape(weight.shape)
