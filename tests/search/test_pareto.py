"""Pareto math on hand-made points whose answer is known."""

from __future__ import annotations

import pytest

from bitprism.config import Constraints, Objective
from bitprism.search.pareto import (
    accuracy_floor,
    best_index,
    dominates,
    fast_enough,
    pareto_front,
    satisfies,
)

ALL = (Objective.ACCURACY, Objective.SPEEDUP, Objective.WEIGHT_BYTES)


def _p(acc: float, speedup: float, size: float, lo: float = 0, hi: float = 0) -> dict[str, float]:
    return {
        "accuracy": acc,
        "speedup": speedup,
        "speedup_min": lo or speedup,
        "speedup_max": hi or speedup,
        "weight_bytes": size,
    }


def test_dominance_respects_directions() -> None:
    assert dominates(_p(98, 1, 10), _p(97, 1, 10), ALL)
    assert dominates(_p(98, 1.2, 10), _p(98, 1.1, 10), ALL)  # faster is better
    assert not dominates(_p(98, 1, 10), _p(97, 2, 10), ALL)
    assert not dominates(_p(98, 1, 10), _p(98, 1, 10), ALL)


def test_front_keeps_only_non_dominated() -> None:
    points = [
        _p(98, 1.0, 100),
        _p(97, 2.0, 100),
        _p(96, 1.0, 50),
        _p(95, 0.7, 120),
        _p(98, 1.0, 100),
    ]
    assert pareto_front(points, ALL) == [0, 1, 2, 4]
    assert pareto_front(points, (Objective.ACCURACY,)) == [0, 4]


def test_the_drop_is_relative_to_fp32_by_default_whatever_the_scale() -> None:
    """Finding 3: a metric returned as a fraction must not turn 1 point into 'anything'."""
    limits = Constraints()  # 1% of fp32's score, and not slower
    assert accuracy_floor(0.98, limits) == pytest.approx(0.9702)
    assert accuracy_floor(98.0, limits) == pytest.approx(97.02)
    assert not satisfies(_p(0.15, 1.5, 10), _p(0.98, 1, 100), limits)
    assert satisfies(_p(0.975, 1.5, 10), _p(0.98, 1, 100), limits)
    assert not satisfies(_p(0.97, 1.5, 10), _p(0.98, 1, 100), limits)
    absolute = Constraints(max_drop_pct=None, max_drop_abs=0.05)
    assert satisfies(_p(0.94, 1.5, 10), _p(0.98, 1, 100), absolute)
    both = Constraints(max_drop_pct=1.0, max_drop_abs=0.05)  # the stricter wins
    assert not satisfies(_p(0.96, 1.5, 10), _p(0.98, 1, 100), both)
    # A metric where higher is better but negative (e.g. -loss): 1% of its magnitude.
    assert accuracy_floor(-2.0, limits) == pytest.approx(-2.02)


def test_slower_points_are_refused_unless_asked() -> None:
    """Finding 1: the default point must not be slower than fp32 (beyond its own spread)."""
    reference = _p(98.0, 1.0, 400)
    limits = Constraints()
    assert not satisfies(_p(98.0, 0.75, 100), reference, limits)
    assert satisfies(_p(98.0, 0.75, 100), reference, Constraints(min_speedup=None))
    assert satisfies(_p(98.0, 1.0, 100), reference, limits)
    assert fast_enough(_p(98, 0.99, 1, lo=0.95, hi=1.02), 1.0)  # within its measured spread
    assert not fast_enough(_p(98, 0.99, 1, lo=0.95, hi=0.995), 1.0)  # no pass reached 1
    assert not fast_enough(_p(98, 0.90, 1, lo=0.85, hi=1.05), 1.0)  # spread honoured, not all
    assert not fast_enough({"accuracy": 98.0, "weight_bytes": 1.0}, 1.0)  # never timed


def test_constraints_and_best_choice() -> None:
    reference = _p(98.0, 1.0, 400)
    points = [_p(97.5, 1.1, 100), _p(96.0, 2.0, 50), _p(97.2, 1.0, 80)]
    feasible = [p for p in points if satisfies(p, reference, Constraints())]
    assert feasible == [points[0], points[2]]
    assert best_index(feasible, Objective.WEIGHT_BYTES) == 1
    assert best_index(feasible, Objective.SPEEDUP) == 0
    assert not satisfies(points[0], reference, Constraints(max_weight_bytes=99))
