"""Calibration statistics: input Gram matrices by hooks, and only what a candidate needs."""

from __future__ import annotations

import torch
from torch import nn

from bitprism.compression.apply import PLAIN
from bitprism.config import Methods
from bitprism.sensitivity.stats import candidate_stats, input_grams
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import discover_layers


def test_conv_gram_is_over_unfolded_patches_in_weight_order(digits) -> None:
    batch = digits.calibration[0]
    grams = input_grams(digits.model, ["features.0", "head.5"], [batch])
    patches = nn.functional.unfold(batch, 3, padding=1).transpose(1, 2).reshape(-1, 9).double()
    torch.testing.assert_close(grams["features.0"], patches.T @ patches / patches.shape[0])
    # the conv's output from the patches equals the conv itself: the order is the weight's
    conv = digits.model.features[0]
    direct = conv(batch).permute(0, 2, 3, 1).reshape(-1, 32)
    via_patches = patches.float() @ conv.weight.reshape(32, -1).T + conv.bias
    torch.testing.assert_close(via_patches, direct, atol=1e-5, rtol=1e-5)
    assert grams["head.5"].shape == (128, 128)


def test_grouped_convolutions_get_no_gram() -> None:
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=4), nn.Conv2d(4, 2, 1))
    grams = input_grams(model, ["0", "1"], [torch.randn(2, 4, 6, 6)])
    assert set(grams) == {"1"}


def test_only_what_the_choices_use_is_measured(digits) -> None:
    layers = tuple(discover_layers(digits.model))
    candidate = Candidate.from_dict(
        {"head.1": {"rank_fraction": 0.5}, "head.3": {"weight_bits": 4}, "head.5": {}}
    )
    methods = Methods(factoriser="fwsvd", pruner="magnitude", quantiser="rtn")
    stats = candidate_stats(digits.model, layers, candidate, methods, digits.calibration)
    assert set(stats) == {"head.1"}  # rtn on head.3 needs nothing
    assert stats["head.1"].fisher is not None and stats["head.1"].fisher.shape == (256, 1024)
    assert stats["head.1"].input_gram is not None
    assert candidate_stats(digits.model, layers, candidate, PLAIN, digits.calibration) == {}
    default = candidate_stats(digits.model, layers, candidate, Methods(), digits.calibration)
    assert set(default) == {"head.1", "head.3"} and default["head.3"].fisher is None


def test_a_key_remembers_measurements_and_gives_the_same_tensors(digits) -> None:
    layers = tuple(discover_layers(digits.model))
    first = Candidate.from_dict({"head.1": {"rank_fraction": 0.5}, "head.3": {"weight_bits": 4}})
    second = Candidate.from_dict({"head.3": {"weight_bits": 2}, "head.5": {"weight_bits": 4}})
    methods = Methods(factoriser="fwsvd")
    passes = []
    hook = digits.model.register_forward_pre_hook(lambda *_: passes.append(1))
    try:
        fresh = candidate_stats(digits.model, layers, first, methods, digits.calibration)
        fresh_passes = len(passes)
        kept = candidate_stats(digits.model, layers, first, methods, digits.calibration, "m")
        assert len(passes) == 2 * fresh_passes  # measured once under the key ...
        again = candidate_stats(digits.model, layers, first, methods, digits.calibration, "m")
        assert len(passes) == 2 * fresh_passes  # ... then remembered
        for name, stats in fresh.items():
            for remembered in (kept[name], again[name]):
                for ours, theirs in (
                    (stats.input_gram, remembered.input_gram),
                    (stats.fisher, remembered.fisher),
                ):
                    assert (ours is None) == (theirs is None)
                    assert ours is None or torch.equal(ours, theirs)
        # Only the layer not measured yet costs a pass (head.3's Gram is remembered).
        before = len(passes)
        later = candidate_stats(digits.model, layers, second, methods, digits.calibration, "m")
        assert len(passes) == before + len(digits.calibration)
        assert later["head.3"].input_gram is again["head.3"].input_gram
        alone = candidate_stats(digits.model, layers, second, methods, digits.calibration)
        assert torch.equal(alone["head.5"].input_gram, later["head.5"].input_gram)
    finally:
        hook.remove()
    for other in ("a", "b", "c"):  # the memo keeps the last MEMO_MODELS models only
        candidate_stats(digits.model, layers, second, methods, digits.calibration, other)
    from bitprism.sensitivity import stats as stats_module

    assert list(stats_module._memo) == ["b", "c"][-stats_module.MEMO_MODELS :]
