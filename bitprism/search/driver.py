"""Run (or resume) one search job: check, prepare, hold the job, loop, record.

Why an ask/tell loop over Ray tasks and not Ray Tune + OptunaSearch: resume is nothing more
than reloading the Optuna study from the RDB storage and counting the finished trials in our
store; fault tolerance is Ray's task retry (``max_retries``) plus a per-trial timeout; timing
needs an exclusive slot between evaluation rounds, which an ask/tell loop expresses directly;
and the driver stays the single writer of both the study and the bitprism tables, in one
order (store first, then Optuna), so a killed driver is repaired on resume by
:func:`_recover`. Tune would add its own experiment folder as a second source of truth and its
own restore path for the same outcome. One driver per job is enforced by a lease
(:mod:`bitprism.search.lease`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Callable
from typing import Any

import optuna
import torch
from optuna.trial import TrialState as OptunaState

from bitprism.config import JobSpec, Sampler, SpecError, with_latency_defaults
from bitprism.evaluators.latency import timing_inputs
from bitprism.evaluators.worker import write_artifact
from bitprism.kernels.base import get_backend
from bitprism.search.costs import Runner
from bitprism.search.guidance import guide, resumed_predictor
from bitprism.search.heartbeat import LOST, StaleCallback, TrialHeartbeat, storage_options
from bitprism.search.jobs import create_row, new_job_id
from bitprism.search.lease import Lease
from bitprism.search.loop import SearchLoop
from bitprism.search.parallel import NO_LANES, RayPool, cluster_gpus
from bitprism.search.prepare import PreparedJob, eval_context, prepare_job, runnable_backend
from bitprism.search.schema import JobStatus, TrialState
from bitprism.search.store import ArtifactRecord, JobRecord, Store, optuna_storage
from bitprism.search.warmstart import Predictor, Seed
from bitprism.spaces.space import SearchSpace
from bitprism.workloads.base import Workload, as_tuple
from bitprism.workloads.registry import resolve_workload

# Fields that define what a job measures; a resumed job must not change them.
IDENTITY_FIELDS = frozenset(
    {
        "workload",
        "data",
        "model_dir",
        "objectives",
        "seed",
        "sampler",
        "backend",
        "precision",
        "methods",
        "overrides",
        "extra_knobs",
        "latency",
        "parity_tolerance",
        "parity_drift_share",
    }
)


class JobCancelled(RuntimeError):
    """The job was cancelled (``bitprism cancel``) before or while this driver ran it."""


def run_job(
    spec: JobSpec,
    workload: Workload | None = None,
    *,
    progress: bool = True,
    announce: bool | None = None,
) -> str:
    """Run (or resume) the job ``spec`` describes until it has ``spec.trials`` finished trials.

    ``progress`` shows the progress bar; ``announce`` prints the job's header and notes (the
    runtime, a fallback backend, missing timing lanes), with the bar by default: the CLI
    prints them without one too, so a background job's log keeps them.

    Returns the job id. Paths, the store URL, the spec and the model are checked before
    anything is written; a submitted (queued) job that fails these checks is marked failed
    with the reason.

    Raises:
        SpecError / ValueError: bad input, named; nothing was written.
        JobBusyError: another driver is running this job.
        JobCancelled: the job was cancelled; it is marked so and can be resumed.
        ReferenceFailed: the fp32 model could not be evaluated; the job is marked failed.
    """
    if workload is not None:  # an in-memory workload is recorded by its name
        spec = spec.model_copy(update={"workload": workload.name})
    try:
        workload = workload or resolve_workload(
            spec.workload, data=spec.data, model_dir=spec.model_dir
        )
        spec = with_latency_defaults(spec, workload.latency_defaults)
        job_id = spec.job_id or new_job_id(workload.name)
        spec = spec.model_copy(update={"job_id": job_id})
        spec, fell_back = runnable_backend(spec, cluster_gpus())
        job = prepare_job(spec, workload)
        job = dataclasses.replace(job, notes=(*fell_back, *job.notes))
    except Exception as exc:
        _fail_queued(spec, exc)
        raise
    store = Store(spec.store)
    existing = store.job(job_id)
    if existing is None:
        _create_job(store, spec, job)
    elif existing.status is JobStatus.CANCELLED:
        raise JobCancelled(_cancelled(job_id, "before this driver started it"))
    elif existing.space is None:  # submitted: its row waited for this driver's preparation
        _record_prepared(store, spec, job)
    inputs = timing_inputs(as_tuple(job.workload.example_inputs), spec.latency.batch)
    with Lease(store, job_id) as lease:
        try:
            store.update_job(job_id, status=JobStatus.PENDING)
            _search(spec, job, store, inputs, progress, progress if announce is None else announce)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt) and lease.cancelled:
                store.update_job(job_id, status=JobStatus.CANCELLED, error="cancelled by the user")
                raise JobCancelled(_cancelled(job_id, "while it ran")) from None
            status = (
                JobStatus.INTERRUPTED if isinstance(exc, KeyboardInterrupt) else JobStatus.FAILED
            )
            store.update_job(job_id, status=status, error=f"{type(exc).__name__}: {exc}")
            raise
        store.update_job(job_id, status=JobStatus.DONE)
    return job_id


def _search(
    spec: JobSpec,
    job: PreparedJob,
    store: Store,
    inputs: tuple[torch.Tensor, ...],
    progress: bool,
    announce: bool,
) -> None:
    """The held job's search: resume checks, repair, guidance, then the trial loop."""
    job_id = spec.job_id or ""
    space = _check_resume(store, spec, job, batch=inputs[0].shape[0])
    prepared, job = job, dataclasses.replace(job, space=space)
    record = store.job(job_id)
    assert record is not None  # held by this driver
    storage = optuna_storage(spec.store, **storage_options(_lost_trial(store, job_id)))
    study = _study(spec, record.study_name, storage)
    _recover(store, study, job_id, spec)
    seeds: list[Seed] = []
    predictor: Predictor | None = None
    notes = job.notes
    room = spec.trials > len(prepared.space.uniform_seeds())  # else the seeds would not run
    pool = RayPool(spec.workers, spec.trial_timeout_s, get_backend(spec.backend).gpus)
    notes = notes if pool.lanes else (*notes, NO_LANES)
    try:
        run = _alone(pool)  # layer forms are timed where trials are
        if spec.warm_start and room and not study.get_trials(deepcopy=False):
            guidance = guide(spec, prepared, inputs, store, progress=progress, run=run)
            job = dataclasses.replace(job, space=guidance.space)
            store.update_job(job_id, space=guidance.space_record())
            seeds, notes = guidance.seeds, (*notes, *guidance.notes())
            predictor = guidance.predictor
        elif spec.warm_start and _guided(record):  # resumed: screen proposals as before
            predictor = resumed_predictor(spec, prepared, space, inputs, store, progress, run)
        ctx = eval_context(spec, job)
        store.update_job(job_id, status=JobStatus.RUNNING)
        loop = SearchLoop(
            spec,
            store,
            study,
            job.space,
            pool,
            pool.put(ctx),
            inputs,
            TrialHeartbeat(storage),
            seeds,
            predictor,
        )
        loop.run(progress, notes, announce)
    finally:
        pool.close()


