"""Seconds to build one candidate (prune, measure calibration statistics, compress, lower to
the runtime's file), measuring the statistics afresh for each candidate or remembering them
per worker as jobs do (``EvalContext.stats_key``).

    .venv/bin/python benchmarks/candidate_build.py --workload minilm-stsb --candidates 6

Candidates are drawn from the job's default space with a fixed seed, every other one
unpruned (unpruned ones share a source model, so their statistics are remembered), and are
built twice: memo off, then on. Prints a markdown table and checks that both builds of a
candidate give the same bytes.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import optuna

from bitprism.config import JobSpec
from bitprism.evaluators.worker import build_candidate
from bitprism.kernels.machine import cpu_flags
from bitprism.search.prepare import eval_context, prepare_job
from bitprism.sensitivity import stats
from bitprism.spaces.candidate import Candidate
from bitprism.workloads import resolve_workload


def _draw(job_space, seed: int, unpruned: bool) -> Candidate:  # type: ignore[no-untyped-def]
    sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)
    trial = study.ask(job_space.distributions())
    candidate = job_space.candidate(trial.params)
    if unpruned:
        candidate = Candidate.from_dict(
            {name: {**dataclasses.asdict(choice), "keep": 1.0} for name, choice in candidate}
        )
    return candidate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workload", default="minilm-stsb")
    parser.add_argument("--candidates", type=int, default=6)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(tempfile.mkdtemp())
    spec = JobSpec(job_id="bench", output_dir=out, store=f"sqlite:///{out}/store.db")
    job = prepare_job(spec, resolve_workload(args.workload))
    candidates = [_draw(job.space, seed, seed % 2 == 0) for seed in range(args.candidates)]
    print(f"{args.workload}, methods {spec.methods}; CPU flags: {cpu_flags()}\n")
    print("| candidate | pruned | fresh statistics s | remembered s | same bytes |")
    print("|---|---|---|---|---|")
    fresh_ctx = eval_context(spec, job)
    memo_ctx = fresh_ctx  # a job's context carries the key
    fresh_ctx = dataclasses.replace(fresh_ctx, stats_key=None)
    stats._memo.clear()
    totals = [0.0, 0.0]
    for i, candidate in enumerate(candidates):
        seconds, files = [], []
        for ctx in (fresh_ctx, memo_ctx):
            start = time.perf_counter()
            built = build_candidate(ctx, candidate)
            seconds.append(time.perf_counter() - start)
            files.append(built.artifact.data)
        totals = [t + s for t, s in zip(totals, seconds, strict=True)]
        pruned = any(c.keep < 1.0 for _, c in candidate)
        same = files[0] == files[1]
        print(f"| {i} | {pruned} | {seconds[0]:.1f} | {seconds[1]:.1f} | {same} |")
    print(f"| all | | {totals[0]:.1f} | {totals[1]:.1f} | |")


if __name__ == "__main__":
    main()
