"""The search driver end to end on real models, Ray and a real SQLite store."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

import onnx
import optuna
import pytest
import torch

from bitprism.config import SpecError
from bitprism.kernels.machine import cpu_flags
from bitprism.search import lease
from bitprism.search.driver import run_job
from bitprism.search.lease import JobBusyError
from bitprism.search.loop import ReferenceFailed
from bitprism.search.schema import JobStatus, TrialOrigin, TrialRole, TrialState
from bitprism.search.store import Store, optuna_storage
from bitprism.spaces.candidate import Candidate
from tests.fixtures import job_spec

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]


def _search_numbers(store: Store) -> list[int]:
    return [
        t.number for t in store.trials("job") if t.role is TrialRole.SEARCH and t.number is not None
    ]


def test_job_runs_stores_everything_and_stock_optuna_reads_it(any_store, tmp_path) -> None:
    run_job(job_spec(any_store, tmp_path, keep_all_files=True), progress=False)
    store = Store(any_store)
    trials = store.trials("job")
    reference = [t for t in trials if t.role is TrialRole.REFERENCE]
    assert (
        len(reference) == 1
        and reference[0].candidate.digest() == Candidate.from_dict({"up": {}, "down": {}}).digest()
    )
    searched = [t for t in trials if t.role is TrialRole.SEARCH]
    assert len(searched) == 4 and all(t.state is TrialState.COMPLETE for t in searched)
    # A new job first measures the uniform forms: the 8-bit class (7-bit codes on ORT), int4,
    # int2 on every layer.
    seeds = [{"weight_bits": bits} for bits in (7, 4, 2)]
    expected = [Candidate.from_dict({"up": seed, "down": seed}) for seed in seeds]
    assert [t.candidate for t in searched[:3]] == expected
    for trial in trials:
        timing = {"latency_ms", "reference_latency_ms", "speedup", "speedup_min", "speedup_max"}
        assert {"accuracy", "weight_bytes", "parity_rel_err", *timing} <= set(trial.metrics)
        assert trial.verified is True and Path(trial.artifact.path).is_file()  # type: ignore[union-attr]
        m = trial.metrics
        assert m["latency_p10_ms"] <= m["latency_ms"] <= m["latency_p90_ms"]
        assert m["speedup_min"] <= m["speedup"] <= m["speedup_max"]
    assert reference[0].metrics["speedup"] == 1.0
    # Where each was measured: the host and Ray node that evaluated it, and the CPU that timed
    # it (fp32 and the candidate in the same passes, on one node).
    host = socket.gethostname()
    for trial in trials:
        assert trial.evaluated_on is not None and trial.evaluated_on.startswith(
            f"{host} (Ray node "
        )
        assert trial.timed_on is not None and trial.timed_on.endswith(cpu_flags())
    job = store.job("job")
    assert job is not None and job.status is JobStatus.DONE and job.space is not None
    study = optuna.load_study(study_name="bitprism-job", storage=optuna_storage(any_store))
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert len(study.directions) == 3
    assert study.metric_names == ["accuracy", "speedup", "weight_bytes"]
    assert study.trials[0].values[0] == searched[0].metrics["accuracy"]
    assert study.trials[0].values[1] == searched[0].metrics["speedup"]


def test_resume_continues_without_duplicates(any_store, tmp_path) -> None:
    run_job(job_spec(any_store, tmp_path, trials=3), progress=False)
    run_job(job_spec(any_store, tmp_path, trials=3), progress=False)  # nothing left to do
    store = Store(any_store)
    assert _search_numbers(store) == [0, 1, 2]
    run_job(job_spec(any_store, tmp_path, trials=5), progress=False)
    assert _search_numbers(store) == [0, 1, 2, 3, 4]
    assert sum(t.role is TrialRole.REFERENCE for t in store.trials("job")) == 1
    study = optuna.load_study(study_name="bitprism-job", storage=optuna_storage(any_store))
    assert len(study.trials) == 5


def test_resume_refuses_a_changed_search(store_url, tmp_path) -> None:
    run_job(job_spec(store_url, tmp_path, trials=1), progress=False)
    with pytest.raises(SpecError, match="different seed"):
        run_job(job_spec(store_url, tmp_path, trials=2, seed=7), progress=False)


def test_killed_driver_is_repaired_on_resume(any_store, tmp_path) -> None:
    run_job(job_spec(any_store, tmp_path, trials=2), progress=False)
    # What a driver killed mid-trial leaves: a running row and an Optuna trial never told.
    store = Store(any_store)
    study = optuna.load_study(study_name="bitprism-job", storage=optuna_storage(any_store))
    orphan = study.ask()
    row = store.start_trial("job", orphan.number, TrialRole.SEARCH, Candidate.from_dict({}))
    run_job(job_spec(any_store, tmp_path, trials=4), progress=False)
    states = {t.number: t.state for t in store.trials("job") if t.number is not None}
    assert states[orphan.number] is TrialState.INTERRUPTED
    assert sum(s is TrialState.COMPLETE for s in states.values()) == 4  # budget not spent on it
    assert store.running_trials("job") == []
    study = optuna.load_study(study_name="bitprism-job", storage=optuna_storage(any_store))
    assert study.trials[orphan.number].state is optuna.trial.TrialState.FAIL
    assert row > 0


def test_failing_trials_are_recorded_and_the_job_goes_on(store_url, tmp_path) -> None:
    spec = job_spec(store_url, tmp_path, workload="tests.fixtures:fails_when_compressed", trials=3)
    run_job(spec, progress=False)
    store = Store(store_url)
    reference, *searched = store.trials("job")
    assert reference.state is TrialState.COMPLETE and len(searched) == 3  # none lost
    assert all(t.state is TrialState.FAILED for t in searched)
    assert all("metric exploded on purpose" in (t.error or "") for t in searched)
    job = store.job("job")
    assert job is not None and job.status is JobStatus.DONE
    study = optuna.load_study(study_name="bitprism-job", storage=store_url)
    assert all(t.state is optuna.trial.TrialState.FAIL for t in study.trials)
    assert "metric exploded" in study.trials[0].user_attrs["bitprism_error"]


@pytest.mark.parametrize(
    ("workload", "message"),
    [
        ("tests.fixtures:exploding", "metric exploded on purpose"),
        ("tests.fixtures:says_a_string", "must return a number, got str"),
    ],
)
def test_a_failing_reference_stops_the_job_at_once(store_url, tmp_path, workload, message) -> None:
    """Finding 4: no trial runs when fp32 itself cannot be judged, and the job is failed."""
    with pytest.raises(ReferenceFailed, match=message):
        run_job(job_spec(store_url, tmp_path, workload=workload, trials=3), progress=False)
    store = Store(store_url)
    trials = store.trials("job")
    assert [t.role for t in trials] == [TrialRole.REFERENCE]
    assert trials[0].state is TrialState.FAILED
    job = store.job("job")
    assert job is not None and job.status is JobStatus.FAILED and message in (job.error or "")
    assert optuna.load_study(study_name="bitprism-job", storage=store_url).trials == []


def test_a_model_with_nothing_to_compress_is_refused_before_writing(store_url, tmp_path) -> None:
    with pytest.raises(SpecError, match="no layer bitprism can compress"):
        run_job(job_spec(store_url, tmp_path, workload="tests.fixtures:nothing_to_compress"))
    assert not (tmp_path / "store.db").exists() and not (tmp_path / "runs").exists()


def test_a_hanging_trial_times_out_and_the_job_goes_on(store_url, tmp_path) -> None:
    spec = job_spec(
        store_url,
        tmp_path,
        workload="tests.fixtures:hangs_when_compressed",
        trials=2,
        trial_timeout_s=20,
    )
    run_job(spec, progress=False)
    reference, *searched = Store(store_url).trials("job")
    assert reference.state is TrialState.COMPLETE
    assert [t.state for t in searched] == [TrialState.FAILED] * 2
    assert all("trial_timeout_s" in (t.error or "") for t in searched)


def test_unverified_trials_are_failed_for_optuna_not_complete(store_url, tmp_path) -> None:
    """Finding 7: a file that disagrees with PyTorch never reaches the sampler as a result."""
    # 4-bit MatMulNBits with round-to-nearest codes differs from the PyTorch copy by ~1.5e-4
    # (relative RMS) on this model, fp32 by ~1.5e-7: a strict tolerance between the two fails
    # every 4-bit file. (GPTQ's codes happen to land at ~5e-7.)
    low_bits = {"*": {"weight_bits": [4], "rank_fraction": [1]}}
    spec = job_spec(
        store_url,
        tmp_path,
        methods={"quantiser": "rtn"},
        parity_tolerance=1e-6,
        parity_drift_share=0.0,  # strict: no leeway for how far compression moved the output
        overrides=low_bits,
        trials=3,
    )
    run_job(spec, progress=False)
    reference, *searched = Store(store_url).trials("job")
    assert reference.state is TrialState.COMPLETE and reference.verified is True
    assert searched and all(t.state is TrialState.FAILED for t in searched)
    assert all(t.verified is False and "not verified" in (t.error or "") for t in searched)
    assert all("parity_rel_err" in t.metrics for t in searched)  # what was measured is kept
    study = optuna.load_study(study_name="bitprism-job", storage=store_url)
    assert all(t.state is optuna.trial.TrialState.FAIL for t in study.trials)
    assert study.best_trials == []
    assert "not verified" in study.trials[0].user_attrs["bitprism_error"]


def test_a_second_driver_is_refused_while_the_first_holds_the_job(
    store_url, tmp_path, monkeypatch
) -> None:
    """Finding 6: one driver per job; a dead driver's claim does not block a resume."""
    run_job(job_spec(store_url, tmp_path, trials=1), progress=False)
    store = Store(store_url)
    assert store.acquire_lease("job", "other-host:4242:abc", ttl_s=60) is None  # a live driver
    with pytest.raises(JobBusyError, match="other-host:4242:abc"):
        run_job(job_spec(store_url, tmp_path, trials=2), progress=False)
    assert len(store.trials("job")) == 2  # nothing ran
    assert store.job("job").spec["trials"] == 1  # type: ignore[union-attr]
    # A claim whose heartbeat is older than the lease's life has expired: resume proceeds.
    monkeypatch.setattr(lease, "LEASE_TTL_S", 0.5)
    time.sleep(1.0)
    run_job(job_spec(store_url, tmp_path, trials=2), progress=False)
    assert len(store.trials("job")) == 3 and store.job("job").driver is None  # type: ignore[union-attr]


