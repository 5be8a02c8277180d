"""The dashboard's job form as a spec: the CLI's checks, absolute paths, a fresh job id."""

from __future__ import annotations

from pathlib import Path

import pytest

from bitprism.config import SpecError
from bitprism.dashboard.submit import form_spec
from bitprism.search.jobs import new_job_id


def test_form_spec_is_the_clis_spec_with_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = form_spec({"workload": "pkg.mod:make", "trials": 3, "job_id": ""}, "sqlite:///s.db")
    assert spec.store == "sqlite:///s.db"  # the dashboard's own URL; submit makes it absolute
    assert spec.output_dir == tmp_path / "bitprism-runs"
    assert spec.job_id is not None and spec.job_id.startswith("make-")
    with pytest.raises(SpecError, match=r"the job form is invalid:\n  trials: "):
        form_spec({"trials": 0}, "sqlite:///s.db")
    assert new_job_id("a b/c:d e").startswith("d-e-")
