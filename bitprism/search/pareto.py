"""Non-dominated sets, constraint filters and the choice of one point to export."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bitprism.config import Constraints, Objective

Metrics = Mapping[str, float]


def dominates(a: Metrics, b: Metrics, objectives: Sequence[Objective]) -> bool:
    """True when ``a`` is at least as good as ``b`` on every objective and better on one."""
    better = False
    for objective in objectives:
        x, y = _oriented(a, objective), _oriented(b, objective)
        if x < y:
            return False
        better = better or x > y
    return better


def pareto_front(points: Sequence[Metrics], objectives: Sequence[Objective]) -> list[int]:
    """Indices of the non-dominated points (duplicates of a front point are all kept)."""
    return [
        i
        for i, p in enumerate(points)
        if not any(dominates(q, p, objectives) for j, q in enumerate(points) if j != i)
    ]


def satisfies(metrics: Metrics, reference: Metrics, constraints: Constraints) -> bool:
    """Whether a point meets the user's limits (accuracy drop is against the fp32 reference)."""
    if constraints.max_accuracy_drop is not None and (
        reference["accuracy"] - metrics["accuracy"] > constraints.max_accuracy_drop + 1e-9
    ):
        return False
    if (
        constraints.max_latency_ms is not None
        and metrics["latency_ms"] > constraints.max_latency_ms
    ):
        return False
    return not (
        constraints.max_weight_bytes is not None
        and metrics["weight_bytes"] > constraints.max_weight_bytes
    )


def best_index(points: Sequence[Metrics], by: Objective) -> int:
    """The point best on ``by``; ties go to higher accuracy, then lower latency."""
    if not points:
        raise ValueError("no point to choose from")
    return max(
        range(len(points)),
        key=lambda i: (
            _oriented(points[i], by),
            points[i]["accuracy"],
            -points[i]["latency_ms"],
        ),
    )


def _oriented(metrics: Metrics, objective: Objective) -> float:
    value = metrics[objective.value]
    return value if objective.direction == "maximize" else -value
