"""Plot data for the dashboard, as pure functions of the queried points (unit-tested apart
from Streamlit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from optuna._hypervolume import compute_hypervolume

from bitprism.dashboard.queries import TrialPoint


@dataclass(frozen=True)
class Axis:
    """How one metric is plotted (keyed by the metric's name in :data:`AXES`)."""

    title: str
    maximise: bool
    log: bool = False


WARM_START_MARK = "predicted_layer_smaller"  # a metric only the warm start's seeds carry

AXES = {
    "accuracy": Axis("accuracy (the workload's metric)", True),
    "speedup": Axis("speed-up over fp32 (same passes)", True),
    "weight_bytes": Axis("weight bytes", False, log=True),
    "latency_ms": Axis("latency ms", False),
}


def front_2d(xs: Sequence[float], ys: Sequence[float], maximise: tuple[bool, bool]) -> list[int]:
    """Indices of the points no other point beats on both objectives, in front order.

    O(n log n): sorted best-first on x (ties best-first on y), a point is on the front when
    its y beats every y before it; the O(n^2) pairwise scan would take seconds at 10,000.
    Of equal points only the first is kept.
    """
    sx = 1.0 if maximise[0] else -1.0
    sy = 1.0 if maximise[1] else -1.0
    order = sorted(range(len(xs)), key=lambda i: (-sx * xs[i], -sy * ys[i]))
    front: list[int] = []
    best = float("-inf")
    for i in order:
        if sy * ys[i] > best:
            front.append(i)
            best = sy * ys[i]
    return front


def measured(points: Sequence[TrialPoint], metrics: Sequence[str]) -> list[TrialPoint]:
    """The verified, complete points that have every one of ``metrics``."""
    return [
        p
        for p in points
        if p.state == "complete" and p.verified and all(m in p.metrics for m in metrics)
    ]


def within_drop(
    points: Sequence[TrialPoint], reference: TrialPoint, max_drop_pct: float
) -> list[TrialPoint]:
    """The points whose accuracy is at most ``max_drop_pct`` % below the reference's (on a
    metric where higher is better, as every bitprism workload's is)."""
    floor = reference.metrics["accuracy"] * (1 - max_drop_pct / 100)
    return [p for p in points if p.metrics["accuracy"] >= floor]


def pareto_figure(
    points: Sequence[TrialPoint], x: str, y: str, reference: TrialPoint | None
) -> go.Figure:
    """All measured ``points`` in (x, y) (the warm start's seeds in their own colour), the
    non-dominated ones joined by a line, and the fp32 reference as a star. Hover names the
    trial and its numbers."""
    ax, ay = AXES[x], AXES[y]
    shown = [p for p in points if p.number is not None]
    xs = [p.metrics[x] for p in shown]
    ys = [p.metrics[y] for p in shown]
    on_front = front_2d(xs, ys, (ax.maximise, ay.maximise))
    line = sorted(on_front, key=lambda i: xs[i])
    figure = go.Figure()
    seeded = [i for i, p in enumerate(shown) if WARM_START_MARK in p.metrics]
    groups = [
        ("trials", "#9aa5b1", [i for i in range(len(shown)) if i not in set(seeded)]),
        ("warm-start seeds", "#2ca02c", seeded),
    ]
    for name, colour, members in groups:
        if not members and name != "trials":
            continue
        figure.add_trace(
            go.Scatter(
                x=[xs[i] for i in members],
                y=[ys[i] for i in members],
                mode="markers",
                name=name,
                marker={"color": colour, "size": 7},
                customdata=[shown[i].number for i in members],
                text=[_hover(shown[i]) for i in members],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=[xs[i] for i in line],
            y=[ys[i] for i in line],
            mode="lines+markers",
            name="Pareto front",
            marker={"color": "#d62728", "size": 9},
            customdata=[shown[i].number for i in line],
            text=[_hover(shown[i]) for i in line],
            hovertemplate="%{text}<extra></extra>",
        )
    )
    if reference is not None and x in reference.metrics and y in reference.metrics:
        figure.add_trace(
            go.Scatter(
                x=[reference.metrics[x]],
                y=[reference.metrics[y]],
                mode="markers",
                name="fp32",
                marker={"symbol": "star", "size": 16, "color": "#1f77b4"},
                text=[_hover(reference)],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    figure.update_xaxes(title=ax.title, type="log" if ax.log else "linear")
    figure.update_yaxes(title=ay.title, type="log" if ay.log else "linear")
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "x": 0, "y": 1.08},  # above the plot, off the axis title
    )
    return figure


def _hover(point: TrialPoint) -> str:
    m = point.metrics
    parts = [point.label]
    if "accuracy" in m:
        parts.append(f"accuracy {m['accuracy']:.4g}")
    if "speedup" in m:
        spread = ""
        if "speedup_min" in m and "speedup_max" in m:
            spread = f" ({m['speedup_min']:.2f}-{m['speedup_max']:.2f})"
        parts.append(f"{m['speedup']:.2f}x fp32 speed{spread}")
    if "weight_bytes" in m:
        parts.append(f"{m['weight_bytes'] / 1024:.1f} KiB of weights")
    return "<br>".join(parts)


# Hypervolume reference point (minimised form): 90% of fp32's accuracy, 0.5x its speed, its
# size. Points worse than it on any objective add nothing.
HV_REFERENCE = (-0.9, -0.5, 1.0)


def hypervolume_curve(
    points: Sequence[TrialPoint], reference: TrialPoint, steps: int = 100
) -> tuple[list[int], list[float]]:
    """The hypervolume of (accuracy / fp32's, speed-up, bytes / fp32's) over the verified
    trials measured so far, after up to ``steps`` evenly spaced trial counts (trial order):
    how fast the search found its front. Proposals pruned unmeasured are not counted."""
    ordered = [p for p in points if p.number is not None and p.state != "pruned"]
    ref = reference.metrics
    limit = np.array(HV_REFERENCE)
    kept: list[list[float]] = []
    marks = sorted({max(1, round(len(ordered) * k / steps)) for k in range(1, steps + 1)})
    xs: list[int] = []
    ys: list[float] = []
    done = 0
    for mark in marks if ordered else []:
        for point in ordered[done:mark]:
            m = point.metrics
            if (
                point.state == "complete"
                and point.verified
                and {"accuracy", "speedup", "weight_bytes"} <= set(m)
            ):
                vector = [
                    -m["accuracy"] / ref["accuracy"],
                    -m["speedup"],
                    m["weight_bytes"] / ref["weight_bytes"],
                ]
                if all(v < r for v, r in zip(vector, HV_REFERENCE, strict=True)):
                    kept = _add_nondominated(kept, vector)
        done = mark
        xs.append(mark)
        ys.append(float(compute_hypervolume(np.array(kept), limit)) if kept else 0.0)
    return xs, ys


def _add_nondominated(front: list[list[float]], point: list[float]) -> list[list[float]]:
    """``front`` (mutually non-dominated, minimised) with ``point`` added if nothing in it
    dominates the point, and what the point dominates removed: the hypervolume is the front's."""
    if any(all(f <= p for f, p in zip(other, point, strict=True)) for other in front):
        return front
    kept = [o for o in front if not all(p <= f for p, f in zip(point, o, strict=True))]
    return [*kept, point]
