"""GPTQ-style rounding: codes chosen column by column, each column's rounding error
compensated in the columns not yet rounded, using the layer's calibration-input Hessian.

Scales are those round-to-nearest would use (each row and group's max |w| before rounding),
so the file layout, the backends' packing and the byte count are unchanged; only which code
each weight gets differs. Weights that are exactly zero (pruned) stay zero, and what they
would have absorbed is compensated in the others. Without an input Gram matrix (an embedding
table, or a grouped convolution whose rows see different inputs) it rounds to nearest: with
no shared input there is nothing to compensate through.
"""

from __future__ import annotations

import torch

from bitprism.compression.methods.compensate import round_compensated
from bitprism.compression.methods.registry import LayerStats, MethodKind, Stat, register
from bitprism.compression.quantize import QuantizedMatrix, quantize_symmetric


@register(MethodKind.QUANTISER, "gptq", needs=frozenset({Stat.INPUT_GRAM}))
def gptq(rows: torch.Tensor, bits: int, group_size: int, stats: LayerStats) -> QuantizedMatrix:
    """GPTQ: round-to-nearest scales, codes picked with Hessian error compensation."""
    plain = quantize_symmetric(rows, bits, group_size)
    if stats.input_gram is None:
        return plain
    check_gram(stats.input_gram, rows)
    qmax = 2 ** (bits - 1) - 1
    scales = plain.scales.double().repeat_interleave(group_size, dim=1)[:, : rows.shape[1]]
    pruned = rows == 0

    def to_codes(j: int, column: torch.Tensor) -> torch.Tensor:
        codes = torch.round(column / scales[:, j]).clamp(-qmax, qmax)
        return torch.where(pruned[:, j], 0.0, codes) * scales[:, j]

    rounded = round_compensated(rows, stats.input_gram, to_codes)
    codes = torch.round(rounded / scales).to(torch.int8)
    return QuantizedMatrix(codes=codes, scales=plain.scales, bits=bits, group_size=group_size)


def check_gram(gram: torch.Tensor, weight: torch.Tensor) -> None:
    """A ValueError unless ``gram`` is (in, in) for ``weight`` (out, in)."""
    columns = weight.shape[1]
    if tuple(gram.shape) != (columns, columns):
        raise ValueError(
            f"input Gram matrix of shape {tuple(gram.shape)} does not fit a weight with "
            f"{columns} inputs"
        )
