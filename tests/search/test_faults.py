"""Fault tolerance with counts: a driver killed with SIGKILL mid-job and resumed, and four
jobs at once on one store while the dashboard's queries read it (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest

from bitprism.dashboard.queries import Queries
from bitprism.search import jobs
from bitprism.search.heartbeat import LOST, TRIAL_GRACE_S, TRIAL_HEARTBEAT_S
from bitprism.search.schema import JobStatus, TrialRole, TrialState
from bitprism.search.store import Store, optuna_storage
from tests.fixtures import job_spec

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]
FINAL = {JobStatus.DONE, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _search_trials(store: Store, job_id: str) -> list:  # type: ignore[type-arg]
    return [t for t in store.trials(job_id) if t.role is TrialRole.SEARCH]


def _until(condition, limit_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_a_driver_killed_mid_job_is_resumed_to_exactly_its_budget(
    store_url: str, tmp_path: Path
) -> None:
    budget = 6
    submitted = jobs.submit(job_spec(store_url, tmp_path, trials=budget, workers=1, warm_start=0))
    store = Store(store_url)

    def complete() -> list[int]:
        return [t.number for t in _search_trials(store, "job") if t.state is TrialState.COMPLETE]

    def running() -> bool:
        return any(t.state is TrialState.RUNNING for t in _search_trials(store, "job"))

    _until(lambda: len(complete()) >= 2 and running(), 240, "the job never got going")
    os.killpg(submitted.process.pid, signal.SIGKILL)  # the driver and the Ray it started
    submitted.process.wait(timeout=30)
    job = store.job("job")
    assert job is not None and job.status is JobStatus.RUNNING and job.driver is not None
    killed_at = len(complete())
    in_flight = {t.number for t in _search_trials(store, "job") if t.state is TrialState.RUNNING}
    assert in_flight  # one worker: a trial was running when the driver died
    time.sleep(TRIAL_GRACE_S + TRIAL_HEARTBEAT_S)  # their heartbeats go stale
    resumed = jobs.resume(store, "job")  # its driver is gone from this machine: taken over
    _until(lambda: store.job_status("job") in FINAL, 300, "the resumed job did not end")
    assert store.job_status("job") is JobStatus.DONE, resumed.log.read_text()[-3000:]
    numbers = complete()
    assert len(numbers) == budget and len(set(numbers)) == budget
    assert killed_at < budget
    states = [t.state for t in _search_trials(store, "job")]
    assert TrialState.RUNNING not in states  # what the dead driver left was repaired
    lost = {t.number: t for t in _search_trials(store, "job") if t.number in in_flight}
    assert all(t.state is TrialState.INTERRUPTED and t.error == LOST for t in lost.values())
    study = optuna.load_study(study_name="bitprism-job", storage=optuna_storage(store_url))
    failed = {t.number for t in study.trials if t.state is optuna.trial.TrialState.FAIL}
    assert in_flight <= failed  # Optuna failed them: its heartbeat, not a guess
    assert sum(s is TrialState.COMPLETE for s in states) == budget


def test_four_jobs_at_once_on_one_store_while_the_dashboard_reads(
    any_store: str, tmp_path: Path
) -> None:
    Store(any_store)  # the schema first: the four drivers race on their own rows only
    ids = [f"j{i}" for i in range(4)]
    for job_id in ids:
        jobs.submit(job_spec(any_store, tmp_path, job_id=job_id, trials=2, workers=1, warm_start=0))
    reads: list[int] = []
    errors: list[str] = []
    stop = threading.Event()

    def dashboard() -> None:
        queries = Queries(any_store)
        while not stop.is_set():
            try:
                for row in queries.jobs():
                    reads.append(len(queries.points(row.id)))
            except Exception as exc:  # a locked database would land here
                errors.append(repr(exc))
            time.sleep(0.2)

    reader = threading.Thread(target=dashboard)
    reader.start()
    store = Store(any_store)
    try:
        _until(lambda: all(store.job_status(j) in FINAL for j in ids), 600, "the jobs did not end")
    finally:
        stop.set()
        reader.join()
    logs = {j: (tmp_path / "runs" / j / "job.log").read_text() for j in ids}
    assert not errors, errors[:3]
    assert all("database is locked" not in text for text in logs.values())
    for job_id in ids:
        assert store.job_status(job_id) is JobStatus.DONE, logs[job_id][-3000:]
        trials = _search_trials(store, job_id)
        assert sorted(t.number for t in trials) == [0, 1]  # none lost, none duplicated
        assert all(t.state is TrialState.COMPLETE for t in trials)
        assert sum(t.role is TrialRole.REFERENCE for t in store.trials(job_id)) == 1
    assert reads and max(reads) == 3  # the reader saw finished jobs: fp32 and two trials


def _evaluating_workers(session: int) -> list[int]:
    """PIDs of the Ray workers of one driver's session that are evaluating a trial now."""
    listed = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True)
    found = []
    for line in listed.stdout.splitlines():
        pid, sid, args = line.split(maxsplit=2)
        if int(sid) == session and args.startswith("ray::evaluate_candidate"):
            found.append(int(pid))
    return found


def test_a_worker_killed_mid_trial_is_retried_and_the_budget_is_exact(
    store_url: str, tmp_path: Path
) -> None:
    budget = 8
    submitted = jobs.submit(job_spec(store_url, tmp_path, trials=budget, workers=2, warm_start=0))
    assert submitted.process is not None
    store = Store(store_url)
    killed: list[int] = []

    def kill_one() -> bool:
        busy = _evaluating_workers(submitted.process.pid)  # type: ignore[union-attr]
        if busy:
            os.kill(busy[0], signal.SIGKILL)
            killed.append(busy[0])
        return bool(killed) or store.job_status("job") in FINAL

    _until(kill_one, 240, "no worker was seen evaluating a trial")
    assert killed, "the job ended before a worker could be killed"
    _until(lambda: store.job_status("job") in FINAL, 300, "the job did not end")
    assert store.job_status("job") is JobStatus.DONE, submitted.log.read_text()[-3000:]  # type: ignore[union-attr]
    trials = _search_trials(store, "job")
    finished = [t.number for t in trials if t.state in (TrialState.COMPLETE, TrialState.FAILED)]
    assert len(finished) == budget and len(set(finished)) == budget  # none lost or repeated
    assert sum(t.state is TrialState.COMPLETE for t in trials) == budget  # the retry measured it
