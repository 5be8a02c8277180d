"""Everything a job needs that can fail on the user's input, done before anything is written.

Checks the paths and the store URL, folds BatchNorm into the convolutions (as the deployed
runtime would), fingerprints the model, exports (or reuses) the fp32 ONNX graph, finds the
compressible layers and builds the search space. A mistake here leaves no database, folder
or file behind.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from bitprism.compression.fold import fold_batchnorm
from bitprism.compression.structured import PruneGroup, find_groups, unit_order
from bitprism.config import JobSpec, Precision, SpecError
from bitprism.evaluators.worker import EvalContext
from bitprism.kernels.base import Backend, get_backend
from bitprism.kernels.onnx_export import export_base, lowerable_layers
from bitprism.paths import writable_dir
from bitprism.search.store import check_store_url
from bitprism.spaces.layer import LayerInfo, discover_layers
from bitprism.spaces.space import SearchSpace, build_space
from bitprism.workloads.base import Workload
from bitprism.workloads.fingerprint import data_fingerprint, model_fingerprint

# Bump when the fp32 export changes shape, so cached base exports of older versions are unused.
EXPORT_VERSION = "2"


@dataclass(frozen=True)
class PreparedJob:
    """A checked job: the workload as evaluated (BatchNorm folded), its fp32 export and space."""

    workload: Workload
    model_hash: str
    base_onnx: bytes
    base_path: Path
    artifact_dir: Path
    space: SearchSpace
    notes: tuple[str, ...]
    groups: tuple[PruneGroup, ...] = ()
    unit_order: dict[str, tuple[int, ...]] = field(default_factory=dict)


def prepare_job(spec: JobSpec, workload: Workload) -> PreparedJob:
    """Check and derive what ``spec`` needs from ``workload``; writes nothing.

    Raises:
        SpecError / ValueError: naming the path, field or model property that is wrong.
    """
    output_dir = writable_dir(spec.output_dir, "output_dir")
    check_store_url(spec.store, create=True)
    backend = get_backend(spec.backend)
    model_hash = model_fingerprint(workload.model, workload.example_inputs)
    folded, fold_notes = fold_batchnorm(workload.model)
    evaluated = dataclasses.replace(workload, model=folded)
    base_path = output_dir / "models" / f"{model_hash[:16]}-e{EXPORT_VERSION}" / "base.onnx"
    base = base_path.read_bytes() if base_path.is_file() else export_base(evaluated)
    _check_precision(spec, backend, base)
    discovered = discover_layers(folded)
    if not discovered:
        raise SpecError(
            f"workload {workload.name!r}: the model has no layer bitprism can compress "
            "(nn.Linear or nn.Conv2d); nothing to search"
        )
    layers, skipped = lowerable_layers(base, discovered)
    if not layers:
        reasons = "; ".join(f"{name}: {why}" for name, why in skipped.items())
        raise SpecError(f"workload {workload.name!r}: no layer can be lowered to ONNX ({reasons})")
    groups, order = _prune_groups(evaluated, layers, backend.gains_from("keep"))
    units = {group.leader: group.units for group in groups}
    layers = tuple(dataclasses.replace(x, prune_units=units.get(x.name, 0)) for x in layers)
    overrides = {p: {k.value: v for k, v in knobs.items()} for p, knobs in spec.overrides.items()}
    space = build_space(layers, backend, overrides, [k.value for k in spec.extra_knobs])
    notes = (*fold_notes, *(f"layer {name} stays fp32: {why}" for name, why in skipped.items()))
    if groups:
        sizes = ", ".join(f"{g.leader} ({g.units})" for g in groups[:3])
        more = f" and {len(groups) - 3} more" if len(groups) > 3 else ""
        notes = (*notes, f"structured pruning: {len(groups)} groups, e.g. {sizes}{more}")
    return PreparedJob(
        workload=evaluated,
        model_hash=model_hash,
        base_onnx=base,
        base_path=base_path,
        artifact_dir=output_dir / (spec.job_id or "job") / "onnx",
        space=space,
        notes=notes,
        groups=tuple(groups),
        unit_order=order,
    )


def runnable_backend(spec: JobSpec, cluster_gpus: float | None) -> tuple[JobSpec, tuple[str, ...]]:
    """``spec`` on a backend that can run where its trials will, and a note if it changed.

    Its own backend if it can; else, if ``fallback_backend`` allows, that one (in fp32 if it
    does not compute in the job's precision), with a note saying so. ``cluster_gpus`` is the
    GPUs of the Ray cluster the trials run on, None when they run on this machine.

    Raises:
        SpecError: the backend cannot run and no fallback can, naming what is missing.
    """
    reason = _why_not(get_backend(spec.backend), cluster_gpus)
    if reason is None:
        return spec, ()
    if spec.fallback_backend is None:
        raise SpecError(
            f"backend: {spec.backend} cannot run here: {reason}. Run the job where it can, or "
            "set fallback_backend (e.g. --fallback-backend ort-cpu) to search on the CPU instead"
        )
    fallback = get_backend(spec.fallback_backend)
    why = _why_not(fallback, cluster_gpus)
    if why is not None:
        raise SpecError(
            f"backend: {spec.backend} cannot run here ({reason}), nor can its fallback "
            f"{spec.fallback_backend} ({why})"
        )
    updates: dict[str, object] = {"backend": fallback.name}
    note = f"{spec.backend} cannot run here ({reason}): searching on {fallback.name} instead"
    if spec.precision not in fallback.precisions:
        updates["precision"] = Precision.FP32
        note += f", in fp32 (it does not compute in {spec.precision.value})"
    return spec.model_copy(update=updates), (f"{note}, as fallback_backend allows",)


def _why_not(backend: Backend, cluster_gpus: float | None) -> str | None:
    """Why ``backend`` cannot run the job's trials: asked of this machine for a local job; of
    the cluster's GPUs for a GPU backend on a cluster (its driver may have none)."""
    if cluster_gpus is None or backend.gpus == 0:
        return backend.missing()
    if cluster_gpus < backend.gpus:
        return f"the Ray cluster has {cluster_gpus:g} GPUs; each trial needs {backend.gpus}"
    return None


def eval_context(spec: JobSpec, job: PreparedJob) -> EvalContext:
    """What every trial of the job shares, as shipped to the workers."""
    return EvalContext(
        job.workload,
        job.space.layers,
        job.base_onnx,
        spec.backend,
        str(job.artifact_dir),
        spec.parity_tolerance,
        spec.parity_drift_share,
        job.groups,
        job.unit_order,
        spec.precision,
        spec.methods,
        f"{job.model_hash}:{data_fingerprint(job.workload.calibration)}",
    )


def _check_precision(spec: JobSpec, backend: Backend, base: bytes) -> None:
    """The job's precision is one the backend offers and this machine computes in."""
    if spec.precision not in backend.precisions:
        offered = ", ".join(p.value for p in backend.precisions)
        raise SpecError(
            f"precision: {spec.backend} computes in {offered}, not {spec.precision.value}"
        )
    if spec.precision is not Precision.FP32:
        try:
            backend.load(base, threads=1, precision=spec.precision)
        except ValueError as exc:
            raise SpecError(f"precision: {exc}") from None


def _prune_groups(
    workload: Workload, layers: tuple[LayerInfo, ...], wanted: bool
) -> tuple[list[PruneGroup], dict[str, tuple[int, ...]]]:
    """The structured-pruning groups and their units ranked on the calibration data."""
    if not wanted:
        return [], {}
    groups, _ = find_groups(workload.model, workload.example_inputs, layers)
    return groups, unit_order(workload.model, groups, workload.calibration)
