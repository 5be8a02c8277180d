"""The job spec: everything a search job needs, validated before anything runs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bitprism.spaces.candidate import LayerChoice

_JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Objective(StrEnum):
    """Measured quantities the search optimises, each with a fixed direction.

    ``speedup`` is the fp32 reference's latency over the candidate's, both timed in the same
    interleaved passes, so that drift of the machine cancels (> 1 = faster than fp32).
    """

    ACCURACY = "accuracy"
    SPEEDUP = "speedup"
    WEIGHT_BYTES = "weight_bytes"

    @property
    def direction(self) -> Literal["maximize", "minimize"]:
        return "minimize" if self is Objective.WEIGHT_BYTES else "maximize"


class Precision(StrEnum):
    """The float precision a backend computes in (``INFERENCE_PRECISION_HINT`` on OpenVINO).

    The fp32 reference is always computed and timed in fp32; a ``bf16`` job builds and times
    its candidates, the uncompressed model among them, in bf16.
    """

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class Sampler(StrEnum):
    """Optuna samplers a job may use."""

    NSGA2 = "nsga2"
    TPE = "tpe"
    GP = "gp"
    RANDOM = "random"


def _whole(value: float) -> float | int:
    """A bit width as an int when it is one (4.0 -> 4; 4.5 stays, and is refused)."""
    return int(value) if float(value).is_integer() else value


class Knob(StrEnum):
    """Per-layer knobs that overrides may restrict (and ``extra_knobs`` may switch on)."""

    WEIGHT_BITS = "weight_bits"
    SPARSITY = "sparsity"
    RANK_FRACTION = "rank_fraction"
    KEEP = "keep"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Constraints(_Strict):
    """Limits that filter the Pareto front and pick the exported point (None = no limit).

    The accuracy drop is measured against the fp32 reference's score: ``max_drop_pct`` in percent
    of that score (scale-free, like Intel Neural Compressor's ``tolerable_loss``; the default),
    ``max_drop_abs`` in the metric's own units. Both apply when both are set.
    ``min_speedup`` is the speed-up over fp32 a point needs (1.0 = not slower; it is allowed the
    point's own measured spread between timing passes); None accepts slower points.
    """

    max_drop_pct: float | None = Field(1.0, ge=0, le=100)
    max_drop_abs: float | None = Field(None, ge=0)
    min_speedup: float | None = Field(1.0, ge=0)
    max_weight_bytes: int | None = Field(None, gt=0)


class LatencySpec(_Strict):
    """How candidates are timed: ``passes`` interleaved passes over fp32 and the candidates,
    each model ``repeats`` runs per pass after ``warmup`` runs; ``batch`` None = the
    workload's example batch; printed with every latency.

    A model slower than ``budget_s`` / ``repeats`` per run stops a pass once ``budget_s`` is
    spent (after at least 3 runs; warm-up after at least 1), so a large model is not timed for
    minutes while a small one still gets its ``repeats``. ``per_round`` candidates are timed in
    each timing round against one fp32 timing (None = one per worker); a larger group spends
    less time re-timing fp32.
    """

    threads: int = Field(1, ge=1, le=256)
    batch: int | None = Field(None, ge=1, le=65_536)
    warmup: int = Field(10, ge=0, le=10_000)
    repeats: int = Field(20, ge=3, le=100_000)
    passes: int = Field(5, ge=1, le=1000)
    budget_s: float = Field(0.5, gt=0, le=3600)
    per_round: int | None = Field(None, ge=1, le=1024)

    def describe(self, example_batch: int | None = None) -> str:
        """E.g. ``batch 32, 1 thread``: what every printed latency was measured at."""
        rows = self.batch or example_batch
        batch = "the example batch" if rows is None else f"batch {rows}"
        return f"{batch}, {self.threads} thread{'s' if self.threads > 1 else ''}"


class Methods(_Strict):
    """How a job factorises, prunes and quantises each layer: registered method names (see
    :mod:`bitprism.compression.methods`). The defaults are data-aware (``whitened``, ``obs``,
    ``gptq``): they lose less accuracy at equal bytes, for some calibration work per trial;
    ``svd``, ``magnitude`` and ``rtn`` are the plain ones."""

    factoriser: str = "whitened"
    pruner: str = "obs"
    quantiser: str = "gptq"

    @model_validator(mode="after")
    def _registered(self) -> Methods:
        from bitprism.compression.methods import check_methods  # torch: only when checked

        check_methods(self)
        return self

    def __str__(self) -> str:
        return f"factoriser {self.factoriser}, pruner {self.pruner}, quantiser {self.quantiser}"


class JobSpec(_Strict):
    """A search job. Load from YAML with :meth:`from_yaml`; every field has a sane default.

    Example:
        >>> spec = JobSpec(workload="digits-cnn", trials=40, workers=2)
        >>> JobSpec.model_validate(spec.model_dump(mode="json")) == spec
        True
    """

    workload: str = "digits-cnn"
    data: Path | None = None
    model_dir: Path | None = None
    job_id: str | None = None
    objectives: tuple[Objective, ...] = (
        Objective.ACCURACY,
        Objective.SPEEDUP,
        Objective.WEIGHT_BYTES,
    )
    constraints: Constraints = Constraints()
    trials: int = Field(40, ge=1, le=1_000_000)
    workers: int = Field(2, ge=1, le=1024)
    seed: int = Field(0, ge=0)
    sampler: Sampler = Sampler.NSGA2
    # Integer-program seeds of least predicted damage enqueued before the sampler's trials
    # (bitprism.search.warmstart); 0 = a blind search (the uniform seeds only).
    warm_start: int = Field(8, ge=0, le=64)
    # How each layer is factorised, pruned and quantised (bitprism.compression.methods).
    methods: Methods = Field(default_factory=Methods)
    store: str = "sqlite:///bitprism.db"
    output_dir: Path = Path("bitprism-runs")
    backend: str = "ort-cpu"
    # Where ``backend`` cannot run (torch-cuda with no GPU), search on this one instead and
    # say so (e.g. ort-cpu); None: such a job fails, naming what is missing.
    fallback_backend: str | None = None
    precision: Precision = Precision.FP32
    overrides: dict[str, dict[Knob, tuple[float, ...]]] = Field(default_factory=dict)
    extra_knobs: tuple[Knob, ...] = ()
    latency: LatencySpec = LatencySpec()
    parity_tolerance: float = Field(0.05, gt=0, le=1.0)
    # A file may also differ from the PyTorch candidate by this share of how far compression
    # moved the output (capped at 25%); 0 = strict parity_tolerance. See Parity.verified.
    parity_drift_share: float = Field(1.0, ge=0, le=1.0)
    trial_timeout_s: float = Field(600.0, gt=0, le=7 * 24 * 3600)
    # False: ONNX files no Pareto point uses are deleted after each timing round (their
    # records and sha256 stay; a file is rebuilt from its candidate when asked for).
    keep_all_files: bool = False

    def runtime_label(self) -> str:
        """E.g. ``openvino-cpu, bf16 (the fp32 reference in fp32)``: where latencies come from."""
        if self.precision is Precision.FP32:
            return f"{self.backend}, fp32"
        return f"{self.backend}, {self.precision.value} (the fp32 reference in fp32)"

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str | None) -> str | None:
        if value is not None and not _JOB_ID.match(value):
            raise ValueError("must be 1-128 letters, digits, '.', '_' or '-', starting alnum")
        return value

    @field_validator("data", "model_dir")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        # Stored absolute, so a resume from another folder names the same file.
        return None if value is None else value.expanduser().resolve()

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

    @model_validator(mode="after")
    def _overrides(self) -> JobSpec:
        for pattern, knobs in self.overrides.items():
            for knob, values in knobs.items():
                if not values:
                    raise ValueError(f"overrides.{pattern}.{knob.value}: empty list of values")
                for value in values:  # the values no layer could take; the model says the rest
                    whole = _whole(value) if knob is Knob.WEIGHT_BITS else value
                    try:
                        LayerChoice(**{knob.value: whole})  # type: ignore[arg-type]
                    except ValueError as exc:
                        raise ValueError(f"overrides.{pattern}.{knob.value}: {exc}") from None
        return self

    @classmethod
    def from_yaml(cls, path: Path, **updates: Any) -> JobSpec:
        """Read a YAML job spec; ``updates`` (e.g. CLI flags) win over the file's fields.

        Relative paths in the file (``output_dir``, a SQLite ``store``) are relative to the
        file's folder, not to the current one; those in ``updates`` stay as given.
        """
        if not path.is_file():
            raise SpecError(f"job spec {path}: no such file")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise SpecError(f"job spec {path}: not valid YAML: {exc}") from exc
        if data is None:
            raise SpecError(f"job spec {path}: the file is empty; give at least a workload")
        if not isinstance(data, dict):
            raise SpecError(f"job spec {path}: expected a mapping of fields at the top level")
        data = _anchor_paths(data, path.resolve().parent)
        return build_spec({**data, **updates}, source=str(path))


def _anchor_paths(data: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The spec's paths (``output_dir``, ``data``, ``model_dir``, a SQLite store's file), made
    relative to ``folder`` where relative."""
    out = dict(data)
    for key in ("output_dir", "data", "model_dir"):
        if isinstance(out.get(key), str) and not Path(out[key]).expanduser().is_absolute():
            out[key] = str(folder / Path(out[key]).expanduser())
    store = out.get("store")
    if isinstance(store, str):
        try:
            url = make_url(store)
        except ArgumentError:
            return out  # the store validator reports it by name
        database = url.database or ":memory:"
        relative = database != ":memory:" and not Path(database).expanduser().is_absolute()
        if url.get_backend_name() == "sqlite" and relative:
            out["store"] = url.set(database=str(folder / database)).render_as_string(False)
    return out


def with_latency_defaults(spec: JobSpec, defaults: Mapping[str, Any]) -> JobSpec:
    """``spec`` with the workload's suggested latency fields where the job did not set them.

    E.g. a sentence encoder deployed on every core is timed with ``threads=2`` unless the user
    asks otherwise. The result names every field, so a stored spec reads the same on resume.
    """
    unset = {k: v for k, v in defaults.items() if k not in spec.latency.model_fields_set}
    if not unset:
        return spec
    try:
        latency = LatencySpec.model_validate(
            {**spec.latency.model_dump(mode="json", exclude_unset=True), **unset}
        )
    except ValidationError as exc:
        raise SpecError(f"workload latency defaults {dict(defaults)} are invalid: {exc}") from None
    return spec.model_copy(update={"latency": latency})


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
