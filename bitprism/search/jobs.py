"""Jobs that run in the background: submit, resume, cancel, and read their logs. The one path
``bitprism submit``, ``resume``, ``batch`` and the dashboard's job form take.

Submitting checks the spec, the store and the workload reference, stores the job as
``queued`` with its spec, writes the spec as YAML (``<output_dir>/<job_id>/job.yaml``), and
starts the job's driver, ``bitprism search job.yaml``: as a background process of this
machine with embedded Ray (its output in ``job.log`` beside the spec), or, given a Ray
cluster's dashboard address, as a Ray job through Ray's Job Submission API (the spec travels
as the job's working directory; the driver attaches to the cluster and its trials run on the
cluster's nodes; Ray keeps its output). The driver is the same code as the CLI's
``search``; the store is the only channel back: status and progress, errors (a driver whose
workload fails to build marks the job failed), and cancels, which the driver polls
(:mod:`bitprism.search.lease`) wherever it runs. On a cluster the store must be one every
node reaches (PostgreSQL), and ``output_dir`` a path the head node can write.

Why processes and not a scheduler of our own: each job is one driver holding its job's lease
in the store, so nothing else needs to know which jobs run; Ray (local, or a cluster the
driver attaches to) schedules the trials.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bitprism.config import JobSpec, SpecError
from bitprism.kernels.base import get_backend
from bitprism.paths import check_store_url, writable_dir
from bitprism.search.lease import LEASE_TTL_S, dead_here
from bitprism.search.prepare import runnable_backend
from bitprism.search.schema import ACTIVE, JobStatus
from bitprism.search.store import JobRecord, Store
from bitprism.workloads.registry import find_workload

SPEC_NAME = "job.yaml"
LOG_NAME = "job.log"


@dataclass(frozen=True)
class Submitted:
    """A job started in the background: where its driver runs and where it logs."""

    job_id: str
    where: str
    log: Path | None  # the local driver's output (a Ray job's is Ray's: `bitprism logs`)
    process: subprocess.Popen[bytes] | None  # the local driver (None on a cluster)


def new_job_id(workload: str) -> str:
    """A job id from the workload's name, the UTC time and a few random characters, e.g.
    ``digits-cnn-20261201-070512-3fa1`` (two jobs started in one second still differ)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d-%H%M%S")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", workload.split(":")[-1]).strip("-.")[:80] or "job"
    return f"{stem}-{stamp}-{secrets.token_hex(2)}"


def settled(spec: JobSpec) -> JobSpec:
    """``spec`` as a background driver must read it: a job id, and every path absolute (the
    driver may start in another folder)."""
    updates: dict[str, object] = {
        "job_id": spec.job_id or new_job_id(spec.workload),
        "output_dir": spec.output_dir.expanduser().resolve(),
        "store": _absolute_sqlite(spec.store),
    }
    for name in ("data", "model_dir"):
        value = getattr(spec, name)
        if value is not None:
            updates[name] = Path(value).expanduser().resolve()
    return spec.model_copy(update=updates)


def submit(spec: JobSpec, address: str | None = None) -> Submitted:
    """Store ``spec`` as a queued job and start its driver in the background: here, or on the
    Ray cluster whose dashboard is at ``address`` (e.g. ``http://127.0.0.1:8265``).

    Raises:
        SpecError / ValueError: a bad spec, store, output folder or workload reference, an
            unreachable cluster, or a job id already taken (named); nothing was written.
    """
    spec = settled(spec)
    client = None if address is None else ray_client(address)
    check_store_url(spec.store, create=True)
    writable_dir(spec.output_dir, "output_dir")
    if spec.fallback_backend is not None:
        get_backend(spec.fallback_backend)
    if address is None:  # the driver starts here: its backend (or fallback) must run here
        runnable_backend(spec, None)
    else:
        get_backend(spec.backend)
    find_workload(spec.workload, data=spec.data, model_dir=spec.model_dir)
    store = Store(spec.store)
    job_id = spec.job_id or ""
    existing = store.job(job_id)
    if existing is not None:
        raise SpecError(_exists(existing))
    try:
        create_row(store, spec, status=JobStatus.QUEUED)
    except ValueError:  # another submit of the same id won the insert
        raise SpecError(_exists(store.job(job_id))) from None
    return _launch(store, spec, client, address)


def create_row(store: Store, spec: JobSpec, **fields: Any) -> None:
    """The job's row: its spec as stored, its Optuna study named after it; ``fields`` are
    :meth:`Store.create_job`'s (status, model_hash)."""
    job_id = spec.job_id or ""
    study = f"bitprism-{job_id}"
    store.create_job(job_id, spec.workload, spec.model_dump(mode="json"), study, **fields)


