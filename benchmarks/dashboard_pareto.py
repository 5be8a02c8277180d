"""How fast the dashboard's Pareto page answers on a 10,000-trial job.

Builds a store with one job of ``--trials`` completed trials (synthetic metrics spread like a
real front: accuracy, speed-up, bytes; five layer choices each), then times what the Pareto
page does: the query of every trial's plotted metrics, the filters, the front and the plotly
figure serialised as the browser receives it, and the hypervolume curve; then the whole page
under Streamlit's AppTest. Stock optuna-dashboard is known to choke past 10,000 trials.

    .venv/bin/python benchmarks/dashboard_pareto.py [--trials 10000]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy.orm import Session

import bitprism.dashboard
from bitprism.dashboard.front import (
    AXES_3D,
    hypervolume_curve,
    measured,
    pareto_figure,
    pareto_figure_3d,
    within_drop,
)
from bitprism.dashboard.queries import Queries
from bitprism.kernels.machine import cpu_flags
from bitprism.search.schema import (
    Job,
    JobStatus,
    LayerChoiceRow,
    Metric,
    Trial,
    TrialOrigin,
    TrialRole,
    TrialState,
)
from bitprism.search.store import Store

LAYERS = ("features.0", "features.2", "head.1", "head.3", "head.5")


def build_store(url: str, trials: int) -> None:
    """One done job with the fp32 reference and ``trials`` verified trials, in one session."""
    store = Store(url)
    rng = random.Random(0)
    space = {"layers": [{"name": name} for name in LAYERS], "choices": {}}
    spec = {"trials": trials, "backend": "ort-cpu", "constraints": {"max_drop_pct": 1.0}}
    with Session(store.engine) as s, s.begin():
        s.add(
            Job(
                id="big",
                workload="synthetic",
                status=JobStatus.DONE,
                spec=spec,
                space=space,
                study_name="bitprism-big",
            )
        )
        for number in [None, *range(trials)]:
            if number is None:
                accuracy, speedup, size = 98.9, 1.0, 1_261_608.0
            else:
                size = 1_261_608.0 / rng.uniform(1.0, 40.0)
                speedup = rng.lognormvariate(0.1, 0.4)
                accuracy = 98.9 - rng.expovariate(1.0) * (speedup + 1_261_608.0 / size / 10)
            metrics = {
                "accuracy": accuracy,
                "speedup": speedup,
                "speedup_min": speedup * 0.97,
                "speedup_max": speedup * 1.02,
                "weight_bytes": size,
                "latency_ms": 0.85 / speedup,
                "file_bytes": size * 1.01,
                "parity_rel_err": 1e-6,
            }
            trial = Trial(
                job_id="big",
                number=number,
                role=TrialRole.REFERENCE if number is None else TrialRole.SEARCH,
                origin=_origin(number),
                state=TrialState.COMPLETE,
                candidate_hash=f"{number}",
                verified=True,
            )
            trial.metrics = [Metric(name=k, value=v) for k, v in metrics.items()]
            trial.choices = [
                LayerChoiceRow(
                    layer=name,
                    weight_bits=rng.choice((16, 8, 4)),
                    sparsity=0.0,
                    rank_fraction=1.0,
                    keep=1.0,
                )
                for name in LAYERS
            ]
            s.add(trial)


def _origin(number: int | None) -> TrialOrigin:
    """A job's usual mix: the reference, 7 uniform seeds, 8 warm-start seeds, the sampler."""
    if number is None:
        return TrialOrigin.REFERENCE
    if number < 7:
        return TrialOrigin.UNIFORM
    return TrialOrigin.WARM_START if number < 15 else TrialOrigin.SAMPLER


def time_page(url: str) -> dict[str, float]:
    """Seconds for each step of the Pareto page, and for the whole page under AppTest."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    queries = Queries(url)
    points = queries.points("big")
    seconds["query"] = time.perf_counter() - start
    start = time.perf_counter()
    reference = next(p for p in points if p.number is None)
    shown = within_drop(measured(points, ("speedup", "accuracy")), reference, 20.0)
    figure = pareto_figure(shown, "speedup", "accuracy", reference)
    figure.to_json()
    seconds["front + figure"] = time.perf_counter() - start
    start = time.perf_counter()
    pareto_figure_3d(measured(points, AXES_3D), reference).to_json()
    seconds["3-D view: three-objective front + figure"] = time.perf_counter() - start
    start = time.perf_counter()
    hypervolume_curve(points, reference)
    seconds["hypervolume curve"] = time.perf_counter() - start
    from streamlit.testing.v1 import AppTest

    os.environ["BITPRISM_STORE"] = url
    page = Path(bitprism.dashboard.__file__).parent / "views" / "pareto.py"
    for run in ("first: imports and caches", "again, as a refresh"):
        start = time.perf_counter()
        test = AppTest.from_file(str(page), default_timeout=120)
        test.query_params["job"] = "big"
        test.run()
        seconds[f"whole page (AppTest), {run}"] = time.perf_counter() - start
        if test.exception:
            raise RuntimeError(test.exception[0].value)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bitprism-dashboard-"))
    url = f"sqlite:///{folder / 'store.db'}"
    start = time.perf_counter()
    build_store(url, args.trials)
    print(f"CPU: {cpu_flags()}")
    print(f"store of {args.trials} trials built in {time.perf_counter() - start:.1f} s")
    seconds = time_page(url)
    print("| step | seconds |\n|---|---|")
    for step, value in seconds.items():
        print(f"| {step} | {value:.2f} |")


if __name__ == "__main__":
    main()
