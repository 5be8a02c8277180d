"""Measured latency of a whole ONNX model in an onnxruntime session."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import onnxruntime as ort
import torch

from bitprism.evaluators.runtime import feeds


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds per batch: the median and the 10th/90th percentiles of timed runs."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: how noisy the measurement was."""
        return (self.p90_ms - self.p10_ms) / self.median_ms if self.median_ms else 0.0


def measure_latency(
    session: ort.InferenceSession, inputs: Sequence[torch.Tensor], warmup: int, repeats: int
) -> LatencyStats:
    """Warm up, then time ``repeats`` single runs end to end and summarise them."""
    if repeats < 3:
        raise ValueError(f"repeats must be >= 3 to report a spread, got {repeats}")
    feed = feeds(session, inputs)
    for _ in range(warmup):
        session.run(None, feed)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        session.run(None, feed)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    deciles = statistics.quantiles(samples, n=10)
    return LatencyStats(
        median_ms=statistics.median(samples), p10_ms=deciles[0], p90_ms=deciles[-1], runs=repeats
    )
