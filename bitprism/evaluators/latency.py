"""Measured latency of whole deployed models (any backend), always as a ratio to fp32 timed
in the same passes.

A lone latency figure on a shared 2-core machine moves by 10-100% from one moment to the next;
the ratio of two models timed in alternation does not, because drift hits both. So every
timing here is a comparison: the fp32 reference and the candidates are timed in ``passes``
interleaved passes (the order rotates each pass, so no model always runs first), and each
candidate's speed-up is the median over passes of fp32's pass median over its own.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from bitprism.config import LatencySpec
from bitprism.kernels.base import DeviceTime, RuntimeModule


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per batch: the median and the 10th/90th percentiles of timed runs."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int


@dataclass(frozen=True)
class Comparison:
    """One model timed against the fp32 reference in the same passes.

    ``speedup`` > 1 means faster than fp32; ``speedup_min``/``speedup_max`` are the extremes of
    the per-pass ratios, i.e. how far the measurement itself moved.
    """

    latency: LatencyStats
    reference_ms: float
    speedup: float
    speedup_min: float
    speedup_max: float
    timed_on: str = ""  # the host (and Ray node) and CPU that timed it: ratios are per node

    def metrics(self) -> dict[str, float]:
        """The stored metric names of this measurement."""
        return {
            "latency_ms": self.latency.median_ms,
            "latency_p10_ms": self.latency.p10_ms,
            "latency_p90_ms": self.latency.p90_ms,
            "reference_latency_ms": self.reference_ms,
            "speedup": self.speedup,
            "speedup_min": self.speedup_min,
            "speedup_max": self.speedup_max,
        }


def timing_inputs(example: Sequence[torch.Tensor], batch: int | None) -> tuple[torch.Tensor, ...]:
    """The example inputs resized to ``batch`` rows (repeated as needed); None keeps them."""
    if batch is None:
        return tuple(example)
    out = []
    for tensor in example:
        copies = math.ceil(batch / tensor.shape[0])
        out.append(torch.cat([tensor] * copies)[:batch].contiguous())
    return tuple(out)


def compare_latency(
    modules: Sequence[RuntimeModule],
    inputs: Sequence[torch.Tensor],
    spec: LatencySpec,
) -> list[Comparison]:
    """Time loaded ``modules`` (the first is the fp32 reference) in interleaved passes.

    Returns one :class:`Comparison` per module, the reference's own first (speed-up 1).
    """
    return compare_calls([m.bind(inputs) for m in modules], spec)


def compare_calls(calls: Sequence[Callable[[], object]], spec: LatencySpec) -> list[Comparison]:
    """Time bound ``calls`` (the first is the reference) in interleaved passes; each may run
    its own model on its own inputs (e.g. one layer at several shapes)."""
    if not calls:
        raise ValueError("a latency comparison needs at least the reference")
    runs = [_Runner(call) for call in calls]
    for runner in runs:
        runner.time(spec.warmup, spec.budget_s, at_least=min(1, spec.warmup))
    pass_medians: list[list[float]] = [[] for _ in runs]
    samples: list[list[float]] = [[] for _ in runs]
    for p in range(spec.passes):
        order = [(p + k) % len(runs) for k in range(len(runs))]
        for i in order:
            timed = runs[i].time(spec.repeats, spec.budget_s, at_least=3)
            samples[i] += timed
            pass_medians[i].append(statistics.median(timed))
    reference = pass_medians[0]
    return [_comparison(samples[i], pass_medians[i], reference) for i in range(len(runs))]


class _Runner:
    """One bound model, so each timed call is the runtime's inference and nothing else (timed by
    the wall clock, or by the device when the call returns a :class:`DeviceTime`)."""

    def __init__(self, call: Callable[[], object]) -> None:
        self.call = call

    def time(self, times: int, budget_s: float, at_least: int) -> list[float]:
        """Milliseconds of up to ``times`` runs; stops early once ``budget_s`` is spent and
        ``at_least`` runs are done."""
        samples: list[float] = []
        spent = 0.0
        while len(samples) < times and (len(samples) < at_least or spent < budget_s * 1e3):
            start = time.perf_counter_ns()
            result = self.call()
            wall = (time.perf_counter_ns() - start) / 1e6
            samples.append(result.milliseconds if isinstance(result, DeviceTime) else wall)
            spent += wall
        return samples


def _comparison(samples: list[float], medians: list[float], reference: list[float]) -> Comparison:
    ratios = [r / m for r, m in zip(reference, medians, strict=True)]
    deciles = statistics.quantiles(samples, n=10)  # repeats >= 3, so always enough samples
    return Comparison(
        latency=LatencyStats(
            median_ms=statistics.median(samples),
            p10_ms=deciles[0],
            p90_ms=deciles[-1],
            runs=len(samples),
        ),
        reference_ms=statistics.median(reference),
        speedup=statistics.median(ratios),
        speedup_min=min(ratios),
        speedup_max=max(ratios),
    )
