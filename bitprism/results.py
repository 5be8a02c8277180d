"""What a finished (or running) job offers: its trials, Pareto front, and verified export."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from bitprism.config import JobSpec, Objective
from bitprism.search.pareto import best_index, pareto_front, satisfies
from bitprism.search.schema import TrialRole, TrialState
from bitprism.search.store import JobRecord, Store, TrialRecord
from bitprism.spaces.candidate import Candidate
from bitprism.workloads.base import Workload

ACCURACY_TOLERANCE = 0.5  # points: exported file vs the trial's stored accuracy


class ExportError(RuntimeError):
    """The chosen point could not be exported as verified; nothing was written."""


@dataclass(frozen=True)
class ParetoPoint:
    """A measured, verified, deployable point: its metrics, choices and ONNX file."""

    number: int | None
    metrics: dict[str, float]
    candidate: Candidate
    onnx_path: str
    onnx_sha256: str

    @property
    def accuracy(self) -> float:
        return self.metrics["accuracy"]

    @property
    def latency_ms(self) -> float:
        return self.metrics["latency_ms"]

    @property
    def weight_bytes(self) -> float:
        return self.metrics["weight_bytes"]

    @property
    def label(self) -> str:
        return "fp32" if self.number is None else f"trial {self.number}"


@dataclass(frozen=True)
class ExportReport:
    """The exported file next to the fp32 reference, both measured at export time."""

    path: Path
    point: ParetoPoint
    accuracy: float | None
    file_bytes: int
    latency_ms: float
    reference_accuracy: float | None
    reference_file_bytes: int
    reference_latency_ms: float


class SearchResult:
    """Read access to one job in a store.

    Example:
        >>> result = bitprism.search("digits-cnn", JobSpec(trials=40))
        >>> best = result.export("out/best.onnx", max_drop=1.0)
    """

    def __init__(self, job_id: str, store: str | Store, workload: Workload | None = None) -> None:
        self.store = store if isinstance(store, Store) else Store(store)
        record = self.store.job(job_id)
        if record is None:
            raise KeyError(f"no job {job_id!r} in {self.store.url}")
        self.job: JobRecord = record
        self.spec = JobSpec.model_validate(record.spec)
        self._workload = workload

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def trials(self) -> list[TrialRecord]:
        return self.store.trials(self.job.id)

    @property
    def reference(self) -> ParetoPoint | None:
        """The fp32 model, measured the same way as every candidate."""
        points = [p for p in self._points() if p.number is None]
        return points[0] if points else None

    @property
    def pareto(self) -> list[ParetoPoint]:
        """Non-dominated verified points over the job's objectives, most accurate first."""
        points = self._points()
        front = [points[i] for i in pareto_front([p.metrics for p in points], self.spec.objectives)]
        return sorted(front, key=lambda p: (-p.accuracy, p.latency_ms, p.weight_bytes))

    def feasible(self, max_drop: float | None = None) -> list[ParetoPoint]:
        """Front points within the job's constraints (``max_drop`` overrides the accuracy one)."""
        reference = self.reference
        if reference is None:
            raise ExportError(f"job {self.job_id!r} has no fp32 reference measurement")
        constraints = self.spec.constraints
        if max_drop is not None:
            constraints = constraints.model_copy(update={"max_accuracy_drop": max_drop})
        return [p for p in self.pareto if satisfies(p.metrics, reference.metrics, constraints)]

    def best(
        self, max_drop: float | None = None, by: Objective = Objective.WEIGHT_BYTES
    ) -> ParetoPoint:
        """The feasible front point best on ``by``."""
        feasible = self.feasible(max_drop)
        if not feasible:
            raise ExportError(f"job {self.job_id!r}: no verified point meets the constraints")
        return feasible[best_index([p.metrics for p in feasible], by)]

    def export(
        self,
        path: str | Path,
        *,
        max_drop: float | None = None,
        by: Objective = Objective.WEIGHT_BYTES,
    ) -> ExportReport:
        """Write the best feasible point's ONNX file to ``path`` after re-verifying it.

        The file written is byte for byte the one the trial was timed with. It is loaded in
        onnxruntime and scored again; if its accuracy strays more than 0.5 point from the stored
        one, :class:`ExportError` is raised and nothing is written.
        """
        from bitprism.evaluators.verify import compare_files

        target = _output_path(path)
        point, reference = self.best(max_drop, by), self.reference
        if reference is None:  # best() already refuses this; kept for the type checker
            raise ExportError(f"job {self.job_id!r} has no fp32 reference measurement")
        data, ref_data = _read_verified(point), _read_verified(reference)
        workload = self._resolve_workload()
        chosen, fp32 = compare_files([data, ref_data], workload, self.spec.latency)
        if (
            chosen.accuracy is not None
            and abs(chosen.accuracy - point.accuracy) > ACCURACY_TOLERANCE
        ):
            raise ExportError(
                f"{point.label}: file scores {chosen.accuracy:.2f}, stored "
                f"{point.accuracy:.2f}; not exported"
            )
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        return ExportReport(
            target,
            point,
            chosen.accuracy,
            chosen.file_bytes,
            chosen.latency_ms,
            fp32.accuracy,
            fp32.file_bytes,
            fp32.latency_ms,
        )

    def _points(self) -> list[ParetoPoint]:
        points, seen = [], set()
        for trial in self.trials:
            if (
                trial.state is not TrialState.COMPLETE
                or not trial.verified
                or trial.artifact is None
            ):
                continue
            if trial.artifact.sha256 in seen:
                continue  # a reused candidate shares its file with an earlier trial
            seen.add(trial.artifact.sha256)
            number = None if trial.role is TrialRole.REFERENCE else trial.number
            points.append(
                ParetoPoint(
                    number,
                    trial.metrics,
                    trial.candidate,
                    trial.artifact.path,
                    trial.artifact.sha256,
                )
            )
        return points

    def _resolve_workload(self) -> Workload:
        if self._workload is None:
            from bitprism.workloads.registry import resolve_workload

            self._workload = resolve_workload(self.job.workload)
        return self._workload


def _read_verified(point: ParetoPoint) -> bytes:
    path = Path(point.onnx_path)
    if not path.is_file():
        raise ExportError(f"{point.label}: its ONNX file {path} is missing")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != point.onnx_sha256:
        raise ExportError(f"{point.label}: {path} changed since it was measured (sha256 differs)")
    return data


def _output_path(path: str | Path) -> Path:
    target = Path(path).expanduser()
    if target.suffix != ".onnx":
        raise ExportError(f"export path {target} must end in .onnx")
    if target.is_dir():
        raise ExportError(f"export path {target} is a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    return target.resolve()
