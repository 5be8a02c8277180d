"""Starting and interrupting jobs from the dashboard: the spec checks and the signal."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bitprism.config import SpecError
from bitprism.dashboard.submit import form_spec, interrupt, new_job_id


def test_form_spec_is_the_clis_spec_with_absolute_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = form_spec({"workload": "pkg.mod:make", "trials": 3, "job_id": ""}, "sqlite:///s.db")
    assert spec.store == f"sqlite:///{tmp_path / 's.db'}"
    assert spec.output_dir == tmp_path / "bitprism-runs"
    assert spec.job_id is not None and spec.job_id.startswith("make-")
    with pytest.raises(SpecError, match=r"the job form is invalid:\n  trials: "):
        form_spec({"trials": 0}, "sqlite:///s.db")
    assert new_job_id("a b/c:d e").startswith("d-e-")


def test_interrupt_reaches_a_driver_on_this_machine_only() -> None:
    sleeper = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\ntry:\n time.sleep(60)\nexcept KeyboardInterrupt:\n raise SystemExit(3)",
        ]
    )
    host = socket.gethostname()
    try:
        time.sleep(0.5)  # let it reach its sleep
        said = interrupt(f"{host}:{sleeper.pid}:abc123")
        assert "interrupted the driver" in said
        assert sleeper.wait(timeout=10) == 3  # it saw Ctrl-C, as a driver does
    finally:
        sleeper.kill()
    assert "is gone" in interrupt(f"{host}:{sleeper.pid}:abc123")
    assert "runs elsewhere" in interrupt("another-host:123:abc")
    assert "no running driver" in interrupt(None)
