"""The SQL store on a real SQLite database (WAL), beside Optuna's own tables."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from sqlalchemy import inspect
from sqlalchemy.engine import make_url

from bitprism.dashboard.queries import Queries
from bitprism.search.lease import LEASE_TTL_S, lost_driver, status_label
from bitprism.search.schema import JobStatus, TrialOrigin, TrialRole, TrialState
from bitprism.search.store import ArtifactRecord, Store, optuna_storage
from bitprism.spaces.candidate import Candidate


def test_round_trip_of_job_trial_choices_metrics_artifact(any_store: str) -> None:
    store = Store(any_store)
    store.create_job("j1", "digits-cnn", {"trials": 3}, study_name="bitprism-j1")
    candidate = Candidate.from_dict(
        {"head.1": {"weight_bits": 4, "rank_fraction": 0.5}, "features.0": {"sparsity": 0.25}}
    )
    row = store.start_trial("j1", 0, TrialRole.SEARCH, candidate)
    assert store.running_trials("j1") == [(row, 0)]
    store.complete_trial(
        row,
        {"accuracy": 97.5, "latency_ms": 1.25},
        True,
        ArtifactRecord("/x/a.onnx", "ab" * 32, 1234),
    )
    failed = store.start_trial("j1", 1, TrialRole.SEARCH, Candidate.from_dict({}))
    store.end_trial(failed, TrialState.FAILED, "RuntimeError: boom")
    store.update_job("j1", status=JobStatus.DONE, space={"layers": []})

    reopened = Store(any_store)  # a second process sees the same
    job = reopened.job("j1")
    assert job is not None and job.status is JobStatus.DONE and job.spec == {"trials": 3}
    first, second = reopened.trials("j1")
    assert first.candidate == candidate and first.metrics == {"accuracy": 97.5, "latency_ms": 1.25}
    assert first.verified is True and first.artifact == ArtifactRecord("/x/a.onnx", "ab" * 32, 1234)
    assert second.state is TrialState.FAILED and second.error == "RuntimeError: boom"
    assert reopened.running_trials("j1") == []


def test_duplicate_job_and_trial_number_are_refused(any_store: str) -> None:
    store = Store(any_store)
    store.create_job("j1", "w", {}, study_name="s")
    with pytest.raises(ValueError, match="already exists"):
        store.create_job("j1", "w", {}, study_name="s")
    store.start_trial("j1", 0, TrialRole.SEARCH, Candidate.from_dict({}))
    with pytest.raises(Exception, match="UNIQUE|unique constraint"):
        store.start_trial("j1", 0, TrialRole.SEARCH, Candidate.from_dict({}))


def test_shares_the_database_with_optuna(any_store: str) -> None:
    Store(any_store)
    study = optuna.create_study(
        study_name="s", storage=optuna_storage(any_store), directions=["maximize"]
    )
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    Store(any_store)  # migrating again is a no-op and leaves Optuna alone
    assert len(optuna.load_study(study_name="s", storage=optuna_storage(any_store)).trials) == 2
    tables = set(inspect(Store(any_store).engine).get_table_names())
    assert {"bp_jobs", "bp_trials", "bp_layer_choices", "bp_metrics", "bp_artifacts"} <= tables
    assert {"studies", "trials", "alembic_version", "bp_alembic_version"} <= tables


_OPEN_BOTH = (  # a driver's first steps: Optuna's tables (and PostgreSQL enum types), the store
    "import sys; from bitprism.search.store import Store, optuna_storage; "
    "optuna_storage(sys.argv[1]); Store(sys.argv[1])"
)


def test_processes_opening_a_fresh_database_at_once_all_succeed(any_store: str) -> None:
    """Four drivers started by one ``batch`` meet an empty database: each creates the schema.
    Without the schema lock, PostgreSQL failed 2 runs in 3 on ``CREATE TYPE studydirection``."""
    command = [sys.executable, "-c", _OPEN_BOTH, any_store]
    processes = [subprocess.Popen(command, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [p.communicate(timeout=180)[1] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0, 0], errors
    tables = set(inspect(Store(any_store).engine).get_table_names())
    assert {"studies", "bp_jobs", "version_info"} <= tables


def test_sqlite_stores_use_wal(store_url: str) -> None:
    Store(store_url)
    connection = sqlite3.connect(str(make_url(store_url).database))
    assert connection.execute("pragma journal_mode").fetchone()[0] == "wal"


def test_lease_admits_one_driver_and_expires(any_store: str) -> None:
    store = Store(any_store)
    store.create_job("j", "digits-cnn", {}, study_name="bitprism-j", model_hash="ab" * 32)
    assert store.job("j").model_hash == "ab" * 32  # type: ignore[union-attr]
    assert store.acquire_lease("j", "a", ttl_s=60) is None
    assert store.acquire_lease("j", "a", ttl_s=60) is None  # re-entrant for its holder
    held = store.acquire_lease("j", "b", ttl_s=60)
    assert held is not None and held.startswith("a (last heartbeat")
    assert store.renew_lease("j", "a") and not store.renew_lease("j", "b")
    assert store.acquire_lease("j", "b", ttl_s=60, dead="a") is None  # a known-dead holder
    assert store.job("j").driver == "b"  # type: ignore[union-attr]
    assert store.acquire_lease("j", "c", ttl_s=0.0) is None  # b's heartbeat is older than 0 s
    store.release_lease("j", "b")  # not the holder: no effect
    assert store.job("j").driver == "c"  # type: ignore[union-attr]
    store.release_lease("j", "c")
    assert store.job("j").driver is None  # type: ignore[union-attr]


def test_a_running_job_whose_lease_stopped_beating_reads_as_driver_lost(any_store: str) -> None:
    store = Store(any_store)
    store.create_job("j", "digits-cnn", {}, study_name="bitprism-j")
    assert lost_driver(store.job("j")) is None  # pending, queued: not started yet
    store.update_job("j", status=JobStatus.RUNNING)
    assert "no driver holds it" in (lost_driver(store.job("j")) or "")
    store.acquire_lease("j", "host:1:ab", ttl_s=LEASE_TTL_S)
    job = store.job("j")
    assert job is not None and job.heartbeat_at is not None
    assert lost_driver(job) is None  # beating
    later = job.heartbeat_at.replace(tzinfo=dt.UTC) + dt.timedelta(seconds=LEASE_TTL_S + 30)
    assert lost_driver(job, now=later) == (
        "driver lost (no heartbeat from its driver for 90 s); `bitprism resume j` continues it"
    )
    row = Queries(any_store).jobs()[0]  # the dashboard's row reads the same
    assert lost_driver(row, now=later) == lost_driver(job, now=later)
    assert status_label(row) == "running" and status_label(job) == "running"
    store.update_job("j", status=JobStatus.CANCELLED)  # its driver has not let go yet
    assert status_label(store.job("j")) == "cancelled (stopping)"
    store.update_job("j", status=JobStatus.DONE)
    assert lost_driver(store.job("j"), now=later) is None
    store.release_lease("j", "host:1:ab")
    assert status_label(store.job("j")) == "done"


def test_opening_for_reading_never_creates_a_store(tmp_path: Path) -> None:
    from bitprism.search.store import StoreError

    missing = tmp_path / "sub" / "none.db"
    with pytest.raises(StoreError, match="no bitprism store at"):
        Store(f"sqlite:///{missing}", create=False)
    assert not (tmp_path / "sub").exists()
    with pytest.raises(StoreError, match="not a database URL"):
        Store("foo")
    with pytest.raises(StoreError, match="in-memory"):
        Store("sqlite://")
    with pytest.raises(StoreError, match="inside /proc"):
        Store("sqlite:////proc/nope/x.db")


def test_migration_0006_classifies_older_trials_by_origin(any_store: str) -> None:
    """A store from before trials recorded their origin (schema 0005) upgrades with the
    reference, the warm-start seeds (the only trials with a program prediction) and the rest
    told apart."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from bitprism.paths import engine_url
    from bitprism.search import store as store_module

    url = any_store
    store = Store(url)
    store.create_job("j1", "w", {}, "study-j1")
    for number, metrics in ((None, {}), (0, {"predicted_layer_smaller": 2.0}), (1, {})):
        role = TrialRole.REFERENCE if number is None else TrialRole.SEARCH
        row = store.start_trial("j1", number, role, Candidate.from_dict({}))
        store.complete_trial(row, {"accuracy": 1.0, **metrics}, True, None)
    config = Config()
    migrations = Path(store_module.__file__).parent / "migrations"
    config.set_main_option("script_location", str(migrations))
    with create_engine(engine_url(url)).begin() as connection:  # SQLite: foreign keys off
        config.attributes["connection"] = connection
        command.downgrade(config, "0005")
        columns = [column["name"] for column in inspect(connection).get_columns("bp_trials")]
    assert "origin" not in columns
    origins = [t.origin for t in Store(url).trials("j1")]  # opening a store migrates it
    assert origins == [TrialOrigin.REFERENCE, TrialOrigin.WARM_START, TrialOrigin.SAMPLER]
