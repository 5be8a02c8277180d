"""The plain methods on the real digits CNN: round-to-nearest, magnitude pruning, truncated
SVD (the baselines the data-aware methods are measured against)."""

from __future__ import annotations

import pytest
import torch

from bitprism.compression.methods.plain import magnitude_prune, round_to_nearest, truncated_svd


def _weights(digits):  # type: ignore[no-untyped-def]
    return {n: m.weight.detach() for n, m in digits.model.named_modules() if hasattr(m, "weight")}


@pytest.mark.parametrize("layer", ["features.2", "head.1", "head.3"])
def test_quantisation_error_falls_as_bits_rise(digits, layer: str) -> None:
    weight = _weights(digits)[layer]
    rows = weight.reshape(weight.shape[0], -1)
    errors = []
    for bits in (2, 3, 4, 8):
        q = round_to_nearest(rows, bits, group_size=128 if bits <= 4 else rows.shape[1])
        assert int(q.codes.abs().max()) <= 2 ** (bits - 1) - 1
        errors.append(float((q.dequantize() - rows).pow(2).mean()))
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < errors[0] / 100


def test_quantisation_groups_cover_ragged_rows() -> None:
    weight = torch.randn(4, 200)  # groups of 128 and 72
    q = round_to_nearest(weight, 4, 128)
    assert q.scales.shape == (4, 2)
    torch.testing.assert_close(q.scales[:, 1], weight[:, 128:].abs().amax(dim=1) / 7)


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
@pytest.mark.parametrize("layer", ["features.0", "features.2", "head.1", "head.5"])
def test_pruning_hits_exact_sparsity(digits, layer: str, sparsity: float) -> None:
    weight = _weights(digits)[layer]
    pruned = magnitude_prune(weight, sparsity)
    assert int((pruned == 0).sum()) == round(sparsity * weight.numel())
    kept = pruned[pruned != 0].abs().min()
    assert kept >= weight.abs().flatten().sort().values[round(sparsity * weight.numel()) - 1]


@pytest.mark.parametrize("rank", [1, 16, 64])
def test_svd_error_equals_tail_singular_values(digits, rank: int) -> None:
    weight = _weights(digits)["head.1"].double()
    singular = torch.linalg.svdvals(weight)
    first, second = truncated_svd(weight, rank)
    residual = weight - second.double() @ first.double()
    tail = singular[rank:].pow(2).sum().sqrt()
    assert float(torch.linalg.matrix_norm(residual)) == pytest.approx(float(tail), rel=1e-4)
    assert float(torch.linalg.matrix_norm(residual, ord=2)) == pytest.approx(
        float(singular[rank]), rel=1e-4
    )
