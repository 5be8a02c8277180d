"""What every ``bitprism`` subcommand shares: the console, the store option, and turning
bitprism's user-facing errors into one red line and a non-zero exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, NoReturn

import typer
from rich.console import Console

console = Console()

DEFAULT_STORE = "sqlite:///bitprism.db"
StoreOpt = Annotated[
    str,
    typer.Option(
        "--store", envvar="BITPRISM_STORE", help="Database URL (sqlite:///... or postgresql://...)."
    ),
]

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@contextmanager
def errors() -> Iterator[None]:
    """Turn bitprism's user-facing errors into one red line and a non-zero exit."""
    from bitprism.results import ExportError
    from bitprism.search.driver import JobCancelled
    from bitprism.search.lease import JobBusyError
    from bitprism.search.loop import ReferenceFailed

    try:
        yield
    except JobCancelled as exc:
        console.print(f"[yellow]{exc}[/yellow]", soft_wrap=True)
        raise typer.Exit(code=1) from None
    except (ReferenceFailed, ExportError, JobBusyError) as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        raise typer.Exit(code=1) from None
    except ValueError as exc:  # SpecError, PathError, StoreError, a bad workload reference
        fail(str(exc))


def fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(code=2)
