"""``bitprism submit | resume | cancel | logs | batch``: jobs that run in the background
(:mod:`bitprism.search.jobs`), merged into the ``bitprism`` command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from bitprism.cli_common import DEFAULT_STORE, JsonOpt, StoreOpt, console
from bitprism.cli_common import errors as _errors
from bitprism.cli_common import fail as _fail
from bitprism.report import ran
from bitprism.tables import print_rows

app = typer.Typer()
WaitOpt = Annotated[bool, typer.Option(help="Wait for the job to end and report it.")]
SpecStoreOpt = Annotated[
    str | None,
    typer.Option(envvar="BITPRISM_STORE", help="Database URL (else the spec's own)."),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        envvar="BITPRISM_RAY_ADDRESS",
        help="A Ray cluster's dashboard (e.g. http://127.0.0.1:8265): run the job there.",
    ),
]


@app.command()
def submit(
    spec_file: Annotated[Path, typer.Argument(help="YAML job spec.")],
    job_id: Annotated[str | None, typer.Option(help="Job id (default: workload and time).")] = None,
    trials: Annotated[int | None, typer.Option(help="Trials to finish.")] = None,
    store: SpecStoreOpt = None,
    address: AddressOpt = None,
    wait: WaitOpt = False,
) -> None:
    """Store a job and run it in the background (here, or on a Ray cluster with --address);
    `status`, `logs` and `cancel` follow it."""
    from bitprism.config import JobSpec
    from bitprism.search.jobs import submit as submit_job

    updates = {"job_id": job_id, "trials": trials, "store": store}
    with _errors():
        spec = JobSpec.from_yaml(spec_file, **{k: v for k, v in updates.items() if v is not None})
        started = submit_job(spec, address)
    _started(started, spec.store if store is None else store, wait)


@app.command()
def resume(
    job: str,
    trials: Annotated[int | None, typer.Option(help="A new trial budget.")] = None,
    store: StoreOpt = DEFAULT_STORE,
    address: AddressOpt = None,
    wait: WaitOpt = False,
) -> None:
    """Run a stopped job again in the background, from where it stopped (where it ran
    before, unless --address names a cluster)."""
    from bitprism.search.jobs import resume as resume_job
    from bitprism.search.store import Store

    with _errors():
        opened = Store(store, create=False)
        started = resume_job(opened, job, trials, address)
    _started(started, store, wait)


@app.command()
def cancel(job: str, store: StoreOpt = DEFAULT_STORE) -> None:
    """Stop a queued or running job (its driver stops within seconds, wherever it runs)."""
    from bitprism.search.jobs import cancel as cancel_job
    from bitprism.search.store import Store

    with _errors():
        console.print(cancel_job(Store(store, create=False), job))


@app.command()
def logs(
    job: str,
    store: StoreOpt = DEFAULT_STORE,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Until the job ends.")] = False,
) -> None:
    """Print a submitted job's driver output (a Ray job's from its cluster)."""
    from bitprism.search.jobs import log_path, ray_logs
    from bitprism.search.schema import ACTIVE
    from bitprism.search.store import Store

    with _errors():
        opened = Store(store, create=False)
        record = opened.job(job)
        if record is None:
            raise ValueError(f"no job {job!r} in {store}")
        remote = ray_logs(record)
    if remote is not None:
        shown = 0
        while True:
            typer.echo(remote[shown:], nl=False)
            shown = len(remote)
            if not follow or opened.job_status(job) not in ACTIVE:
                return
            time.sleep(1.0)
            remote = ray_logs(record) or remote
    path = log_path(record)
    if not path.is_file():
        _fail(f"job {job!r} has no log at {path} (run with `bitprism search`, not submitted)")
    with path.open("rb") as log:
        while True:
            chunk = log.read()
            if chunk:
                typer.echo(chunk.decode(errors="replace"), nl=False)
            status = opened.job_status(job)
            if not follow or status not in ACTIVE:
                if follow and (rest := log.read()):
                    typer.echo(rest.decode(errors="replace"), nl=False)
                return
            time.sleep(1.0)


@app.command()
def batch(
    spec_files: Annotated[list[Path], typer.Argument(help="YAML job specs.")],
    max_concurrent: Annotated[int, typer.Option(min=1, help="Jobs running at once.")] = 1,
    store: SpecStoreOpt = None,
    address: AddressOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Run many jobs, at most --max-concurrent at a time, then print a summary table.

    Every spec is checked before any job starts: one bad spec starts none.
    """
    from bitprism.config import JobSpec
    from bitprism.search.jobs import settled, submit, wait

    with _errors():
        specs = [
            settled(JobSpec.from_yaml(f, **({} if store is None else {"store": store})))
            for f in spec_files
        ]
    ids = [s.job_id for s in specs]
    duplicated = sorted({i for i in ids if ids.count(i) > 1 and i is not None})
    if duplicated:
        _fail(f"the specs name the same job id more than once: {', '.join(duplicated)}")
    stores: dict[str, Any] = {}  # URL -> Store
    started: list[tuple[str, str]] = []  # (job id, store)
    running: list[tuple[str, str]] = []
    with console.status("running jobs") as spinner:
        for spec in specs:
            while len(running) >= max_concurrent:
                time.sleep(1.0)
                running = [(j, u) for j, u in running if _active(stores, u, j)]
            with _errors():
                submitted = submit(spec, address)
            started.append((submitted.job_id, spec.store))
            running.append((submitted.job_id, spec.store))
            spinner.update(f"{len(started)} of {len(specs)} jobs started; {len(running)} running")
        for job_id, url in running:
            wait(_opened(stores, url), [job_id])
    rows = [_summary(_opened(stores, url), job_id) for job_id, url in started]
    print_rows(console, ("jobs", rows, {}), json_out, False)
    if any(row["status"] != "done" for row in rows):
        raise typer.Exit(code=1)