def resume(
    store: Store, job_id: str, trials: int | None = None, address: str | None = None
) -> Submitted:
    """Queue a stopped job again (optionally with a new trial budget) and start its driver:
    on ``address``'s cluster, else where it was submitted to before (here, for a job first
    run with ``bitprism search``).

    Raises:
        SpecError: no such job, or it is still active (queued, or held by a driver that is
            not known to be dead).
    """
    job = store.job(job_id)
    if job is None:
        raise SpecError(f"no job {job_id!r} in {store.url}")
    if job.status is JobStatus.QUEUED:
        raise SpecError(f"job {job_id!r} is queued already")
    if job.driver is not None and not dead_here(job.driver):
        raise SpecError(
            f"job {job_id!r} is {job.status.value}, held by driver {job.driver}; wait for it, "
            f"cancel it, or, if that driver was killed, resume once its claim expires "
            f"({LEASE_TTL_S:g} s after its last heartbeat)"
        )
    if job.status is JobStatus.DONE and (trials is None or trials <= int(job.spec["trials"])):
        raise SpecError(
            f"job {job_id!r} is done ({job.spec['trials']} trials); resume it with more --trials"
        )
    data = dict(job.spec)
    if trials is not None:
        data["trials"] = trials
    spec = settled(JobSpec.model_validate(data))
    address = address or ray_address(job.submission)
    client = None if address is None else ray_client(address)
    store.update_job(job_id, status=JobStatus.QUEUED, spec=spec.model_dump(mode="json"))
    return _launch(store, spec, client, address)


def cancel(store: Store, job_id: str) -> str:
    """Cancel ``job_id``; returns what happened, in words.

    Raises:
        SpecError: no such job.
    """
    before = store.request_cancel(job_id)
    if before is None:
        job = store.job(job_id)
        if job is None:
            raise SpecError(f"no job {job_id!r} in {store.url}")
        return f"job {job_id!r} is {job.status.value}: nothing to cancel"
    if before is JobStatus.QUEUED:
        return f"cancelled job {job_id!r} before it started"
    return (
        f"cancelling job {job_id!r}: its driver stops within a few seconds, after marking its "
        "running trials interrupted"
    )


def log_path(job: JobRecord) -> Path:
    """Where a job's local driver writes its output."""
    return Path(job.spec["output_dir"]) / job.id / LOG_NAME


def ray_logs(job: JobRecord) -> str | None:
    """The output of a job's driver that ran as a Ray job (None: it did not); raises the
    SpecError of :func:`ray_client` when the cluster is gone."""
    address = ray_address(job.submission)
    if address is None or job.submission is None:
        return None
    return str(ray_client(address).get_job_logs(job.submission.split()[-1]))


def ray_client(address: str) -> Any:
    """Ray's Job Submission client of the cluster whose dashboard is at ``address``.

    Raises:
        SpecError: naming the address, when no cluster answers there.
    """
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, or Ray's own for a dashboard that is not one
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SpecError(f"cannot reach a Ray cluster's dashboard at {address}: {reason}") from None


def wait(store: Store, job_ids: list[str], poll_s: float = 2.0) -> list[JobRecord]:
    """Block until none of ``job_ids`` is active any more; their final records."""
    while True:
        jobs = [store.job(job_id) for job_id in job_ids]
        if all(job is not None and job.status not in ACTIVE for job in jobs):
            return [job for job in jobs if job is not None]
        time.sleep(poll_s)


def _launch(
    store: Store, spec: JobSpec, client: Any = None, address: str | None = None
) -> Submitted:
    """Write the spec and start ``bitprism search`` on it: detached here, or as a Ray job."""
    job_id = spec.job_id or ""
    folder = spec.output_dir / job_id
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = folder / SPEC_NAME
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    if client is not None:
        return _launch_on_ray(store, job_id, folder, client, address or "")
    log = folder / LOG_NAME
    try:
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "bitprism.cli", "search", str(spec_file), "--no-progress"],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # outlives the submitter, not killed by its Ctrl-C
            )
    except OSError as exc:
        store.update_job(job_id, status=JobStatus.FAILED, error=f"could not start: {exc}")
        raise
    where = f"local pid {process.pid} on {socket.gethostname()}"
    store.update_job(job_id, submission=where, error=None)
    return Submitted(job_id, where, log, process)


def _launch_on_ray(store: Store, job_id: str, folder: Path, client: Any, address: str) -> Submitted:
    """Submit the driver as a Ray job: the spec travels as its working directory; the
    cluster's own environment must have bitprism installed (the compose image does)."""
    submission_id = f"bitprism-{job_id}-{secrets.token_hex(3)}"
    try:
        client.submit_job(
            entrypoint=f"bitprism search {SPEC_NAME} --no-progress",
            submission_id=submission_id,
            runtime_env={"working_dir": str(folder), "excludes": [LOG_NAME, "onnx"]},
            metadata={"bitprism_job": job_id},
        )
    except Exception as exc:
        store.update_job(job_id, status=JobStatus.FAILED, error=f"Ray refused the job: {exc}")
        raise SpecError(f"the Ray cluster at {address} refused job {job_id!r}: {exc}") from None
    where = f"ray {address} {submission_id}"
    store.update_job(job_id, submission=where, error=None)
    return Submitted(job_id, where, None, None)


def ray_address(submission: str | None) -> str | None:
    """The cluster address of a job submitted to Ray (``ray ADDRESS ID``), else None."""
    parts = (submission or "").split()
    return parts[1] if len(parts) == 3 and parts[0] == "ray" else None


def _exists(job: JobRecord | None) -> str:
    if job is None:
        return "the job id is taken"
    hint = (
        "`bitprism status` shows it" if job.status in ACTIVE else "`bitprism resume` continues it"
    )
    return f"job {job.id!r} exists already ({job.status.value}); {hint}, or pick another job_id"


def _absolute_sqlite(url: str) -> str:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{Path(url.removeprefix('sqlite:///')).expanduser().resolve()}"
    return url
