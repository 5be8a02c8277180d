"""Re-measure ONNX files side by side: accuracy, size, and latency against fp32."""

from __future__ import annotations

from dataclasses import dataclass

from bitprism.config import LatencySpec
from bitprism.evaluators.accuracy import score
from bitprism.evaluators.latency import Comparison, compare_latency, timing_inputs
from bitprism.evaluators.runtime import OrtModule, make_session
from bitprism.workloads.base import Workload, as_tuple


@dataclass(frozen=True)
class FileReport:
    """One ONNX file as it would be deployed, timed against the fp32 file."""

    file_bytes: int
    timing: Comparison
    accuracy: float | None  # None when not asked to score


def compare_files(
    files: list[bytes], workload: Workload, latency: LatencySpec, with_accuracy: bool = True
) -> list[FileReport]:
    """Load each file in stock onnxruntime, time all in interleaved passes, score each.

    ``files[0]`` is the fp32 reference every speed-up is relative to.
    """
    sessions = [make_session(data, latency.threads) for data in files]
    inputs = timing_inputs(as_tuple(workload.example_inputs), latency.batch)
    timings = compare_latency(sessions, inputs, latency)
    return [
        FileReport(
            file_bytes=len(data),
            timing=timing,
            accuracy=score(workload, OrtModule(session)) if with_accuracy else None,
        )
        for data, session, timing in zip(files, sessions, timings, strict=True)
    ]
