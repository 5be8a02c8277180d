"""Everything the dashboard reads from the store: the only module of the dashboard that
touches SQL (SQLAlchemy Core selects, no string SQL).

Read-only: it never creates, migrates or writes a store, so browsing a job never races the
driver that runs it. Queries aggregate in the database (trial counts per state, best metrics
per job) and fetch only the metrics a page plots, so a 10,000-trial job is a few hundred
thousand small rows at most.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, case, create_engine, func, select
from sqlalchemy.engine import make_url

from bitprism.paths import check_store_url, engine_url
from bitprism.search.schema import Job, LayerChoiceRow, Metric, Trial, TrialRole, TrialState
from bitprism.search.store import check_schema

PLOTTED = (
    "accuracy",
    "speedup",
    "weight_bytes",
    "speedup_min",
    "speedup_max",
    "latency_ms",
)


@dataclass(frozen=True)
class JobRow:
    """One job as the Jobs page lists it."""

    id: str
    workload: str
    status: str
    backend: str
    trials_asked: int
    counts: dict[str, int]  # search trials per state
    best_accuracy: float | None
    best_speedup: float | None
    created_at: dt.datetime
    updated_at: dt.datetime
    error: str | None
    driver: str | None = None  # host:pid:token of the driver holding the job, if any
    submission: str | None = None  # where it was submitted to run (None: `bitprism search`)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None  # the driver's last lease renewal

    @property
    def finished(self) -> int:
        return self.counts.get("complete", 0) + self.counts.get("failed", 0)


@dataclass(frozen=True)
class TrialPoint:
    """A trial with the metrics a plot needs (``number`` None: the fp32 reference)."""

    number: int | None
    state: str
    verified: bool | None
    metrics: dict[str, float] = field(default_factory=dict)
    origin: str = "sampler"  # a TrialOrigin value: who proposed the candidate
    # How many layers take each form: "int8", "int4" ..., "rank cut", "sparse", "units
    # pruned", and "layers" (all of them): the candidate in one line, for a plot's hover.
    forms: dict[str, int] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return "fp32" if self.number is None else f"trial {self.number}"


class Queries:
    """Read-only access to one store."""

    def __init__(self, url: str) -> None:
        check_store_url(url, create=False)
        self.url = url
        self.engine: Engine = _read_only(url)
        check_schema(self.engine, url)  # a fresh or older database: one line, not a traceback

    def jobs(self) -> list[JobRow]:
        """Every job, newest first, with its search trials counted per state and its best
        verified accuracy and speed-up."""
        with self.engine.connect() as db:
            jobs = db.execute(
                select(
                    Job.id,
                    Job.workload,
                    Job.status,
                    Job.spec,
                    Job.created_at,
                    Job.updated_at,
                    Job.error,
                    Job.driver,
                    Job.submission,
                    Job.started_at,
                    Job.finished_at,
                    Job.heartbeat_at,
                ).order_by(Job.created_at.desc())
            ).all()
            counts = db.execute(
                select(Trial.job_id, Trial.state, func.count())
                .where(Trial.role == TrialRole.SEARCH)
                .group_by(Trial.job_id, Trial.state)
            ).all()
            best = db.execute(
                select(Trial.job_id, Metric.name, func.max(Metric.value))
                .join(Metric, Metric.trial_id == Trial.id)
                .where(
                    Trial.role == TrialRole.SEARCH,
                    Trial.state == TrialState.COMPLETE,
                    Trial.verified.is_(True),
                    Metric.name.in_(("accuracy", "speedup")),
                )
                .group_by(Trial.job_id, Metric.name)
            ).all()
        per_state: dict[str, dict[str, int]] = {}
        for job_id, state, n in counts:
            per_state.setdefault(job_id, {})[_value(state)] = int(n)
        best_of = {(job_id, name): float(v) for job_id, name, v in best}
        return [
            JobRow(
                id=job.id,
                workload=job.workload,
                status=_value(job.status),
                backend=str(job.spec.get("backend", "")),
                trials_asked=int(job.spec.get("trials", 0)),
                counts=per_state.get(job.id, {}),
                best_accuracy=best_of.get((job.id, "accuracy")),
                best_speedup=best_of.get((job.id, "speedup")),
                created_at=job.created_at,
                updated_at=job.updated_at,
                error=job.error,
                driver=job.driver,
                submission=job.submission,
                started_at=job.started_at,
                finished_at=job.finished_at,
                heartbeat_at=job.heartbeat_at,
            )
            for job in jobs
        ]

    def job_spec(self, job_id: str) -> dict[str, Any]:
        """The job's stored spec; a KeyError naming the job if there is none."""
        with self.engine.connect() as db:
            spec = db.execute(select(Job.spec).where(Job.id == job_id)).scalar_one_or_none()
        if spec is None:
            raise KeyError(f"no job {job_id!r} in {self.url}")
        return dict(spec)

    def sensitivity(self, job_id: str) -> dict[str, float]:
        """Each layer's curvature per weight, as the job's guidance measured it (empty for a
        blind job, or one from before guidance stored it)."""
        with self.engine.connect() as db:
            space = db.execute(select(Job.space).where(Job.id == job_id)).scalar_one_or_none()
        return {k: float(v) for k, v in (space or {}).get("sensitivity", {}).items()}

    def points(self, job_id: str, names: Sequence[str] = PLOTTED) -> list[TrialPoint]:
        """Every trial of ``job_id`` (the reference first) with the metrics ``names``."""
        with self.engine.connect() as db:
            trials = db.execute(
                select(Trial.id, Trial.number, Trial.state, Trial.verified, Trial.origin)
                .where(Trial.job_id == job_id)
                .order_by(case((Trial.number.is_(None), -1), else_=Trial.number))
            ).all()
            values = db.execute(
                select(Metric.trial_id, Metric.name, Metric.value)
                .join(Trial, Trial.id == Metric.trial_id)
                .where(Trial.job_id == job_id, Metric.name.in_(list(names)))
            ).all()
            forms = db.execute(
                select(
                    LayerChoiceRow.trial_id,
                    LayerChoiceRow.weight_bits,
                    func.count(),
                    func.sum(case((LayerChoiceRow.rank_fraction < 1.0, 1), else_=0)),
                    func.sum(case((LayerChoiceRow.sparsity > 0.0, 1), else_=0)),
                    func.sum(case((LayerChoiceRow.keep < 1.0, 1), else_=0)),
                )
                .join(Trial, Trial.id == LayerChoiceRow.trial_id)
                .where(Trial.job_id == job_id)
                .group_by(LayerChoiceRow.trial_id, LayerChoiceRow.weight_bits)
            ).all()
        metrics: dict[int, dict[str, float]] = {}
        for trial_id, name, value in values:
            metrics.setdefault(trial_id, {})[name] = float(value)
        counts: dict[int, dict[str, int]] = {}
        for trial_id, bits, layers, cut, sparse, pruned in forms:
            found = counts.setdefault(trial_id, {})
            named = {"layers": layers, "rank cut": cut, "sparse": sparse, "units pruned": pruned}
            if bits < 16:
                named[f"int{bits}"] = layers
            for name, n in named.items():
                found[name] = found.get(name, 0) + int(n)
        return [
            TrialPoint(
                number,
                _value(state),
                verified,
                metrics.get(row_id, {}),
                _value(origin),
                counts.get(row_id, {}),
            )
            for row_id, number, state, verified, origin in trials
        ]

    def choices(self, job_id: str, number: int | None) -> list[dict[str, Any]]:
        """The per-layer choices of one trial (``number`` None: the reference), in model
        order (the order of the job's stored space; a candidate itself is sorted by name)."""
        with self.engine.connect() as db:
            space = db.execute(select(Job.space).where(Job.id == job_id)).scalar_one_or_none()
            rows = db.execute(
                select(
                    LayerChoiceRow.layer,
                    LayerChoiceRow.weight_bits,
                    LayerChoiceRow.sparsity,
                    LayerChoiceRow.rank_fraction,
                    LayerChoiceRow.keep,
                )
                .join(Trial, Trial.id == LayerChoiceRow.trial_id)
                .where(
                    Trial.job_id == job_id,
                    Trial.number.is_(None) if number is None else Trial.number == number,
                )
            ).all()
        order = {layer["name"]: i for i, layer in enumerate((space or {}).get("layers", []))}
        found = [dict(row._mapping) for row in rows]
        return sorted(found, key=lambda c: (order.get(c["layer"], len(order)), c["layer"]))


def _value(member: Any) -> str:
    return str(getattr(member, "value", member))


def _read_only(url: str) -> Engine:
    """An engine on ``url`` that cannot write: SQLite opened ``mode=ro``; PostgreSQL sessions
    whose transactions are read-only."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return create_engine(f"sqlite:///file:{parsed.database}?mode=ro&uri=true")
    options = {"options": "-c default_transaction_read_only=on"}
    return create_engine(engine_url(url), connect_args=options, pool_pre_ping=True)
