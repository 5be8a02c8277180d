"""Compression on the real digits CNN: quantisation, pruning, SVD, and the copy semantics."""

from __future__ import annotations

import pytest
import torch

from bitprism.compression.apply import compress_model
from bitprism.compression.quantize import InputQuant, InputQuantKind
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import discover_layers


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