def test_a_dead_local_driver_is_taken_over_at_once(store_url, tmp_path) -> None:
    import socket
    import subprocess
    import sys

    run_job(job_spec(store_url, tmp_path, trials=1), progress=False)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    holder = f"{socket.gethostname()}:{gone.stdout.strip()}:dead"
    store = Store(store_url)
    assert store.acquire_lease("job", holder, ttl_s=60) is None
    run_job(job_spec(store_url, tmp_path, trials=2), progress=False)
    assert len(store.trials("job")) == 3


def test_resuming_with_another_model_is_refused(store_url, tmp_path) -> None:
    """Finding 5: a retrained model must not mix its trials into the old model's job."""
    from tests.fixtures import token_mlp, token_mlp_retrained

    run_job(job_spec(store_url, tmp_path, trials=1), token_mlp(), progress=False)
    with pytest.raises(SpecError, match="another model"):  # same name, other weights
        run_job(job_spec(store_url, tmp_path, trials=2), token_mlp_retrained(), progress=False)
    assert len(Store(store_url).trials("job")) == 2


def test_the_fp32_export_is_cached_by_model_not_by_job_id(tmp_path) -> None:
    """Finding 5: the same job id in another store, with another model, exports that model."""
    from tests.fixtures import token_mlp_retrained

    first = f"sqlite:///{tmp_path / 'a.db'}"
    second = f"sqlite:///{tmp_path / 'b.db'}"
    run_job(job_spec(first, tmp_path, trials=1), progress=False)
    # Same job id, other store, same output_dir; the retrained model must be the one measured.
    run_job(
        job_spec(second, tmp_path, trials=1, workload="tests.fixtures:token_mlp_retrained"),
        progress=False,
    )
    models = sorted((tmp_path / "runs" / "models").iterdir())
    assert len(models) == 2
    reference = Store(second).trials("job")[0]
    retrained = token_mlp_retrained()
    from bitprism.kernels.base import get_backend

    artifact = reference.artifact
    assert artifact is not None
    file_model = get_backend("ort-cpu").load(Path(artifact.path).read_bytes(), threads=1)
    expected = retrained.model(retrained.example_inputs)
    assert torch.allclose(file_model(retrained.example_inputs), expected, atol=1e-5)