def _active(stores: dict[str, Any], url: str, job_id: str) -> bool:
    from bitprism.search.schema import ACTIVE

    return _opened(stores, url).job_status(job_id) in ACTIVE


def _opened(stores: dict[str, Any], url: str) -> Any:
    """The batch's store at ``url``, opened (and migrated) once, not at every poll."""
    from bitprism.search.store import Store

    if url not in stores:
        stores[url] = Store(url)
    return stores[url]


def _summary(store: Any, job_id: str) -> dict[str, Any]:
    """One batch row: status, the best verified point within the job's limits, wall time."""
    from bitprism.results import ExportError, SearchResult

    job = store.job(job_id)
    row: dict[str, Any] = {"job": job_id, "status": job.status.value, "best point": "-"}
    row["wall time"] = ran(job)
    try:
        result = SearchResult(job_id, store.url)
        best = result.best(result.spec.constraints)
    except (KeyError, ValueError, ExportError) as exc:  # no point meets the limits: say so
        row["best point"] = str(exc).split(";")[0][:80] if job.status.value == "done" else "-"
    else:
        row["best point"] = (
            f"{best.label}: accuracy {best.accuracy:.4g}, {best.speedup:.2f}x fp32 speed"
        )
    row["error"] = job.error or ""
    return row


def _started(started: Any, store: str, wait: bool) -> None:
    log = f"; log {started.log}" if started.log else ""
    console.print(
        f"job [bold]{started.job_id}[/bold] queued and started ({started.where}){log}\n"
        f"  follow it: bitprism status {started.job_id} / bitprism logs {started.job_id} -f / "
        f"bitprism cancel {started.job_id}"
    )
    if wait:
        from bitprism.search.jobs import wait as wait_for
        from bitprism.search.store import Store

        (job,) = wait_for(Store(store), [started.job_id])
        console.print(f"job {job.id}: [bold]{job.status.value}[/bold] {job.error or ''}")
        if job.status.value != "done":
            raise typer.Exit(code=1)
