"""Re-measure exported ONNX files side by side: accuracy, size, and interleaved latency."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from bitprism.config import LatencySpec
from bitprism.evaluators.accuracy import score
from bitprism.evaluators.latency import measure_latency
from bitprism.evaluators.runtime import OrtModule, make_session
from bitprism.workloads.base import Workload, as_tuple

_PASSES = 5


@dataclass(frozen=True)
class FileReport:
    """One ONNX file as it would be deployed."""

    file_bytes: int
    latency_ms: float
    accuracy: float | None  # None when the workload is not available to score it


def compare_files(
    files: list[bytes], workload: Workload, latency: LatencySpec, with_accuracy: bool = True
) -> list[FileReport]:
    """Load each file in stock onnxruntime, score it, and time all of them in alternating passes.

    Interleaving the passes spreads machine noise evenly over the files compared.
    """
    sessions = [make_session(data, latency.threads) for data in files]
    inputs = as_tuple(workload.example_inputs)
    medians: list[list[float]] = [[] for _ in files]
    for _ in range(_PASSES):
        for i, session in enumerate(sessions):
            stats = measure_latency(session, inputs, latency.warmup, latency.repeats)
            medians[i].append(stats.median_ms)
    return [
        FileReport(
            file_bytes=len(data),
            latency_ms=statistics.median(medians[i]),
            accuracy=score(workload, OrtModule(session)) if with_accuracy else None,
        )
        for i, (data, session) in enumerate(zip(files, sessions, strict=True))
    ]
