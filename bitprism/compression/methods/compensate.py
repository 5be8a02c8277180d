"""Column-by-column rounding with optimal-brain-surgeon error compensation.

Shared by GPTQ (rounding to codes) and OBS pruning (rounding to zero): both minimise the
layer's output error ||W X - R X||^2 over calibration inputs X, whose Hessian is
H = 2 E[x x^T]. Columns are fixed one at a time; the error each fixed column makes is spread
over the columns not fixed yet by the optimal (OBS) update, which needs only the upper
Cholesky factor U of H^-1 (Frantar et al., GPTQ, 2022, and SparseGPT, 2023). Updates are
applied lazily in blocks of columns so the cost is a few matrix products, not one per column.

Hand-written: no maintained library does this for plain PyTorch weights on CPU
(``auto-gptq``/``gptqmodel`` need CUDA kernels and Hugging Face model classes).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

DAMPING = 0.01  # of the mean diagonal of H, added to its diagonal (GPTQ's default)
BLOCK = 128


def inverse_cholesky(gram: torch.Tensor) -> torch.Tensor:
    """Upper Cholesky factor of the damped H^-1 (float64); dead inputs (always zero) get a
    unit diagonal so H stays invertible."""
    h = gram.double().clone()
    dead = torch.diagonal(h) <= 0
    h[dead, dead] = 1.0
    h.diagonal().add_(DAMPING * float(torch.diagonal(h).mean()))
    inverse = torch.cholesky_inverse(torch.linalg.cholesky(h))
    return torch.linalg.cholesky(inverse, upper=True)


def round_compensated(
    weight: torch.Tensor,
    gram: torch.Tensor,
    round_column: Callable[[int, torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``weight`` (out, in) rounded column by column, the error of each column compensated in
    the columns after it.

    ``round_column(j, w)`` gives the rounded values of column ``j`` from its current
    (already compensated) values ``w``. Returns the rounded matrix, float64.
    """
    upper = inverse_cholesky(gram)
    w = weight.detach().double().clone()
    rounded = torch.zeros_like(w)
    columns = w.shape[1]
    for start in range(0, columns, BLOCK):
        end = min(start + BLOCK, columns)
        block = w[:, start:end].clone()
        errors = torch.zeros_like(block)
        for i in range(end - start):
            j = start + i
            column = block[:, i]
            fixed = round_column(j, column)
            rounded[:, j] = fixed
            error = (column - fixed) / upper[j, j]
            block[:, i:] -= error.unsqueeze(1) * upper[j, j:end].unsqueeze(0)
            errors[:, i] = error
        w[:, end:] -= errors @ upper[start:end, end:]
    return rounded