def _guided(record: JobRecord) -> bool:
    """Whether the stored job's guidance ran (it stored the narrowed space with what it
    dropped), so a resume has a predictor to rebuild from the store's caches."""
    return record.space is not None and "dropped" in record.space


def _alone(pool: RayPool) -> Runner:
    """A runner of ``fn(*args)`` in ``pool``'s timing slot that returns its value."""

    def run(fn: Callable[..., Any], *args: Any) -> Any:
        done = pool.run_exclusive(fn, *args)
        if done.error is not None:
            raise RuntimeError(f"timing layer forms for the warm start failed: {done.error}")
        return done.value

    return run


def _cancelled(job_id: str, when: str) -> str:
    return f"job {job_id!r} was cancelled {when}; `bitprism resume {job_id}` continues it"


def _fail_queued(spec: JobSpec, exc: Exception) -> None:
    """Mark a submitted job that never got past its checks failed, with the reason (a job
    run directly has no row yet: nothing is written)."""
    if not spec.job_id:
        return
    try:
        store = Store(spec.store, create=False)
        existing = store.job(spec.job_id)
    except Exception:  # the store itself is what is wrong: nothing to mark
        return
    if existing is not None and existing.status is JobStatus.QUEUED:
        store.update_job(spec.job_id, status=JobStatus.FAILED, error=f"{type(exc).__name__}: {exc}")


def _create_job(store: Store, spec: JobSpec, job: PreparedJob) -> None:
    """Create the job row and record what preparing it found."""
    create_row(store, spec, model_hash=job.model_hash)
    _record_prepared(store, spec, job)


def _record_prepared(store: Store, spec: JobSpec, job: PreparedJob) -> None:
    """Store the job's model fingerprint and space, and keep its fp32 export, cached under
    the model's fingerprint."""
    job_id = spec.job_id or ""
    store.update_job(job_id, space=job.space.to_dict(), model_hash=job.model_hash)
    if not job.base_path.is_file():
        written, _ = write_artifact(job.base_path.parent, job.base_onnx)
        written.replace(job.base_path)
    sha256 = hashlib.sha256(job.base_onnx).hexdigest()
    store.add_artifact(
        job_id, "base-onnx", ArtifactRecord(str(job.base_path), sha256, len(job.base_onnx))
    )


