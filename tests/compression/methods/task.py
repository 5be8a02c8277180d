"""The task loss the method tests compare at equal bytes: KL divergence of the compressed
digits CNN's predictions from the fp32 model's, on the 360 held-out digits (not the
calibration images the data-aware methods saw)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from bitprism.compression.apply import compress_model
from bitprism.config import Methods
from bitprism.sensitivity.stats import candidate_stats
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import LayerInfo, discover_layers
from bitprism.workloads.base import Workload
from bitprism.workloads.digits import digits_split


def held_out_kl(
    workload: Workload,
    choose: Callable[[LayerInfo], Mapping[str, Any]],
    methods: Methods,
) -> tuple[float, tuple[tuple[tuple[int, ...], int], ...]]:
    """The KL to fp32 on held-out digits of ``workload``'s model with ``choose(layer)`` applied
        to every layer by ``methods``, and what sets its bytes: (shape, bits) per factor (pruners
    zero exactly round(sparsity x numel) weights whichever they are: their own tests check it)."""
    model = workload.model
    layers = tuple(discover_layers(model))
    candidate = Candidate.from_dict({layer.name: dict(choose(layer)) for layer in layers})
    stats = candidate_stats(model, layers, candidate, methods, workload.calibration)
    compressed, parts = compress_model(
        model, layers, candidate, None, workload.calibration, methods, stats
    )
    _, _, x_test, _ = digits_split()
    with torch.no_grad():
        reference = model(x_test).log_softmax(-1)
        output = compressed(x_test).log_softmax(-1)
    kl = nn.functional.kl_div(output, reference, log_target=True, reduction="batchmean")
    layout = tuple(
        (tuple(factor.weight.shape), factor.quantized.bits if factor.quantized else 32)
        for part in parts.values()
        for factor in part.factors
    )
    return float(kl), layout
