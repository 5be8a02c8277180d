"""Structured pruning on real models: groups found by tracing, units ranked, files in parity."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from bitprism.compression.apply import compress_model
from bitprism.compression.structured import find_groups, prune_model, unit_order
from bitprism.evaluators.accuracy import parity, score
from bitprism.kernels.base import RuntimeModule, get_backend
from bitprism.kernels.onnx_export import export_base
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.knobs import KNOBS
from bitprism.spaces.layer import discover_layers
from bitprism.workloads import Workload


def _build(
    workload: Workload, keep: float, bits: int
) -> tuple[nn.Module, RuntimeModule, int, dict]:
    """Prune every group to ``keep``, quantise every layer to the widest offered width up to
    ``bits``; the file as a module."""
    layers = discover_layers(workload.model)
    groups, skipped = find_groups(workload.model, workload.example_inputs, layers)
    order = unit_order(workload.model, groups, workload.calibration)
    leaders = {g.leader for g in groups}
    backend = get_backend("ort-cpu")
    candidate = Candidate.from_dict(
        {
            layer.name: LayerChoice(
                weight_bits=max((b for b in backend.weight_bits(layer) if b <= bits), default=16),
                keep=keep if layer.name in leaders else 1.0,
            )
            for layer in layers
        }
    )
    pruned = prune_model(workload.model, groups, order, candidate, workload.example_inputs)
    fp32 = dataclasses.replace(workload, model=pruned)
    torch_model, compressed = compress_model(pruned, layers, candidate, backend.input_quant)
    data = backend.build(export_base(fp32), layers, compressed, fp32).data
    info = {"groups": groups, "skipped": skipped, "pruned": pruned, "order": order}
    return torch_model, backend.load(data, threads=1), len(data), info


def test_digits_cnn_channels_and_neurons_are_pruned_in_parity(digits, digits_onnx) -> None:
    torch_model, onnx_module, size, info = _build(digits, keep=0.5, bits=16)
    groups = {g.leader: (g.units, g.consumers) for g in info["groups"]}
    assert groups == {
        "features.0": (32, ("features.2",)),
        "features.2": (64, ("head.1",)),  # through MaxPool and Flatten: 16 inputs per channel
        "head.1": (256, ("head.3",)),
        "head.3": (128, ("head.5",)),
    }
    assert "model output" in info["skipped"]["head.5"]  # the classes are never pruned
    pruned = info["pruned"]
    assert pruned.features[0].weight.shape[0] == 16 and pruned.features[2].weight.shape[1] == 16
    assert pruned.head[1].weight.shape == (128, 32 * 16)
    assert parity(torch_model, onnx_module, digits.calibration).rel_err < 1e-5
    assert size < len(digits_onnx) / 3
    fp32 = score(digits, digits.model)
    assert fp32 - 5.0 < score(digits, onnx_module) <= 100.0  # half the units, no fine-tuning


def test_units_are_ranked_by_what_they_feed_forward(digits) -> None:
    layers = discover_layers(digits.model)
    groups, _ = find_groups(digits.model, digits.example_inputs, layers)
    order = unit_order(digits.model, groups, digits.calibration)
    head = next(g for g in groups if g.leader == "head.3")
    ranked = order["head.3"]
    assert sorted(ranked) == list(range(head.units))

    # Removing the 64 least important of 128 neurons costs nothing; the 64 most, several points.
    def without(units: tuple[int, ...]) -> float:
        model = type(digits.model)()
        model.load_state_dict(digits.model.state_dict())
        with torch.no_grad():
            model.head[3].weight[list(units)] = 0.0
            model.head[3].bias[list(units)] = 0.0
        return score(digits, model.eval())

    fp32 = score(digits, digits.model)
    assert without(ranked[64:]) >= fp32 - 1.0
    assert without(ranked[:64]) < fp32 - 3.0


def test_encoder_heads_and_ffn_neurons_are_pruned_in_parity(tiny_encoder: Workload) -> None:
    torch_model, onnx_module, _, info = _build(tiny_encoder, keep=0.5, bits=7)
    by_kind = {g.leader.rpartition(".")[2]: g for g in info["groups"]}
    heads, ffn = by_kind["query"], by_kind["dense"]
    assert (heads.units, heads.unit_size, len(heads.producers)) == (12, 32, 3)  # Q, K, V
    assert heads.consumers[0].endswith("attention.output.dense")
    assert (ffn.units, ffn.unit_size) == (1536, 1)
    assert len(info["groups"]) == 4  # heads and FFN of each of the 2 layers
    assert "LayerNorm" in next(iter(info["skipped"].values()))  # the residual stream stays
    attention = info["pruned"].model.encoder.layer[0].attention
    assert attention.self.query.weight.shape == (6 * 32, 384)
    assert attention.output.dense.weight.shape == (384, 6 * 32)
    check = parity(torch_model, onnx_module, tiny_encoder.calibration)
    assert check.rel_err < 0.02
    ids = torch.randint(1000, 20000, (2, 11))
    assert onnx_module(ids, torch.ones_like(ids)).shape == (2, 384)


@pytest.mark.slow
def test_a_multihead_attention_model_prunes_its_ffn_in_parity() -> None:
    from tests.fixtures import mha_tokens

    workload = mha_tokens()
    torch_model, onnx_module, _, info = _build(workload, keep=0.5, bits=16)
    leaders = {g.leader for g in info["groups"]}
    assert "block.linear1" in leaders  # the FFN of nn.TransformerEncoderLayer
    assert info["pruned"].block.linear1.weight.shape[0] == 48
    assert parity(torch_model, onnx_module, workload.calibration).rel_err < 1e-4


def test_keep_is_offered_only_to_group_leaders_with_distinct_unit_counts(digits) -> None:
    backend = get_backend("ort-cpu")
    knob = KNOBS["keep"]
    layer = discover_layers(digits.model)[0]
    assert knob.choices(layer, backend) == (1.0,)
    assert knob.choices(dataclasses.replace(layer, prune_units=12), backend) == (
        1.0,
        0.875,
        0.75,
        0.625,
        0.5,
    )
    assert knob.choices(dataclasses.replace(layer, prune_units=3), backend) == (1.0, 0.75)


def test_a_pruned_candidate_rebuilds_byte_for_byte(digits, digits_onnx) -> None:
    from bitprism.evaluators.worker import EvalContext, build_candidate

    layers = discover_layers(digits.model)
    groups, _ = find_groups(digits.model, digits.example_inputs, layers)
    order = unit_order(digits.model, groups, digits.calibration)
    ctx = EvalContext(digits, layers, digits_onnx, "ort-cpu", "", 0.05, 1.0, tuple(groups), order)
    candidate = Candidate.from_dict(
        {"features.2": LayerChoice(keep=0.75, weight_bits=8), "head.1": LayerChoice(keep=0.5)}
    )
    first = build_candidate(ctx, candidate).artifact.data
    assert build_candidate(ctx, candidate).artifact.data == first
