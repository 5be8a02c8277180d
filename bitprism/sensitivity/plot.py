"""A PNG of a workload's layer sensitivities: what ``bitprism sensitivity --plot`` writes.

One row per layer, in model order: Tr(H)/n (average curvature per weight, HAWQ-V2's ranking)
as a bar with its standard error, and the same quantity from the Fisher diagonal as a dot, so
where the two estimates disagree is visible at a glance. Log scale: sensitivities of one model
span orders of magnitude.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI

import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)

from bitprism.sensitivity.hessian import LayerTrace  # noqa: E402


def plot_sensitivity(traces: Sequence[tuple[LayerTrace, float]], path: Path, title: str) -> None:
    """Write the plot of ``traces`` (as :func:`~bitprism.sensitivity.measure.layer_sensitivity`
    returns them) to ``path`` (PNG; its folder made if missing), replacing it atomically."""
    names = [trace.name for trace, _ in traces]
    per_weight = [max(trace.mean, 1e-30) for trace, _ in traces]
    errors = [trace.mean * trace.rel_se for trace, _ in traces]
    fisher = [max(total / trace.params, 1e-30) for trace, total in traces]
    rows = range(len(names))
    figure, axes = plt.subplots(figsize=(8, 2 + 0.28 * len(names)), layout="constrained")
    try:
        axes.barh(rows, per_weight, xerr=errors, color="#4c72b0", label="Tr(H) / n (Hutchinson)")
        axes.plot(fisher, rows, "o", color="#dd8452", label="Fisher diagonal / n")
        axes.set_xscale("log")
        axes.set_yticks(list(rows), names, fontsize=8)
        axes.invert_yaxis()  # model order, top to bottom
        axes.set_xlabel(
            "curvature per weight of the distillation loss to fp32 (higher: more sensitive)"
        )
        axes.set_title(title)
        figure.legend(loc="outside lower center", ncol=2, fontsize=8)  # off the bars
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.png")
        figure.savefig(tmp, dpi=120)
        tmp.replace(path)
    finally:
        plt.close(figure)
