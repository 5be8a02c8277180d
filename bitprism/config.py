"""The job spec: everything a search job needs, validated before anything runs."""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Objective(StrEnum):
    """Measured quantities the search optimises, each with a fixed direction."""

    ACCURACY = "accuracy"
    LATENCY = "latency_ms"
    WEIGHT_BYTES = "weight_bytes"

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "maximize" if self is Objective.ACCURACY else "minimize"


class Sampler(StrEnum):
    """Optuna samplers a job may use."""

    NSGA2 = "nsga2"
    TPE = "tpe"
    RANDOM = "random"


class Knob(StrEnum):
    """Per-layer knobs that overrides may restrict."""

    WEIGHT_BITS = "weight_bits"
    SPARSITY = "sparsity"
    RANK_FRACTION = "rank_fraction"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constraints(_Strict):
    """Limits that filter the Pareto front and pick the exported point (None = no limit)."""

    max_accuracy_drop: float | None = Field(1.0, ge=0)
    max_latency_ms: float | None = Field(None, gt=0)
    max_weight_bytes: int | None = Field(None, gt=0)


class LatencySpec(_Strict):
    """How each candidate is timed in onnxruntime."""

    threads: int = Field(1, ge=1, le=256)
    warmup: int = Field(10, ge=0, le=10_000)
    repeats: int = Field(50, ge=3, le=100_000)


class JobSpec(_Strict):
    """A search job. Load from YAML with :meth:`from_yaml`; every field has a sane default.

    Example:
        >>> spec = JobSpec(workload="digits-cnn", trials=40, workers=2)
        >>> JobSpec.model_validate(spec.model_dump(mode="json")) == spec
        True
    """

    workload: str = "digits-cnn"
    job_id: str | None = None
    objectives: tuple[Objective, ...] = (
        Objective.ACCURACY,
        Objective.LATENCY,
        Objective.WEIGHT_BYTES,
    )
    constraints: Constraints = Constraints()
    trials: int = Field(40, ge=1, le=1_000_000)
    workers: int = Field(2, ge=1, le=1024)
    seed: int = Field(0, ge=0)
    sampler: Sampler = Sampler.NSGA2
    store: str = "sqlite:///bitprism.db"
    output_dir: Path = Path("bitprism-runs")
    backend: str = "ort-cpu"
    overrides: dict[str, dict[Knob, tuple[float, ...]]] = Field(default_factory=dict)
    latency: LatencySpec = LatencySpec()
    parity_tolerance: float = Field(0.05, gt=0, le=1.0)

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str | None) -> str | None:
        if value is not None and not _JOB_ID.match(value):
            raise ValueError("must be 1-128 letters, digits, '.', '_' or '-', starting alnum")
        return value

    @field_validator("objectives")
    @classmethod
    def _objectives(cls, value: tuple[Objective, ...]) -> tuple[Objective, ...]:
        if not value:
            raise ValueError("at least one objective is needed")
        if len(set(value)) != len(value):
            raise ValueError("objectives must not repeat")
        return value

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from exc
        if url.get_backend_name() not in ("sqlite", "postgresql"):
            raise ValueError("only sqlite:// and postgresql:// stores are supported")
        return value

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{value} exists and is not a folder")
        return value

    @model_validator(mode="after")
    def _overrides(self) -> JobSpec:
        for pattern, knobs in self.overrides.items():
            for knob, values in knobs.items():
                if not values:
                    raise ValueError(f"overrides.{pattern}.{knob.value}: empty list of values")
        return self

    @classmethod
    def from_yaml(cls, path: Path, **updates: Any) -> JobSpec:
        """Read a YAML job spec; ``updates`` (e.g. CLI flags) win over the file's fields."""
        if not path.is_file():
            raise SpecError(f"job spec {path}: no such file")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise SpecError(f"job spec {path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise SpecError(f"job spec {path}: expected a mapping of fields at the top level")
        return build_spec({**data, **updates}, source=str(path))


class SpecError(ValueError):
    """A job spec that cannot run; the message names the field."""


def build_spec(data: dict[str, Any], source: str = "job spec") -> JobSpec:
    """Validate ``data`` into a JobSpec, turning pydantic's errors into one readable message."""
    try:
        return JobSpec.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '(spec)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SpecError(f"{source} is invalid:\n" + "\n".join(lines)) from None
