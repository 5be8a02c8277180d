"""The built-in digits-mixer workload: accurate, and searchable end to end (grouped convs,
attention heads as prunable units, the warm start)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitprism.search.driver import run_job
from bitprism.search.prepare import prepare_job
from bitprism.search.schema import TrialRole, TrialState
from bitprism.search.store import Store
from bitprism.workloads import builtin_workloads, resolve_workload
from tests.fixtures import job_spec


@pytest.fixture(scope="module")
def mixer():  # type: ignore[no-untyped-def]
    return resolve_workload("digits-mixer")


def test_mixer_is_accurate_and_has_blocks_of_every_kind(mixer, store_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert "digits-mixer" in builtin_workloads()
    assert mixer.evaluate(mixer.model) >= 95.0
    job = prepare_job(job_spec(store_url, tmp_path, workload="digits-mixer"), mixer)
    sizes = {layer.name: layer.params for layer in job.space.layers}
    assert sizes["depthwise.0"] == 32 * 9 + 32  # the tiny depthwise kernel (BatchNorm folded in)
    heads = next(g for g in job.groups if g.leader == "attention.query")
    assert heads.units == 4 and heads.unit_size == 16 and "attention.out" in heads.consumers


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("backend", ["ort-cpu", "openvino-cpu"])
def test_a_guided_job_on_the_mixer_verifies_every_trial(
    mixer, store_url: str, tmp_path: Path, backend: str
) -> None:  # type: ignore[no-untyped-def]
    job = prepare_job(job_spec(store_url, tmp_path, workload="digits-mixer"), mixer)
    trials = len(job.space.uniform_seeds()) + 4
    spec = job_spec(store_url, tmp_path, workload="digits-mixer", trials=trials, backend=backend)
    run_job(spec, mixer, progress=False)
    searched = [t for t in Store(store_url).trials("job") if t.role is TrialRole.SEARCH]
    assert len(searched) == trials
    assert all(t.state is TrialState.COMPLETE and t.verified for t in searched), [
        t.error for t in searched
    ]
