"""Re-measure deployed files side by side in their backend: accuracy, size, latency vs fp32."""

from __future__ import annotations

from dataclasses import dataclass

from bitprism.config import LatencySpec
from bitprism.evaluators.accuracy import score
from bitprism.evaluators.latency import Comparison, compare_latency, timing_inputs
from bitprism.kernels.base import get_backend
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
    with_accuracy: bool = True,
) -> list[FileReport]:
    """Load each file in ``backend``'s stock runtime, time all in interleaved passes, score each.

    ``files[0]`` is the fp32 reference every speed-up is relative to.
    """
    runtime = get_backend(backend)
    modules = [runtime.load(data, latency.threads) for data in files]
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
