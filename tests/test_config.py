"""Job spec validation and round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bitprism.config import JobSpec, Objective, Sampler, SpecError, build_spec


def test_spec_round_trips_through_json_and_yaml(tmp_path: Path) -> None:
    spec = JobSpec(
        workload="digits-cnn",
        trials=12,
        sampler=Sampler.TPE,
        job_id="a.b-c",
        objectives=(Objective.ACCURACY, Objective.WEIGHT_BYTES),
        overrides={"head.*": {"weight_bits": (8, 4)}},
    )
    assert JobSpec.model_validate_json(spec.model_dump_json()) == spec
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    anchored = spec.model_copy(
        update={
            "output_dir": tmp_path / "bitprism-runs",
            "store": f"sqlite:///{tmp_path}/bitprism.db",
        }
    )
    assert JobSpec.from_yaml(path) == anchored  # relative paths are the file's folder's
    assert JobSpec.from_yaml(path, trials=5).trials == 5


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"trials": 0}, "trials"),
        ({"workers": "two"}, "workers"),
        ({"store": "mysql://x/y"}, "store"),
        ({"job_id": "../etc"}, "job_id"),
        ({"objectives": ["accuracy", "accuracy"]}, "objectives"),
        ({"sampler": "cmaes"}, "sampler"),
        ({"overrides": {"head.*": {"bits": [4]}}}, "overrides.head.*.bits"),
        ({"constraints": {"max_drop_pct": -1}}, "constraints.max_drop_pct"),
        ({"constraints": {"max_accuracy_drop": 1}}, "constraints.max_accuracy_drop"),
        ({"latency": {"batch": 0}}, "latency.batch"),
        ({"extra_knobs": ["colour"]}, "extra_knobs.0"),
        ({"trial_timeout_s": 0}, "trial_timeout_s"),
        ({"trails": 3}, "trails"),
    ],
)
def test_bad_spec_names_the_field(data: dict, field: str) -> None:
    with pytest.raises(SpecError, match=f"  {field.replace('.', '[.]').replace('*', '[*]')}"):
        build_spec(data)


def test_bad_yaml_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("trials: [1,\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        JobSpec.from_yaml(path)
    with pytest.raises(SpecError, match="no such file"):
        JobSpec.from_yaml(tmp_path / "missing.yaml")


def test_empty_yaml_is_an_error_not_a_default_job(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text("# nothing here\n")
    with pytest.raises(SpecError, match="is empty"):
        JobSpec.from_yaml(path)


def test_relative_paths_in_yaml_are_relative_to_the_file(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    path = folder / "job.yaml"
    path.write_text("output_dir: runs\nstore: sqlite:///db/store.db\n")
    monkeypatch.chdir(tmp_path)
    spec = JobSpec.from_yaml(path)
    assert spec.output_dir == folder / "runs"
    assert spec.store == f"sqlite:///{folder / 'db' / 'store.db'}"
    flags = JobSpec.from_yaml(path, output_dir="elsewhere")  # flags stay as typed
    assert flags.output_dir == Path("elsewhere")
    path.write_text(f"output_dir: {tmp_path / 'abs'}\nstore: postgresql://u@h/db\n")
    spec = JobSpec.from_yaml(path)
    assert spec.output_dir == tmp_path / "abs" and spec.store == "postgresql://u@h/db"
