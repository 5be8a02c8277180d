"""Printed rows: compact per-point summaries that fit 100 columns, fp32 written fp32."""

from __future__ import annotations

import io

from rich.console import Console

from bitprism.report import choice_summary, layer_choice
from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.tables import score_digits


def _forty_layers() -> Candidate:
    forms = [LayerChoice(8)] * 30 + [LayerChoice(4)] * 6 + [LayerChoice()] * 2
    forms += [LayerChoice(4, rank_fraction=0.5)] * 2
    return Candidate.from_dict({f"encoder.layer.{i}.dense": c for i, c in enumerate(forms)})


def test_a_forty_layer_point_is_summarised_in_one_short_cell() -> None:
    summary = choice_summary(_forty_layers())
    assert summary == "int8 x30, int4 x8, fp32 x2, rank .5 x2"
    assert len(summary) < 45
    assert layer_choice(LayerChoice()) == "fp32" and "16" not in summary
    assert layer_choice(LayerChoice(2, sparsity=0.5, rank_fraction=0.25)) == (
        "int2, rank .25, sparse .5"
    )


def test_the_pareto_table_of_a_forty_layer_model_fits_100_columns() -> None:
    from bitprism.tables import print_rows

    out = io.StringIO()
    row = {
        "point": "trial 123",
        "accuracy": 86.72,
        "drop_pct": 0.31,
        "speedup": 1.87,
        "speedup_min": 1.80,
        "speedup_max": 1.95,
        "latency_ms": 400.0,
        "weight_bytes": 24_413_000,
        "smaller_x": 3.91,
        "choices": choice_summary(_forty_layers()),
    }
    table = ("front", [row, row], {"caption": "timed at batch 32"})
    print_rows(Console(file=out, width=100), table, False, False)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    assert max(len(line) for line in lines) <= 100
    # title, header, rule, caption, and at most two lines per point (only "choices" wraps)
    assert sum("trial 123" in line for line in lines) == 2 and len(lines) <= 8


def test_scores_get_four_significant_digits_at_fp32s_scale() -> None:
    assert f"{0.9806:.{score_digits(0.98)}f}" == "0.9806"
    assert f"{98.056:.{score_digits(98.06)}f}" == "98.06"
    assert score_digits(0.0) == 4
