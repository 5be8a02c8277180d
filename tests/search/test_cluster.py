"""A real two-node Ray cluster on this machine: `ray start --head` and a second `ray start
--address` as separate raylets inside a network namespace that has only loopback (Ray binds
the machine's outside address otherwise), auth off on every node; a job submitted to it
through Ray's Job Submission API runs its trials on both nodes. The processes started here
are stopped by PID (`ray stop` would stop every Ray on the machine, CI's own included)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bitprism.search.parallel import LANE
from bitprism.search.schema import JobStatus, TrialRole, TrialState
from bitprism.search.store import Store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]
DASHBOARD = "http://127.0.0.1:8290"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    return None


@pytest.fixture()
def cluster() -> Iterator[tuple[list[str], dict[str, str]]]:
    """A head and a worker node (1 CPU each) in a fresh namespace; yields the command prefix
    that runs inside it and the environment the nodes were started with."""
    why = _why_not()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the cluster test must run in CI: {why}")
        pytest.skip(why)
    namespace = f"bp{secrets.token_hex(3)}"
    inside = ["ip", "netns", "exec", namespace]
    subprocess.run(["ip", "netns", "add", namespace], check=True)
    temp = Path(tempfile.mkdtemp(prefix="bpray-"))  # short: Ray's socket paths have a limit
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",  # `bitprism` for Ray jobs
        "PYTHONPATH": str(ROOT),  # the nodes import tests.fixtures, as a user's image would
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    env.pop("RAY_ADDRESS", None)
    ray = [str(Path(sys.executable).parent / "ray"), "start", "--node-ip-address=127.0.0.1"]
    sizes = ["--num-cpus=1", "--memory=3000000000", "--object-store-memory=200000000"]
    sizes.append(f"--resources={json.dumps({LANE: 1})}")  # each node's timing lane
    try:
        subprocess.run([*inside, "ip", "link", "set", "lo", "up"], check=True)
        head = ["--head", "--port=6390", "--dashboard-host=127.0.0.1", "--dashboard-port=8290"]
        subprocess.run(
            [*inside, *ray, *head, *sizes, f"--temp-dir={temp / 'h'}", "--include-dashboard=true"],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        subprocess.run(
            [*inside, *ray, "--address=127.0.0.1:6390", *sizes, f"--temp-dir={temp / 'w'}"],
            env=env, check=True, capture_output=True, timeout=180,
        )  # fmt: skip
        yield inside, env
    finally:
        found = subprocess.run(["pgrep", "-f", str(temp)], capture_output=True, text=True)
        for pid in found.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", namespace], check=False)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_job_submitted_to_a_two_node_cluster_runs_on_both(
    cluster: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    inside, env = cluster
    url = f"sqlite:///{tmp_path / 'store.db'}"  # the nodes share this machine's disk
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "workload: tests.fixtures:token_mlp\ntrials: 10\nworkers: 2\nwarm_start: 0\n"
        f"store: {url}\noutput_dir: {tmp_path / 'runs'}\njob_id: cluster\n"
        "latency: {repeats: 5, passes: 3}\n"
    )
    bitprism = [*inside, sys.executable, "-m", "bitprism.cli"]
    done = subprocess.run(
        [*bitprism, "submit", str(spec), "--address", DASHBOARD, "--wait"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    store = Store(url)
    job = store.job("cluster")
    assert job is not None and job.status is JobStatus.DONE
    assert (job.submission or "").startswith(f"ray {DASHBOARD} bitprism-cluster-")
    searched = [t for t in store.trials("cluster") if t.role is TrialRole.SEARCH]
    assert sorted(t.number for t in searched if t.state is TrialState.COMPLETE) == list(range(10))
    nodes = {t.evaluated_on for t in store.trials("cluster")}
    assert len(nodes) == 2, nodes  # both raylets evaluated trials
    assert all(t.timed_on for t in searched if t.state is TrialState.COMPLETE)
    logs = subprocess.run(
        [*bitprism, "logs", "cluster", "--store", url], env=env, capture_output=True, text=True
    )
    assert logs.returncode == 0 and "job cluster done" in logs.stdout, logs.stdout + logs.stderr
    assert "declares no timing lanes" not in logs.stdout  # both nodes declared theirs
    status = subprocess.run(
        [*bitprism, "status", "cluster", "--store", url, "--json"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    placed = json.loads(status.stdout)["measured_on"]
    assert len({p["evaluated_on"] for p in placed}) == 2
