"""Jobs run in the background (`bitprism submit`): stored queued, run by a detached driver,
followed through the store, cancelled through the store, resumed to exactly their budget."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bitprism.cli import app
from bitprism.config import SpecError
from bitprism.search import jobs
from bitprism.search.driver import JobCancelled, run_job
from bitprism.search.schema import JobStatus, TrialRole, TrialState
from bitprism.search.store import Store
from tests.fixtures import job_spec

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """The detached drivers import tests.fixtures, as a user's driver imports their module."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _until(store: Store, job_id: str, done: set[JobStatus], limit_s: float = 240) -> JobStatus:
    deadline = time.monotonic() + limit_s
    while (status := store.job_status(job_id)) not in done:
        assert time.monotonic() < deadline, f"job {job_id} still {status}"
        time.sleep(0.5)
    return status


def _complete(store: Store, job_id: str) -> list[int]:
    return sorted(
        t.number
        for t in store.trials(job_id)
        if t.role is TrialRole.SEARCH and t.state is TrialState.COMPLETE and t.number is not None
    )


def test_bad_input_is_refused_before_anything_is_written(store_url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot import module 'no.such'"):
        jobs.submit(job_spec(store_url, tmp_path, workload="no.such:thing"))
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        jobs.submit(job_spec(store_url, tmp_path, workload="tests.fixtures:nope"))
    assert not Path(store_url.removeprefix("sqlite:///")).exists() or Store(store_url).jobs() == []
    assert not (tmp_path / "runs" / "job").exists()


def test_a_driver_whose_workload_fails_marks_the_job_failed(store_url: str, tmp_path: Path) -> None:
    spec = job_spec(store_url, tmp_path, workload="tests.fixtures:factory_raises")
    jobs.submit(spec)
    store = Store(store_url)
    assert _until(store, "job", {JobStatus.FAILED, JobStatus.DONE}) is JobStatus.FAILED
    job = store.job("job")
    assert job is not None and "data file is gone" in (job.error or "")


def test_a_cancelled_queued_job_never_runs(store_url: str, tmp_path: Path) -> None:
    spec = jobs.settled(job_spec(store_url, tmp_path))
    store = Store(store_url)
    store.create_job(
        "job", spec.workload, spec.model_dump(mode="json"), "bitprism-job", status=JobStatus.QUEUED
    )
    assert "before it started" in jobs.cancel(store, "job")
    with pytest.raises(JobCancelled, match="before this driver started it"):
        run_job(spec, progress=False)
    job = store.job("job")
    assert job is not None and job.status is JobStatus.CANCELLED and job.finished_at is not None
    assert store.trials("job") == []
    assert "nothing to cancel" in jobs.cancel(store, "job")
    with pytest.raises(SpecError, match="no job 'other'"):
        jobs.cancel(store, "other")


def test_a_submitted_job_runs_in_the_background_is_cancelled_and_resumed(
    store_url: str, tmp_path: Path
) -> None:
    budget = 40  # token-mlp trials take a second or less: enough of them to cancel mid-run
    # Submitted from a process that ignores Ctrl-C (as a shell script's background job
    # does): the driver inherits SIGINT ignored, and must still stop when cancelled.
    ignoring = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        submitted = jobs.submit(
            job_spec(store_url, tmp_path, trials=budget, workers=1, warm_start=0)
        )
    finally:
        signal.signal(signal.SIGINT, ignoring)
    store = Store(store_url)
    job = store.job("job")
    assert job is not None and job.submission == submitted.where
    assert job.status in (JobStatus.QUEUED, JobStatus.PENDING, JobStatus.RUNNING)
    with pytest.raises(SpecError, match="exists already"):
        jobs.submit(job_spec(store_url, tmp_path, trials=3, warm_start=0))
    deadline = time.monotonic() + 240
    while len(_complete(store, "job")) < 2:  # cancel mid-job, not before it starts
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert "cancelling" in jobs.cancel(store, "job")
    assert _until(store, "job", {JobStatus.CANCELLED, JobStatus.DONE}, 60) is JobStatus.CANCELLED
    assert submitted.process is not None and submitted.process.wait(timeout=60) == 1
    job = store.job("job")
    assert job is not None and job.driver is None  # it let the job go
    assert job.error == "cancelled by the user" and job.started_at and job.finished_at
    stopped = _complete(store, "job")
    assert 2 <= len(stopped) < budget
    assert not [t for t in store.trials("job") if t.state is TrialState.RUNNING]
    assert "was cancelled while" in (submitted.log.read_text() if submitted.log else "")
    goal = len(stopped) + 2  # the rest of the 40 would only take time: resume to a new total
    resumed = jobs.resume(store, "job", trials=goal)
    assert _until(store, "job", {JobStatus.DONE, JobStatus.FAILED}) is JobStatus.DONE
    finished = _complete(store, "job")
    assert len(finished) == goal and len(set(finished)) == goal  # exactly, none repeated
    assert resumed.process is not None and resumed.process.wait(timeout=30) == 0
    assert "job job done" in resumed.log.read_text()
    with pytest.raises(SpecError, match="more --trials"):
        jobs.resume(store, "job")


def test_two_submits_of_one_job_at_once_start_one(store_url: str, tmp_path: Path) -> None:
    Store(store_url)  # the schema first: both submits race on the job row only
    started: list[jobs.Submitted] = []
    refused: list[str] = []

    def one() -> None:
        try:
            started.append(jobs.submit(job_spec(store_url, tmp_path, trials=1, warm_start=0)))
        except SpecError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(started) == 1 and len(refused) == 1 and "exists already" in refused[0]
    store = Store(store_url)
    assert len(store.jobs()) == 1
    jobs.cancel(store, "job")  # its running is tested above: let it go at once
    process = started[0].process
    assert process is not None and process.wait(timeout=120) == 1
    assert store.job_status("job") is JobStatus.CANCELLED


def test_the_cli_submits_waits_lists_and_batches(store_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    spec = tmp_path / "one.yaml"
    spec.write_text(
        "workload: tests.fixtures:token_mlp\ntrials: 2\nworkers: 1\nwarm_start: 0\n"
        f"store: {store_url}\noutput_dir: {tmp_path / 'runs'}\n"
        "latency: {repeats: 5, passes: 3}\n"
    )
    done = runner.invoke(app, ["submit", str(spec), "--job-id", "a", "--wait"])
    assert done.exit_code == 0, done.output
    assert "job a: done" in done.output
    listed = runner.invoke(app, ["status", "--store", store_url, "--json"])
    assert '"status": "done"' in listed.output and '"where": "local pid' in listed.output
    log = runner.invoke(app, ["logs", "a", "--store", store_url])
    assert log.exit_code == 0 and "job a done" in log.output
    other = tmp_path / "two.yaml"
    other.write_text(spec.read_text() + "job_id: b\n")
    third = tmp_path / "three.yaml"
    third.write_text(spec.read_text() + "job_id: c\n")
    batch = runner.invoke(app, ["batch", str(other), str(third), "--max-concurrent", "2", "--json"])
    rows = json.loads(batch.output)
    assert [(r["job"], r["status"]) for r in rows] == [("b", "done"), ("c", "done")], rows
    assert all(r["best point"] and r["wall time"].endswith(" s") for r in rows)
    bad = runner.invoke(app, ["batch", str(other), str(other)])
    assert bad.exit_code == 2 and "same job id" in bad.output
