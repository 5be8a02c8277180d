"""Trials per minute with 1, 2 and 4 Ray workers, and what the store and the dispatch cost
per trial as a share of a trial's time.

    .venv/bin/python benchmarks/scaling.py --workload digits-cnn --trials 24

Each worker count runs the same blind job (no warm start, the same seed) in a fresh SQLite
store; the rate counts search trials from the first one's start to the last one's end
(preparation and the fp32 reference left out). The per-trial overhead is what the driver
does around each trial besides waiting for it (Optuna's ask and tell on the RDB storage, the
trial's first heartbeat, the store's start and complete rows), timed apart on the same kind
of store, against the median trial's own time in the one-worker run. Scaling beyond the
machine's cores cannot be expected: the table says how many cores there were.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from sqlalchemy import select

from bitprism.config import JobSpec
from bitprism.kernels.machine import cpu_flags
from bitprism.search.driver import run_job
from bitprism.search.heartbeat import TrialHeartbeat, storage_options
from bitprism.search.schema import Trial, TrialRole, TrialState
from bitprism.search.store import Store, optuna_storage
from bitprism.spaces.candidate import Candidate

WORKER_COUNTS = (1, 2, 4)


def job_rate(workload: str, trials: int, workers: int) -> tuple[float, float]:
    """Trials per minute of one job, and its median trial's seconds (start to end)."""
    folder = Path(tempfile.mkdtemp(prefix="bitprism-scaling-"))
    url = f"sqlite:///{folder / 'store.db'}"
    spec = JobSpec(
        workload=workload,
        trials=trials,
        workers=workers,
        warm_start=0,
        store=url,
        output_dir=folder / "runs",
        job_id=f"w{workers}",
    )
    run_job(spec, progress=False)
    with Store(url).engine.connect() as db:
        rows = db.execute(
            select(Trial.started_at, Trial.finished_at).where(
                Trial.job_id == f"w{workers}",
                Trial.role == TrialRole.SEARCH,
                Trial.state == TrialState.COMPLETE,
            )
        ).all()
    first = min(start for start, _ in rows)
    last = max(end for _, end in rows)
    minutes = (last - first).total_seconds() / 60
    median = statistics.median((end - start).total_seconds() for start, end in rows)
    return len(rows) / minutes, median


def overhead_ms(rounds: int = 50) -> float:
    """Milliseconds of Optuna ask/tell, the trial's first heartbeat and its store rows per
    trial, on a fresh SQLite store."""
    folder = Path(tempfile.mkdtemp(prefix="bitprism-overhead-"))
    url = f"sqlite:///{folder / 'store.db'}"
    store = Store(url)
    store.create_job("o", "w", {}, "bitprism-o")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna_storage(url, **storage_options(None))
    study = optuna.create_study(
        study_name="bitprism-o", storage=storage, directions=["maximize"] * 3
    )
    beats = TrialHeartbeat(storage)
    warnings.filterwarnings("ignore", message="Heartbeat of storage")  # the loop's filter too
    space = {"bits": optuna.distributions.CategoricalDistribution([2, 4, 7, 16])}
    metrics = {f"m{i}": float(i) for i in range(14)}  # a trial stores about this many
    candidate = Candidate.from_dict({f"layer{i}": {"weight_bits": 4} for i in range(8)})
    start = time.perf_counter()
    for _ in range(rounds):
        trial = study.ask(space)
        row = store.start_trial("o", trial.number, TrialRole.SEARCH, candidate)
        beats.add(trial)
        store.complete_trial(row, metrics, True, None)
        study.tell(trial, [1.0, 2.0, 3.0])
        beats.discard(trial)
    return (time.perf_counter() - start) / rounds * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", default="digits-cnn")
    parser.add_argument("--trials", type=int, default=24)
    args = parser.parse_args()
    print(f"{args.workload}, {args.trials} trials; {os.cpu_count()} cores; CPU: {cpu_flags()}\n")
    print("| workers | trials / min | scaling vs 1 worker | median trial s |")
    print("|---|---|---|---|")
    base = None
    median_one = None
    for workers in WORKER_COUNTS:
        rate, median = job_rate(args.workload, args.trials, workers)
        base = base or rate
        median_one = median_one or median
        print(f"| {workers} | {rate:.1f} | {rate / base:.2f}x (ideal {workers}x) | {median:.2f} |")
    cost = overhead_ms()
    assert median_one is not None
    share = cost / 1000 / median_one
    print(
        f"\nstore + dispatch per trial: {cost:.1f} ms = {share:.1%} of a trial's {median_one:.2f} s"
    )


if __name__ == "__main__":
    main()
