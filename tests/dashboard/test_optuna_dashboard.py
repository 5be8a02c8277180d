"""The job's study stays readable by stock optuna-dashboard on the same database: its own
server, started as a user would, lists the study and serves every trial with its state and
objective values."""

from __future__ import annotations

import json
import shutil
import sys
import urllib.request
from pathlib import Path

from bitprism.search.schema import TrialRole, TrialState
from bitprism.search.store import Store
from tests.dashboard.browser import free_port, serving


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as reply:
        return dict(json.load(reply))


def test_stock_optuna_dashboard_reads_the_jobs_study(job_store: str) -> None:
    store = Store(job_store, create=False)
    job = store.job("job")
    assert job is not None
    ours = [t for t in store.trials("job") if t.role is TrialRole.SEARCH]
    program = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert program is not None, "optuna-dashboard is a dev dependency"
    port = free_port()
    command = [program, job_store, "--host", "127.0.0.1", "--port", str(port)]
    with serving([*command, "--server", "wsgiref", "--quiet"], port, "/api/meta") as base:
        studies = _get(f"{base}/api/studies")["study_summaries"]
        study = next(s for s in studies if s["study_name"] == job.study_name)
        assert len(study["directions"]) == len(job.spec["objectives"])
        detail = _get(f"{base}/api/studies/{study['study_id']}?after=0")
    trials = sorted(detail["trials"], key=lambda t: t["number"])
    assert [t["number"] for t in trials] == [t.number for t in ours]
    complete = [t for t in trials if t["state"] == "Complete"]
    assert len(complete) == sum(t.state is TrialState.COMPLETE for t in ours)
    by_number = {t.number: t for t in ours}
    for trial in complete:
        metrics = by_number[trial["number"]].metrics
        wanted = [metrics[name] for name in job.spec["objectives"]]
        assert [float(v) for v in trial["values"]] == wanted
    assert detail["best_trials"]  # its own Pareto front of the objectives
