"""What a finished (or running) job offers: its trials, Pareto front, and verified export."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from bitprism.config import Constraints, JobSpec, Objective, SpecError
from bitprism.paths import PathError, writable_file
from bitprism.search.pareto import (
    accuracy_floor,
    fast_enough,
    pareto_front,
    ranked,
    satisfies,
)
from bitprism.search.schema import TrialRole, TrialState
from bitprism.search.store import JobRecord, Store, TrialRecord
from bitprism.spaces.candidate import Candidate
from bitprism.workloads.base import Workload

if TYPE_CHECKING:
    from bitprism.evaluators.verify import FileReport

# The exported file is re-scored; it may differ from the stored score by this fraction of fp32's.
RESCORE_TOLERANCE = 0.005
EXPORT_ATTEMPTS = 3  # feasible points re-timed at most before an export gives up


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
    def speedup(self) -> float:
        return self.metrics.get("speedup", float("nan"))

    @property
    def latency_ms(self) -> float:
        return self.metrics.get("latency_ms", float("nan"))

    @property
    def weight_bytes(self) -> float:
        return self.metrics["weight_bytes"]

    @property
    def is_reference(self) -> bool:
        return self.number is None

    @property
    def label(self) -> str:
        return "fp32" if self.number is None else f"trial {self.number}"


@dataclass(frozen=True)
class ExportReport:
    """The exported file next to the fp32 file, both re-measured at export time."""

    path: Path
    point: ParetoPoint
    chosen: FileReport
    reference: FileReport
    passed_over: tuple[str, ...] = ()  # better points whose re-timing missed min_speedup

    @property
    def size_ratio(self) -> float:
        """fp32 file bytes over the exported file's (> 1 = smaller)."""
        return self.reference.file_bytes / self.chosen.file_bytes

    @property
    def speedup(self) -> float:
        """The exported file's speed-up over fp32, timed in the same passes (> 1 = faster)."""
        return self.chosen.timing.speedup

    def summary(self) -> str:
        """E.g. ``3.41x smaller, 1.12x faster than fp32`` (or ``slower``), or that it is fp32."""
        if self.point.is_reference:
            return "exported the fp32 model itself: no compressed point met the limits"
        pace = "faster" if self.speedup >= 1 else "slower"
        speed = self.speedup if self.speedup >= 1 else 1 / self.speedup
        return f"{self.size_ratio:.2f}x smaller, {speed:.2f}x {pace} than fp32"


