"""The ``bitprism`` command: search | status | pareto | export | jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bitprism.config import Objective, Sampler, SpecError, build_spec

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Search per-layer compression on real kernels; export verified ONNX.",
)
console = Console()

StoreOpt = Annotated[
    str,
    typer.Option(
        "--store", envvar="BITPRISM_STORE", help="Database URL (sqlite:///... or postgresql://...)."
    ),
]
DEFAULT_STORE = "sqlite:///bitprism.db"


@app.command()
def search(
    spec_file: Annotated[Path | None, typer.Argument(help="YAML job spec.")] = None,
    workload: Annotated[str | None, typer.Option(help="Built-in name or pkg.mod:factory.")] = None,
    trials: Annotated[int | None, typer.Option(help="Trials to finish (resumes count).")] = None,
    workers: Annotated[int | None, typer.Option(help="Trials evaluated at once.")] = None,
    store: Annotated[
        str | None, typer.Option(envvar="BITPRISM_STORE", help="Database URL.")
    ] = None,
    job_id: Annotated[str | None, typer.Option(help="Reuse to resume a job.")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    sampler: Annotated[Sampler | None, typer.Option()] = None,
    output_dir: Annotated[Path | None, typer.Option(help="Where ONNX artifacts go.")] = None,
    export: Annotated[Path | None, typer.Option(help="Export the best point here.")] = None,
    max_drop: Annotated[float | None, typer.Option(help="Accuracy drop allowed (points).")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Run (or resume) a compression search job."""
    from bitprism.config import JobSpec
    from bitprism.search.driver import run_job

    flags = {
        "workload": workload,
        "trials": trials,
        "workers": workers,
        "store": store,
        "job_id": job_id,
        "seed": seed,
        "sampler": sampler,
        "output_dir": output_dir,
    }
    updates: dict[str, Any] = {k: v for k, v in flags.items() if v is not None}
    if max_drop is not None:
        updates["constraints"] = {"max_accuracy_drop": max_drop}
    try:
        if spec_file is not None:
            spec = JobSpec.from_yaml(spec_file, **updates)
        else:
            spec = build_spec(updates, source="command-line job spec")
        job = run_job(spec, progress=progress)
    except (SpecError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"job [bold]{job}[/bold] done; store {spec.store}")
    _show_pareto(_result(job, spec.store))
    if export is not None:
        _export(job, spec.store, export, max_drop, Objective.WEIGHT_BYTES)


@app.command()
def status(job: str, store: StoreOpt = DEFAULT_STORE) -> None:
    """Show a job's state and trial counts."""
    result = _result(job, store)
    counts: dict[str, int] = {}
    for trial in result.trials:
        counts[trial.state.value] = counts.get(trial.state.value, 0) + 1
    console.print(
        f"job {result.job_id}: [bold]{result.job.status.value}[/bold], workload "
        f"{result.job.workload}, {result.spec.trials} trials asked"
    )
    console.print("  " + ", ".join(f"{n} {state}" for state, n in sorted(counts.items())))
    for trial in result.trials:
        if trial.error and trial.state.value == "failed":
            console.print(f"  trial {trial.number}: [red]{trial.error.splitlines()[0]}[/red]")
    if result.job.error:
        console.print(f"  job error: [red]{result.job.error}[/red]")


@app.command()
def pareto(job: str, store: StoreOpt = DEFAULT_STORE) -> None:
    """Print the verified Pareto front of a job."""
    _show_pareto(_result(job, store))


@app.command("export")
def export_cmd(
    job: str,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the .onnx file.")],
    max_drop: Annotated[float | None, typer.Option(help="Accuracy drop allowed (points).")] = None,
    by: Annotated[Objective, typer.Option(help="Objective to optimise under the constraints.")] = (
        Objective.WEIGHT_BYTES
    ),
    store: StoreOpt = DEFAULT_STORE,
) -> None:
    """Export the best verified point under the constraints to ONNX."""
    _export(job, store, output, max_drop, by)


@app.command()
def jobs(store: StoreOpt = DEFAULT_STORE) -> None:
    """List the jobs in a store."""
    from bitprism.search.store import Store

    table = Table("job", "workload", "status", "created")
    for record in Store(store).jobs():
        table.add_row(
            record.id, record.workload, record.status.value, f"{record.created_at:%Y-%m-%d %H:%M}"
        )
    console.print(table)


def _result(job: str, store: str) -> Any:
    from bitprism.results import SearchResult

    try:
        return SearchResult(job, store)
    except KeyError as exc:
        _fail(str(exc.args[0]))


def _show_pareto(result: Any) -> None:
    reference = result.reference
    table = Table(title=f"Pareto front of {result.job_id} (verified ONNX files)")
    for column in ("point", "accuracy", "drop", "latency ms", "weight KiB", "size x", "choices"):
        table.add_column(column, justify="left" if column in ("point", "choices") else "right")
    for point in result.pareto:
        drop = f"{reference.accuracy - point.accuracy:+.2f}" if reference else "?"
        ratio = f"{reference.weight_bytes / point.weight_bytes:.2f}" if reference else "?"
        table.add_row(
            point.label,
            f"{point.accuracy:.2f}",
            drop,
            f"{point.latency_ms:.3f}",
            f"{point.weight_bytes / 1024:.1f}",
            ratio,
            _summary(point),
        )
    if result.pareto:
        layers = " ".join(name for name, _ in result.pareto[0].candidate)
        table.caption = f"choices per layer ({layers}): bits, s = sparsity, r = rank fraction"
    console.print(table)


def _summary(point: Any) -> str:
    """One token per layer: bits (fp = 16), then sparsity and rank fraction when used."""
    tokens = []
    for _name, choice in point.candidate:
        token = "fp" if choice.weight_bits == 16 else str(choice.weight_bits)
        token += f"s{choice.sparsity:g}" if choice.sparsity else ""
        token += f"r{choice.rank_fraction:g}" if choice.rank_fraction < 1 else ""
        tokens.append(token)
    return " ".join(tokens)


def _export(job: str, store: str, output: Path, max_drop: float | None, by: Objective) -> None:
    from bitprism.results import ExportError

    result = _result(job, store)
    try:
        report = result.export(output, max_drop=max_drop, by=by)
    except ExportError as exc:
        _fail(str(exc))
    table = Table(title=f"exported {report.point.label} to {report.path}")
    for column in ("model", "accuracy", "file KiB", "latency ms (median)"):
        table.add_column(column, justify="right")
    for name, acc, size, lat in (
        (
            "fp32",
            report.reference_accuracy,
            report.reference_file_bytes,
            report.reference_latency_ms,
        ),
        (report.point.label, report.accuracy, report.file_bytes, report.latency_ms),
    ):
        table.add_row(
            name, "?" if acc is None else f"{acc:.2f}", f"{size / 1024:.1f}", f"{lat:.3f}"
        )
    console.print(table)
    console.print(
        f"size {report.reference_file_bytes / report.file_bytes:.2f}x smaller, latency "
        f"{report.reference_latency_ms / report.latency_ms:.2f}x (threads="
        f"{result.spec.latency.threads})"
    )


def _fail(message: str) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=2)


if __name__ == "__main__":  # pragma: no cover
    app()
