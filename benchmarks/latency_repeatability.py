"""How repeatable is a candidate's measured speed, moment to moment, while a job runs?

Re-times the same 5 digits-cnn candidates in 8 rounds of a job-like workload on the real Ray
pool: each round, 2 real evaluations (random candidates: compress, lower, score, parity) run
in the evaluation lane. Two ways of timing are compared:

- ``clean`` (what bitprism does): once the round's evaluations are back, the 5 candidates and
  the fp32 file are timed in the pool's exclusive timing slot, in interleaved passes; the
  figure is the speed-up over fp32 from the same passes.
- ``contaminated`` (what the walking skeleton did): each candidate's latency is taken in the
  evaluation lane while the other worker evaluates.

Prints, per candidate, the median and the spread ``(max - min) / median`` over the rounds.

    .venv/bin/python benchmarks/latency_repeatability.py [--rounds 8]
"""

from __future__ import annotations

import argparse
import random
import statistics

from bitprism.config import JobSpec, LatencySpec
from bitprism.evaluators.latency import timing_inputs
from bitprism.evaluators.worker import EvalContext, evaluate_candidate, time_files
from bitprism.kernels.machine import cpu_flags
from bitprism.search.parallel import RayPool
from bitprism.search.prepare import prepare_job
from bitprism.spaces.candidate import Candidate
from bitprism.workloads import as_tuple, resolve_workload

FIXED = {
    "int7 linear": {"head.1": 7, "head.3": 7, "head.5": 7},
    "int4 linear": {"head.1": 4, "head.3": 4, "head.5": 4},
    "int2 head.1": {"head.1": 2},
    "int8 conv, int7 linear": {
        "features.0": 8,
        "features.2": 8,
        "head.1": 7,
        "head.3": 7,
        "head.5": 7,
    },
    "int4 head.1 rank .5": {"head.1": 4},
}


def _time_one_in_lane(latency: LatencySpec, inputs: tuple, paths: list[str]) -> float:
    """The skeleton's way: time one file (against nothing) wherever the task happens to run."""
    return time_files("ort-cpu", latency, inputs, paths)[0].latency.median_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    out = "/tmp/bitprism-bench-repeat"
    spec = JobSpec(job_id="bench", output_dir=out, store=f"sqlite:///{out}/store.db")
    job = prepare_job(spec, resolve_workload("digits-cnn"))
    ctx = EvalContext(job.workload, job.space.layers, job.base_onnx, "ort-cpu", out, 0.05, 1.0)
    latency = LatencySpec(repeats=20, passes=5)
    inputs = timing_inputs(as_tuple(job.workload.example_inputs), None)
    pool = RayPool(workers=2, timeout_s=600)
    ref = pool.put(ctx)
    paths = [_path(pool, ref, job.space.baseline())]
    for name, bits in FIXED.items():
        rank = {"rank_fraction": 0.5} if "rank" in name else {}
        choices = {layer: {"weight_bits": b, **rank} for layer, b in bits.items()}
        paths.append(_path(pool, ref, Candidate.from_dict(choices)))
    rng = random.Random(0)
    clean: list[list[float]] = [[] for _ in FIXED]
    dirty: list[list[float]] = [[] for _ in FIXED]
    for _ in range(args.rounds):
        for tag in range(2):
            pool.submit(evaluate_candidate, tag, ref, _random(job.space, rng))
        while pool.busy:
            pool.wait_one()
        timed = pool.run_exclusive(time_files, "ort-cpu", latency, inputs, paths).value
        for i, comparison in enumerate(timed[1:]):
            clean[i].append(comparison.speedup)
        for i, path in enumerate(paths[1:]):  # skeleton: timed while the other lane works
            pool.submit(evaluate_candidate, "load", ref, _random(job.space, rng))
            pool.submit(_time_one_in_lane, i, latency, inputs, [path])
            for _ in range(2):
                done = pool.wait_one()
                if done.tag != "load":
                    dirty[i].append(done.value)
    pool.close()
    print(f"{args.rounds} rounds, batch {inputs[0].shape[0]}, 1 thread; CPU: {cpu_flags()}\n")
    print(
        "| candidate | clean speed-up, median | clean spread | contaminated ms, median | "
        "contaminated spread |"
    )
    print("|---|---|---|---|---|")
    for name, c, d in zip(FIXED, clean, dirty, strict=True):
        print(
            f"| {name} | {statistics.median(c):.3f} | {_spread(c):.1%} | "
            f"{statistics.median(d):.3f} | {_spread(d):.1%} |"
        )


def _path(pool: RayPool, ref: object, candidate: Candidate) -> str:
    pool.submit(evaluate_candidate, "fixed", ref, candidate)
    done = pool.wait_one()
    if done.error:
        raise RuntimeError(done.error)
    return str(done.value.onnx_path)


def _random(space: object, rng: random.Random) -> Candidate:
    params = {n: rng.choice(d.choices) for n, d in space.distributions().items()}  # type: ignore[attr-defined]
    return space.candidate(params)  # type: ignore[attr-defined]


def _spread(values: list[float]) -> float:
    return (max(values) - min(values)) / statistics.median(values)


if __name__ == "__main__":
    main()
