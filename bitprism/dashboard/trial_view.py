"""What the Trial page shows of one trial, as pure functions: its numbers against fp32 in
the words a user decides by, and its per-layer choices as a heat map."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import plotly.graph_objects as go

from bitprism.dashboard.queries import TrialPoint

# Heat-map columns: the knob, its header, and how strongly a value compresses (0: untouched).
KNOBS: tuple[tuple[str, str], ...] = (
    ("weight_bits", "weight bits"),
    ("keep", "units kept"),
    ("rank_fraction", "rank kept"),
    ("sparsity", "sparsity"),
)


def strength(knob: str, value: float) -> float:
    """How far ``value`` of ``knob`` is from leaving the layer as it is, in [0, 1]."""
    if knob == "weight_bits":
        return 0.0 if value >= 16 else 1.0 - value / 16.0
    if knob == "sparsity":
        return float(value)
    return 1.0 - float(value)  # keep, rank_fraction: fractions kept


def label(knob: str, value: float) -> str:
    if knob == "weight_bits":
        return "fp32" if value >= 16 else f"int{int(value)}"
    if knob == "sparsity":
        return "-" if value == 0 else f"{value:.0%}"
    return "-" if value >= 1 else f"{value:g}"


def choices_heatmap(choices: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Rows: layers in model order; columns: the knobs; colour: how much each compresses."""
    layers = [c["layer"] for c in choices]
    z = [[strength(k, float(c[k])) for k, _ in KNOBS] for c in choices]
    text = [[label(k, float(c[k])) for k, _ in KNOBS] for c in choices]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=[title for _, title in KNOBS],
            y=layers,
            text=text,
            texttemplate="%{text}",
            colorscale="Blues",
            zmin=0.0,
            zmax=1.0,
            showscale=False,
            hovertemplate="%{y}: %{x} %{text}<extra></extra>",
        )
    )
    figure.update_yaxes(autorange="reversed")  # model order, top to bottom
    figure.update_layout(height=120 + 24 * len(layers), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure


def sensitivity_bars(layers: Sequence[str], per_weight: Mapping[str, float]) -> go.Figure:
    """Each layer's curvature per weight (log scale), rows aligned with the heat map's."""
    values = [max(per_weight.get(layer, 0.0), 1e-12) for layer in layers]
    figure = go.Figure(
        go.Bar(
            x=values,
            y=list(layers),
            orientation="h",
            marker={"color": "#dd8452"},
            hovertemplate="%{y}: %{x:.3g} per weight<extra></extra>",
        )
    )
    figure.update_xaxes(type="log", title="sensitivity (curvature per weight)")
    figure.update_yaxes(autorange="reversed", showticklabels=False)
    figure.update_layout(height=120 + 24 * len(layers), margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return figure


def against_fp32(point: TrialPoint, reference: TrialPoint) -> str:
    """E.g. ``4.10x smaller weights, 2.60x faster (passes 2.51-2.66x), -0.40 accuracy (98.33 vs
    98.89)``."""
    m, r = point.metrics, reference.metrics
    parts = []
    if m.get("weight_bytes") and "weight_bytes" in r:
        parts.append(f"{r['weight_bytes'] / m['weight_bytes']:.2f}x smaller weights")
    if "speedup" in m:
        speed = m["speedup"]
        word = f"{speed:.2f}x faster" if speed >= 1 else f"{1 / speed:.2f}x slower"
        if "speedup_min" in m and "speedup_max" in m:
            word += f" (passes {m['speedup_min']:.2f}-{m['speedup_max']:.2f}x)"
        parts.append(word)
    if "accuracy" in m and "accuracy" in r:
        parts.append(
            f"{m['accuracy'] - r['accuracy']:+.2f} accuracy "
            f"({m['accuracy']:.4g} vs {r['accuracy']:.4g})"
        )
    return ", ".join(parts) or "no measured numbers"
