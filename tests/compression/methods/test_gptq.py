"""GPTQ-style rounding against round-to-nearest, on the real digits CNN."""

from __future__ import annotations

import pytest
import torch

from bitprism.compression.apply import PLAIN
from bitprism.compression.methods.gptq import gptq
from bitprism.compression.methods.plain import magnitude_prune, round_to_nearest
from bitprism.compression.methods.registry import LayerStats
from bitprism.config import Methods
from bitprism.sensitivity.stats import input_grams
from tests.compression.methods.task import held_out_kl


@pytest.mark.parametrize("bits", [2, 3, 4])
def test_gptq_beats_round_to_nearest_in_task_loss_at_equal_bytes(digits, bits: int) -> None:
    """Measured: KL 4.3e-3 vs 1.3e-1 at 2 bits, 1.0e-3 vs 6.8e-3 at 3, 1.3e-4 vs 7.1e-4 at 4."""
    plain, plain_layout = held_out_kl(digits, lambda _: {"weight_bits": bits}, PLAIN)
    better, layout = held_out_kl(digits, lambda _: {"weight_bits": bits}, Methods(quantiser="gptq"))
    assert layout == plain_layout
    assert better < 0.5 * plain


def test_gptq_lowers_the_layer_output_error_it_minimises(digits) -> None:
    weight = digits.model.get_submodule("head.1").weight.detach()
    gram = input_grams(digits.model, ["head.1"], digits.calibration)["head.1"]
    plain = round_to_nearest(weight, 3, 128)
    compensated = gptq(weight, 3, 128, LayerStats(input_gram=gram))
    torch.testing.assert_close(compensated.scales, plain.scales)  # same layout, other codes
    assert int(compensated.codes.abs().max()) <= 3

    def output_error(rounded: torch.Tensor) -> float:
        delta = (weight - rounded).double()
        return float(torch.trace(delta @ gram @ delta.T))

    assert output_error(compensated.dequantize()) < 0.5 * output_error(plain.dequantize())


def test_gptq_keeps_pruned_weights_zero_and_falls_back_without_a_gram(digits) -> None:
    weight = magnitude_prune(digits.model.get_submodule("head.3").weight.detach(), 0.5)
    gram = input_grams(digits.model, ["head.3"], digits.calibration)["head.3"]
    codes = gptq(weight, 4, 128, LayerStats(input_gram=gram)).codes
    assert bool((codes[weight == 0] == 0).all())
    no_gram = gptq(weight, 4, 128, LayerStats())
    assert torch.equal(no_gram.codes, round_to_nearest(weight, 4, 128).codes)
    with pytest.raises(ValueError, match="does not fit a weight with 256 inputs"):
        gptq(weight, 4, 128, LayerStats(input_gram=torch.eye(10)))
