"""The SQL store: the single source of truth for jobs, trials, choices, metrics and artifacts.

One writer per job (the search driver); readers (CLI, dashboard) get plain records, never ORM
objects. SQLite runs in WAL mode so readers do not block the writer. Optuna's RDB storage
lives on the same URL (:func:`optuna_storage`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, func, or_, select, update
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from bitprism.paths import StoreError, check_store_url, engine_url

__all__ = [
    "ArtifactRecord",
    "JobRecord",
    "Store",
    "StoreError",
    "TimedOp",
    "TrialRecord",
    "check_store_url",
]
from bitprism.search.schema import (
    ACTIVE,
    VERSION_TABLE,
    Artifact,
    DamageCacheRow,
    Job,
    JobStatus,
    LatencyCacheRow,
    LayerChoiceRow,
    Metric,
    Trial,
    TrialOrigin,
    TrialRole,
    TrialState,
)
from bitprism.spaces.candidate import Candidate


@dataclass(frozen=True)
class ArtifactRecord:
    path: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class TrialRecord:
    """A trial as readers see it."""

    number: int | None
    role: TrialRole
    state: TrialState
    candidate: Candidate
    metrics: dict[str, float] = field(default_factory=dict)
    verified: bool | None = None
    error: str | None = None
    artifact: ArtifactRecord | None = None
    origin: TrialOrigin = TrialOrigin.SAMPLER
    evaluated_on: str | None = None  # host (and Ray node) that built and scored it
    timed_on: str | None = None  # host (and Ray node) and CPU that timed it


@dataclass(frozen=True)
class TimedOp:
    """A layer form timed alone: the cache key and what it was timed on (see LatencyCacheRow)."""

    key: str
    milliseconds: float
    backend: str
    runtime_version: str
    threads: int
    precision: str
    cpu: str
    op: str


@dataclass(frozen=True)
class JobRecord:
    id: str
    workload: str
    status: JobStatus
    spec: dict[str, Any]
    space: dict[str, Any] | None
    study_name: str
    error: str | None
    created_at: dt.datetime
    model_hash: str | None = None
    driver: str | None = None
    submission: str | None = None  # where it was submitted to run (see Job.submission)
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None
    heartbeat_at: dt.datetime | None = None  # the driver's last lease renewal


class Store:
    """Access to one bitprism database; creates or migrates its schema on open.

    ``create=False`` opens only an existing store (read-only commands never create one).
    """

    def __init__(self, url: str, *, create: bool = True) -> None:
        check_store_url(url, create=create)
        self.url = url
        self.engine = _engine(url)
        try:
            _migrate(self.engine)
        except OperationalError as exc:
            raise _unreachable(url, exc) from None
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def _session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def create_job(
        self,
        job_id: str,
        workload: str,
        spec: Mapping[str, Any],
        study_name: str,
        model_hash: str | None = None,
        *,
        status: JobStatus = JobStatus.PENDING,
        submission: str | None = None,
    ) -> None:
        """Insert a job; a ValueError when the id is taken (also when another process inserts
        it at the same moment: the primary key decides)."""
        taken = ValueError(f"job {job_id!r} already exists in {self.url}")
        try:
            with self._session() as s:
                if s.get(Job, job_id) is not None:
                    raise taken
                s.add(
                    Job(
                        id=job_id,
                        workload=workload,
                        status=status,
                        spec=dict(spec),
                        study_name=study_name,
                        model_hash=model_hash,
                        submission=submission,
                    )
                )
        except IntegrityError:
            raise taken from None

    def job(self, job_id: str) -> JobRecord | None:
        with self._session() as s:
            job = s.get(Job, job_id)
            return None if job is None else _job_record(job)

    def jobs(self) -> list[JobRecord]:
        with self._session() as s:
            return [_job_record(j) for j in s.scalars(select(Job).order_by(Job.created_at))]

    def update_job(
        self,
        job_id: str,
        *,
        status: JobStatus | None = None,
        space: dict[str, Any] | None = None,
        spec: Mapping[str, Any] | None = None,
        error: str | None = None,
        model_hash: str | None = None,
        submission: str | None = None,
    ) -> None:
        """Set the given fields; ``error`` is always set (None clears a previous error). A
        status that starts the job stamps ``started_at`` (first start only) and clears
        ``finished_at``; a final one stamps ``finished_at``. A cancelled job is never set
        going again here (a cancel that lands while the driver prepares must stick; a resume
        queues the job first)."""
        now = dt.datetime.now(dt.UTC)
        starting = (JobStatus.PENDING, JobStatus.RUNNING)
        with self._session() as s:
            job = _get_job(s, job_id)
            if status in starting and job.status is JobStatus.CANCELLED:
                status = None
            if status is not None:
                job.status = status
                if status in starting:
                    job.started_at = job.started_at or now
                    job.finished_at = None
                elif status not in ACTIVE:
                    job.finished_at = now
            if space is not None:
                job.space = space
            if spec is not None:
                job.spec = dict(spec)
            if model_hash is not None:
                job.model_hash = model_hash
            if submission is not None:
                job.submission = submission
            job.error = error

    def job_status(self, job_id: str) -> JobStatus | None:
        """The job's status alone (None: no such job): what a driver polls."""
        with self._session() as s:
            return s.scalar(select(Job.status).where(Job.id == job_id))

    def request_cancel(self, job_id: str) -> JobStatus | None:
        """Mark an active job cancelled (one conditional UPDATE); returns the status it had,
        or None when it was not active (or there is no such job). A queued job never starts;
        a running one's driver sees the mark within seconds and stops as Ctrl-C would."""
        with self._session() as s:
            job = s.get(Job, job_id)
            if job is None:
                return None
            before = job.status
            done = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.status.in_(ACTIVE))
                .values(status=JobStatus.CANCELLED, error="cancelled by the user")
                .execution_options(synchronize_session=False)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return None
            if before is JobStatus.QUEUED:  # no driver will finish it
                job.finished_at = dt.datetime.now(dt.UTC)
            return before

    def acquire_lease(
        self, job_id: str, driver: str, ttl_s: float, dead: str | None = None
    ) -> str | None:
        """Make ``driver`` the job's only driver, unless another one's lease is still fresh.

        ``dead`` names a holder known to be gone, whose lease is taken whatever its age. One
        conditional UPDATE, atomic on SQLite and PostgreSQL, so two drivers starting at once
        cannot both win. Returns None when acquired, else who holds the job and since when.
        """
        now = dt.datetime.now(dt.UTC)
        stale = now - dt.timedelta(seconds=ttl_s)
        with self._session() as s:
            taken = s.execute(
                update(Job)
                .where(
                    Job.id == job_id,
                    or_(
                        Job.driver.is_(None),
                        Job.driver.in_([driver, dead or driver]),
                        Job.heartbeat_at < stale,
                    ),
                )
                .values(driver=driver, heartbeat_at=now)
                .execution_options(synchronize_session=False)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return None
            job = _get_job(s, job_id)
            return f"{job.driver} (last heartbeat {job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC)"

    def renew_lease(self, job_id: str, driver: str) -> bool:
        """Refresh ``driver``'s heartbeat; False when it no longer holds the job."""
        with self._session() as s:
            result = s.execute(
                update(Job)
                .where(Job.id == job_id, Job.driver == driver)
                .values(heartbeat_at=dt.datetime.now(dt.UTC))
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount == 1)  # type: ignore[attr-defined]

    def release_lease(self, job_id: str, driver: str) -> None:
        """Give the job up (a no-op when ``driver`` does not hold it)."""
        with self._session() as s:
            s.execute(
                update(Job)
                .where(Job.id == job_id, Job.driver == driver)
                .values(driver=None, heartbeat_at=None)
                .execution_options(synchronize_session=False)
            )

    def add_artifact(self, job_id: str, kind: str, artifact: ArtifactRecord) -> None:
        """Record a job-level file (e.g. the fp32 base export)."""
        with self._session() as s:
            s.add(
                Artifact(
                    job_id=job_id,
                    kind=kind,
                    path=artifact.path,
                    sha256=artifact.sha256,
                    bytes=artifact.bytes,
                )
            )

    def start_trial(
        self,
        job_id: str,
        number: int | None,
        role: TrialRole,
        candidate: Candidate,
        origin: TrialOrigin | None = None,
    ) -> int:
        """Insert a running trial with its per-layer choices; returns its row id. ``origin``
        defaults to the reference's for the reference, else the sampler's."""
        if origin is None:
            origin = TrialOrigin.REFERENCE if role is TrialRole.REFERENCE else TrialOrigin.SAMPLER
        with self._session() as s:
            _get_job(s, job_id)
            trial = Trial(
                job_id=job_id,
                number=number,
                role=role,
                origin=origin,
                state=TrialState.RUNNING,
                candidate_hash=candidate.digest(),
            )
            trial.choices = [
                LayerChoiceRow(
                    layer=name,
                    weight_bits=c.weight_bits,
                    sparsity=c.sparsity,
                    rank_fraction=c.rank_fraction,
                    keep=c.keep,
                )
                for name, c in candidate
            ]
            s.add(trial)
            s.flush()
            return trial.id

    def complete_trial(
        self,
        trial_id: int,
        metrics: Mapping[str, float],
        verified: bool | None,
        artifact: ArtifactRecord | None,
        note: str | None = None,
        state: TrialState = TrialState.COMPLETE,
        where: tuple[str | None, str | None] = (None, None),
    ) -> None:
        """Record what a trial measured; ``state=FAILED`` keeps the numbers of a rejected one,
        ``PRUNED`` the predictions of an unmeasured one (``verified`` None: no file); ``where``:
        the host that evaluated it and the host and CPU that timed it."""
        with self._session() as s:
            trial = _get_trial(s, trial_id)
            trial.state = state
            trial.verified = verified
            trial.error = note
            trial.finished_at = dt.datetime.now(dt.UTC)
            trial.evaluated_on, trial.timed_on = where
            trial.metrics = [Metric(name=k, value=float(v)) for k, v in sorted(metrics.items())]
            if artifact is not None:
                s.add(
                    Artifact(
                        job_id=trial.job_id,
                        trial_id=trial.id,
                        kind="onnx",
                        path=artifact.path,
                        sha256=artifact.sha256,
                        bytes=artifact.bytes,
                    )
                )

    def end_trial(self, trial_id: int, state: TrialState, error: str) -> None:
        """Mark a trial failed or interrupted, keeping the error text."""
        with self._session() as s:
            trial = _get_trial(s, trial_id)
            trial.state = state
            trial.error = error
            trial.finished_at = dt.datetime.now(dt.UTC)

    def running_trials(self, job_id: str) -> list[tuple[int, int | None]]:
        """(row id, Optuna number) of trials left running, e.g. by a killed driver."""
        with self._session() as s:
            rows = s.execute(
                select(Trial.id, Trial.number).where(
                    Trial.job_id == job_id, Trial.state == TrialState.RUNNING
                )
            )
            return [(row.id, row.number) for row in rows]

    def cached_latencies(self, keys: Iterable[str]) -> dict[str, float]:
        """Milliseconds of the timed layer forms among ``keys``."""
        wanted = list(dict.fromkeys(keys))
        with self._session() as s:
            rows = s.scalars(select(LatencyCacheRow).where(LatencyCacheRow.key.in_(wanted)))
            return {row.key: row.milliseconds for row in rows}

    def cache_latencies(self, timed: Iterable[TimedOp]) -> None:
        """Keep (or refresh) timed layer forms."""
        with self._session() as s:
            for op in timed:
                row = s.get(LatencyCacheRow, op.key)
                if row is None:
                    s.add(LatencyCacheRow(**dataclasses.asdict(op)))
                else:
                    row.milliseconds = op.milliseconds

    def cached_damage(self, key: str) -> dict[str, Any] | None:
        """A cached predicted-damage table (as stored), or None."""
        with self._session() as s:
            row = s.get(DamageCacheRow, key)
            return None if row is None else dict(row.table)

    def cache_damage(self, key: str, table: Mapping[str, Any]) -> None:
        with self._session() as s:
            row = s.get(DamageCacheRow, key)
            if row is None:
                s.add(DamageCacheRow(key=key, table=dict(table)))
            else:
                row.table = dict(table)

    def trials(self, job_id: str) -> list[TrialRecord]:
        """All trials of a job, reference first, then by Optuna number."""
        with self._session() as s:
            query = (
                select(Trial)
                .where(Trial.job_id == job_id)
                .options(
                    selectinload(Trial.choices),
                    selectinload(Trial.metrics),
                    selectinload(Trial.artifacts),
                )
                .order_by(Trial.number.is_not(None), Trial.number, Trial.id)
            )
            return [_trial_record(t) for t in s.scalars(query)]


def optuna_storage(url: str, **options: Any) -> Any:
    """Optuna's RDB storage on the bitprism database, so stock Optuna can read the studies;
    ``options`` are RDBStorage's (a driver's turn on heartbeats: :mod:`.heartbeat`).

    Its constructor creates Optuna's tables (and, on PostgreSQL, enum types) when missing, so
    it runs under the schema lock: four drivers starting at once on a fresh database would
    otherwise collide on ``CREATE TYPE studydirection``.
    """
    import optuna

    engine = _engine(url)
    try:
        with _schema_lock(engine), warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeats
            return optuna.storages.RDBStorage(
                engine_url(url), engine_kwargs=_engine_kwargs(url), **options
            )
    finally:
        engine.dispose()


def _engine_kwargs(url: str) -> dict[str, Any]:
    if make_url(url).get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 60}}
    return {"pool_pre_ping": True}


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(engine_url(url), **_engine_kwargs(url))
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATING = threading.Lock()  # alembic's context is module-global: one migration at a time
_SCHEMA_LOCK_KEY = 0x6269_7470  # "bitp": the PostgreSQL advisory lock of schema changes


@contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """One schema change at a time on a database.

    Threads of this process (a dashboard's sessions, two submits) wait on a lock, as alembic's
    command context is not thread-safe. Other processes wait on the database: a session-level
    advisory lock on PostgreSQL, whose concurrent ``CREATE TABLE``/``CREATE TYPE`` otherwise
    fail on a unique index; ``flock`` on a lock file beside a SQLite database, whose DDL runs
    outside a transaction in Python's driver. (Not on the database file itself: closing any
    descriptor of it drops the process's POSIX locks on it, SQLite's own included, after which
    another process may remove the WAL index under this one's connections.)
    """
    with _MIGRATING, ExitStack() as held:
        if engine.dialect.name == "postgresql":
            connection = held.enter_context(
                engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            )
            connection.execute(select(func.pg_advisory_lock(_SCHEMA_LOCK_KEY)))
            held.callback(
                lambda: connection.execute(select(func.pg_advisory_unlock(_SCHEMA_LOCK_KEY)))
            )
        elif engine.dialect.name == "sqlite" and engine.url.database:
            lock = held.enter_context(_sqlite_lock_file(engine.url.database).open("ab"))
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def check_schema(engine: Engine, url: str) -> None:
    """Refuse, in one line, a database a reader cannot read: no bitprism store in it yet, or
    one at another schema revision than this bitprism's (readers never migrate).

    Raises:
        StoreError: with the reason and the command that fixes it.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
            current = context.get_current_revision()
    except OperationalError as exc:
        raise _unreachable(url, exc) from None
    shown = make_url(url).render_as_string(hide_password=True)
    head = ScriptDirectory(str(_MIGRATIONS)).get_current_head()
    if current is None:
        raise StoreError(
            f"no bitprism store in the database at {shown} yet: submit a job to it, or create "
            f"the store with `bitprism jobs --store URL`"
        )
    if current != head:
        raise StoreError(
            f"the store at {shown} has schema revision {current}, this bitprism reads {head}: "
            "one of the two is an older bitprism version; `bitprism jobs --store URL` run by the "
            "newer one brings the store up to date"
        )


def _unreachable(url: str, exc: OperationalError) -> StoreError:
    """The one-line error for a database that cannot be opened (password hidden)."""
    shown = make_url(url).render_as_string(hide_password=True)
    reason = str(exc.orig or exc).strip().splitlines()[0]
    return StoreError(f"cannot reach the database at {shown}: {reason}")


def _sqlite_lock_file(database: str) -> Path:
    """The file a SQLite store's schema changes lock (beside its ``-wal`` and ``-shm``)."""
    return Path(f"{Path(database).expanduser()}-lock")


