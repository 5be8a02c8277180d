"""Narrowing a guided job's space: tiny layers stay fp32, far-dominated values go, and a
resumed job searches the space it stored."""

from __future__ import annotations

import math
from pathlib import Path

from bitprism.evaluators.latency import timing_inputs
from bitprism.search.costs import LayerCosts
from bitprism.search.guidance import job_costs
from bitprism.search.narrow import FAR, narrow_space
from bitprism.search.prepare import prepare_job
from bitprism.search.store import Store
from bitprism.sensitivity.damage import DamageTable, Structure, measure_damage
from bitprism.spaces.candidate import LayerChoice
from bitprism.spaces.space import SearchSpace
from bitprism.workloads.base import as_tuple
from tests.fixtures import job_spec


def test_narrowing_the_measured_digits_space(digits, store_url: str, tmp_path: Path) -> None:
    spec = job_spec(store_url, tmp_path)
    job = prepare_job(spec, digits)
    batches = list(job.workload.calibration[:2])
    table = measure_damage(
        job.workload.model, job.space, batches, Structure(job.groups, job.unit_order)
    )
    inputs = timing_inputs(as_tuple(job.workload.example_inputs), 32)
    costs = job_costs(spec, job, inputs, Store(store_url))
    space, dropped = narrow_space(job.space, table, costs)
    # Only the 1,280-weight classifier can be tiny (0.4% of the bytes; its share of the time,
    # near 1%, decides); the large layers keep int4 and int7: they save bytes, which only
    # trials can price.
    assert {d.layer for d in dropped if "tiny layer" in d.why} <= {"head.5"}
    assert {4, 7} <= set(space.values("head.1", "weight_bits"))
    for d in dropped:
        assert d.value not in space.values(d.layer, d.knob)
    # The narrowed space is a restriction the stored record reproduces on resume.
    assert job.space.restricted_to(space.to_dict()) == space
    if dropped:
        assert space.restricted_to(job.space.to_dict()) is None  # never widened on resume


def _forms(space: SearchSpace) -> dict[str, list[LayerChoice]]:
    return {
        layer.name: [
            LayerChoice(weight_bits=int(b), rank_fraction=float(r))
            for b in space.values(layer.name, "weight_bits")
            for r in space.values(layer.name, "rank_fraction")
        ]
        for layer in space.layers
    }


def _costs(space: SearchSpace, ms: dict[str, float], size) -> LayerCosts:  # type: ignore[no-untyped-def]
    full = {x.name: (x.out_features, x.weight_shape[1]) for x in space.layers}
    timed = {n: {f: ms.get(n, 1.0) for f in fs} for n, fs in _forms(space).items()}
    return LayerCosts(full, timed, {n: {full[n]: 1.0} for n in full}, size, 0)


def test_a_layer_tiny_in_bytes_and_time_stays_fp32(digits, store_url: str, tmp_path: Path) -> None:
    """Synthetic costs on the real space: the classifier at 0.4% of the bytes and 0.5% of the
    time goes fp32; the first conv (0.1% of the bytes but 30% of the time) is searched."""
    job = prepare_job(job_spec(store_url, tmp_path), digits)
    table = DamageTable({n: dict.fromkeys(fs, 1.0) for n, fs in _forms(job.space).items()}, {})

    def size(layer, form, shape) -> int:  # type: ignore[no-untyped-def]
        return layer.weight_shape[0] * math.prod(layer.weight_shape[1:]) * 4

    ms = {"features.0": 30.0, "features.2": 60.0, "head.1": 8.0, "head.3": 1.5, "head.5": 0.5}
    space, dropped = narrow_space(job.space, table, _costs(job.space, ms, size))
    assert {d.layer for d in dropped} == {"head.5"}
    assert all(d.why.startswith("a tiny layer (0.4% of the weight bytes, 0.5% ") for d in dropped)
    assert space.values("head.5", "weight_bits") == (16,)
    assert space.values("head.5", "rank_fraction") == (1.0,)
    assert space.values("features.0", "weight_bits") == job.space.values(
        "features.0", "weight_bits"
    )


def test_a_value_all_of_whose_forms_are_far_dominated_is_dropped(
    digits, store_url: str, tmp_path: Path
) -> None:
    """Synthetic costs on the real space: head.1's rank 1/4 made no cheaper than rank 1/2 and
    FAR+ times as damaging, so rank 1/4 goes there and nowhere else."""
    job = prepare_job(job_spec(store_url, tmp_path), digits)

    def damage(name: str, form: LayerChoice) -> float:
        if form.is_identity:
            return 0.0
        scale = 2 * FAR if (name, form.rank_fraction) == ("head.1", 0.25) else 1.0
        return scale * (1.0 + (16 - form.weight_bits)) * (2.0 - form.rank_fraction)

    def size(layer, form, shape) -> int:  # type: ignore[no-untyped-def]
        rank = max(form.rank_fraction, 0.5) if layer.name == "head.1" else form.rank_fraction
        return int(1000 * rank * form.weight_bits)

    forms = _forms(job.space)
    table = DamageTable({n: {f: damage(n, f) for f in fs} for n, fs in forms.items()}, {})
    costs = _costs(job.space, {}, size)
    space, dropped = narrow_space(job.space, table, costs)
    assert [(d.layer, d.knob, d.value) for d in dropped] == [("head.1", "rank_fraction", 0.25)]
    assert "more damaging than one no larger and no slower" in dropped[0].why
    assert space.values("head.1", "rank_fraction") == (1.0, 0.5)
    assert space.values("head.3", "rank_fraction") == job.space.values("head.3", "rank_fraction")