def _check_resume(store: Store, spec: JobSpec, job: PreparedJob, batch: int) -> SearchSpace:
    """Refuse a resume that changes the model or what the job measures; keep the new budget.
    Returns the space the job searches: the one it stored (narrowed, if guidance narrowed it)."""
    job_id = spec.job_id or ""
    data = spec.model_dump(mode="json")
    existing = store.job(job_id)
    if existing is None:
        raise SpecError(f"job {job_id!r} vanished from {store.url}")
    defaults = JobSpec().model_dump(mode="json")  # fields older versions did not store
    changed = sorted(
        f for f in IDENTITY_FIELDS if existing.spec.get(f, defaults.get(f)) != data.get(f)
    )
    if changed:
        raise SpecError(
            f"job {job_id!r} exists with different {', '.join(changed)}; resume it with the same "
            "values or pick a new job_id"
        )
    if existing.model_hash is not None and existing.model_hash != job.model_hash:
        raise SpecError(
            f"job {job_id!r} was run on another model (its weights or graph differ: fingerprint "
            f"{existing.model_hash[:12]} vs {job.model_hash[:12]} now); pick a new job_id"
        )
    space = None if existing.space is None else job.space.restricted_to(existing.space)
    if space is None:
        raise SpecError(
            f"job {job_id!r}: the model's layers, or the forms the backend offers for them, "
            "differ from the stored job's (a job from another bitprism version?); pick a new "
            "job_id"
        )
    timed = [t.metrics.get("timing_batch") for t in store.trials(job_id) if t.number is None]
    if timed and timed[0] is not None and int(timed[0]) != batch:
        raise SpecError(
            f"job {job_id!r} was timed at batch {int(timed[0])}, the example inputs now give "
            f"batch {batch}; set latency.batch: {int(timed[0])} or pick a new job_id"
        )
    store.update_job(job_id, spec=data)
    return space


def _study(spec: JobSpec, name: str, storage: optuna.storages.RDBStorage) -> optuna.Study:
    """The job's Optuna study, by the name its row records (:func:`jobs.create_row`)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the progress bar reports trials
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        load_if_exists=True,
        directions=[o.direction for o in spec.objectives],
        sampler=_sampler(spec),
    )
    with warnings.catch_warnings():  # experimental since Optuna 3.2, still so in 5.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([o.value for o in spec.objectives])  # stock dashboards label axes
    return study


def _lost_trial(store: Store, job_id: str) -> StaleCallback:
    """Optuna's callback for a trial it failed for want of heartbeats: the store's row of
    that trial is marked interrupted with the reason."""

    def lost(_study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        for row_id, number in store.running_trials(job_id):
            if number == trial.number:
                store.end_trial(row_id, TrialState.INTERRUPTED, LOST)

    return lost


def _recover(store: Store, study: optuna.Study, job_id: str, spec: JobSpec) -> None:
    """Repair what a stopped driver left: store rows still running, Optuna trials asked but
    never told. Optuna fails the trials whose heartbeats stopped (a driver killed long enough
    ago, on any host); the rest are this job's too (the lease shows their driver is gone) and
    are failed here. Seeds still waiting in Optuna's queue stay there: the resumed loop asks
    them first (Optuna cannot tell a trial nobody asked)."""
    rows = {r.number: r for r in store.trials(job_id) if r.number is not None}
    for frozen in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        record = rows.get(frozen.number)
        if record is not None and record.state is TrialState.COMPLETE:  # stored, never told
            study.tell(frozen.number, [record.metrics[o.value] for o in spec.objectives])
    with warnings.catch_warnings():  # experimental since Optuna 2.9, still so in 5.0
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)  # runs _lost_trial for each
    for row_id, _number in store.running_trials(job_id):
        store.end_trial(row_id, TrialState.INTERRUPTED, "driver stopped before the trial finished")
    for frozen in study.get_trials(deepcopy=False, states=(OptunaState.RUNNING,)):
        study.tell(frozen.number, state=OptunaState.FAIL)


def _sampler(spec: JobSpec) -> optuna.samplers.BaseSampler:
    population = max(4, min(50, spec.trials // 4))
    factories = {
        Sampler.NSGA2: lambda: optuna.samplers.NSGAIISampler(
            population_size=population, seed=spec.seed
        ),
        Sampler.TPE: lambda: optuna.samplers.TPESampler(seed=spec.seed, constant_liar=True),
        Sampler.GP: lambda: optuna.samplers.GPSampler(seed=spec.seed),
        Sampler.RANDOM: lambda: optuna.samplers.RandomSampler(seed=spec.seed),
    }
    return factories[spec.sampler]()
