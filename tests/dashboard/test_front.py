"""The dashboard's plot data: the two-objective front against a brute-force scan."""

from __future__ import annotations

import random

import pytest

from bitprism.dashboard.front import (
    forms_summary,
    front_2d,
    front_nd,
    hypervolume_curve,
    measured,
    pareto_figure,
    pareto_figure_3d,
    within_drop,
)
from bitprism.dashboard.queries import TrialPoint


def _brute_force(xs, ys, maximise):  # type: ignore[no-untyped-def]
    sx, sy = (1 if maximise[0] else -1), (1 if maximise[1] else -1)
    points = {(x, y) for x, y in zip(xs, ys, strict=True)}
    return {
        (x, y)
        for x, y in points
        if not any(sx * a >= sx * x and sy * b >= sy * y and (a, b) != (x, y) for a, b in points)
    }


@pytest.mark.parametrize("maximise", [(True, True), (True, False), (False, False)])
def test_front_matches_the_pairwise_scan(maximise: tuple[bool, bool]) -> None:
    rng = random.Random(0)
    for n in (0, 1, 2, 50, 400):
        xs = [rng.randint(0, 30) / 3 for _ in range(n)]  # ties on purpose
        ys = [rng.randint(0, 30) / 3 for _ in range(n)]
        front = front_2d(xs, ys, maximise)
        assert {(xs[i], ys[i]) for i in front} == _brute_force(xs, ys, maximise)
        assert len(front) == len({(xs[i], ys[i]) for i in front})  # equal points kept once


def _point(number: int | None, accuracy: float, speedup: float, **extra: object) -> TrialPoint:
    metrics = {"accuracy": accuracy, "speedup": speedup, "weight_bytes": 1000.0}
    state = str(extra.get("state", "complete"))
    return TrialPoint(number, state, True, metrics, str(extra.get("origin", "sampler")))


def test_filters_and_figure() -> None:
    fp32 = _point(None, 90.0, 1.0, origin="reference")
    points = [fp32, _point(0, 89.5, 2.0, origin="uniform"), _point(1, 80.0, 4.0)]
    points += [_point(2, 89.0, 1.5), _point(4, 85.0, 1.2, origin="warm_start")]
    points.append(TrialPoint(3, "failed", False, {"accuracy": 95.0, "weight_bytes": 9.0}))
    kept = measured(points, ("accuracy", "speedup"))
    assert [p.number for p in kept] == [None, 0, 1, 2, 4]
    near = within_drop(kept, fp32, 1.0)  # 89.1 and up
    assert [p.number for p in near] == [None, 0]
    figure = pareto_figure(kept, "speedup", "accuracy", fp32)
    names = [trace.name for trace in figure.data]
    assert names == ["uniform seeds", "warm-start seeds", "sampler", "Pareto front", "fp32"]
    assert [list(t.customdata) for t in figure.data[:3]] == [[0], [4], [1, 2]]
    front = figure.data[3]
    assert list(front.customdata) == [0, 1]  # trial 2 is beaten by trial 0; ordered by speed-up
    assert "2.00x fp32 speed" in front.text[0] and "(uniform seed)" in front.text[0]
    forms = {"layers": 5, "int4": 1, "int8": 3, "rank cut": 1, "sparse": 0}
    assert forms_summary(forms) == "int8 on 3, int4 on 1, rank cut on 1 of 5 layers"
    assert forms_summary({"layers": 5}) == "nothing compressed of 5 layers"
    # By state, a failed trial that kept its accuracy and size shows, but on no front.
    sized = measured(points, ("accuracy", "weight_bytes"), failed=True)
    assert [p.number for p in sized] == [None, 0, 1, 2, 4, 3]
    figure = pareto_figure(sized, "weight_bytes", "accuracy", fp32, "trial state")
    assert [t.name for t in figure.data] == [
        "verified",
        "failed (numbers kept)",
        "Pareto front",
        "fp32",
    ]
    assert list(figure.data[1].customdata) == [3]
    assert 3 not in list(figure.data[2].customdata)  # 95.0 at 9 bytes would beat them all


@pytest.mark.parametrize("maximise", [(True, True, False), (False, True, True)])
def test_three_objective_front_matches_the_pairwise_scan(maximise: tuple[bool, ...]) -> None:
    rng = random.Random(1)
    values = [[rng.randint(0, 6) for _ in range(3)] for _ in range(300)]  # ties on purpose
    signs = [1 if m else -1 for m in maximise]

    def beats(a: list[int], b: list[int]) -> bool:
        better = [s * x for s, x in zip(signs, a, strict=True)]
        worse = [s * x for s, x in zip(signs, b, strict=True)]
        return all(p >= q for p, q in zip(better, worse, strict=True)) and better != worse

    expected = [i for i, v in enumerate(values) if not any(beats(w, v) for w in values)]
    assert front_nd(values, maximise) == expected
    assert front_nd([], maximise) == []
    fp32 = _point(None, 90.0, 1.0, origin="reference")
    figure = pareto_figure_3d([fp32, _point(0, 89.0, 2.0), _point(1, 88.0, 1.5)], fp32)
    assert [t.name for t in figure.data] == ["sampler", "Pareto front", "fp32"]
    assert list(figure.data[1].customdata) == [0]


def test_hypervolume_curve_grows_with_better_points_only() -> None:
    fp32 = TrialPoint(None, "complete", True, {"accuracy": 100.0, "weight_bytes": 100.0})

    def trial(number: int, accuracy: float, speedup: float, size: float) -> TrialPoint:
        metrics = {"accuracy": accuracy, "speedup": speedup, "weight_bytes": size}
        return TrialPoint(number, "complete", True, metrics)

    points = [
        fp32,
        trial(0, 95.0, 1.0, 50.0),  # box 0.05 x 0.5 x 0.5 above the reference (-0.9, -0.5, 1)
        TrialPoint(1, "pruned", None, {}),  # not a step
        trial(2, 94.0, 0.9, 60.0),  # dominated by trial 0: adds nothing
        trial(3, 50.0, 9.0, 1.0),  # below 90% accuracy: outside the reference box
    ]
    xs, ys = hypervolume_curve(points, fp32, steps=10)
    assert xs == [1, 2, 3]
    assert ys == pytest.approx([0.05 * 0.5 * 0.5] * 3)
