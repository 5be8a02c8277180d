"""The dashboard's only SQL: on a store filled by real jobs, read-only."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from bitprism.dashboard.queries import Queries
from bitprism.paths import PathError
from bitprism.search.store import Store


def test_jobs_points_and_choices_match_the_store(job_store: str) -> None:
    queries = Queries(job_store)
    jobs = {j.id: j for j in queries.jobs()}
    assert set(jobs) == {"job", "broken"}
    job = jobs["job"]
    assert job.status == "done" and job.trials_asked == 8 and job.finished == 8
    assert job.best_accuracy is not None and job.best_speedup is not None
    assert jobs["broken"].status == "failed" and jobs["broken"].error
    store = Store(job_store, create=False)
    records = store.trials("job")
    points = queries.points("job")
    assert [p.number for p in points] == [r.number for r in records]  # reference first
    for point, record in zip(points, records, strict=True):
        assert point.state == record.state.value and point.origin == record.origin.value
        for name, value in point.metrics.items():
            assert record.metrics[name] == pytest.approx(value)
        choices = [choice for _, choice in record.candidate]
        assert point.forms["layers"] == len(choices) == 2
        assert point.forms.get("rank cut", 0) == sum(c.rank_fraction < 1 for c in choices)
        assert point.forms.get("units pruned", 0) == sum(c.keep < 1 for c in choices)
        for bits in {c.weight_bits for c in choices if c.weight_bits < 16}:
            assert point.forms[f"int{bits}"] == sum(c.weight_bits == bits for c in choices)
    best = max(r.metrics["accuracy"] for r in records if r.number is not None and r.verified)
    assert job.best_accuracy == pytest.approx(best)
    chosen = queries.choices("job", records[1].number)
    assert [c["layer"] for c in chosen] == ["up", "down"]  # model order
    assert {c["layer"]: c["weight_bits"] for c in chosen} == {
        name: choice.weight_bits for name, choice in records[1].candidate
    }
    assert queries.choices("job", 10_000) == []
    with pytest.raises(KeyError, match="no job 'nope'"):
        queries.job_spec("nope")


def test_a_missing_store_is_refused_and_reading_writes_nothing(
    empty_store: str, tmp_path: Path
) -> None:
    with pytest.raises(PathError, match="no bitprism store"):
        Queries(f"sqlite:///{tmp_path / 'typo.db'}")
    assert not (tmp_path / "typo.db").exists()
    path = Path(str(make_url(empty_store).database))
    before = path.stat().st_mtime_ns
    assert Queries(empty_store).jobs() == []
    assert path.stat().st_mtime_ns == before


def test_queries_read_a_postgresql_store_and_cannot_write_it(postgres_url: str) -> None:
    from sqlalchemy import insert
    from sqlalchemy.exc import DBAPIError

    from bitprism.search.schema import Job

    store = Store(postgres_url)
    store.create_job("pg", "w", {"trials": 2}, "bitprism-pg")
    queries = Queries(postgres_url)
    assert [(j.id, j.trials_asked) for j in queries.jobs()] == [("pg", 2)]
    with pytest.raises(DBAPIError, match="read-only transaction"), queries.engine.begin() as db:
        db.execute(insert(Job).values(id="x", workload="w", status="done", spec={}, study_name="s"))


def test_a_database_with_no_store_or_another_revision_is_refused_in_one_line(
    any_store: str,
) -> None:
    """The dashboard never migrates: a database nobody has written a store to yet, or one at
    another schema revision, gets a one-line reason instead of an SQL error."""
    import sqlite3

    from sqlalchemy import MetaData, Table, create_engine, update

    from bitprism.paths import engine_url
    from bitprism.search.schema import VERSION_TABLE

    url = make_url(any_store)
    if url.get_backend_name() == "sqlite":
        sqlite3.connect(str(url.database)).close()  # an empty database file
    with pytest.raises(PathError, match="no bitprism store in the database at .* yet"):
        Queries(any_store)
    Store(any_store)
    Queries(any_store)  # now it reads
    engine = create_engine(engine_url(any_store))
    versions = Table(VERSION_TABLE, MetaData(), autoload_with=engine)
    with engine.begin() as db:
        db.execute(update(versions).values(version_num="0007"))
    engine.dispose()
    with pytest.raises(PathError, match=r"schema revision 0007, this bitprism reads 0\d{3}"):
        Queries(any_store)
