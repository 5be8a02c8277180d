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
    assert JobSpec.from_yaml(path) == spec
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
        ({"constraints": {"max_accuracy_drop": -1}}, "constraints.max_accuracy_drop"),
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