def test_batchnorm_is_folded_before_compression(store_url, tmp_path) -> None:
    """Finding 8: no BatchNormalization node is left next to an int8 conv in any file."""
    spec = job_spec(
        store_url, tmp_path, workload="tests.fixtures:bn_cnn", trials=3, keep_all_files=True
    )
    run_job(spec, progress=False)
    trials = Store(store_url).trials("job")
    assert all(t.state is TrialState.COMPLETE for t in trials)
    for trial in trials:
        graph = onnx.load(trial.artifact.path).graph  # type: ignore[union-attr]
        assert not [n for n in graph.node if n.op_type == "BatchNormalization"]


def test_files_are_no_larger_than_a_plain_fp32_export(store_url, tmp_path) -> None:
    """Finding 13: exporter metadata is stripped; the fp32 file is the size of a plain export."""
    from tests.fixtures import token_mlp

    run_job(job_spec(store_url, tmp_path, trials=2, keep_all_files=True), progress=False)
    workload = token_mlp()
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(
        workload.model, (workload.example_inputs,), str(plain), dynamo=True, external_data=False
    )
    for trial in Store(store_url).trials("job"):
        assert trial.artifact is not None
        proto = onnx.load(trial.artifact.path)
        assert not any(len(n.metadata_props) for n in proto.graph.node)
        if trial.role is TrialRole.REFERENCE:
            assert trial.artifact.bytes <= plain.stat().st_size * 1.05


