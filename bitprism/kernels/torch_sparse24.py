"""2:4 semi-structured sparse Linear: in every 4 consecutive weights along the input, at
most 2 are non-zero, which NVIDIA's sparse tensor cores (Ampere and later) multiply at up to
twice the dense rate, through ``torch.sparse.to_sparse_semi_structured`` (cuSPARSELt or
CUTLASS).

:func:`mask_2_4` is the magnitude rule (keep the 2 largest of each 4); a data-aware rule
can hand its own pattern to :class:`Sparse24Linear`, which checks it. On CUDA in fp16/bf16
the layer runs the semi-structured kernel; anywhere else it runs the same zeros dense, so a
CPU computes what the GPU does, only not faster.
"""

from __future__ import annotations

import torch
from torch import nn

from bitprism.compression.methods.plain import n_of_m_mask

__all__ = ["SPARSE_DTYPES", "Sparse24Linear", "is_2_4", "mask_2_4"]

SPARSE_DTYPES = (torch.float16, torch.bfloat16)  # what the semi-structured kernels take


def mask_2_4(weight: torch.Tensor) -> torch.Tensor:
    """The boolean mask keeping the 2 largest magnitudes of each 4 weights along the input.

    Raises:
        ValueError: the input width is not a multiple of 4.
    """
    return n_of_m_mask(weight, 2, 4)


def is_2_4(weight: torch.Tensor) -> bool:
    """Whether every 4 consecutive weights along the input hold at most 2 non-zeros."""
    out_features, in_features = weight.shape
    if in_features % 4:
        return False
    quads = weight.reshape(out_features, in_features // 4, 4)
    return bool(((quads != 0).sum(dim=-1) <= 2).all())


class Sparse24Linear(nn.Module):
    """A Linear layer whose weight follows the 2:4 pattern.

    Example:
        >>> weight = linear.weight * mask_2_4(linear.weight)
        >>> layer = Sparse24Linear(weight, linear.bias).cuda().half()
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        if weight.dim() != 2 or not is_2_4(weight):
            raise ValueError(
                f"the weight (shape {tuple(weight.shape)}) is not 2:4 sparse: at most 2 "
                "non-zeros in every 4 along the input (mask_2_4 gives such a pattern)"
            )
        self.weight = nn.Parameter(weight.detach().clone(), requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), False)
        self._sparse: torch.Tensor | None = None  # the compressed form, made on first use

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        """Moving or casting the layer drops the compressed form; the next call remakes it."""
        self._sparse = None
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight: torch.Tensor = self.weight
        if x.is_cuda and x.dtype in SPARSE_DTYPES and weight.dtype == x.dtype:
            if self._sparse is None:
                from torch.sparse import to_sparse_semi_structured

                self._sparse = to_sparse_semi_structured(weight)
            weight = self._sparse
        return nn.functional.linear(x, weight, self.bias)
