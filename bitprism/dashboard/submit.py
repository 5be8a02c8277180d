"""The Jobs page's form as a job spec: validated as the CLI validates one, then submitted
through :func:`bitprism.search.jobs.submit`, the path of ``bitprism submit``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bitprism.config import JobSpec, build_spec
from bitprism.search.jobs import new_job_id


def form_spec(fields: dict[str, Any], store: str) -> JobSpec:
    """The job the form describes, on the dashboard's store, validated as the CLI validates a
    spec (a SpecError naming each bad field). Relative paths are made absolute, so the job
    writes where the dashboard was started."""
    data = {k: v for k, v in fields.items() if v not in (None, "")}
    data["store"] = store
    data.setdefault("job_id", new_job_id(str(data.get("workload", "job"))))
    data["output_dir"] = str(Path(data.get("output_dir", "bitprism-runs")).expanduser().resolve())
    return build_spec(data, source="the job form")