def test_bad_override_fails_before_anything_is_written(store_url, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"overrides\['nope'\] matches no layer"):
        run_job(
            job_spec(store_url, tmp_path, overrides={"nope": {"weight_bits": [8]}}), progress=False
        )
    assert Store(store_url).jobs() == []
    assert not (tmp_path / "runs").exists()


def test_model_that_cannot_export_fails_before_anything_is_written(store_url, tmp_path) -> None:
    with pytest.raises(Exception, match="(?i)export|guard|data-dependent"):
        run_job(
            job_spec(store_url, tmp_path, workload="tests.fixtures:unexportable"), progress=False
        )
    assert not (tmp_path / "store.db").exists()
    assert not (tmp_path / "runs").exists()


def test_a_crashed_worker_process_is_retried_then_recorded(store_url, tmp_path) -> None:
    with pytest.raises(ReferenceFailed):
        run_job(
            job_spec(store_url, tmp_path, workload="tests.fixtures:crashing", trials=1),
            progress=False,
        )
    trials = Store(store_url).trials("job")
    assert len(trials) == 1 and trials[0].state is TrialState.FAILED
    assert "Worker" in (trials[0].error or "") or "died" in (trials[0].error or "")


@pytest.mark.parametrize("sampler", ["tpe", "gp", "random"])
def test_other_samplers_run(store_url, tmp_path, sampler: str) -> None:
    run_job(job_spec(store_url, tmp_path, sampler=sampler, trials=3), progress=False)
    assert _search_numbers(Store(store_url)) == [0, 1, 2]


