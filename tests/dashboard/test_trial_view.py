"""The Trial page's pure parts: numbers in words and the per-layer heat map."""

from __future__ import annotations

from bitprism.dashboard.queries import TrialPoint
from bitprism.dashboard.trial_view import against_fp32, choices_heatmap, strength


def test_numbers_against_fp32_in_words() -> None:
    fp32 = TrialPoint(None, "complete", True, {"accuracy": 98.89, "weight_bytes": 4100.0})
    fast = TrialPoint(
        3,
        "complete",
        True,
        {
            "accuracy": 98.49,
            "weight_bytes": 1000.0,
            "speedup": 2.6,
            "speedup_min": 2.51,
            "speedup_max": 2.66,
        },
    )
    assert against_fp32(fast, fp32) == (
        "4.10x smaller weights, 2.60x faster (passes 2.51-2.66x), -0.40 accuracy (98.49 vs 98.89)"
    )
    slow = TrialPoint(4, "complete", True, {"speedup": 0.5})
    assert against_fp32(slow, fp32) == "2.00x slower"


def test_heatmap_rows_are_layers_in_model_order() -> None:
    choices = [
        {"layer": "up", "weight_bits": 4, "keep": 0.75, "rank_fraction": 1.0, "sparsity": 0.0},
        {"layer": "down", "weight_bits": 16, "keep": 1.0, "rank_fraction": 0.5, "sparsity": 0.5},
    ]
    heat = choices_heatmap(choices).data[0]
    assert list(heat.y) == ["up", "down"]
    assert list(heat.x) == ["weight bits", "units kept", "rank kept", "sparsity"]
    assert [list(row) for row in heat.text] == [
        ["int4", "0.75", "-", "-"],
        ["fp32", "-", "0.5", "50%"],
    ]
    assert heat.z[1][0] == 0.0 and heat.z[0][0] == strength("weight_bits", 4) == 0.75
