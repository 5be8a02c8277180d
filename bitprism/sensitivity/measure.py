"""Sensitivity of a workload's compressible layers, as the search would see them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bitprism.compression.fold import fold_batchnorm
from bitprism.sensitivity.fisher import fisher_diagonal
from bitprism.sensitivity.hessian import LayerTrace, hessian_traces
from bitprism.sensitivity.loss import distillation_loss
from bitprism.spaces.layer import discover_layers
from bitprism.workloads.base import Workload


def layer_sensitivity(
    workload: Workload,
    *,
    batches: int = 2,
    max_probes: int = 32,
    target_rel_se: float = 0.05,
    on_probe: Callable[[int], None] | None = None,
) -> list[tuple[LayerTrace, float]]:
    """Hessian traces of every compressible layer (BatchNorm folded first, as a job does) for
    the distillation loss to the fp32 outputs on the first ``batches`` calibration batches,
    each with the sum of the layer's Fisher diagonal on the same batches: a second estimate
    of the same trace (the one the search's predicted damage uses).

    Raises:
        ValueError: a model with no compressible layer, or a bad count.
    """
    if batches < 1:
        raise ValueError(f"batches must be at least 1, got {batches}")
    folded, _ = fold_batchnorm(workload.model)
    evaluated = dataclasses.replace(workload, model=folded)
    layers = discover_layers(evaluated.model)
    if not layers:
        raise ValueError(f"workload {workload.name!r}: no nn.Linear, nn.Conv2d or nn.Embedding")
    data = list(evaluated.calibration[:batches])
    traces = hessian_traces(
        evaluated.model,
        [layer.name for layer in layers],
        data,
        distillation_loss(evaluated.model, data),
        max_probes=max_probes,
        min_probes=min(8, max_probes),
        target_rel_se=target_rel_se,
        on_probe=on_probe,
    )
    fisher = fisher_diagonal(evaluated.model, [layer.name for layer in layers], data)
    return [(traces[layer.name], float(fisher[layer.name].sum())) for layer in layers]
