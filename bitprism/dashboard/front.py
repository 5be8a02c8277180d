"""Plot data for the dashboard, as pure functions of the queried points (unit-tested apart
from Streamlit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from optuna._hypervolume import compute_hypervolume
from optuna.study._multi_objective import _is_pareto_front

from bitprism.dashboard.queries import TrialPoint


@dataclass(frozen=True)
class Axis:
    """How one metric is plotted (keyed by the metric's name in :data:`AXES`)."""

    title: str
    maximise: bool
    log: bool = False


@dataclass(frozen=True)
class Group:
    """A legend entry: the points whose colouring attribute has one value."""

    name: str
    colour: str


# What the Pareto page can colour points by: a TrialPoint attribute, and a group per value.
COLOUR_BY = {
    "who proposed it": (
        "origin",
        {
            "uniform": Group("uniform seeds", "#ff7f0e"),
            "warm_start": Group("warm-start seeds", "#2ca02c"),
            "sampler": Group("sampler", "#9aa5b1"),
        },
    ),
    "trial state": (
        "state",
        {
            "complete": Group("verified", "#9aa5b1"),
            "failed": Group("failed (numbers kept)", "#8c564b"),
        },
    ),
}

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


def measured(
    points: Sequence[TrialPoint], metrics: Sequence[str], failed: bool = False
) -> list[TrialPoint]:
    """The verified, complete points that have every one of ``metrics`` (with ``failed``,
    also the failed trials that kept them: a file that did not verify has no timing, so
    those show on accuracy and size only)."""
    return [
        p
        for p in points
        if all(m in p.metrics for m in metrics)
        and ((p.state == "complete" and p.verified) or (failed and p.state == "failed"))
    ]


def searchable(point: TrialPoint) -> bool:
    """Whether a point may stand on a front: a search trial, complete and verified."""
    return point.number is not None and point.state == "complete" and bool(point.verified)


def within_drop(
    points: Sequence[TrialPoint], reference: TrialPoint, max_drop_pct: float
) -> list[TrialPoint]:
    """The points whose accuracy is at most ``max_drop_pct`` % below the reference's (on a
    metric where higher is better, as every bitprism workload's is)."""
    floor = reference.metrics["accuracy"] * (1 - max_drop_pct / 100)
    return [p for p in points if p.metrics["accuracy"] >= floor]


def pareto_figure(
    points: Sequence[TrialPoint],
    x: str,
    y: str,
    reference: TrialPoint | None,
    colour_by: str = "who proposed it",
) -> go.Figure:
    """All ``points`` in (x, y), coloured by :data:`COLOUR_BY` ``[colour_by]``, the
    non-dominated verified ones joined by a line, and the fp32 reference as a star. Hover
    names the trial, who proposed it and its numbers; a point's customdata is its number."""
    ax, ay = AXES[x], AXES[y]
    shown = [p for p in points if p.number is not None]
    candidates = [p for p in shown if searchable(p)]
    xs = [p.metrics[x] for p in candidates]
    ys = [p.metrics[y] for p in candidates]
    line = sorted(front_2d(xs, ys, (ax.maximise, ay.maximise)), key=lambda i: xs[i])
    figure = go.Figure()
    for group, members in _groups(shown, colour_by):
        figure.add_trace(_scatter(members, (x, y), group.name, group.colour, 7, "markers"))
    front = [candidates[i] for i in line]
    figure.add_trace(_scatter(front, (x, y), "Pareto front", "#d62728", 9, "lines+markers"))
    if reference is not None and x in reference.metrics and y in reference.metrics:
        figure.add_trace(_reference_star(reference, (x, y)))
    figure.update_xaxes(title=ax.title, type="log" if ax.log else "linear")
    figure.update_yaxes(title=ay.title, type="log" if ay.log else "linear")
    figure.update_layout(
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        legend={"orientation": "h", "x": 0, "y": 1.08},  # above the plot, off the axis title
    )
    return figure


AXES_3D = ("speedup", "weight_bytes", "accuracy")


def front_nd(values: Sequence[Sequence[float]], maximise: Sequence[bool]) -> list[int]:
    """Indices of the points no other point beats on every objective (any number of them;
    equal points all kept). Optuna's own non-dominated filter, which its best_trials use."""
    if not values:
        return []
    signs = np.array([-1.0 if m else 1.0 for m in maximise])
    on_front = _is_pareto_front(np.asarray(values, dtype=float) * signs, False)
    return [int(i) for i in np.flatnonzero(on_front)]


def pareto_figure_3d(
    points: Sequence[TrialPoint], reference: TrialPoint | None, colour_by: str = "who proposed it"
) -> go.Figure:
    """The three objectives at once (speed-up, weight bytes on a log axis, accuracy): every
    point coloured as in :func:`pareto_figure`, the three-objective front in red."""
    shown = [p for p in points if p.number is not None]
    candidates = [p for p in shown if searchable(p)]
    values = [[p.metrics[a] for a in AXES_3D] for p in candidates]
    front = [candidates[i] for i in front_nd(values, [AXES[a].maximise for a in AXES_3D])]
    figure = go.Figure()
    for group, members in _groups(shown, colour_by):
        figure.add_trace(_scatter(members, AXES_3D, group.name, group.colour, 4, "markers"))
    figure.add_trace(_scatter(front, AXES_3D, "Pareto front", "#d62728", 6, "markers"))
    if reference is not None and all(a in reference.metrics for a in AXES_3D):
        figure.add_trace(_reference_star(reference, AXES_3D))
    figure.update_layout(
        scene={
            "xaxis": {"title": {"text": AXES[AXES_3D[0]].title}},
            "yaxis": {"title": {"text": AXES[AXES_3D[1]].title}, "type": "log"},
            "zaxis": {"title": {"text": AXES[AXES_3D[2]].title}},
        },
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        legend={"orientation": "h", "x": 0, "y": 1.05},
        height=600,
    )
    return figure


def _groups(points: Sequence[TrialPoint], colour_by: str) -> list[tuple[Group, list[TrialPoint]]]:
    """``points`` split by the attribute ``colour_by`` names, in :data:`COLOUR_BY` order; a
    group with no point is left out of the legend."""
    attribute, groups = COLOUR_BY[colour_by]
    return [
        (group, members)
        for value, group in groups.items()
        if (members := [p for p in points if getattr(p, attribute) == value])
    ]


def _scatter(
    points: Sequence[TrialPoint],
    axes: Sequence[str],
    name: str,
    colour: str,
    size: int,
    mode: str,
) -> go.Scatter | go.Scatter3d:
    """One trace of ``points`` on two or three ``axes`` (Scatter or Scatter3d)."""
    coordinates = dict(zip("xyz", ([p.metrics[a] for p in points] for a in axes), strict=False))
    trace = go.Scatter3d if len(axes) == 3 else go.Scatter
    return trace(
        **coordinates,
        mode=mode,
        name=name,
        marker={"color": colour, "size": size},
        customdata=[p.number for p in points],
        text=[_hover(p) for p in points],
        hovertemplate="%{text}<extra></extra>",
    )


def _reference_star(reference: TrialPoint, axes: Sequence[str]) -> go.Scatter | go.Scatter3d:
    """fp32, as a star in 2-D (Scatter3d has no star symbol: a diamond there)."""
    trace = _scatter([reference], axes, "fp32", "#1f77b4", 16, "markers")
    trace.marker.symbol = "diamond" if len(axes) == 3 else "star"
    if len(axes) == 3:
        trace.marker.size = 8
    return trace


ORIGIN_WORDS = {
    "reference": "the reference",
    "uniform": "uniform seed",
    "warm_start": "warm-start seed",
    "sampler": "sampler",
}


def _hover(point: TrialPoint) -> str:
    m = point.metrics
    parts = [point.label + ("" if point.number is None else f" ({ORIGIN_WORDS[point.origin]})")]
    if point.state == "failed":
        parts.append("failed: not on any front")
    if "accuracy" in m:
        parts.append(f"accuracy {m['accuracy']:.4g}")
    if "speedup" in m:
        spread = ""
        if "speedup_min" in m and "speedup_max" in m:
            spread = f" ({m['speedup_min']:.2f}-{m['speedup_max']:.2f})"
        parts.append(f"{m['speedup']:.2f}x fp32 speed{spread}")
    if "weight_bytes" in m:
        parts.append(f"{m['weight_bytes'] / 1024:.1f} KiB of weights")
    if point.number is not None and point.forms:
        parts.append(forms_summary(point.forms))
    return "<br>".join(parts)


def forms_summary(forms: dict[str, int]) -> str:
    """A candidate in one line: "int8 on 3, rank cut on 1 of 5 layers" (widest bits first)."""
    bits = sorted((k for k in forms if k.startswith("int")), key=lambda k: -int(k[3:]))
    named = [*bits, "rank cut", "sparse", "units pruned"]
    used = [f"{name} on {forms[name]}" for name in named if forms.get(name)]
    return f"{', '.join(used) or 'nothing compressed'} of {forms.get('layers', 0)} layers"


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
