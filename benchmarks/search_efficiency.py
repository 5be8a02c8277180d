"""Does the guided search find the front in fewer trials than a blind one?

Runs whole bitprism jobs, same workload, backend, evaluator and trial budget, for three
methods and several sampler seeds:

- ``random``: Optuna's RandomSampler, no warm start;
- ``nsga2``: NSGA-II (the default sampler), no warm start;
- ``guided``: NSGA-II after the integer-program warm start (the default job).

Every job first measures the same uniform seeds (int8, int4 ... everywhere), as a user's job
does. After each trial, the hypervolume of the verified points in (accuracy / fp32's,
speed-up over fp32, bytes / fp32's) is taken against a fixed reference point (90% of fp32's
accuracy, 0.5x, fp32's size), with speed-up and bytes as each job measured them against its own
fp32 timed in the same passes. Printed per method: the median over seeds of the hypervolume
at each checkpoint, and of the trials needed to reach 95% of the best hypervolume any run
found ("never" if not within the budget); then the ratio guided / random.

    .venv/bin/python benchmarks/search_efficiency.py [--workload digits-cnn] [--trials 40]
        [--seeds 3] [--methods random,nsga2,guided] [--store sqlite:///.../x.db]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bitprism.config import JobSpec, Sampler
from bitprism.dashboard.front import hypervolume_curve as hypervolume_curve_of
from bitprism.dashboard.queries import TrialPoint
from bitprism.kernels.machine import cpu_flags
from bitprism.search.driver import run_job
from bitprism.search.schema import TrialRole, TrialState
from bitprism.search.store import Store, TrialRecord

METHODS = {
    "random": {"sampler": Sampler.RANDOM, "warm_start": 0},
    "nsga2": {"sampler": Sampler.NSGA2, "warm_start": 0},
    "guided": {"sampler": Sampler.NSGA2, "warm_start": 8},
}


def hypervolume_curve(trials: list[TrialRecord], budget: int) -> list[float]:
    """Hypervolume of the verified points after each of the first ``budget`` measured search
    trials (the dashboard's curve, one step per trial; pruned proposals are no step)."""
    points = [
        TrialPoint(t.number, t.state.value, t.verified, dict(t.metrics))
        for t in sorted(trials, key=lambda t: -1 if t.number is None else t.number)
        if t.role is TrialRole.SEARCH or t.number is None
    ]
    reference = next(p for p in points if p.number is None)
    measured = [p for p in points if p.number is not None and p.state != "pruned"][:budget]
    _, curve = hypervolume_curve_of(measured, reference, steps=len(measured) or 1)
    return curve + [curve[-1] if curve else 0.0] * (budget - len(curve))


def prediction_errors(trials: list[TrialRecord]) -> str:
    """How far the warm start's per-layer predictions were from the whole model's measurement:
    median relative error of speed-up and of size ratio over its seeds."""
    seeded = [t for t in trials if "predicted_layer_speedup" in t.metrics and t.verified]
    if not seeded:
        return "no warm-start trial"
    reference = next(t for t in trials if t.role is TrialRole.REFERENCE).metrics
    speed = [abs(t.metrics["predicted_layer_speedup"] / t.metrics["speedup"] - 1) for t in seeded]
    size = [
        abs(
            t.metrics["predicted_layer_smaller"]
            / (reference["weight_bytes"] / t.metrics["weight_bytes"])
            - 1
        )
        for t in seeded
    ]
    return (
        f"{len(seeded)} warm-start trials: predicted layer speed-up off by "
        f"{100 * statistics.median(speed):.0f}% (median; max {100 * max(speed):.0f}%) from "
        f"the whole model's, layer size ratio by {100 * statistics.median(size):.0f}%"
    )


def trials_to_reach(curve: list[float], target: float) -> int | None:
    return next((i + 1 for i, value in enumerate(curve) if value >= target), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="digits-cnn")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--backend", default="ort-cpu")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--store", default="sqlite:////tmp/bitprism-bench-efficiency/store.db")
    args = parser.parse_args()
    methods = args.methods.split(",")
    unknown = set(methods) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; known: {list(METHODS)}")
    out = Path("/tmp/bitprism-bench-efficiency")
    print(f"CPU: {cpu_flags()}")
    print(f"{args.workload} on {args.backend}, {args.trials} trials, {args.seeds} seeds")
    store = Store(args.store)
    curves: dict[str, list[list[float]]] = {m: [] for m in methods}
    for seed in range(args.seeds):
        for method in methods:
            job_id = f"eff-{args.workload}-{args.backend}-{method}-s{seed}-t{args.trials}"
            started = time.perf_counter()
            if store.job(job_id) is None or len(store.trials(job_id)) < args.trials:
                spec = JobSpec(
                    workload=args.workload,
                    data=args.data,
                    backend=args.backend,
                    trials=args.trials,
                    workers=args.workers,
                    seed=seed,
                    store=args.store,
                    output_dir=out,
                    job_id=job_id,
                    **METHODS[method],
                )
                run_job(spec, progress=False)
            records = store.trials(job_id)
            curve = hypervolume_curve(records, args.trials)
            curves[method].append(curve)
            print(
                f"  seed {seed} {method:>7}: hypervolume {curve[-1]:.3f} "
                f"({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            if METHODS[method]["warm_start"]:
                pruned = sum(t.state is TrialState.PRUNED for t in records)
                print(f"    {prediction_errors(records)}; {pruned} proposals pruned", flush=True)
    best = max(c[-1] for runs in curves.values() for c in runs)
    target = 0.95 * best
    checkpoints = sorted({max(1, args.trials * k // 4) for k in range(1, 5)})
    print(f"\nbest hypervolume any run found: {best:.3f}; target (95%): {target:.3f}")
    header = " ".join(f"{'@' + str(c):>7}" for c in checkpoints)
    print(f"{'method':>8} {header}  trials to target (per seed)  median")
    medians: dict[str, float | None] = {}
    for method, runs in curves.items():
        cells = " ".join(f"{statistics.median(r[c - 1] for r in runs):7.3f}" for c in checkpoints)
        reached = [trials_to_reach(r, target) for r in runs]
        counted = [n if n is not None else args.trials + 1 for n in reached]
        median = statistics.median(counted)
        medians[method] = None if median > args.trials else median
        shown = ", ".join("never" if n is None else str(n) for n in reached)
        print(f"{method:>8} {cells}  {shown:<27}  {medians[method] or 'never'}")
    if "guided" in medians and "random" in medians:
        g, r = medians["guided"], medians["random"]
        if g is not None and r is not None:
            print(f"\nguided / random trials to target: {g / r:.2f} (goal <= 0.33)")
        else:
            print(f"\nguided reached the target: {g is not None}; random: {r is not None}")


if __name__ == "__main__":
    main()
