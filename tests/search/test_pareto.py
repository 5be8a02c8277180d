"""Pareto math on hand-made points whose answer is known."""

from __future__ import annotations

from bitprism.config import Constraints, Objective
from bitprism.search.pareto import best_index, dominates, pareto_front, satisfies

ALL = (Objective.ACCURACY, Objective.LATENCY, Objective.WEIGHT_BYTES)


def _p(acc: float, lat: float, size: float) -> dict[str, float]:
    return {"accuracy": acc, "latency_ms": lat, "weight_bytes": size}


def test_dominance_respects_directions() -> None:
    assert dominates(_p(98, 1, 10), _p(97, 1, 10), ALL)
    assert not dominates(_p(98, 2, 10), _p(97, 1, 10), ALL)
    assert not dominates(_p(98, 1, 10), _p(98, 1, 10), ALL)


def test_front_keeps_only_non_dominated() -> None:
    points = [
        _p(98, 1.0, 100),
        _p(97, 0.5, 100),
        _p(96, 1.0, 50),
        _p(95, 1.5, 120),
        _p(98, 1.0, 100),
    ]
    assert pareto_front(points, ALL) == [0, 1, 2, 4]
    assert pareto_front(points, (Objective.ACCURACY,)) == [0, 4]


def test_constraints_and_best_choice() -> None:
    reference = _p(98.0, 1.0, 400)
    points = [_p(97.5, 0.9, 100), _p(96.0, 0.5, 50), _p(97.0, 1.2, 80)]
    limits = Constraints(max_accuracy_drop=1.0)
    feasible = [p for p in points if satisfies(p, reference, limits)]
    assert feasible == [points[0], points[2]]
    assert best_index(feasible, Objective.WEIGHT_BYTES) == 1
    assert best_index(feasible, Objective.LATENCY) == 0
    assert not satisfies(
        points[0], reference, Constraints(max_accuracy_drop=None, max_latency_ms=0.5)
    )
