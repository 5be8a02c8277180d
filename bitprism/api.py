"""The Python entry points: run a search, reopen a finished one."""

from __future__ import annotations

from typing import Any

from bitprism.config import JobSpec, build_spec
from bitprism.results import SearchResult
from bitprism.workloads.base import Workload


def search(
    workload: Workload | str, spec: JobSpec | None = None, *, progress: bool = True, **fields: Any
) -> SearchResult:
    """Run (or resume) a compression search and return its result.

    Args:
        workload: A :class:`Workload`, a built-in name (``"digits-cnn"``) or ``"pkg.mod:factory"``.
        spec: The job spec; defaults to ``JobSpec()``.
        progress: Show a progress bar; with False nothing is printed.
        **fields: Spec fields to override, e.g. ``trials=20``.

    Example:
        >>> result = search("digits-cnn", trials=20, workers=2)
        >>> [p.label for p in result.pareto]
    """
    from bitprism.search.driver import run_job

    base = (spec or JobSpec()).model_dump(mode="json", exclude_unset=True)
    if isinstance(workload, str):
        fields["workload"] = workload
    spec = build_spec({**base, **fields})
    given = workload if isinstance(workload, Workload) else None
    job_id = run_job(spec, given, progress=progress)
    return SearchResult(job_id, spec.store, workload=given)


def load_result(
    job_id: str, store: str = JobSpec().store, workload: Workload | None = None
) -> SearchResult:
    """Reopen a job stored in ``store`` (never creates a store).

    Pass ``workload`` for a job that was started with a :class:`Workload` object, so that its
    export can be re-scored; it is checked to hold the job's very model.
    """
    return SearchResult(job_id, store, workload=workload)