def test_a_new_job_measures_the_warm_start_after_the_uniform_seeds(
    store_url, tmp_path, monkeypatch
) -> None:
    from bitprism.evaluators.latency import timing_inputs
    from bitprism.search.guidance import guide
    from bitprism.search.prepare import prepare_job
    from bitprism.workloads import resolve_workload
    from bitprism.workloads.base import as_tuple

    digits = resolve_workload("digits-cnn")
    spec = job_spec(store_url, tmp_path, workload="digits-cnn", warm_start=3)
    job = prepare_job(spec, digits)
    inputs = timing_inputs(as_tuple(job.workload.example_inputs), None)
    # The job finds the layer timings this call caches in its store, so it poses the same program.
    guidance = guide(spec, job, inputs, Store(store_url), progress=False)
    uniform = guidance.space.uniform_seeds()  # in the narrowed space: tiny layers stay fp32
    tiny = {d.layer for d in guidance.dropped if "tiny layer" in d.why}
    assert all(choice.is_identity for name, choice in uniform[0] if name in tiny)
    spec = spec.model_copy(update={"trials": len(uniform) + 3})
    guided = guidance.seeds
    assert 1 <= len(guided) <= 3 and "integer-program seeds" in guidance.notes()[0]
    run_job(spec, progress=False)
    searched = [t.candidate for t in Store(store_url).trials("job") if t.role is TrialRole.SEARCH]
    assert searched[: len(uniform)] == uniform
    assert searched[len(uniform) : len(uniform) + len(guided)] == [s.candidate for s in guided]
    # The program's predictions are stored with the seeds' measurements, to check it.
    records = [t for t in Store(store_url).trials("job") if t.role is TrialRole.SEARCH]
    seeded = records[len(uniform) : len(uniform) + len(guided)]
    assert all(t.metrics["predicted_layer_smaller"] > 1.0 for t in seeded)
    # Each trial says who proposed it (the dashboard colours by it).
    reference = [t for t in Store(store_url).trials("job") if t.role is TrialRole.REFERENCE]
    assert [t.origin for t in reference] == [TrialOrigin.REFERENCE]
    assert {t.origin for t in records[: len(uniform)]} == {TrialOrigin.UNIFORM}
    assert {t.origin for t in seeded} == {TrialOrigin.WARM_START}
    assert {t.origin for t in records[len(uniform) + len(guided) :]} <= {TrialOrigin.SAMPLER}
    assert not any("predicted_damage" in t.metrics for t in records[: len(uniform)])
    # The job stored the narrowed space, with what was dropped and why.
    stored = Store(store_url).job("job")
    assert stored is not None and stored.space is not None
    assert stored.space["dropped"] == [d.to_dict() for d in guidance.dropped]
    assert stored.space["choices"] == guidance.space.to_dict()["choices"]
    # A resume searches that space (it is not widened again) and measures no guidance.
    from bitprism.search import guidance as guidance_module

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("damage was measured again")

    monkeypatch.setattr(guidance_module, "measure_damage", fail)
    run_job(spec.model_copy(update={"trials": spec.trials + 2}), progress=False)
    resumed = [t for t in Store(store_url).trials("job") if t.role is TrialRole.SEARCH]
    assert len(resumed) >= spec.trials + 2
    assert all(t.candidate[name].is_identity for t in resumed for name in tiny)
    # A second job on the same model, data and space measures neither damage nor timings.
    again = guide(spec, job, inputs, Store(store_url), progress=False)
    assert [s.candidate for s in again.seeds] == [s.candidate for s in guided]


def test_dominated_proposals_are_pruned_unmeasured(store_url, tmp_path) -> None:
    """Random proposals on digits after the seeds: those a measured trial clearly beats by
    the predictions are stored as pruned with the reason, and do not spend the budget. The job
    stops after 10 trials (mostly seeds) and is resumed: the resumed driver screens the same."""
    spec = job_spec(store_url, tmp_path, workload="digits-cnn", sampler="random", trials=10)
    run_job(spec, progress=False)
    before = max(t.number or 0 for t in Store(store_url).trials("job"))
    run_job(spec.model_copy(update={"trials": 24}), progress=False)
    records = [t for t in Store(store_url).trials("job") if t.role is TrialRole.SEARCH]
    pruned = [t for t in records if t.state is TrialState.PRUNED]
    measured = [t for t in records if t.state in (TrialState.COMPLETE, TrialState.FAILED)]
    assert len(measured) == 24  # pruned proposals are on top of the budget
    assert any(t.number is not None and t.number > before for t in pruned), (
        "random proposals on digits always include clearly dominated ones"
    )
    by_number = {t.number: t for t in measured}
    for trial in pruned:
        assert trial.artifact is None and "is predicted to beat it clearly" in (trial.error or "")
        beater = by_number[int(trial.metrics["pruned_by_trial"])]
        assert beater.state is TrialState.COMPLETE
        assert trial.metrics["predicted_damage"] > 0
    study = optuna.load_study(study_name="bitprism-job", storage=optuna_storage(store_url))
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.PRUNED) == len(pruned)


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino-cpu"])
def test_digits_demo_job_meets_the_demo_acceptance(store_url, tmp_path, backend: str) -> None:
    """The `make demo` path on fewer trials: a front, and a verified export within 1 point."""
    from bitprism.kernels.base import get_backend
    from bitprism.results import SearchResult
    from bitprism.workloads import resolve_workload

    # int8 conv is measured slower than fp32 on the CPUs seen so far (BENCHMARKS.md): fixing
    # the convs to fp32 spares the search learning that, so 40 trials reliably find the front.
    fp32_convs = {"features.*": {"weight_bits": [16]}}
    spec = job_spec(
        store_url,
        tmp_path,
        workload="digits-cnn",
        trials=24,
        overrides=fp32_convs,
        backend=backend,
    )
    result = SearchResult(run_job(spec, progress=False), store_url)
    assert len(result.pareto) >= 3
    report = result.export(tmp_path / "best.onnx")  # the defaults: within 1%, not slower
    digits = resolve_workload("digits-cnn")
    accuracy = digits.evaluate(get_backend(backend).load(report.path.read_bytes(), threads=1))
    assert accuracy == pytest.approx(report.point.accuracy, abs=0.01)
    assert result.reference is not None and not report.point.is_reference
    assert accuracy >= 0.99 * result.reference.accuracy
    assert report.point.metrics["speedup_max"] >= 1.0  # measured not slower during the search
    assert report.chosen.file_bytes * 3 <= report.reference.file_bytes
    assert "x smaller, " in report.summary() and " than fp32" in report.summary()


