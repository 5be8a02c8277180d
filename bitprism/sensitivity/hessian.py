"""Per-layer Hessian trace by Hutchinson's estimator (HAWQ-V2's sensitivity).

Tr(H_l) = E[v_l^T H_l v_l] for Rademacher v. One probe draws v for every layer at once and one
Hessian-vector product (a double backward) returns H v for all of them: the block-diagonal
entries v_l^T (H v)_l are each layer's sample, and the cross-layer blocks of H average out.
Probes continue until every layer's estimate has a relative standard error below the target,
or the probe budget is spent (the error reached is reported with each trace).

Hand-written: the estimator is a few lines over ``torch.autograd.grad``, and what is needed
here (per-layer traces with a per-layer stopping rule, any loss) is a thin layer over it that a
dependency such as PyHessian would not save.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from bitprism.sensitivity.grad import weight_gradients
from bitprism.sensitivity.loss import Loss
from bitprism.workloads.base import Inputs


@dataclass(frozen=True)
class LayerTrace:
    """A layer's Hessian trace estimate over its weight and its relative standard error."""

    name: str
    params: int
    trace: float
    rel_se: float
    probes: int

    @property
    def mean(self) -> float:
        """Tr(H) / n: the average curvature per weight, HAWQ-V2's ranking quantity."""
        return self.trace / self.params


def hessian_traces(
    model: nn.Module,
    layers: Sequence[str],
    batches: Sequence[Inputs],
    loss: Loss,
    *,
    max_probes: int = 64,
    min_probes: int = 8,
    target_rel_se: float = 0.05,
    seed: int = 0,
    on_probe: Callable[[int], None] | None = None,
) -> dict[str, LayerTrace]:
    """Hutchinson estimates of Tr(H) of ``loss`` (summed over ``batches``) per layer weight.

    ``model`` is used in eval mode and left unchanged (its weights' ``requires_grad`` flags are
    restored). ``on_probe(k)`` is called after each probe, for progress bars.
    """
    if not layers:
        raise ValueError("hessian_traces needs at least one layer")
    if min_probes < 2 or max_probes < min_probes:
        raise ValueError("need 2 <= min_probes <= max_probes (a standard error needs two)")
    generator = torch.Generator().manual_seed(seed)
    samples: list[list[float]] = [[] for _ in layers]
    # Fused attention kernels (flash, memory-efficient) have no double backward; the math
    # kernel is plain differentiable ops computing the same function.
    with weight_gradients(model, layers) as weights, sdpa_kernel([SDPBackend.MATH]):
        for probe in range(max_probes):
            probes = [_rademacher(w, generator) for w in weights]
            products = [torch.zeros_like(w) for w in weights]
            for batch in batches:
                parts = _hvp(loss(model, batch), weights, probes)
                for total, part in zip(products, parts, strict=True):
                    total += part
            for found, v, hv in zip(samples, probes, products, strict=True):
                found.append(float((v * hv).sum()))
            if on_probe is not None:
                on_probe(probe + 1)
            if probe + 1 >= min_probes and all(_rel_se(s) < target_rel_se for s in samples):
                break
    return {
        name: LayerTrace(name, w.numel(), statistics.fmean(s), _rel_se(s), len(s))
        for name, w, s in zip(layers, weights, samples, strict=True)
    }


def _hvp(
    loss: torch.Tensor, weights: Sequence[torch.Tensor], vectors: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, ...]:
    """H v for every weight at once: one gradient with graph, then one double backward."""
    grads = torch.autograd.grad(
        loss, weights, create_graph=True, allow_unused=True, materialize_grads=True
    )
    dot = sum((g * v).sum() for g, v in zip(grads, vectors, strict=True))
    if not isinstance(dot, torch.Tensor) or not dot.requires_grad:  # loss linear in the weights
        return tuple(torch.zeros_like(w) for w in weights)
    return torch.autograd.grad(dot, weights, allow_unused=True, materialize_grads=True)


def _rademacher(like: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    signs = torch.randint(0, 2, like.shape, generator=generator, dtype=torch.float32)
    return (signs * 2 - 1).to(like.dtype)


def _rel_se(values: Sequence[float]) -> float:
    """Standard error of the mean relative to the mean (inf when the mean is 0)."""
    if len(values) < 2:
        return math.inf
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values))
    return se / abs(mean) if mean else (0.0 if se == 0 else math.inf)
