"""The ``bitprism`` command: search | jobs | status | pareto | show | sensitivity | dashboard |
export, and the background jobs' submit | resume | cancel | logs | batch (:mod:`cli_jobs`)."""

from __future__ import annotations

import json
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from bitprism import cli_jobs
from bitprism.cli_common import DEFAULT_STORE, JsonOpt, StoreOpt, console
from bitprism.cli_common import errors as _errors
from bitprism.cli_common import fail as _fail
from bitprism.config import Knob, Objective, Precision, Sampler
from bitprism.report import ran
from bitprism.tables import Rows, print_rows, score_digits

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Search per-layer compression on real kernels; export verified ONNX.",
)
app.add_typer(cli_jobs.app)  # submit | resume | cancel | logs | batch
CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")]
DropPctOpt = Annotated[
    float | None,
    typer.Option(help="Accuracy drop allowed, in % of fp32's score (default 1)."),
]
DropAbsOpt = Annotated[
    float | None, typer.Option(help="Accuracy drop allowed, in the metric's own units.")
]
SpeedOpt = Annotated[
    float | None,
    typer.Option(help="Speed-up over fp32 a point needs (default 1: not slower; 0: any)."),
]
Fp32Opt = Annotated[
    bool, typer.Option(help="Export the fp32 model when no compressed point meets the limits.")
]


