"""The whole bitprism SQL schema (SQLAlchemy 2 ORM). Migrations: ``migrations/versions``.

Tables are prefixed ``bp_`` because Optuna keeps its own tables (``studies``, ``trials`` ...)
in the same database, and our alembic history uses its own version table for the same reason.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum, StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Enum as SqlEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

VERSION_TABLE = "bp_alembic_version"


class JobStatus(StrEnum):
    QUEUED = "queued"  # submitted; no driver has started it yet
    PENDING = "pending"  # a driver is preparing it (export, guidance)
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C / SIGINT; resumable
    CANCELLED = "cancelled"  # stopped by `bitprism cancel`; resumable


ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.PENDING, JobStatus.RUNNING})


class TrialState(StrEnum):
    RUNNING = "running"
    COMPLETE = "complete"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    PRUNED = "pruned"  # a sampler's proposal its predictions showed dominated: unmeasured


class TrialRole(StrEnum):
    SEARCH = "search"
    REFERENCE = "reference"


class TrialOrigin(StrEnum):
    """Who proposed a trial's candidate: the dashboard colours the Pareto page by it."""

    REFERENCE = "reference"  # the fp32 (or bf16) model itself
    UNIFORM = "uniform"  # a uniform seed: one form everywhere, as a user would try by hand
    WARM_START = "warm_start"  # the sensitivity x cost program's seed
    SAMPLER = "sampler"  # Optuna's sampler


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _enum(cls: type[Enum]) -> SqlEnum:
    return SqlEnum(
        cls, native_enum=False, length=16, values_callable=lambda e: [m.value for m in e]
    )


class Base(DeclarativeBase):
    pass


class Job(Base):
    __tablename__ = "bp_jobs"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    workload: Mapped[str] = mapped_column(String(512))
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus))
    spec: Mapped[dict] = mapped_column(JSON)
    space: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    study_name: Mapped[str] = mapped_column(String(160))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # sha256 of the model's graph and weights: a resumed job must compress the same model.
    model_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The driver running the job and its last sign of life: one driver per job (a lease).
    driver: Mapped[str | None] = mapped_column(String(160), nullable=True)
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Where it was submitted to run: "local pid 1234" or "ray <address> <submission id>".
    submission: Mapped[str | None] = mapped_column(String(400), nullable=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now
    )
    trials: Mapped[list[Trial]] = relationship(back_populates="job", cascade="all, delete-orphan")
    artifacts: Mapped[list[Artifact]] = relationship(cascade="all, delete-orphan")


class Trial(Base):
    __tablename__ = "bp_trials"
    __table_args__ = (UniqueConstraint("job_id", "number", name="uq_bp_trials_job_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("bp_jobs.id", ondelete="CASCADE"), index=True)
    number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    role: Mapped[TrialRole] = mapped_column(_enum(TrialRole))
    origin: Mapped[TrialOrigin] = mapped_column(
        _enum(TrialOrigin), default=TrialOrigin.SAMPLER, server_default=TrialOrigin.SAMPLER.value
    )
    state: Mapped[TrialState] = mapped_column(_enum(TrialState))
    candidate_hash: Mapped[str] = mapped_column(String(32), index=True)
    verified: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Where it was measured: the host (and Ray node) that built and scored it, and the host
    # and CPU that timed it against fp32 (a cluster's nodes may differ).
    evaluated_on: Mapped[str | None] = mapped_column(String(300), nullable=True)
    timed_on: Mapped[str | None] = mapped_column(String(400), nullable=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    job: Mapped[Job] = relationship(back_populates="trials")
    choices: Mapped[list[LayerChoiceRow]] = relationship(cascade="all, delete-orphan")
    metrics: Mapped[list[Metric]] = relationship(cascade="all, delete-orphan")
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="trial")


class LayerChoiceRow(Base):
    __tablename__ = "bp_layer_choices"
    __table_args__ = (UniqueConstraint("trial_id", "layer", name="uq_bp_layer_choices"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("bp_trials.id", ondelete="CASCADE"), index=True
    )
    layer: Mapped[str] = mapped_column(String(512))
    weight_bits: Mapped[int] = mapped_column(Integer)
    sparsity: Mapped[float] = mapped_column(Float)
    rank_fraction: Mapped[float] = mapped_column(Float)
    keep: Mapped[float] = mapped_column(Float, default=1.0, server_default="1.0")


class Metric(Base):
    __tablename__ = "bp_metrics"
    __table_args__ = (UniqueConstraint("trial_id", "name", name="uq_bp_metrics"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    trial_id: Mapped[int] = mapped_column(
        ForeignKey("bp_trials.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)


class Artifact(Base):
    __tablename__ = "bp_artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("bp_jobs.id", ondelete="CASCADE"), index=True)
    trial_id: Mapped[int | None] = mapped_column(
        ForeignKey("bp_trials.id", ondelete="CASCADE"), nullable=True, index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(Integer)
    trial: Mapped[Trial | None] = relationship(back_populates="artifacts")


class LatencyCacheRow(Base):
    """One timed layer form: a layer alone in one form and shape on one runtime, thread count,
    precision and CPU (the key hashes all of them), so the warm start times it once."""

    __tablename__ = "bp_latency_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    milliseconds: Mapped[float] = mapped_column(Float)
    backend: Mapped[str] = mapped_column(String(64))
    runtime_version: Mapped[str] = mapped_column(String(128))
    threads: Mapped[int] = mapped_column(Integer)
    precision: Mapped[str] = mapped_column(String(16))
    cpu: Mapped[str] = mapped_column(Text)
    op: Mapped[str] = mapped_column(Text)  # readable: kind, weight and input shapes, form
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class DamageCacheRow(Base):
    """A job's predicted-damage table, reused by the next job on the same model, calibration
    data and space (the key hashes all three and the method's version)."""

    __tablename__ = "bp_damage_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    table: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)
