"""Re-measure deployed files side by side in their backend: accuracy, size, latency vs fp32."""

from __future__ import annotations

from dataclasses import dataclass

from bitprism.config import LatencySpec, Precision
from bitprism.evaluators.accuracy import score
from bitprism.evaluators.latency import Comparison, compare_latency, timing_inputs
from bitprism.evaluators.worker import load_against_fp32
from bitprism.workloads.base import Workload, as_tuple


@dataclass(frozen=True)
class FileReport:
    """One file as it would be deployed, timed against the fp32 file."""

    file_bytes: int
    timing: Comparison
    accuracy: float | None  # None when not asked to score


def compare_files(
    files: list[bytes],
    workload: Workload,
    latency: LatencySpec,
    backend: str,
    precision: Precision = Precision.FP32,
    with_accuracy: bool = True,
) -> list[FileReport]:
    """Load each file in ``backend``'s stock runtime, time all in interleaved passes, score each.

    ``files[0]`` is the fp32 reference every speed-up is relative to, computed in fp32; the
    others compute in ``precision``.
    """
    modules = load_against_fp32(backend, files, latency.threads, precision)
    inputs = timing_inputs(as_tuple(workload.example_inputs), latency.batch)
    timings = compare_latency(modules, inputs, latency)
    return [
        FileReport(
            file_bytes=len(data),
            timing=timing,
            accuracy=score(workload, module) if with_accuracy else None,
        )
        for data, module, timing in zip(files, modules, timings, strict=True)
    ]
