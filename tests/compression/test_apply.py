"""Compression on the real digits CNN: quantisation, pruning, SVD, and the copy semantics."""

from __future__ import annotations

import pytest
import torch

from bitprism.compression.apply import (
    compress_model,
    magnitude_prune,
    quantize_symmetric,
    truncated_svd,
)
from bitprism.compression.quantize import InputQuant, InputQuantKind
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import discover_layers


def _weights(digits):  # type: ignore[no-untyped-def]
    return {n: m.weight.detach() for n, m in digits.model.named_modules() if hasattr(m, "weight")}


@pytest.mark.parametrize("layer", ["features.2", "head.1", "head.3"])
def test_quantisation_error_falls_as_bits_rise(digits, layer: str) -> None:
    weight = _weights(digits)[layer]
    rows = weight.reshape(weight.shape[0], -1)
    errors = []
    for bits in (2, 3, 4, 8):
        q = quantize_symmetric(rows, bits, group_size=128 if bits <= 4 else rows.shape[1])
        assert int(q.codes.abs().max()) <= 2 ** (bits - 1) - 1
        errors.append(float((q.dequantize() - rows).pow(2).mean()))
    assert errors == sorted(errors, reverse=True)
    assert errors[-1] < errors[0] / 100


def test_quantisation_groups_cover_ragged_rows() -> None:
    weight = torch.randn(4, 200)  # groups of 128 and 72
    q = quantize_symmetric(weight, 4, 128)
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


def test_compress_model_leaves_original_untouched(digits) -> None:
    before = {k: v.clone() for k, v in digits.model.state_dict().items()}
    layers = discover_layers(digits.model)
    candidate = Candidate.from_dict(
        {
            "features.2": {"weight_bits": 8, "sparsity": 0.5},
            "head.1": {"weight_bits": 4, "rank_fraction": 0.25},
        }
    )
    model, compressed = compress_model(digits.model, layers, candidate)
    for key, value in digits.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert set(compressed) == {"features.2", "head.1"}
    assert isinstance(model.get_submodule("head.1"), torch.nn.Sequential)
    assert len(compressed["head.1"].factors) == 2
    conv = model.get_submodule("features.2").weight
    assert int((conv == 0).sum()) >= round(0.5 * conv.numel())
    x = digits.calibration[0]
    assert model(x).shape == digits.model(x).shape


def test_shared_weights_are_left_fp32_with_a_reason() -> None:
    from bitprism.kernels.onnx_export import export_base, lowerable_layers
    from bitprism.workloads.base import Workload
    from tests.fixtures import TiedMLP

    model = TiedMLP().eval()
    workload = Workload("tied", model, lambda m: 1.0, example_inputs=torch.randn(4, 32))
    layers = discover_layers(model)
    kept, skipped = lowerable_layers(export_base(workload), layers)
    assert [layer.name for layer in kept] == ["out"]
    assert set(skipped) == {"a", "b"} and all(skipped.values())


def _static(layer, bits: int, group: int) -> InputQuant | None:  # type: ignore[no-untyped-def]
    return InputQuant(InputQuantKind.STATIC_U8)


def test_static_input_quantisers_are_calibrated_on_the_batches(digits) -> None:
    layers = discover_layers(digits.model)
    candidate = Candidate.from_dict({"head.3": LayerChoice(weight_bits=7)})
    batches = digits.calibration[:2]
    model, compressed = compress_model(digits.model, layers, candidate, _static, batches)
    seen = []
    hook = digits.model.head[3].register_forward_hook(lambda m, args, out: seen.append(args[0]))
    with torch.no_grad():
        for batch in batches:
            digits.model(batch)
    hook.remove()
    inputs = torch.cat(seen)  # after a ReLU: the range is [0, max]
    quant = compressed["head.3"].factors[0].input_quant
    assert quant is not None and quant.zero_point == 0
    assert quant.scale == pytest.approx(float(inputs.max()) / 255, rel=1e-6)
    # The copy runs the quantiser: its input is on the uint8 grid.
    codes = model.head[3].quant.apply(inputs) / quant.scale
    assert torch.allclose(codes, codes.round(), atol=1e-3) and int(codes.max().round()) == 255


def test_static_input_quantisation_without_batches_is_refused(digits) -> None:
    layers = discover_layers(digits.model)
    candidate = Candidate.from_dict({"head.3": LayerChoice(weight_bits=7)})
    with pytest.raises(ValueError, match="needs calibration batches"):
        compress_model(digits.model, layers, candidate, _static)
