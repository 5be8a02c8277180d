"""Non-dominated sets, constraint filters and the choice of one point to export."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bitprism.config import Constraints, Objective

Metrics = Mapping[str, float]

# How far below ``min_speedup`` a point's median may sit when one of its own timing passes
# reached it: the measured spread is honoured, but only this much of it.
SPEEDUP_SLACK = 0.03


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


def accuracy_floor(reference_accuracy: float, constraints: Constraints) -> float | None:
    """The lowest accuracy the constraints accept, given fp32's score (None = any).

    ``max_drop_pct`` is a percentage of fp32's score (its magnitude, so negative metrics such
    as ``-loss`` work too); ``max_drop_abs`` is in the metric's units; the stricter one wins.
    """
    floors = []
    if constraints.max_drop_pct is not None:
        floors.append(reference_accuracy - abs(reference_accuracy) * constraints.max_drop_pct / 100)
    if constraints.max_drop_abs is not None:
        floors.append(reference_accuracy - constraints.max_drop_abs)
    return max(floors) if floors else None


def fast_enough(metrics: Metrics, min_speedup: float) -> bool:
    """Whether a point's speed-up over fp32 reaches ``min_speedup`` within its measured spread."""
    speedup = metrics.get("speedup")
    if speedup is None:
        return False
    if speedup >= min_speedup:
        return True
    reached = metrics.get("speedup_max", speedup) >= min_speedup
    return reached and speedup >= min_speedup * (1 - SPEEDUP_SLACK)


def satisfies(metrics: Metrics, reference: Metrics, constraints: Constraints) -> bool:
    """Whether a point meets the user's limits (accuracy and speed are against fp32)."""
    floor = accuracy_floor(reference["accuracy"], constraints)
    if floor is not None and metrics["accuracy"] < floor - 1e-12 * max(1.0, abs(floor)):
        return False
    if constraints.min_speedup is not None and not fast_enough(metrics, constraints.min_speedup):
        return False
    return not (
        constraints.max_weight_bytes is not None
        and metrics["weight_bytes"] > constraints.max_weight_bytes
    )


def best_index(points: Sequence[Metrics], by: Objective) -> int:
    """The point best on ``by``; ties go to higher accuracy, then higher speed-up."""
    if not points:
        raise ValueError("no point to choose from")
    return ranked(points, by)[0]


def ranked(points: Sequence[Metrics], by: Objective) -> list[int]:
    """Indices of ``points``, best on ``by`` first (ties: higher accuracy, then speed-up)."""
    return sorted(
        range(len(points)),
        key=lambda i: (
            _oriented(points[i], by),
            points[i]["accuracy"],
            points[i].get("speedup", 0.0),
        ),
        reverse=True,
    )


def _oriented(metrics: Metrics, objective: Objective) -> float:
    value = metrics[objective.value]
    return value if objective.direction == "maximize" else -value
