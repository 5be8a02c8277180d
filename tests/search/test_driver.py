"""The search driver end to end on real models, Ray and a real SQLite store."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from bitprism.config import JobSpec, SpecError, build_spec
from bitprism.search.driver import run_job
from bitprism.search.schema import JobStatus, TrialRole, TrialState
from bitprism.search.store import Store, optuna_storage
from bitprism.spaces.candidate import Candidate

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]


def _spec(store_url: str, tmp_path: Path, **fields) -> JobSpec:  # type: ignore[no-untyped-def]
    base = {
        "workload": "tests.fixtures:token_mlp",
        "trials": 4,
        "workers": 2,
        "store": store_url,
        "output_dir": str(tmp_path / "runs"),
        "job_id": "job",
        "latency": {"repeats": 5},
    }
    return build_spec({**base, **fields})


def _search_numbers(store: Store) -> list[int]:
    return [
        t.number for t in store.trials("job") if t.role is TrialRole.SEARCH and t.number is not None
    ]


def test_job_runs_stores_everything_and_stock_optuna_reads_it(store_url, tmp_path) -> None:
    run_job(_spec(store_url, tmp_path), progress=False)
    store = Store(store_url)
    trials = store.trials("job")
    reference = [t for t in trials if t.role is TrialRole.REFERENCE]
    assert (
        len(reference) == 1
        and reference[0].candidate.digest() == Candidate.from_dict({"up": {}, "down": {}}).digest()
    )
    searched = [t for t in trials if t.role is TrialRole.SEARCH]
    assert len(searched) == 4 and all(t.state is TrialState.COMPLETE for t in searched)
    for trial in trials:
        assert {"accuracy", "latency_ms", "weight_bytes", "parity_rel_err"} <= set(trial.metrics)
        assert trial.verified is True and Path(trial.artifact.path).is_file()  # type: ignore[union-attr]
        assert (
            trial.metrics["latency_p10_ms"]
            <= trial.metrics["latency_ms"]
            <= trial.metrics["latency_p90_ms"]
        )
    job = store.job("job")
    assert job is not None and job.status is JobStatus.DONE and job.space is not None
    study = optuna.load_study(study_name="bitprism-job", storage=store_url)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert len(study.directions) == 3
    assert study.trials[0].values[0] == searched[0].metrics["accuracy"]


def test_resume_continues_without_duplicates(store_url, tmp_path) -> None:
    run_job(_spec(store_url, tmp_path, trials=3), progress=False)
    run_job(_spec(store_url, tmp_path, trials=3), progress=False)  # nothing left to do
    store = Store(store_url)
    assert _search_numbers(store) == [0, 1, 2]
    run_job(_spec(store_url, tmp_path, trials=5), progress=False)
    assert _search_numbers(store) == [0, 1, 2, 3, 4]
    assert sum(t.role is TrialRole.REFERENCE for t in store.trials("job")) == 1
    study = optuna.load_study(study_name="bitprism-job", storage=store_url)
    assert len(study.trials) == 5


def test_resume_refuses_a_changed_search(store_url, tmp_path) -> None:
    run_job(_spec(store_url, tmp_path, trials=1), progress=False)
    with pytest.raises(SpecError, match="different seed"):
        run_job(_spec(store_url, tmp_path, trials=2, seed=7), progress=False)


def test_killed_driver_is_repaired_on_resume(store_url, tmp_path) -> None:
    run_job(_spec(store_url, tmp_path, trials=2), progress=False)
    # What a driver killed mid-trial leaves: a running row and an Optuna trial never told.
    store = Store(store_url)
    study = optuna.load_study(study_name="bitprism-job", storage=optuna_storage(store_url))
    orphan = study.ask()
    row = store.start_trial("job", orphan.number, TrialRole.SEARCH, Candidate.from_dict({}))
    run_job(_spec(store_url, tmp_path, trials=4), progress=False)
    states = {t.number: t.state for t in store.trials("job") if t.number is not None}
    assert states[orphan.number] is TrialState.INTERRUPTED
    assert sum(s is TrialState.COMPLETE for s in states.values()) == 4  # budget not spent on it
    assert store.running_trials("job") == []
    study = optuna.load_study(study_name="bitprism-job", storage=store_url)
    assert study.trials[orphan.number].state is optuna.trial.TrialState.FAIL
    assert row > 0


def test_failing_trials_are_recorded_and_the_job_goes_on(store_url, tmp_path) -> None:
    run_job(
        _spec(store_url, tmp_path, workload="tests.fixtures:exploding", trials=3), progress=False
    )
    store = Store(store_url)
    trials = store.trials("job")
    assert len(trials) == 4  # reference + 3 searched, none lost
    assert all(t.state is TrialState.FAILED for t in trials)
    assert all("metric exploded on purpose" in (t.error or "") for t in trials)
    job = store.job("job")
    assert job is not None and job.status is JobStatus.DONE
    study = optuna.load_study(study_name="bitprism-job", storage=store_url)
    assert all(t.state is optuna.trial.TrialState.FAIL for t in study.trials)
    assert "metric exploded" in study.trials[0].user_attrs["bitprism_error"]


def test_bad_override_fails_before_anything_is_written(store_url, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"overrides\['nope'\] matches no layer"):
        run_job(
            _spec(store_url, tmp_path, overrides={"nope": {"weight_bits": [8]}}), progress=False
        )
    assert Store(store_url).jobs() == []
    assert not (tmp_path / "runs").exists()


def test_model_that_cannot_export_fails_before_anything_is_written(store_url, tmp_path) -> None:
    with pytest.raises(Exception, match="(?i)export|guard|data-dependent"):
        run_job(_spec(store_url, tmp_path, workload="tests.fixtures:unexportable"), progress=False)
    assert not (tmp_path / "store.db").exists()
    assert not (tmp_path / "runs").exists()


def test_a_crashed_worker_process_is_retried_then_recorded(store_url, tmp_path) -> None:
    run_job(
        _spec(store_url, tmp_path, workload="tests.fixtures:crashing", trials=1), progress=False
    )
    trials = Store(store_url).trials("job")
    assert len(trials) == 2 and all(t.state is TrialState.FAILED for t in trials)
    assert all("Worker" in (t.error or "") or "died" in (t.error or "") for t in trials)


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_other_samplers_run(store_url, tmp_path, sampler: str) -> None:
    run_job(_spec(store_url, tmp_path, sampler=sampler, trials=3), progress=False)
    assert _search_numbers(Store(store_url)) == [0, 1, 2]


def test_digits_demo_job_meets_the_demo_acceptance(store_url, tmp_path) -> None:
    """The `make demo` path on fewer trials: a front, and a verified export within 1 point."""
    from bitprism.evaluators.runtime import OrtModule, make_session
    from bitprism.results import SearchResult
    from bitprism.workloads import resolve_workload

    spec = _spec(store_url, tmp_path, workload="digits-cnn", trials=16, latency={"repeats": 10})
    result = SearchResult(run_job(spec, progress=False), store_url)
    assert len(result.pareto) >= 3
    report = result.export(tmp_path / "best.onnx", max_drop=1.0)
    digits = resolve_workload("digits-cnn")
    accuracy = digits.evaluate(OrtModule(make_session(report.path.read_bytes(), threads=1)))
    assert abs(accuracy - report.point.accuracy) <= 0.5
    assert result.reference is not None
    assert accuracy >= result.reference.accuracy - 1.0
    assert report.file_bytes < report.reference_file_bytes


def test_repeated_candidates_are_reused_not_re_timed(store_url, tmp_path) -> None:
    tiny = {
        "*": {"sparsity": [0], "rank_fraction": [1]},
        "up": {"weight_bits": [16]},
        "down": {"weight_bits": [16, 8]},
    }  # two candidates in all
    # One worker: only finished measurements are reused, so in-flight duplicates can't race.
    spec = _spec(store_url, tmp_path, overrides=tiny, trials=5, sampler="random", workers=1)
    run_job(spec, progress=False)
    trials = [t for t in Store(store_url).trials("job") if t.role is TrialRole.SEARCH]
    assert len(trials) == 5 and all(t.state is TrialState.COMPLETE for t in trials)
    reused = [t for t in trials if "reused" in (t.error or "")]
    assert len(reused) >= 4  # only the int8 candidate is new; fp32 is the reference
    files = {t.artifact.path for t in trials if t.artifact is not None}
    assert len(files) <= 2