def test_a_metric_in_fractions_gets_a_sensible_default_export(store_url, tmp_path) -> None:
    """Finding 3 end to end: 1% of 1.0 is 0.01, not 'one point' = everything."""
    from bitprism.results import SearchResult

    spec = job_spec(store_url, tmp_path, workload="tests.fixtures:digits_fraction", trials=16)
    result = SearchResult(run_job(spec, progress=False), store_url)
    reference = result.reference
    assert reference is not None and reference.accuracy <= 1.0
    worse = [p for p in result.pareto if p.accuracy < 0.99 * reference.accuracy]
    assert worse  # the front holds points a 1-point absolute limit would have accepted
    limits = result.constraints(min_speedup=0.0)  # speed aside, the accuracy limit must hold
    point = result.best(limits)
    assert point.accuracy >= 0.99 * reference.accuracy


def test_repeated_candidates_are_reused_not_re_timed(store_url, tmp_path) -> None:
    tiny = {
        "*": {"sparsity": [0], "rank_fraction": [1], "keep": [1]},
        "up": {"weight_bits": [16]},
        "down": {"weight_bits": [16, 7]},
    }  # two candidates in all
    # One worker: only finished measurements are reused, so in-flight duplicates can't race.
    spec = job_spec(store_url, tmp_path, overrides=tiny, trials=5, sampler="random", workers=1)
    run_job(spec, progress=False)
    trials = [t for t in Store(store_url).trials("job") if t.role is TrialRole.SEARCH]
    assert len(trials) == 5 and all(t.state is TrialState.COMPLETE for t in trials)
    reused = [t for t in trials if "reused" in (t.error or "")]
    assert len(reused) >= 4  # only the int8 candidate is new; fp32 is the reference
    files = {t.artifact.path for t in trials if t.artifact is not None}
    assert len(files) <= 2


@pytest.mark.parametrize("backend", ["ort-cpu", "openvino-cpu"])
def test_files_no_pareto_point_uses_are_dropped_and_rebuilt_on_demand(
    store_url, tmp_path, backend: str
) -> None:
    """A 100-trial MiniLM job would write gigabytes: only the front's files are kept.

    On OpenVINO the rebuild recalibrates static int8 input scales, in another process than
    the worker that measured the file, and must land on the same bytes.
    """
    from bitprism.results import ExportError, SearchResult

    run_job(job_spec(store_url, tmp_path, trials=8, backend=backend), progress=False)
    result = SearchResult("job", store_url)
    onnx_dir = tmp_path / "runs" / "job" / "onnx"
    kept = {p.resolve() for p in onnx_dir.glob("*.onnx")}
    front = {Path(p.onnx_path) for p in result.pareto}
    assert result.reference is not None
    assert kept == front | {Path(result.reference.onnx_path)}
    recorded = {Path(t.artifact.path) for t in result.trials if t.artifact is not None}
    assert recorded - kept  # some trials' files were dropped; their records stay
    # A dropped or deleted file is rebuilt from its stored candidate, byte for byte.
    point = next(p for p in result.pareto if not p.is_reference)
    Path(point.onnx_path).unlink()
    data = result.onnx_file(point)
    assert hashlib.sha256(data).hexdigest() == point.onnx_sha256
    assert Path(point.onnx_path).read_bytes() == data
    Path(point.onnx_path).write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # tampered with
    with pytest.raises(ExportError, match="sha256 differs"):
        result.onnx_file(point)


def test_keep_all_files_keeps_every_trials_file(store_url, tmp_path) -> None:
    run_job(job_spec(store_url, tmp_path, trials=4, keep_all_files=True), progress=False)
    paths = {Path(t.artifact.path) for t in Store(store_url).trials("job") if t.artifact}
    assert paths and all(p.is_file() for p in paths)
