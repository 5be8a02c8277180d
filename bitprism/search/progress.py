"""A rich progress bar for a running search: trials done, failures, best accuracy so far."""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class SearchProgress:
    """Context manager around one rich progress task (none when ``enabled`` is False), and the
    lines it announces (none when ``announce`` is False)."""

    def __init__(
        self, job_id: str, total: int, completed: int, enabled: bool = True, announce: bool = True
    ) -> None:
        self._announce = announce
        self.failed = 0
        self.unverified = 0
        self.pruned = 0
        self.best_accuracy: float | None = None
        self.best_speedup: float | None = None
        self.reference: float | None = None
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            disable=not enabled,
            transient=False,
        )
        self._task = self._progress.add_task(
            f"search {job_id}", total=total, completed=min(completed, total), status=""
        )

    def announce(self, text: str) -> None:
        """Print one line above the bar (or alone without one, so a background job's log keeps
        what the job says of itself), unless announcements are off."""
        if self._announce:
            self._progress.console.print(text, soft_wrap=True)  # a log file keeps whole lines

    def __enter__(self) -> SearchProgress:
        self._progress.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._progress.__exit__(kind, value, tb)

    def advance(
        self,
        is_trial: bool,
        metrics: Mapping[str, float] | None = None,
        failed: bool = False,
        unverified: bool = False,
        pruned: bool = False,
    ) -> None:
        """Count one finished evaluation (the fp32 reference updates the status only).

        ``unverified`` marks a failure whose ONNX file disagreed with PyTorch; ``pruned`` a
        proposal stopped before evaluation (shown, not counted: ``is_trial`` is False).
        """
        self.pruned += pruned
        if failed:
            self.failed += not unverified
            self.unverified += unverified
        elif metrics is not None and not is_trial:
            self.reference = metrics["accuracy"]
        elif metrics is not None:
            accuracy = metrics["accuracy"]
            self.best_accuracy = max(self.best_accuracy or accuracy, accuracy)
            self.best_speedup = max(self.best_speedup or 0.0, metrics.get("speedup", 0.0))
        self._progress.update(self._task, advance=1 if is_trial else 0, status=self._status())

    def _status(self) -> str:
        parts = []
        if self.reference is not None:
            parts.append(f"fp32 {self.reference:.4g}")
        if self.best_accuracy is not None:
            parts.append(f"best {self.best_accuracy:.4g}")
        if self.best_speedup:
            parts.append(f"fastest {self.best_speedup:.2f}x")
        if self.failed:
            parts.append(f"[red]{self.failed} failed[/red]")
        if self.unverified:
            parts.append(f"[yellow]{self.unverified} unverified[/yellow]")
        if self.pruned:
            parts.append(f"{self.pruned} pruned unmeasured")
        return "  ".join(parts)
