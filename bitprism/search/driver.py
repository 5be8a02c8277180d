"""The search loop: Optuna asks, Ray evaluates, Optuna is told; the store records everything.

Why an ask/tell loop over Ray tasks and not Ray Tune + OptunaSearch: resume is nothing more
than reloading the Optuna study from the RDB storage and counting the finished trials in our
store; fault tolerance is Ray's task retry (``max_retries``); and the driver stays the single
writer of both the study and the bitprism tables, in one order (store first, then Optuna), so
a killed driver is repaired on resume by :func:`_recover`. Tune would add its own experiment
folder as a second source of truth and its own restore path for the same outcome.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState as OptunaState

from bitprism.config import JobSpec, Sampler, SpecError
from bitprism.evaluators.export import export_base, lowerable_layers
from bitprism.evaluators.worker import EvalContext, TrialOutcome, evaluate_candidate, write_artifact
from bitprism.kernels.base import get_backend
from bitprism.search.parallel import Done, RayPool
from bitprism.search.progress import SearchProgress
from bitprism.search.schema import JobStatus, TrialRole, TrialState
from bitprism.search.store import ArtifactRecord, Store, TrialRecord, optuna_storage
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.layer import discover_layers
from bitprism.spaces.space import SearchSpace, build_space
from bitprism.workloads.base import Workload
from bitprism.workloads.registry import resolve_workload

# Fields that define what a job measures; a resumed job must not change them.
IDENTITY_FIELDS = frozenset(
    {
        "workload",
        "objectives",
        "seed",
        "sampler",
        "backend",
        "overrides",
        "latency",
        "parity_tolerance",
    }
)


@dataclass
class _Pending:
    trial: optuna.trial.Trial | None  # None for the fp32 reference
    row: int
    candidate: Candidate


def run_job(spec: JobSpec, workload: Workload | None = None, *, progress: bool = True) -> str:
    """Run (or resume) the job ``spec`` describes until it has ``spec.trials`` finished trials.

    Returns the job id. The spec and the layer overrides are validated before any trial runs.
    """
    if workload is not None:  # an in-memory workload is recorded by its name
        spec = spec.model_copy(update={"workload": workload.name})
    workload = workload or resolve_workload(spec.workload)
    job_id = spec.job_id or _new_job_id(workload.name)
    spec = spec.model_copy(update={"job_id": job_id})
    backend = get_backend(spec.backend)
    job_dir = spec.output_dir.resolve() / job_id
    # Everything that can fail on the model runs before the store or the disk is written.
    base_path = job_dir / "base.onnx"
    base = base_path.read_bytes() if base_path.is_file() else export_base(workload)
    layers, skipped = lowerable_layers(base, discover_layers(workload.model))
    overrides = {p: {k.value: v for k, v in knobs.items()} for p, knobs in spec.overrides.items()}
    space = build_space(layers, backend, overrides)
    store = Store(spec.store)
    _open_job(store, spec, space)
    _save_base(store, job_id, base_path, base)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar reports trials
    study = optuna.create_study(
        study_name=f"bitprism-{job_id}",
        storage=optuna_storage(spec.store),
        load_if_exists=True,
        directions=[o.direction for o in spec.objectives],
        sampler=_sampler(spec),
    )
    _recover(store, study, job_id, spec)
    ctx = EvalContext(
        workload,
        space.layers,
        base,
        spec.backend,
        str(job_dir / "onnx"),
        spec.latency,
        spec.parity_tolerance,
    )
    store.update_job(job_id, status=JobStatus.RUNNING)
    pool = RayPool(spec.workers)
    try:
        notes = [f"layer {name} stays fp32: {why}" for name, why in skipped.items()]
        _Loop(spec, store, study, space, pool, pool.put(ctx)).run(progress, notes)
    except BaseException as exc:
        status = JobStatus.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else JobStatus.FAILED
        store.update_job(job_id, status=status, error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        pool.close()
    store.update_job(job_id, status=JobStatus.DONE)
    return job_id


class _Loop:
    """Keeps ``spec.workers`` evaluations in flight until the trial budget is spent."""

    def __init__(
        self,
        spec: JobSpec,
        store: Store,
        study: optuna.Study,
        space: SearchSpace,
        pool: RayPool,
        ctx_ref: Any,
    ) -> None:
        self.spec, self.store, self.study, self.space = spec, store, study, space
        self.pool, self.ctx_ref = pool, ctx_ref
        self.job_id = spec.job_id or ""
        self.pending: dict[int, _Pending] = {}
        records = store.trials(self.job_id)
        self.done = {r.candidate.digest(): r for r in records if r.state is TrialState.COMPLETE}
        self.finished = sum(
            r.role is TrialRole.SEARCH and r.state in (TrialState.COMPLETE, TrialState.FAILED)
            for r in records
        )
        self.has_reference = any(
            r.role is TrialRole.REFERENCE and r.state is TrialState.COMPLETE for r in records
        )

    def run(self, progress: bool, notes: list[str]) -> None:
        bar = SearchProgress(self.job_id, self.spec.trials, self.finished, enabled=progress)
        asked = self.finished
        try:
            with bar:
                bar.announce(
                    f"{len(self.space.layers)} layers, {self.space.size():.3g} candidates; "
                    f"{self.spec.trials} trials on {self.spec.workers} Ray workers "
                    f"({self.finished} already done)"
                )
                for note in notes:
                    bar.announce(f"[yellow]{note}[/yellow]")
                if not self.has_reference:
                    self._submit(None, self.space.baseline())
                while asked < self.spec.trials or self.pool.busy:
                    while asked < self.spec.trials and self.pool.busy < self.spec.workers:
                        asked += 1
                        self._ask(bar)
                    if self.pool.busy:
                        self._record(self.pool.wait_one(), bar)
        except KeyboardInterrupt:
            self._interrupt()
            raise

    def _ask(self, bar: SearchProgress) -> None:
        trial = self.study.ask(self.space.distributions())
        candidate = self.space.candidate(trial.params)
        previous = self.done.get(candidate.digest())
        if previous is None or previous.artifact is None:
            self._submit(trial, candidate)
            return
        # The sampler proposed a candidate already measured in this job: reuse, don't re-time.
        source = "the fp32 reference" if previous.number is None else f"trial {previous.number}"
        row = self.store.start_trial(self.job_id, trial.number, TrialRole.SEARCH, candidate)
        outcome = TrialOutcome(
            previous.metrics,
            bool(previous.verified),
            previous.artifact.path,
            previous.artifact.sha256,
            previous.artifact.bytes,
            note=f"same candidate as {source}; reused",
        )
        self._complete(_Pending(trial, row, candidate), outcome, bar)

    def _submit(self, trial: optuna.trial.Trial | None, candidate: Candidate) -> None:
        role = TrialRole.REFERENCE if trial is None else TrialRole.SEARCH
        row = self.store.start_trial(
            self.job_id, None if trial is None else trial.number, role, candidate
        )
        self.pending[row] = _Pending(trial, row, candidate)
        self.pool.submit(evaluate_candidate, row, self.ctx_ref, candidate)

    def _record(self, done: Done, bar: SearchProgress) -> None:
        pending = self.pending.pop(done.tag)
        if done.error is None:
            self._complete(pending, done.value, bar)
            return
        self.store.end_trial(pending.row, TrialState.FAILED, done.error)
        if pending.trial is not None:
            pending.trial.set_user_attr("bitprism_error", done.error[:2000])
            self.study.tell(pending.trial, state=OptunaState.FAIL)
        bar.advance(pending.trial is not None, failed=True)

    def _complete(self, pending: _Pending, outcome: TrialOutcome, bar: SearchProgress) -> None:
        artifact = ArtifactRecord(outcome.onnx_path, outcome.onnx_sha256, outcome.onnx_bytes)
        self.store.complete_trial(
            pending.row, outcome.metrics, outcome.verified, artifact, note=outcome.note
        )
        number = None if pending.trial is None else pending.trial.number
        role = TrialRole.REFERENCE if pending.trial is None else TrialRole.SEARCH
        record = TrialRecord(
            number,
            role,
            TrialState.COMPLETE,
            pending.candidate,
            outcome.metrics,
            outcome.verified,
            artifact=artifact,
        )
        self.done.setdefault(pending.candidate.digest(), record)
        if pending.trial is not None:
            pending.trial.set_user_attr("bitprism_verified", outcome.verified)
            self.study.tell(pending.trial, [outcome.metrics[o.value] for o in self.spec.objectives])
        bar.advance(pending.trial is not None, metrics=outcome.metrics, verified=outcome.verified)

    def _interrupt(self) -> None:
        self.pool.cancel_all()
        for pending in self.pending.values():
            self.store.end_trial(pending.row, TrialState.INTERRUPTED, "interrupted by the user")
            if pending.trial is not None:
                self.study.tell(pending.trial, state=OptunaState.FAIL)
        self.pending.clear()


def _open_job(store: Store, spec: JobSpec, space: SearchSpace) -> None:
    """Create the job, or check that a resumed job keeps the fields that define it."""
    job_id = spec.job_id or ""
    data = spec.model_dump(mode="json")
    existing = store.job(job_id)
    if existing is None:
        store.create_job(job_id, spec.workload, data, study_name=f"bitprism-{job_id}")
        store.update_job(job_id, space=space.to_dict())
        return
    changed = sorted(f for f in IDENTITY_FIELDS if existing.spec.get(f) != data.get(f))
    if changed:
        raise SpecError(
            f"job {job_id!r} exists with different {', '.join(changed)}; resume it with the same "
            "values or pick a new job_id"
        )
    if existing.space != space.to_dict():
        raise SpecError(f"job {job_id!r}: the model's layers differ from the stored job's")


def _recover(store: Store, study: optuna.Study, job_id: str, spec: JobSpec) -> None:
    """Repair what a killed driver left: store rows still running, Optuna trials never told."""
    rows = {r.number: r for r in store.trials(job_id) if r.number is not None}
    for row_id, _number in store.running_trials(job_id):
        store.end_trial(row_id, TrialState.INTERRUPTED, "driver stopped before the trial finished")
    for frozen in study.get_trials(
        deepcopy=False, states=(OptunaState.RUNNING, OptunaState.WAITING)
    ):
        record = rows.get(frozen.number)
        if record is not None and record.state is TrialState.COMPLETE:
            study.tell(frozen.number, [record.metrics[o.value] for o in spec.objectives])
        else:
            study.tell(frozen.number, state=OptunaState.FAIL)


def _save_base(store: Store, job_id: str, path: Path, data: bytes) -> None:
    """Keep the job's fp32 export beside its artifacts (once; resumes read it back)."""
    if path.is_file():
        return
    written, sha256 = write_artifact(path.parent, data)
    written.replace(path)
    store.add_artifact(job_id, "base-onnx", ArtifactRecord(str(path), sha256, len(data)))


def _sampler(spec: JobSpec) -> optuna.samplers.BaseSampler:
    population = max(4, min(50, spec.trials // 4))
    factories = {
        Sampler.NSGA2: lambda: optuna.samplers.NSGAIISampler(
            population_size=population, seed=spec.seed
        ),
        Sampler.TPE: lambda: optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True),
        Sampler.RANDOM: lambda: optuna.samplers.RandomSampler(seed=spec.seed),
    }
    return factories[spec.sampler]()


def _new_job_id(name: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")[:80] or "job"
    return f"{slug}-{stamp}-{secrets.token_hex(2)}"
