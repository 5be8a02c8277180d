"""Rows for what the CLI prints: pure functions from results to plain dicts.

The same rows become a rich table, JSON or CSV (:mod:`bitprism.tables`), so every format shows
the same numbers.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from bitprism.results import ParetoPoint, SearchResult
from bitprism.search.store import TrialRecord
from bitprism.spaces.candidate import OFF_BITS, Candidate, LayerChoice

Row = dict[str, Any]


def bits_name(bits: int) -> str:
    """``fp32`` for the uncompressed width, else ``int8``, ``int4`` ..."""
    return "fp32" if bits == OFF_BITS else f"int{bits}"


def choice_summary(candidate: Candidate) -> str:
    """Counts of each form, e.g. ``int8 x30, int4 x6, keep .75 x6, rank .5 x2, sparse .5 x1``."""
    bits = Counter(bits_name(c.weight_bits) for _, c in candidate)
    ranks = Counter(_short(c.rank_fraction) for _, c in candidate if c.rank_fraction < 1)
    sparse = Counter(_short(c.sparsity) for _, c in candidate if c.sparsity > 0)
    kept = Counter(_short(c.keep) for _, c in candidate if c.keep < 1)
    parts = [f"{name} x{n}" for name, n in bits.most_common()]
    parts += [f"keep {f} x{n}" for f, n in sorted(kept.items())]
    parts += [f"rank {f} x{n}" for f, n in sorted(ranks.items())]
    parts += [f"sparse {f} x{n}" for f, n in sorted(sparse.items())]
    return ", ".join(parts)


def layer_choice(choice: LayerChoice) -> str:
    """One layer's form, e.g. ``int4, rank .5``."""
    parts = [bits_name(choice.weight_bits)]
    if choice.keep < 1:
        parts.append(f"keep {_short(choice.keep)}")
    if choice.rank_fraction < 1:
        parts.append(f"rank {_short(choice.rank_fraction)}")
    if choice.sparsity > 0:
        parts.append(f"sparse {_short(choice.sparsity)}")
    return ", ".join(parts)


def point_row(point: ParetoPoint, reference: ParetoPoint) -> Row:
    """One Pareto point next to fp32: accuracy, relative drop, speed-up and its spread, size."""
    m = point.metrics
    drop = reference.accuracy - point.accuracy
    return {
        "point": point.label,
        "accuracy": point.accuracy,
        "drop_pct": 100 * drop / abs(reference.accuracy) if reference.accuracy else drop,
        "speedup": point.speedup,
        "speedup_min": m.get("speedup_min", point.speedup),
        "speedup_max": m.get("speedup_max", point.speedup),
        "latency_ms": point.latency_ms,
        "weight_bytes": int(point.weight_bytes),
        "smaller_x": reference.weight_bytes / point.weight_bytes,
        "choices": choice_summary(point.candidate) + _float_note(m),
    }


def pareto_rows(result: SearchResult) -> list[Row]:
    """The fp32 reference first (always), then the front's compressed points."""
    reference = result.reference
    if reference is None:
        return []
    points = [reference, *(p for p in result.pareto if not p.is_reference)]
    return [point_row(p, reference) for p in points]


def trial_rows(result: SearchResult) -> list[Row]:
    """Every trial with its state and the first line of any error."""
    rows = []
    for trial in result.trials:
        rows.append(
            {
                "trial": "fp32" if trial.number is None else trial.number,
                "state": trial.state.value,
                "accuracy": trial.metrics.get("accuracy"),
                "speedup": trial.metrics.get("speedup"),
                "weight_bytes": trial.metrics.get("weight_bytes"),
                "error": (trial.error or "").splitlines()[0] if trial.error else "",
            }
        )
    return rows


def layer_rows(trial: TrialRecord, layer_order: list[str]) -> list[Row]:
    """A trial's per-layer choices in model order."""
    rows = []
    for name in layer_order:
        choice = trial.candidate[name]
        rows.append(
            {
                "layer": name,
                "form": layer_choice(choice),
                "weight_bits": choice.weight_bits,
                "rank_fraction": choice.rank_fraction,
                "sparsity": choice.sparsity,
                "keep": choice.keep,
            }
        )
    return rows


def _float_note(metrics: dict[str, float]) -> str:
    """``; 4 run without their kernel`` when the runtime decompressed quantised layers, or ran
    sparse ones dense (else nothing)."""
    count = int(metrics.get("float_layers", 0))
    return f"; {count} run without their kernel" if count else ""


def _short(value: float) -> str:
    """``0.5`` as ``.5``: compact in a table cell."""
    return f"{value:g}".removeprefix("0")


def ran(job: Any) -> str:
    """How long a job has run since it first started (so far, while it runs), e.g.
    "3 min 05 s"; empty before it starts. ``job``: anything with started_at/finished_at."""

    if job.started_at is None:
        return ""
    end = job.finished_at or dt.datetime.now(dt.UTC)
    start = job.started_at
    if start.tzinfo is None:  # SQLite hands back naive UTC
        start = start.replace(tzinfo=dt.UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=dt.UTC)
    seconds = max(0, int((end - start).total_seconds()))
    return f"{seconds // 60} min {seconds % 60:02d} s"