def _migrate(engine: Engine) -> None:
    """Bring the schema to the newest alembic revision (idempotent), under the schema lock."""
    with _schema_lock(engine):
        _upgrade(engine)


def _upgrade(engine: Engine) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        # A batch migration rebuilds a SQLite table: with foreign keys on, dropping the old
        # table would cascade into its children's rows. SQLite only switches them outside a
        # transaction.
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()  # ends the autobegun (empty) transaction
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


def _get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise KeyError(f"no job {job_id!r}")
    return job


def _get_trial(session: Session, trial_id: int) -> Trial:
    trial = session.get(Trial, trial_id)
    if trial is None:
        raise KeyError(f"no trial row {trial_id}")
    return trial


def _job_record(job: Job) -> JobRecord:
    return JobRecord(
        id=job.id,
        workload=job.workload,
        status=job.status,
        spec=job.spec,
        space=job.space,
        study_name=job.study_name,
        error=job.error,
        created_at=job.created_at,
        model_hash=job.model_hash,
        driver=job.driver,
        submission=job.submission,
        started_at=job.started_at,
        finished_at=job.finished_at,
        updated_at=job.updated_at,
        heartbeat_at=job.heartbeat_at,
    )


def _trial_record(trial: Trial) -> TrialRecord:
    onnx = [a for a in trial.artifacts if a.kind == "onnx"]
    return TrialRecord(
        number=trial.number,
        role=trial.role,
        state=trial.state,
        origin=trial.origin,
        evaluated_on=trial.evaluated_on,
        timed_on=trial.timed_on,
        candidate=Candidate.from_dict(
            {
                c.layer: {
                    "weight_bits": c.weight_bits,
                    "sparsity": c.sparsity,
                    "rank_fraction": c.rank_fraction,
                    "keep": c.keep,
                }
                for c in trial.choices
            }
        ),
        metrics={m.name: m.value for m in trial.metrics},
        verified=trial.verified,
        error=trial.error,
        artifact=ArtifactRecord(onnx[0].path, onnx[0].sha256, onnx[0].bytes) if onnx else None,
    )
