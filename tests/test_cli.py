"""The ``bitprism`` command end to end: YAML spec, search, status, pareto, export."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest
import yaml
from typer.testing import CliRunner

from bitprism.cli import app
from bitprism.search.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_local")]
runner = CliRunner()


def test_search_from_yaml_then_status_pareto_export(tmp_path: Path, store_url: str) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "workload": "tests.fixtures:token_mlp",
                "trials": 6,
                "workers": 2,
                "job_id": "cli",
                "store": store_url,
                "output_dir": str(tmp_path / "runs"),
                "latency": {"repeats": 5},
            }
        )
    )
    out = tmp_path / "out" / "best.onnx"
    result = runner.invoke(
        app, ["search", str(spec), "--no-progress", "--export", str(out), "--max-drop", "100"]
    )
    assert result.exit_code == 0, result.output
    assert "Pareto front of cli" in result.output and "exported" in result.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "x"

    status = runner.invoke(app, ["status", "cli", "--store", store_url])
    assert status.exit_code == 0 and "done" in status.output and "7 complete" in status.output
    front = runner.invoke(app, ["pareto", "cli", "--store", store_url])
    assert front.exit_code == 0 and ("fp32" in front.output or "trial" in front.output)
    again = tmp_path / "again.onnx"
    exported = runner.invoke(
        app,
        [
            "export",
            "cli",
            "--store",
            store_url,
            "-o",
            str(again),
            "--max-drop",
            "100",
            "--by",
            "latency_ms",
        ],
    )
    assert exported.exit_code == 0, exported.output
    assert again.is_file()


def test_bad_spec_exits_2_naming_the_field_and_writes_nothing(
    tmp_path: Path, store_url: str
) -> None:
    result = runner.invoke(
        app,
        ["search", "--trials", "0", "--store", store_url, "--output-dir", str(tmp_path / "runs")],
    )
    assert result.exit_code == 2
    assert "trials" in result.output and "greater than or equal to 1" in result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "store.db").exists()


def test_unknown_job_and_bad_export_path_are_clear(tmp_path: Path, store_url: str) -> None:
    Store(store_url)
    missing = runner.invoke(app, ["pareto", "nope", "--store", store_url])
    assert missing.exit_code == 2 and "no job 'nope'" in missing.output
    assert runner.invoke(app, ["search", "--workload", "nope", "--store", store_url]).exit_code == 2
