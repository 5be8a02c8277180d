"""docker-compose.yml is a valid compose file of the cluster the README describes (checked
by the compose client where it is installed; no Docker engine runs here or in CI)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from bitprism.search.parallel import LANE

ROOT = Path(__file__).parents[1]


def test_the_compose_file_is_valid_and_binds_loopback_only() -> None:
    client = shutil.which("docker-compose")
    if client is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's docker-compose to check the compose file")
        pytest.skip("no docker-compose client (Debian's docker-compose package)")
    checked = subprocess.run(
        [client, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    services = yaml.safe_load(checked.stdout)["services"]
    assert set(services) == {"postgres", "ray-head", "ray-worker", "ray-worker-gpu", "dashboard"}
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)  # loopback unless told
    assert "healthcheck" in services["postgres"]
    gpu = services["ray-worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert (
        gpu["capabilities"] == ["gpu"] and "--num-gpus=1" in services["ray-worker-gpu"]["command"]
    )
    assert "ray-head:6379" in services["ray-worker"]["command"]
    for node in ("ray-head", "ray-worker", "ray-worker-gpu"):  # each its own timing lane
        command = shlex.split(services[node]["command"])
        resources = next(c for c in command if c.startswith("--resources="))
        assert json.loads(resources.removeprefix("--resources=")) == {LANE: 1}, node
    assert "torch==2.13.0" in (ROOT / "Dockerfile").read_text()  # the CPU build, pinned