class SearchResult:
    """Read access to one job in a store; opening it never creates a store.

    Example:
        >>> result = bitprism.search("digits-cnn", JobSpec(trials=40))
        >>> best = result.export("out/best.onnx")  # smallest within 1% of fp32, not slower
    """

    def __init__(self, job_id: str, store: str | Store, workload: Workload | None = None) -> None:
        self.store = store if isinstance(store, Store) else Store(store, create=False)
        record = self.store.job(job_id)
        if record is None:
            raise KeyError(f"no job {job_id!r} in {self.store.url}")
        self.job: JobRecord = record
        try:
            self.spec = JobSpec.model_validate(record.spec)
        except ValidationError as exc:
            raise SpecError(
                f"job {job_id!r} in {self.store.url} was written by another bitprism version and "
                f"its spec no longer reads ({exc.error_count()} problem(s), first: "
                f"{'.'.join(map(str, exc.errors()[0]['loc']))}: {exc.errors()[0]['msg']})"
            ) from None
        self._workload = workload

    @property
    def job_id(self) -> str:
        return self.job.id

    @property
    def trials(self) -> list[TrialRecord]:
        return self.store.trials(self.job.id)

    @property
    def suffix(self) -> str:
        """The suffix of the job's files: ``.onnx``, or ``.pt2`` for ``torch-cuda``."""
        from bitprism.kernels.base import get_backend

        return get_backend(self.spec.backend).suffix

    @property
    def reference(self) -> ParetoPoint | None:
        """The fp32 model, measured the same way as every candidate."""
        points = [p for p in self._points() if p.is_reference]
        return points[0] if points else None

    @property
    def pareto(self) -> list[ParetoPoint]:
        """Non-dominated verified points over the job's objectives, most accurate first."""
        points = self._points()
        front = [points[i] for i in pareto_front([p.metrics for p in points], self.spec.objectives)]
        return sorted(front, key=lambda p: (-p.accuracy, -p.speedup, p.weight_bytes))

    def constraints(self, **limits: float | None) -> Constraints:
        """The job's constraints with the given fields (e.g. ``max_drop_pct=2``) replaced."""
        given = {k: v for k, v in limits.items() if v is not None}
        return self.spec.constraints.model_copy(update=given)

    def feasible(self, constraints: Constraints | None = None) -> list[ParetoPoint]:
        """Compressed front points within ``constraints`` (default: the job's)."""
        reference = self._require_reference()
        limits = constraints or self.spec.constraints
        return [
            p
            for p in self.pareto
            if not p.is_reference and satisfies(p.metrics, reference.metrics, limits)
        ]

    def best(
        self,
        constraints: Constraints | None = None,
        by: Objective = Objective.WEIGHT_BYTES,
        fp32_if_none: bool = False,
    ) -> ParetoPoint:
        """The feasible compressed point best on ``by``; fp32 itself only if asked and none is.

        Raises:
            ExportError: saying plainly which limit no point met.
        """
        return self._ranked(constraints, by, fp32_if_none)[0]

    def _verified_trial(self, number: int) -> ParetoPoint:
        """The verified point of trial ``number``, or an ExportError saying why there is none."""
        record = next((t for t in self.trials if t.number == number), None)
        sha = None if record is None or record.artifact is None else record.artifact.sha256
        found = [p for p in self._points() if sha is not None and p.onnx_sha256 == sha]
        if record is None or not record.verified or not found:
            raise ExportError(
                f"job {self.job_id!r} has no verified trial {number} (a failed, pruned or "
                "unverified trial has no file to export)"
            )
        return found[0]  # a reused candidate's trial shares the earlier trial's file

    def _ranked(
        self, constraints: Constraints | None, by: Objective, fp32_if_none: bool
    ) -> list[ParetoPoint]:
        feasible = self.feasible(constraints)
        if feasible:
            return [feasible[i] for i in ranked([p.metrics for p in feasible], by)]
        if fp32_if_none:
            return [self._require_reference()]
        raise ExportError(self._none_message(constraints or self.spec.constraints))

    def export(
        self,
        path: str | Path,
        *,
        constraints: Constraints | None = None,
        by: Objective = Objective.WEIGHT_BYTES,
        fp32_if_none: bool = False,
        trial: int | None = None,
    ) -> ExportReport:
        """Write the best feasible point's file (ONNX, or ``.pt2`` for ``torch-cuda``; ``path``
        must end in :attr:`suffix`) to ``path`` after re-verifying it; with
        ``trial``, that trial's file whatever the limits (it must be a verified trial).

        The file written is byte for byte the one that was timed. It is loaded in the job's backend,
        scored again and re-timed against the fp32 file in interleaved passes; if its score
        strays from the stored one, :class:`ExportError` is raised and nothing is written. A
        point whose re-timing misses ``min_speedup`` (a search timing that a busy moment
        flattered) is passed over for the next best feasible one, up to
        :data:`EXPORT_ATTEMPTS` points; the report names those passed over.
        """
        from bitprism.evaluators.verify import compare_files

        try:
            target = writable_file(path, "export path", self.suffix)
        except PathError as exc:
            raise ExportError(str(exc)) from None
        limits = constraints or self.spec.constraints
        reference = self._require_reference()
        points = (
            self._ranked(constraints, by, fp32_if_none)
            if trial is None
            else [self._verified_trial(trial)]
        )
        ref_data, workload = self.onnx_file(reference), self.workload()
        passed_over: list[str] = []
        for point in points[:EXPORT_ATTEMPTS]:
            data = self.onnx_file(point)
            fp32, chosen = compare_files(
                [ref_data, data],
                workload,
                self.spec.latency,
                self.spec.backend,
                self.spec.precision,
            )
            tolerance = RESCORE_TOLERANCE * max(abs(reference.accuracy), 1e-9)
            if chosen.accuracy is not None and abs(chosen.accuracy - point.accuracy) > tolerance:
                raise ExportError(
                    f"{point.label}: file scores {chosen.accuracy:.6g}, stored "
                    f"{point.accuracy:.6g}; not exported"
                )
            minimum, timing = limits.min_speedup, chosen.timing
            slow = minimum is not None and not fast_enough(timing.metrics(), minimum)
            if slow and not point.is_reference and trial is None:
                passed_over.append(
                    f"{point.label} re-timed at {timing.speedup:.2f}x fp32 (passes "
                    f"{timing.speedup_min:.2f}-{timing.speedup_max:.2f}), the search "
                    f"measured {point.speedup:.2f}x"
                )
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.tmp")
            tmp.write_bytes(data)
            tmp.replace(target)
            return ExportReport(target, point, chosen, fp32, tuple(passed_over))
        raise ExportError(
            f"no point re-timed at export reached min_speedup {limits.min_speedup:g}: "
            + "; ".join(passed_over)
            + ". Nothing was written. Was the machine busy? Export again, or accept slower "
            "points with --min-speedup 0"
        )

    def onnx_file(self, point: ParetoPoint) -> bytes:
        """``point``'s ONNX file, checked against the sha256 stored when it was measured.

        A file the search dropped (a point that was dominated when it was dropped) is rebuilt
        from its stored candidate, written back, and checked the same way.

        Raises:
            ExportError: when the file (or its rebuild) is not the one that was measured.
        """
        path = Path(point.onnx_path)
        data = path.read_bytes() if path.is_file() else self._rebuild(point)
        if hashlib.sha256(data).hexdigest() != point.onnx_sha256:
            raise ExportError(
                f"{point.label}: {'rebuilt file' if not path.is_file() else path} is not the "
                "file that was measured (sha256 differs)"
            )
        if not path.is_file():
            from bitprism.evaluators.worker import write_artifact

            write_artifact(path.parent, data)
        return data

    def _rebuild(self, point: ParetoPoint) -> bytes:
        from bitprism.evaluators.worker import build_candidate
        from bitprism.search.prepare import eval_context, prepare_job

        ctx = eval_context(self.spec, prepare_job(self.spec, self.workload()))
        try:
            return build_candidate(ctx, point.candidate).artifact.data
        except ValueError as exc:  # e.g. a form this version's backend no longer builds
            raise ExportError(f"{point.label}: its dropped file cannot be rebuilt: {exc}") from None

    def workload(self) -> Workload:
        """The job's workload: the one given, else resolved from the stored name.

        Raises:
            ExportError: when the stored name cannot be resolved (a job started with a
                ``Workload`` object) or the given workload's model is not the job's.
        """
        if self._workload is None:
            from bitprism.workloads.registry import resolve_workload

            try:
                self._workload = resolve_workload(
                    self.job.workload, data=self.spec.data, model_dir=self.spec.model_dir
                )
            except ValueError as exc:
                raise ExportError(
                    f"job {self.job_id!r} was started with workload {self.job.workload!r}, which "
                    "cannot be rebuilt by name; pass it again (load_result(..., workload=...) "
                    f"or --workload pkg.mod:factory): {exc}"
                ) from None
        self._check_model(self._workload)
        return self._workload

    def _check_model(self, workload: Workload) -> None:
        from bitprism.workloads.fingerprint import model_fingerprint

        expected = self.job.model_hash
        if expected and model_fingerprint(workload.model, workload.example_inputs) != expected:
            raise ExportError(
                f"workload {workload.name!r} has another model than job {self.job_id!r} (its "
                "weights or graph differ); export with the workload the job was run on"
            )

    def _require_reference(self) -> ParetoPoint:
        reference = self.reference
        if reference is None:
            raise ExportError(f"job {self.job_id!r} has no fp32 reference measurement")
        return reference

    def _none_message(self, limits: Constraints) -> str:
        reference = self._require_reference()
        floor = accuracy_floor(reference.accuracy, limits)
        wanted = []
        if floor is not None:
            wanted.append(f"accuracy >= {floor:.6g} (fp32 {reference.accuracy:.6g})")
        if limits.min_speedup:
            wanted.append(f"at least {limits.min_speedup:g}x the fp32 speed")
        if limits.max_weight_bytes is not None:
            wanted.append(f"weights <= {limits.max_weight_bytes} bytes")
        return (
            f"job {self.job_id!r}: no verified compressed point has {' and '.join(wanted)}; "
            "relax a limit (--max-drop-pct, --max-drop-abs, --min-speedup 0 for slower points), "
            "run more trials, or ask for the fp32 model with --fp32-if-none"
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
