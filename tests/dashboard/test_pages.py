"""Every dashboard page rendered by Streamlit's AppTest on real stores."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import bitprism.dashboard
from bitprism.dashboard.front import COLOUR_BY, searchable
from bitprism.dashboard.queries import Queries

PAGES = Path(bitprism.dashboard.__file__).parent / "views"


def _run(page: str, store: str, monkeypatch: pytest.MonkeyPatch, **params: str) -> AppTest:
    monkeypatch.setenv("BITPRISM_STORE", store)
    test = AppTest.from_file(str(PAGES / f"{page}.py"), default_timeout=60)
    for key, value in params.items():
        test.query_params[key] = value
    test.run()
    assert not test.exception, [e.value for e in test.exception]
    return test


def test_jobs_page_lists_every_job(job_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    page = _run("jobs", job_store, monkeypatch)
    table = page.dataframe[0].value
    assert set(table["job"]) == {"job", "broken"}
    row = table[table["job"] == "job"].iloc[0]
    assert row["status"] == "done" and row["trials"] == "8 / 8"
    assert table[table["job"] == "broken"].iloc[0]["status"] == "failed"


def _within(store: str, drop_pct: float) -> tuple[list[str], int]:
    """What the Pareto page should plot at a slider of ``drop_pct``, read from the store: the
    legend's origin groups (in the page's order) and how many verified trials it counts."""
    points = Queries(store).points("job")
    reference = next(p for p in points if p.number is None)
    floor = reference.metrics["accuracy"] * (1 - drop_pct / 100)
    kept = [p for p in points if searchable(p) and p.metrics["accuracy"] >= floor]
    _, groups = COLOUR_BY["who proposed it"]
    origins = [g.name for o, g in groups.items() if any(p.origin == o for p in kept)]
    return origins, len(kept)


def test_pareto_page_draws_the_front(job_store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    page = _run("pareto", job_store, monkeypatch, job="job")

    def traces() -> list[dict]:
        return json.loads(page.get("plotly_chart")[0].proto.spec)["data"]

    # the job's limit (1 point), then the slider's widest drop: the page keeps exactly the
    # trials within it (a guided job of 8: 7 uniform seeds and the warm start's, whose accuracy
    # varies with the machine, so what each drop keeps is read from the store)
    for drop in (1.0, 20.0):
        page.slider[0].set_value(drop).run()
        origins, count = _within(job_store, drop)
        assert count, f"the token MLP's uniform seeds (int8 among them) keep a point within {drop}%"
        names = [trace["name"] for trace in traces()]
        assert names[:-2] == origins
        assert f"{count} verified trials within {drop:g}%" in page.caption[0].value
    assert origins[0] == "uniform seeds"
    assert names[-2:] == ["Pareto front", "fp32"]
    assert "on the front of speedup and accuracy" in page.caption[0].value
    assert page.subheader[0].value == "hypervolume over measured trials"
    # another pair of objectives (the select boxes: job, colour by, x, y)
    page.selectbox[2].set_value("weight_bytes").run()
    assert "on the front of weight_bytes and accuracy" in page.caption[0].value
    page.selectbox[1].set_value("trial state").run()
    assert [t["name"] for t in traces()][0] == "verified"
    page.radio[0].set_value("3-D").run()
    assert {t["type"] for t in traces()} == {"scatter3d"}
    assert "Pareto front" in [t["name"] for t in traces()]


def test_trial_page_shows_a_trial_against_fp32(
    job_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = _run("trial", job_store, monkeypatch, job="job", trial="0")
    assert page.subheader[0].value.startswith("trial 0: complete")
    assert "smaller" in page.markdown[0].value and "accuracy (" in page.markdown[0].value
    heat = json.loads(page.get("plotly_chart")[0].proto.spec)["data"][0]
    assert heat["type"] == "heatmap" and heat["y"] == ["up", "down"]  # model order, not by name
    bars = json.loads(page.get("plotly_chart")[1].proto.spec)["data"][0]  # guidance measured
    assert bars["type"] == "bar" and bars["y"] == ["up", "down"]
    page.selectbox[1].set_value(1).run()
    assert page.subheader[0].value.startswith("trial 1:")
    page.button[0].click().run(timeout=120)  # Export: the CLI's verified export of trial 1
    assert not page.error, [e.value for e in page.error]
    assert page.success[0].value.startswith("verified again: ")
    assert page.get("download_button")


def test_compare_page_sets_trials_side_by_side(
    job_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITPRISM_STORE", job_store)
    page = AppTest.from_file(str(PAGES / "compare.py"), default_timeout=60)
    page.query_params["job"] = "job"
    page.query_params["trial"] = ["0", "1", "2"]
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert [h.value for h in page.subheader] == ["trial 0", "trial 1", "trial 2"]
    table = page.dataframe[0].value
    assert list(table.columns) == ["layer", "trial 0", "trial 1", "trial 2"]
    assert list(table["layer"]) == ["up", "down"]
    assert all(cell for cell in table["trial 0"])  # fp32 at least is named


def test_pages_on_an_empty_store_and_a_failed_job(
    empty_store: str, job_store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for page in ("jobs", "pareto", "trial", "compare"):
        assert "No jobs in" in _run(page, empty_store, monkeypatch).info[0].value
    broken = _run("pareto", job_store, monkeypatch, job="broken")
    assert "No verified trial to plot yet" in broken.warning[0].value
    missing = _run("jobs", "sqlite:////nonexistent/bitprism.db", monkeypatch)
    assert "no bitprism store" in missing.error[0].value


def test_the_jobs_form_submits_as_bitprism_submit_does(
    empty_store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The form's job is submitted (stored queued, its driver in the background) and lands in
    the store; a bad workload or field is refused before anything is stored."""
    from bitprism.search.schema import JobStatus
    from bitprism.search.store import Store

    monkeypatch.chdir(tmp_path)  # the form's default output_dir is relative to the dashboard
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parents[2]))  # tests.fixtures
    page = _run("jobs", empty_store, monkeypatch)
    page.text_input[0].set_value("tests.fixtures:token_mlp")
    page.text_input[1].set_value("from-form")
    page.number_input[0].set_value(2)
    page.number_input[3].set_value(0)  # blind: no guidance, quicker
    page.button[0].click().run(timeout=60)
    assert not page.error, [e.value for e in page.error]
    assert "from-form" in page.success[0].value
    spec = tmp_path / "bitprism-runs" / "from-form" / "job.yaml"
    assert spec.is_file()
    store = Store(empty_store, create=False)
    deadline = time.monotonic() + 240
    while (job := store.job("from-form")) is None or job.status is not JobStatus.DONE:
        assert time.monotonic() < deadline, (
            tmp_path / "bitprism-runs/from-form/job.log"
        ).read_text()
        time.sleep(2)
    assert len([t for t in store.trials("from-form") if t.number is not None]) == 2

    page.text_input[0].set_value("no.such.module:make")
    page.text_input[1].set_value("broken-form")
    page.button[0].click().run(timeout=60)
    assert "cannot import module 'no.such.module'" in page.error[0].value
    assert store.job("broken-form") is None  # refused before anything was stored
    page.text_input[0].set_value("")
    page.text_input[1].set_value("bad id!")
    page.button[0].click().run(timeout=60)
    assert "the job form is invalid" in page.error[0].value and "job_id" in page.error[0].value
