"""Stores the dashboard is tested on: one filled by a real small job, one with a failed job,
and an empty one."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitprism.search.driver import run_job
from bitprism.search.loop import ReferenceFailed
from bitprism.search.store import Store
from tests.fixtures import job_spec


@pytest.fixture(scope="session")
def job_store(tmp_path_factory: pytest.TempPathFactory, ray_local: None) -> str:
    """A token-MLP job of 8 trials, and a job whose fp32 reference failed, in one store."""
    folder = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{folder / 'store.db'}"
    run_job(job_spec(url, folder, trials=8), progress=False)
    with pytest.raises(ReferenceFailed):
        run_job(
            job_spec(url, folder, workload="tests.fixtures:crashing", trials=1, job_id="broken"),
            progress=False,
        )
    return url


@pytest.fixture()
def empty_store(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(url)  # the schema, no job
    return url
