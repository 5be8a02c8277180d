"""The Ray pool: evaluation lane, exclusive timing slot, per-task timeout (real local Ray)."""

from __future__ import annotations

import os
import time

import pytest

from bitprism.search.parallel import RayPool

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]


def _pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


def test_the_timing_slot_refuses_to_share_the_machine() -> None:
    pool = RayPool(workers=2, timeout_s=60)
    pool.submit(_pid_after, "a", 0.5)
    with pytest.raises(RuntimeError, match="1 tasks running"):
        pool.run_exclusive(_pid_after, 0.0)
    assert pool.wait_one().tag == "a"
    done = pool.run_exclusive(_pid_after, 0.0)  # drained: now it runs, alone
    assert done.error is None and isinstance(done.value, int)


def _span(seconds: float) -> tuple[float, float]:
    start = time.time()
    time.sleep(seconds)
    return start, time.time()


def test_timing_waits_for_another_jobs_evaluation_on_the_node() -> None:
    """Two jobs' pools on one node (the session's Ray has 2 CPUs, one lane): job B's timing
    does not start while job A's evaluation runs, although a CPU is free."""
    job_a, job_b = RayPool(workers=1, timeout_s=60), RayPool(workers=1, timeout_s=60)
    assert job_a.lanes and job_b.lanes
    job_a.submit(_span, "a", 3.0)
    time.sleep(1.0)  # A's evaluation has started
    timing = job_b.run_exclusive(_span, 0.0)
    evaluation = job_a.wait_one()
    assert timing.error is None and evaluation.error is None
    assert timing.value[0] >= evaluation.value[1] - 0.05  # B timed only once A was done


def test_a_task_past_its_timeout_is_cancelled_and_reported() -> None:
    pool = RayPool(workers=2, timeout_s=2)
    pool.submit(_pid_after, "slow", 120)
    pool.submit(_pid_after, "quick", 0.0)
    started = time.monotonic()
    finished = {pool.wait_one().tag: None, pool.wait_one().tag: None}
    assert set(finished) == {"slow", "quick"} and time.monotonic() - started < 30
    pool.submit(_pid_after, "slow", 120)
    done = pool.wait_one()
    assert done.tag == "slow" and "trial_timeout_s" in (done.error or "")
    assert pool.busy == 0
    assert "trial_timeout_s" in (pool.run_exclusive(_pid_after, 120).error or "")
