"""The Python API on an in-memory custom workload, and the import-time contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

import bitprism
from bitprism.kernels.base import get_backend
from bitprism.results import ExportError


@pytest.mark.slow
@pytest.mark.usefixtures("ray_local")
@pytest.mark.parametrize("backend", ["ort-cpu", "openvino-cpu"])
def test_search_and_export_a_custom_workload(
    token_mlp, tmp_path: Path, store_url: str, capfd: pytest.CaptureFixture[str], backend: str
) -> None:
    spec = bitprism.JobSpec(
        backend=backend,
        trials=6,
        workers=2,
        store=store_url,
        output_dir=tmp_path / "runs",
        job_id="api",
        latency={"repeats": 5},
    )
    result = bitprism.search(token_mlp, spec, progress=False)
    assert capfd.readouterr() == ("", "")  # progress=False prints nothing at all
    assert result.job.workload == "token-mlp"
    front = result.pareto
    assert front and all(
        p.metrics["parity_rel_err"] <= max(spec.parity_tolerance, p.metrics["parity_drift"])
        for p in front
    )
    accuracies = [p.accuracy for p in front]
    assert accuracies == sorted(accuracies, reverse=True)
    limits = result.constraints(max_drop_pct=100.0, min_speedup=0.0)
    report = result.export(tmp_path / "best.onnx", constraints=limits)
    assert report.path.is_file() and report.chosen.file_bytes == report.path.stat().st_size
    assert report.chosen.file_bytes <= report.reference.file_bytes
    deployed = get_backend(backend).load(report.path.read_bytes(), threads=1)
    assert abs(token_mlp.evaluate(deployed) - report.point.accuracy) <= 0.5
    with pytest.raises(ExportError, match="must end in .onnx"):
        result.export(tmp_path / "best.txt", constraints=limits)
    reopened = bitprism.load_result("api", store=store_url)
    assert [p.number for p in reopened.pareto] == [p.number for p in front]
    # Finding 11: a job started with a Workload object cannot be rebuilt by name ...
    with pytest.raises(ExportError, match="pass it again"):
        reopened.export(tmp_path / "again.onnx", constraints=limits)
    # ... and reopens when the workload is given again (its model is checked to be the job's).
    again = bitprism.load_result("api", store=store_url, workload=token_mlp)
    assert again.export(tmp_path / "again.onnx", constraints=limits).path.is_file()
    # The same from the command line, with the factory that builds that workload.
    from typer.testing import CliRunner

    from bitprism.cli import app

    args = ["export", "api", "--store", store_url, "-o", str(tmp_path / "cli.onnx")]
    loose = ["--max-drop-pct", "100", "--min-speedup", "0"]
    done = CliRunner().invoke(app, [*args, *loose, "--workload", "tests.fixtures:token_mlp"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "cli.onnx").is_file()
    other = CliRunner().invoke(
        app, [*args, *loose, "--workload", "tests.fixtures:token_mlp_retrained"]
    )
    assert other.exit_code == 1 and "another model than job 'api'" in other.output
    if backend == "ort-cpu":  # the file loads in a plain session, outside bitprism
        assert isinstance(ort.InferenceSession(str(report.path)), ort.InferenceSession)
    assert torch.is_tensor(deployed(token_mlp.example_inputs))
    # A speed-up the export's re-timing does not confirm (as if the search had timed on a busy
    # machine) is refused with both figures, and nothing is written.
    _claim_speedup(store_url, report.point.number, 80.0)
    fast = result.constraints(max_drop_pct=100.0, min_speedup=50.0)
    with pytest.raises(ExportError, match=r"no point re-timed at export reached min_speedup 50"):
        result.export(tmp_path / "claimed.onnx", constraints=fast, by=bitprism.Objective.SPEEDUP)
    assert not (tmp_path / "claimed.onnx").exists()


def _claim_speedup(store_url: str, number: int | None, speedup: float) -> None:
    """Overwrite one trial's stored speed-up figures in the real store."""
    from sqlalchemy import create_engine, select, update

    from bitprism.search.schema import Metric, Trial

    engine = create_engine(store_url)
    with engine.begin() as conn:
        trial_id = conn.execute(select(Trial.id).where(Trial.number == number)).scalar_one()
        for name in ("speedup", "speedup_min", "speedup_max"):
            conn.execute(
                update(Metric)
                .where(Metric.trial_id == trial_id, Metric.name == name)
                .values(value=speedup)
            )
    engine.dispose()


def test_import_is_light_and_never_touches_cuda() -> None:
    code = (
        "import sys, bitprism; assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'ray' not in sys.modules; import bitprism.search.pareto; "
        "assert callable(bitprism.search), 'bitprism.search is no longer the function'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
