"""The built-in digits-cnn workload and the workload loader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bitprism.workloads import Workload, builtin_workloads, resolve_workload
from bitprism.workloads.digits import cache_dir


def test_digits_cnn_is_accurate_and_cached(digits) -> None:
    assert digits.evaluate(digits.model) >= 97.0
    cached = list(cache_dir().glob("digits-cnn-*.pt"))
    assert len(cached) == 1 and str(cached[0]).startswith(os.environ["BITPRISM_CACHE"])
    again = resolve_workload("digits-cnn")  # loads the cache, does not retrain
    for a, b in zip(
        digits.model.state_dict().values(), again.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_builtins_and_user_factories() -> None:
    assert "digits-cnn" in builtin_workloads()
    workload = resolve_workload("tests.fixtures:token_mlp")
    assert isinstance(workload, Workload) and workload.evaluate(workload.model) > 80.0


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no-such", "neither a built-in"),
        ("nomod_xyz:make", "cannot import"),
        ("tests.fixtures:missing", "no callable"),
        ("tests.fixtures:TokenMLP", "not Workload"),
    ],
)
def test_bad_workload_refs_are_explained(ref: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_workload(ref)


def test_workload_checks_its_fields(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="batch dimension"):
        Workload("w", model, lambda m: 1.0, example_inputs=torch.tensor(1.0))
    with pytest.raises(ValueError, match="evaluate must be callable"):
        Workload("w", model, None, example_inputs=torch.zeros(4, 2))  # type: ignore[arg-type]
