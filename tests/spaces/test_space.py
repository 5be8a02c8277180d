"""The search space: discovery, backend limits, overrides, candidates and Optuna distributions."""

from __future__ import annotations

import json

import pytest

from bitprism.kernels.base import get_backend
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerInfo, LayerKind, discover_layers
from bitprism.spaces.space import build_space, param_name

BACKEND = get_backend("ort-cpu")


def test_discovers_conv_and_linear_layers(digits) -> None:
    layers = discover_layers(digits.model)
    assert [(layer.name, layer.kind) for layer in layers] == [
        ("features.0", LayerKind.CONV2D),
        ("features.2", LayerKind.CONV2D),
        ("head.1", LayerKind.LINEAR),
        ("head.3", LayerKind.LINEAR),
        ("head.5", LayerKind.LINEAR),
    ]
    assert layers[1].in_features == 32 * 9
    assert LayerInfo.from_dict(json.loads(json.dumps(layers[2].to_dict()))) == layers[2]


def test_space_follows_backend_and_rank_savings(digits) -> None:
    space = build_space(discover_layers(digits.model), BACKEND)
    assert space.values("features.2", "weight_bits") == (16, 8)
    assert space.values("head.1", "weight_bits") == (16, 7, 4, 2)
    assert space.values("features.2", "rank_fraction") == (1.0,)
    assert space.values("head.1", "rank_fraction") == (1.0, 0.5, 0.25)
    dists = space.distributions()
    assert param_name("features.2", "rank_fraction") not in dists  # single value: fixed


def test_sparsity_is_off_where_the_backend_gains_nothing_from_it(digits) -> None:
    """Finding 9: ORT CPU has no sparse kernel, so sparsity only spends the trial budget."""
    layers = discover_layers(digits.model)
    space = build_space(layers, BACKEND)
    assert all(space.values(layer.name, "sparsity") == (0.0,) for layer in layers)
    assert not [name for name in space.distributions() if name.endswith(":sparsity")]
    chosen = build_space(layers, BACKEND, extra_knobs=["sparsity"])
    dists = chosen.distributions()
    assert dists[param_name("head.1", "sparsity")].choices == (0.0, 0.25, 0.5, 0.75)
    with pytest.raises(ValueError, match="name it in extra_knobs"):
        build_space(layers, BACKEND, {"head.1": {"sparsity": [0.5]}})
    with pytest.raises(ValueError, match="unknown knob 'colour'"):
        build_space(layers, BACKEND, extra_knobs=["colour"])


def test_square_layer_gets_no_useless_rank(digits) -> None:
    square = LayerInfo("sq", LayerKind.LINEAR, (64, 64), True)
    space = build_space([square], BACKEND)
    assert space.values("sq", "rank_fraction") == (1.0, 0.25)  # 0.5 keeps as many weights


def test_overrides_restrict_and_validate(digits) -> None:
    layers = discover_layers(digits.model)
    space = build_space(
        layers,
        BACKEND,
        {"head.*": {"weight_bits": [7, 4]}, "features.0": {"sparsity": [0]}},
        extra_knobs=["sparsity"],
    )
    assert space.values("head.3", "weight_bits") == (7, 4)
    assert space.values("features.0", "sparsity") == (0.0,)
    with pytest.raises(ValueError, match=r"overrides\['nope\.\*'\] matches no layer"):
        build_space(layers, BACKEND, {"nope.*": {"weight_bits": [8]}})
    with pytest.raises(
        ValueError, match=r"overrides\['features\.0'\]\.weight_bits: \[4\] not available"
    ):
        build_space(layers, BACKEND, {"features.0": {"weight_bits": [4]}})


def test_candidate_round_trips_and_hashes(digits) -> None:
    space = build_space(discover_layers(digits.model), BACKEND, extra_knobs=["sparsity"])
    params = {name: dist.choices[-1] for name, dist in space.distributions().items()}
    candidate = space.candidate(params)
    assert space.params(candidate) == params
    again = Candidate.from_dict(json.loads(candidate.to_json()))
    assert again == candidate and again.digest() == candidate.digest()
    assert candidate["head.1"] == LayerChoice(weight_bits=2, sparsity=0.75, rank_fraction=0.25)
    assert space.baseline().digest() != candidate.digest()
    assert all(choice.is_identity for _, choice in space.baseline())


@pytest.mark.parametrize(
    "bad", [{"weight_bits": 5}, {"sparsity": 1.0}, {"rank_fraction": 0}, {"bits": 4}]
)
def test_bad_choices_name_the_field(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Candidate.from_dict({"fc": bad})


def test_space_size_counts_every_combination(digits) -> None:
    space = build_space(
        discover_layers(digits.model), BACKEND, {"head.*": {"sparsity": [0]}}, ["sparsity"]
    )
    conv = 2 * 4  # bits x sparsity
    linear = 4 * 3  # bits x rank fraction (sparsity fixed by the override)
    assert space.size() == conv * conv * linear**3


def test_seeds_are_the_uniform_forms_then_each_keep_with_8bit_class_and_4bit_tables() -> None:
    layers = (
        LayerInfo("emb", LayerKind.EMBEDDING, (1000, 128), False),
        LayerInfo("ffn.up", LayerKind.LINEAR, (512, 128), True, prune_units=512),
        LayerInfo("ffn.down", LayerKind.LINEAR, (128, 512), True),
        LayerInfo("conv", LayerKind.CONV2D, (8, 3, 3, 3), True, prune_units=8),
    )
    space = build_space(layers, BACKEND)
    seeds = space.uniform_seeds()
    assert [s["ffn.up"].weight_bits for s in seeds[:3]] == [7, 4, 2]
    assert [s["conv"].weight_bits for s in seeds[:3]] == [8, 16, 16]  # no sub-8-bit conv
    assert [s["emb"].weight_bits for s in seeds[:3]] == [8, 4, 2]
    keeps = seeds[3:]
    assert [s["ffn.up"].keep for s in keeps] == [0.875, 0.75, 0.625, 0.5]
    assert all(s["conv"].keep == s["ffn.up"].keep for s in keeps)
    assert all(s["ffn.down"].keep == 1.0 for s in keeps)  # it consumes; it leads no group
    assert all(
        (s["emb"].weight_bits, s["ffn.up"].weight_bits, s["conv"].weight_bits) == (4, 7, 8)
        for s in keeps
    )


def test_seeds_follow_overrides_that_drop_the_uncompressed_width() -> None:
    layers = (LayerInfo("fc", LayerKind.LINEAR, (256, 256), True),)
    space = build_space(layers, BACKEND, {"fc": {"weight_bits": [7, 4]}})
    assert [s["fc"].weight_bits for s in space.uniform_seeds()] == [7, 4]
