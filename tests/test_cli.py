"""The ``bitprism`` command end to end: YAML spec, search, status, pareto, export."""

from __future__ import annotations

import csv
import io
import json
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
                "latency": {"repeats": 5, "passes": 3},
                "methods": {"quantiser": "rtn"},
            }
        )
    )
    out = tmp_path / "out" / "best.onnx"
    loose = ["--max-drop-pct", "100", "--min-speedup", "0"]
    result = runner.invoke(
        app, ["search", str(spec), "--no-progress", "--export", str(out), *loose]
    )
    assert result.exit_code == 0, result.output
    assert "Pareto front of cli" in result.output and "exported" in result.output
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "x"

    assert "smaller" in result.output and ("faster" in result.output or "slower" in result.output)

    status = runner.invoke(app, ["status", "cli", "--store", store_url])
    assert status.exit_code == 0 and "done" in status.output and "6 complete" in status.output
    assert "6 of 6 trials" in status.output and "None" not in status.output
    assert "evaluated on: " in status.output and "timed on: " in status.output
    front = runner.invoke(app, ["pareto", "cli", "--store", store_url])
    assert front.exit_code == 0 and "fp32" in front.output and " 16 " not in front.output
    rows = json.loads(runner.invoke(app, ["pareto", "cli", "--store", store_url, "--json"]).output)
    assert rows[0]["point"] == "fp32" and rows[0]["speedup"] == 1.0  # fp32 is always shown
    assert {"accuracy", "drop_pct", "speedup_min", "speedup_max", "choices"} <= set(rows[0])
    table = runner.invoke(app, ["pareto", "cli", "--store", store_url, "--csv"]).output
    assert list(csv.DictReader(io.StringIO(table)))[0]["point"] == "fp32"
    summary = json.loads(
        runner.invoke(app, ["status", "cli", "--store", store_url, "--json"]).output
    )
    assert summary["trials"] == {"complete": 6} and summary["trials_asked"] == 6
    shown = runner.invoke(app, ["show", "cli", "fp32", "--store", store_url])
    assert shown.exit_code == 0 and "up" in shown.output and "fp32" in shown.output
    again = tmp_path / "again.onnx"
    args = ["export", "cli", "--store", store_url, "-o", str(again), *loose, "--by", "speedup"]
    exported = runner.invoke(app, args)
    assert exported.exit_code == 0, exported.output
    assert again.is_file()
    # One chosen trial, whatever the limits; a trial without a verified file is refused.
    chosen = tmp_path / "trial2.onnx"
    args = ["export", "cli", "--store", store_url, "-o", str(chosen), "--trial", "2"]
    exported = runner.invoke(app, args)
    assert exported.exit_code == 0 and "exported trial 2" in exported.output, exported.output
    missing = runner.invoke(app, [*args[:-1], "99"])
    assert missing.exit_code == 1 and "has no verified trial 99" in missing.output
    # No point can be 100x faster: said plainly, exit 1, nothing written; fp32 only on request.
    never = tmp_path / "never.onnx"
    refused = runner.invoke(
        app, ["export", "cli", "--store", store_url, "-o", str(never), "--min-speedup", "100"]
    )
    assert refused.exit_code == 1 and "no verified compressed point" in refused.output
    assert not never.exists()
    fallback = runner.invoke(
        app,
        [
            "export",
            "cli",
            "--store",
            store_url,
            "-o",
            str(never),
            "--min-speedup",
            "100",
            "--fp32-if-none",
        ],
    )
    assert fallback.exit_code == 0 and "exported the fp32 model itself" in fallback.output
    # Resume with a bigger budget: status tells the new budget, not the first one.
    resumed = runner.invoke(app, ["search", str(spec), "--no-progress", "--trials", "7"])
    assert resumed.exit_code == 0, resumed.output
    status = runner.invoke(app, ["status", "cli", "--store", store_url])
    assert "7 of 7 trials" in status.output
    # Another rounding method would measure something else: not a resume.
    other = runner.invoke(app, ["search", str(spec), "--no-progress", "--quantiser", "gptq"])
    assert other.exit_code == 2 and "exists with different methods" in other.output


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
    unknown = runner.invoke(app, ["search", "--pruner", "wanda", "--store", store_url])
    assert unknown.exit_code == 2
    assert "unknown pruner 'wanda'; registered: magnitude, obs" in unknown.output
    assert not (tmp_path / "store.db").exists()


def test_unknown_job_and_bad_export_path_are_clear(tmp_path: Path, store_url: str) -> None:
    Store(store_url)
    missing = runner.invoke(app, ["pareto", "nope", "--store", store_url])
    assert missing.exit_code == 2 and "no job 'nope'" in missing.output
    assert runner.invoke(app, ["search", "--workload", "nope", "--store", store_url]).exit_code == 2


@pytest.mark.parametrize("command", ["jobs", "status", "pareto", "export"])
def test_read_only_commands_never_create_a_store(tmp_path: Path, command: str) -> None:
    """Finding 10: a typo in --store must not leave a new database (and folders) behind."""
    url = f"sqlite:///{tmp_path / 'typo' / 'typo.db'}"
    args = {"jobs": [], "status": ["j"], "pareto": ["j"], "export": ["j", "-o", "x.onnx"]}
    result = runner.invoke(app, [command, *args[command], "--store", url])
    assert result.exit_code == 2 and "no bitprism store at" in result.output
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "foo"], "not a database URL"),
        (["--store", "sqlite:////proc/nope/x.db"], "inside /proc"),
        (["--output-dir", "/proc/bitprism-runs"], "inside /proc"),
        (["--output-dir", "{file}/runs"], "is a file, not a folder"),
    ],
)
def test_bad_paths_fail_in_one_line_before_anything_is_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """Finding 10: paths are checked first; no traceback, no pending job row."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = [a.replace("{file}", str(blocker)) for a in args]
    store = f"sqlite:///{tmp_path / 'store.db'}"
    base = ["search", "--workload", "tests.fixtures:token_mlp", "--no-progress"]
    if "--store" not in args:
        base += ["--store", store]
    result = runner.invoke(app, [*base, *args])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "store.db").exists()


def test_export_path_is_checked_before_rescoring(tmp_path: Path, store_url: str) -> None:
    Store(store_url).create_job("j", "digits-cnn", {}, study_name="bitprism-j")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["export", "j", "--store", store_url, "-o", f"{blocker}/m.onnx"])
    assert result.exit_code == 1 and "is a file, not a folder" in result.output


def test_version_and_a_failing_reference_exit_non_zero(tmp_path: Path, store_url: str) -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and "bitprism 0." in version.output
    result = runner.invoke(
        app,
        [
            "search",
            "--workload",
            "tests.fixtures:exploding",
            "--store",
            store_url,
            "--output-dir",
            str(tmp_path / "runs"),
            "--job-id",
            "boom",
            "--no-progress",
        ],
    )
    assert result.exit_code == 1 and "fp32 reference failed" in result.output
    status = runner.invoke(app, ["status", "boom", "--store", store_url])
    assert "failed" in status.output and "fp32 reference failed" in status.output


def test_a_job_of_an_older_version_is_reported_not_a_traceback(store_url: str) -> None:
    old = {"objectives": ["accuracy", "latency_ms"], "constraints": {"max_accuracy_drop": 1.0}}
    Store(store_url).create_job("old", "digits-cnn", old, study_name="bitprism-old")
    result = runner.invoke(app, ["pareto", "old", "--store", store_url])
    assert result.exit_code == 2 and "written by another bitprism version" in result.output
