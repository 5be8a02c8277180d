"""The guided part of a new job: predicted damage on the calibration data, the space narrowed
by it (:mod:`bitprism.search.narrow`), then the warm start in the narrowed space.

Run by the driver before the first trial, with a progress bar; the job searches the narrowed
space (stored with it, so a resume searches the same), and the warm start's candidates are
enqueued as the study's first trials after the uniform seeds (``SearchLoop``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import Progress

from bitprism.config import JobSpec
from bitprism.kernels.base import get_backend
from bitprism.search.costs import LayerCosts, Runner, in_process, layer_costs
from bitprism.search.narrow import Dropped, dropped_summary, narrow_space
from bitprism.search.prepare import PreparedJob
from bitprism.search.store import Store
from bitprism.search.warmstart import (
    Predictor,
    Seed,
    pruned_shapes,
    seed_summary,
    warm_start,
)
from bitprism.sensitivity.damage import (
    DAMAGE_VERSION,
    DamageTable,
    Structure,
    measure_damage,
    offered_forms,
)
from bitprism.spaces.space import SearchSpace
from bitprism.workloads.base import Inputs
from bitprism.workloads.fingerprint import data_fingerprint

# Calibration batches the Fisher and the measured damage are taken on (as `bitprism
# sensitivity` does by default): per-sample gradients cost one backward pass per row.
GUIDANCE_BATCHES = 2


@dataclass(frozen=True)
class Guidance:
    """What guidance decided for a new job: the space to search, what was dropped from it and
    why, the warm-start seeds (chosen in that space), and the predictor that scores any
    candidate of it (for pruning the sampler's clearly dominated ones unmeasured)."""

    space: SearchSpace
    dropped: list[Dropped]
    seeds: list[Seed]
    predictor: Predictor
    sensitivity: dict[str, float]  # curvature per weight of each layer (DamageTable.curvature)

    def notes(self) -> tuple[str, ...]:
        return seed_summary(self.seeds), dropped_summary(self.dropped)

    def space_record(self) -> dict[str, Any]:
        """The narrowed space as the job stores it, with each dropped choice and why, and each
        layer's sensitivity (for the dashboard)."""
        return {
            **self.space.to_dict(),
            "dropped": [d.to_dict() for d in self.dropped],
            "sensitivity": self.sensitivity,
        }


def guide(
    spec: JobSpec,
    job: PreparedJob,
    timing_inputs: Sequence[torch.Tensor],
    store: Store | None = None,
    progress: bool = True,
    run: Runner = in_process,
) -> Guidance:
    """The narrowed space and ``spec.warm_start`` integer-program candidates for ``job``.
    Layer forms are timed on ``timing_inputs``; nothing else of the job may run meanwhile.
    Timings and the damage table are cached in ``store``, so a second job on the same model,
    data and space measures neither again. ``run`` runs each timing where the trials are
    timed (:data:`bitprism.search.costs.Runner`)."""
    damage, costs = _damage_and_costs(spec, job, timing_inputs, store, progress, run)
    space, dropped = narrow_space(job.space, damage, costs)
    predictor = Predictor(space, damage, costs, job.groups)
    seeds = warm_start(predictor, spec.warm_start)
    return Guidance(space, dropped, seeds, predictor, dict(damage.curvature))


def resumed_predictor(
    spec: JobSpec,
    job: PreparedJob,
    searched: SearchSpace,
    timing_inputs: Sequence[torch.Tensor],
    store: Store,
    progress: bool = True,
    run: Runner = in_process,
) -> Predictor:
    """The predictor of a guided job that is resumed, over ``searched`` (the space it stored),
    so its proposals are screened as before it stopped. ``job`` is the job as prepared anew
    (its whole space): the damage table and layer timings its guidance measured are read back
    from ``store``'s caches, and measured again only where missing (another machine's timings)."""
    damage, costs = _damage_and_costs(spec, job, timing_inputs, store, progress, run)
    return Predictor(searched, damage, costs, job.groups)


def _damage_and_costs(
    spec: JobSpec,
    job: PreparedJob,
    timing_inputs: Sequence[torch.Tensor],
    store: Store | None,
    progress: bool,
    run: Runner,
) -> tuple[DamageTable, LayerCosts]:
    """``job``'s damage table and layer costs, from ``store``'s caches where they are."""
    model = job.workload.model
    batches = list(job.workload.calibration[:GUIDANCE_BATCHES])
    structure = Structure(job.groups, job.unit_order)
    with Progress(transient=True, disable=not progress) as bar:
        tasks = {
            "fisher": bar.add_task("sensitivity: Fisher per sample", total=None),
            "measure": bar.add_task("sensitivity: pruning and low rank measured", total=None),
            "time": bar.add_task("layer forms timed alone", total=None),
        }

        def report(stage: str, done: int, total: int) -> None:
            bar.update(tasks[stage], completed=done, total=total)

        key = _damage_key(job, batches)
        cached = store.cached_damage(key) if store is not None else None
        if cached is not None:
            damage = DamageTable.from_dict(cached)
        else:
            damage = measure_damage(model, job.space, batches, structure, on_step=report)
            if store is not None:
                store.cache_damage(key, damage.to_dict())
        costs = job_costs(
            spec, job, timing_inputs, store, on_step=lambda k, n: report("time", k, n), run=run
        )
    return damage, costs


def job_costs(
    spec: JobSpec,
    job: PreparedJob,
    timing_inputs: Sequence[torch.Tensor],
    store: Store | None = None,
    on_step: Callable[[int, int], None] | None = None,
    run: Runner = in_process,
) -> LayerCosts:
    """Bytes and measured time of every form and pruned shape ``job``'s space offers, on the
    job's backend, threads and precision (timings cached in ``store``)."""
    space = job.space
    return layer_costs(
        job.workload.model,
        space.layers,
        {layer.name: offered_forms(space, layer.name) for layer in space.layers},
        pruned_shapes(space, job.groups),
        get_backend(spec.backend),
        job.base_onnx,
        timing_inputs,
        spec.latency.threads,
        spec.precision,
        store,
        on_step,
        run,
    )


def _damage_key(job: PreparedJob, batches: Sequence[Inputs]) -> str:
    """What a damage table depends on: the method's version, the model, the calibration
    batches, the space's choices and the ranked prune units."""
    parts = {
        "version": DAMAGE_VERSION,
        "model": job.model_hash,
        "data": data_fingerprint(batches),
        "space": job.space.to_dict(),
        "order": {leader: list(units) for leader, units in sorted(job.unit_order.items())},
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