def _version(value: bool) -> None:
    if value:
        console.print(f"bitprism {package_version('bitprism')}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Search per-layer compression on real kernels; export verified ONNX."""


@app.command()
def search(
    spec_file: Annotated[Path | None, typer.Argument(help="YAML job spec.")] = None,
    workload: Annotated[str | None, typer.Option(help="Built-in name or pkg.mod:factory.")] = None,
    data: Annotated[
        Path | None, typer.Option(help="Data file for workloads that take one (minilm-stsb).")
    ] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Local model folder (hf-encoder).")] = None,
    trials: Annotated[int | None, typer.Option(help="Trials to finish (resumes count).")] = None,
    workers: Annotated[int | None, typer.Option(help="Trials evaluated at once.")] = None,
    store: Annotated[
        str | None, typer.Option(envvar="BITPRISM_STORE", help="Database URL.")
    ] = None,
    job_id: Annotated[str | None, typer.Option(help="Reuse to resume a job.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    sampler: Annotated[Sampler | None, typer.Option()] = None,
    warm_start: Annotated[
        int | None,
        typer.Option(help="Integer-program seeds from predicted damage (0: blind search)."),
    ] = None,
    factoriser: Annotated[
        str | None, typer.Option(help="Low-rank method: svd, whitened, fwsvd.")
    ] = None,
    pruner: Annotated[str | None, typer.Option(help="Sparsity method: magnitude, obs.")] = None,
    quantiser: Annotated[str | None, typer.Option(help="Rounding method: rtn, gptq.")] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Where artifacts go.")] = None,
    threads: Annotated[int | None, typer.Option(help="Threads each timed model uses.")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size latency is timed at.")] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="Runtime candidates are built for: ort-cpu, openvino-cpu, torch-cuda."),
    ] = None,
    fallback_backend: Annotated[
        str | None,
        typer.Option(help="Search on this backend where --backend cannot run (e.g. no GPU)."),
    ] = None,
    precision: Annotated[
        Precision | None,
        typer.Option(
            help="What candidates compute in (bf16: openvino-cpu on a bf16 CPU, or torch-cuda;"
            " fp16: torch-cuda)."
        ),
    ] = None,
    extra_knob: Annotated[
        list[Knob] | None,
        typer.Option(help="Search a knob the backend gains nothing from (e.g. sparsity)."),
    ] = None,
    trial_timeout: Annotated[float | None, typer.Option(help="Seconds before a trial fails.")] = (
        None
    ),
    max_drop_pct: DropPctOpt = None,
    max_drop_abs: DropAbsOpt = None,
    min_speedup: SpeedOpt = None,
    export: Annotated[Path | None, typer.Option(help="Export the best point here.")] = None,
    fp32_if_none: Fp32Opt = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run (or resume) a compression search job."""
    from bitprism.config import JobSpec, build_spec
    from bitprism.search.driver import run_job

    flags = {
        "workload": workload,
        "data": data,
        "model_dir": model_dir,
        "trials": trials,
        "workers": workers,
        "store": store,
        "job_id": job_id,
        "seed": seed,
        "sampler": sampler,
        "warm_start": warm_start,
        "output_dir": output_dir,
        "backend": backend,
        "fallback_backend": fallback_backend,
        "precision": precision,
        "extra_knobs": extra_knob,
        "trial_timeout_s": trial_timeout,
    }
    updates: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    limits = {"max_drop_pct": max_drop_pct, "max_drop_abs": max_drop_abs}
    limits["min_speedup"] = min_speedup
    timing = {"threads": threads, "batch": batch}
    methods = {"factoriser": factoriser, "pruner": pruner, "quantiser": quantiser}
    with _errors():
        base = JobSpec.from_yaml(spec_file) if spec_file is not None else JobSpec()
        updates = _merge(base, updates, constraints=limits, latency=timing, methods=methods)
        if spec_file is not None:
            spec = JobSpec.from_yaml(spec_file, **updates)
        else:
            spec = build_spec(updates, source="command-line job spec")
        job = run_job(spec, progress=progress, announce=True)
    console.print(f"job [bold]{job}[/bold] done; store {spec.store}")
    result = _result(job, spec.store)
    print_rows(console, _pareto_table(result), False, False)
    if export is not None:
        _export(result, export, result.spec.constraints, Objective.WEIGHT_BYTES, fp32_if_none)


@app.command()
def jobs(
    store: StoreOpt = DEFAULT_STORE, json_out: JsonOpt = False, csv_out: CsvOpt = False
) -> None:
    """List the jobs in a store."""
    from bitprism.search.lease import status_label
    from bitprism.search.store import Store

    with _errors():
        records = Store(store, create=False).jobs()
    rows = [
        {
            "job": r.id,
            "workload": r.workload,
            "status": status_label(r),
            "created": f"{r.created_at:%Y-%m-%d %H:%M}",
            "ran": ran(r),
            "where": _where(r.submission)
            if r.submission
            else ("this shell" if r.started_at else ""),
        }
        for r in records
    ]
    print_rows(console, ("jobs", rows, {}), json_out, csv_out)


def _where(submission: str) -> str:
    """A job's submission, short enough for the jobs table: "ray HOST:PORT" for a Ray job
    (its submission id is in `status JOB` and --json), else as stored ("local pid N on H")."""
    from bitprism.search.jobs import ray_address

    address = ray_address(submission)
    return submission if address is None else f"ray {address.split('://')[-1]}"


def _measured_on(trials: Any) -> list[str]:
    """Where a job's trials were evaluated and timed, counted per host (and Ray node)."""
    from collections import Counter

    lines = []
    for what, key in (("evaluated on", "evaluated_on"), ("timed on", "timed_on")):
        counts = Counter(getattr(t, key) for t in trials if getattr(t, key))
        if counts:
            places = "; ".join(f"{place} ({n} trials)" for place, n in counts.most_common())
            lines.append(f"{what}: {places}")
    return lines


def _when(job: Any) -> str:
    """Where and when a job ran, in one line."""
    where = f"submitted to {job.submission}" if job.submission else "run with `bitprism search`"
    if job.started_at is None:
        return f"{where}; not started"
    state = "ran" if job.finished_at else "running for"
    return f"{where}; started {job.started_at:%Y-%m-%d %H:%M:%S}, {state} {ran(job)}"


@app.command()
def status(
    job: Annotated[str | None, typer.Argument(help="A job (default: list every job).")] = None,
    store: StoreOpt = DEFAULT_STORE,
    json_out: JsonOpt = False,
    csv_out: CsvOpt = False,
) -> None:
    """Show a job's state, where and when it ran, trial counts and the errors of failed
    trials; with no job, every job in the store."""
    from bitprism.report import trial_rows
    from bitprism.search.lease import lost_driver, status_label

    if job is None:
        jobs(store, json_out, csv_out)
        return

    result = _result(job, store)
    rows = trial_rows(result)
    searched = [r for r in rows if r["trial"] != "fp32"]
    counts: dict[str, int] = {}
    for row in searched:
        counts[row["state"]] = counts.get(row["state"], 0) + 1
    dropped = (result.job.space or {}).get("dropped", [])
    if json_out:
        summary = {
            "job": result.job_id,
            "status": result.job.status.value,
            "workload": result.job.workload,
            "backend": result.spec.backend,
            "precision": result.spec.precision.value,
            "trials_asked": result.spec.trials,
            "trials": counts,
            "submission": result.job.submission,
            "started_at": result.job.started_at,
            "finished_at": result.job.finished_at,
            "driver": result.job.driver,
            "driver_lost": lost_driver(result.job),
            "measured_on": [
                {"trial": t.number, "evaluated_on": t.evaluated_on, "timed_on": t.timed_on}
                for t in result.trials
                if t.evaluated_on or t.timed_on
            ],
            "error": result.job.error,
            "dropped": dropped,
            "rows": rows,
        }
        typer.echo(json.dumps(summary, indent=2, default=str))
        return
    if csv_out:
        print_rows(console, ("trials", rows, {}), False, True)
        return
    console.print(
        f"job {result.job_id}: [bold]{status_label(result.job)}[/bold], workload "
        f"{result.job.workload}, {sum(r['state'] != 'pruned' for r in searched)} of "
        f"{result.spec.trials} trials finished or running"
    )
    console.print(f"  runtime: {result.spec.runtime_label()}")
    console.print(f"  {_when(result.job)}")
    if lost := lost_driver(result.job):
        console.print(f"  [yellow]{lost}[/yellow]", markup=True)
    for line in _measured_on(result.trials):
        console.print(f"  {line}", soft_wrap=True)
    console.print("  " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no trials"))
    if dropped:
        layers = len({d["layer"] for d in dropped})
        console.print(
            f"  space narrowed by guidance: {len(dropped)} choice(s) on {layers} layer(s) "
            "not searched (--json lists each and why)"
        )
    for row in rows:
        if row["state"] != "complete" and row["error"]:
            label = "fp32 reference" if row["trial"] == "fp32" else f"trial {row['trial']}"
            console.print(f"  {label} {row['state']}: [red]{row['error']}[/red]", markup=True)
    if result.job.error:
        console.print(f"  job error: [red]{result.job.error}[/red]")


@app.command()
def pareto(
    job: str, store: StoreOpt = DEFAULT_STORE, json_out: JsonOpt = False, csv_out: CsvOpt = False
) -> None:
    """Print the verified Pareto front of a job, with the fp32 reference first."""
    print_rows(console, _pareto_table(_result(job, store)), json_out, csv_out)


@app.command()
def show(
    job: str,
    trial: Annotated[str, typer.Argument(help="Trial number, or fp32.")],
    store: StoreOpt = DEFAULT_STORE,
    json_out: JsonOpt = False,
    csv_out: CsvOpt = False,
) -> None:
    """Show one trial's per-layer choices and its measurements."""
    from bitprism.report import layer_rows

    result = _result(job, store)
    number = None if trial == "fp32" else _trial_number(trial)
    found = [t for t in result.trials if t.number == number]
    if not found:
        _fail(f"job {job!r} has no trial {trial}")
    record = found[0]
    order = [layer["name"] for layer in (result.job.space or {}).get("layers", [])]
    rows = layer_rows(record, order or [name for name, _ in record.candidate])
    if json_out:
        data = {"trial": trial, "state": record.state.value, "metrics": record.metrics}
        typer.echo(json.dumps({**data, "error": record.error, "layers": rows}, indent=2))
        return
    metrics = ", ".join(f"{k} {v:.6g}" for k, v in sorted(record.metrics.items()))
    caption = f"{record.state.value}; {metrics}" + (f"; {record.error}" if record.error else "")
    print_rows(console, (f"{job} trial {trial}", rows, {"caption": caption}), False, csv_out)


@app.command()
def sensitivity(
    workload: Annotated[str, typer.Option(help="Built-in name or pkg.mod:factory.")],
    data: Annotated[
        Path | None, typer.Option(help="Data file for workloads that take one (minilm-stsb).")
    ] = None,
    model_dir: Annotated[Path | None, typer.Option(help="Local model folder (hf-encoder).")] = None,
    batches: Annotated[int, typer.Option(help="Calibration batches the loss is taken on.")] = 2,
    probes: Annotated[int, typer.Option(help="Most Hutchinson probes.")] = 32,
    plot: Annotated[Path | None, typer.Option(help="Also write a plot here (.png).")] = None,
    json_out: JsonOpt = False,
    csv_out: CsvOpt = False,
) -> None:
    """Per-layer Hessian trace (Hutchinson) of the distillation loss to fp32: which layers a
    compression hurts most per weight."""
    from rich.progress import Progress

    from bitprism.paths import writable_file
    from bitprism.sensitivity.measure import layer_sensitivity
    from bitprism.sensitivity.plot import plot_sensitivity
    from bitprism.workloads.registry import resolve_workload

    with _errors():
        if probes < 2:
            raise ValueError(f"--probes must be at least 2, got {probes}")
        target = None if plot is None else writable_file(plot, "--plot", suffix=".png")
        bundle = resolve_workload(workload, data=data, model_dir=model_dir)
        quiet = json_out or csv_out
        with Progress(console=console, transient=True, disable=quiet) as bar:
            task = bar.add_task("Hutchinson probes", total=probes)
            traces = layer_sensitivity(
                bundle,
                batches=batches,
                max_probes=probes,
                on_probe=lambda k: bar.update(task, completed=k),
            )
    rows = [
        {
            "layer": t.name,
            "params": t.params,
            "per_weight": t.mean,
            "trace": t.trace,
            "se_pct": 100 * t.rel_se,
            "probes": t.probes,
            "fisher": fisher,
        }
        for t, fisher in traces
    ]
    caption = (
        f"Tr(H) of the distillation loss to fp32 on {batches} calibration batch(es); "
        "higher per weight = more sensitive; fisher: the same trace from the Fisher "
        "diagonal the search's predicted damage uses"
    )
    print_rows(
        console, (f"sensitivity of {bundle.name}", rows, {"caption": caption}), json_out, csv_out
    )
    if target is not None:
        with _errors():
            plot_sensitivity(traces, target, f"sensitivity of {bundle.name}")
        if not (json_out or csv_out):
            console.print(f"plot written to {target}")


@app.command()
def dashboard(
    store: StoreOpt = DEFAULT_STORE,
    port: Annotated[int, typer.Option(help="Port to serve on.", min=1, max=65535)] = 8501,
    address: Annotated[
        str, typer.Option(help="Address to bind (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
) -> None:
    """Serve the dashboard over a store (read-only) until interrupted."""
    import os
    import sys

    import bitprism.dashboard
    from bitprism.paths import check_store_url

    with _errors():
        check_store_url(store, create=False)
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(Path(bitprism.dashboard.__file__).parent / "app.py"),  # not imported: a script
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "viewer",
        "--",
        "--store",
        store,
    ]
    console.print(f"dashboard of {store} on http://{address}:{port} (Ctrl-C stops it)")
    # Become the server (no child left behind when this process is stopped or killed).
    os.execv(sys.executable, command)


@app.command("export")
def export_cmd(
    job: str,
    output: Annotated[
        Path,
        typer.Option("-o", "--output", help="File to write (.onnx; .pt2 for torch-cuda)."),
    ],
    max_drop_pct: DropPctOpt = None,
    max_drop_abs: DropAbsOpt = None,
    min_speedup: SpeedOpt = None,
    by: Annotated[Objective, typer.Option(help="Objective to optimise under the limits.")] = (
        Objective.WEIGHT_BYTES
    ),
    fp32_if_none: Fp32Opt = False,
    workload: Annotated[
        str | None, typer.Option(help="pkg.mod:factory, for a job started from Python.")
    ] = None,
    trial: Annotated[
        int | None, typer.Option(help="Export this verified trial, whatever the limits.")
    ] = None,
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Export the best verified point under the limits (default: smallest, not slower)."""
    from bitprism.workloads.registry import resolve_workload

    with _errors():
        given = resolve_workload(workload) if workload else None
    result = _result(job, store, given)
    limits = result.constraints(
        max_drop_pct=max_drop_pct, max_drop_abs=max_drop_abs, min_speedup=min_speedup
    )
    _export(result, output, limits, by, fp32_if_none, trial)


def _merge(base: Any, updates: dict[str, Any], **nested: dict[str, Any]) -> dict[str, Any]:
    """Add the given nested flags (e.g. constraints) to ``updates`` over the base spec's own."""
    out = dict(updates)
    for name, values in nested.items():
        given = {k: v for k, v in values.items() if v is not None}
        if given:
            own = getattr(base, name).model_dump(mode="json", exclude_unset=True)
            out[name] = {**own, **given}
    return out


def _trial_number(text: str) -> int:
    if not text.isdigit():
        _fail(f"trial must be a number or fp32, got {text!r}")
    return int(text)


def _result(job: str, store: str, workload: Any = None) -> Any:
    from bitprism.results import SearchResult

    with _errors():
        try:
            return SearchResult(job, store, workload=workload)
        except KeyError as exc:
            _fail(str(exc.args[0]))


def _pareto_table(result: Any) -> Rows:
    from bitprism.report import pareto_rows

    rows = pareto_rows(result)
    caption = f"speed-up vs fp32 timed in the same passes at {_timed_at(result)}"
    return f"Pareto front of {result.job_id} (verified files)", rows, {"caption": caption}


def _timed_at(result: Any) -> str:
    """``batch 32, 1 thread``: the batch is the one the job really timed."""
    reference = result.reference
    batch = None if reference is None else reference.metrics.get("timing_batch")
    timing = result.spec.latency.describe(None if batch is None else int(batch))
    return f"{timing}, {result.spec.runtime_label()}"


def _export(
    result: Any,
    output: Path,
    limits: Any,
    by: Objective,
    fp32_if_none: bool,
    trial: int | None = None,
) -> None:
    with _errors():
        report = result.export(
            output, constraints=limits, by=by, fp32_if_none=fp32_if_none, trial=trial
        )
    digits = score_digits(report.reference.accuracy or 0.0)
    table = Table(title=f"exported {report.point.label} to {report.path}")
    for column in ("model", "accuracy", "file KiB", "latency ms", "speed-up (spread)"):
        table.add_column(column, justify="right")
    for name, file in (("fp32", report.reference), (report.point.label, report.chosen)):
        t = file.timing
        table.add_row(
            name,
            "?" if file.accuracy is None else f"{file.accuracy:.{digits}f}",
            f"{file.file_bytes / 1024:.1f}",
            f"{t.latency.median_ms:.3f}",
            f"{t.speedup:.2f}x ({t.speedup_min:.2f}-{t.speedup_max:.2f})",
        )
    console.print(table)
    for note in report.passed_over:
        console.print(f"[yellow]passed over {note}[/yellow]")
    style = "green" if report.point.is_reference or report.speedup >= 1 else "yellow"
    console.print(
        f"[{style}]{report.summary()}[/{style}] (timed at {_timed_at(result)}, "
        f"{result.spec.latency.passes} interleaved passes)"
    )


if __name__ == "__main__":  # pragma: no cover
    app()
