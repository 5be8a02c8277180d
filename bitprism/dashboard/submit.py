"""What the Jobs page does besides reading: start a job and interrupt a running one.

A job is started through the CLI's own path, ``bitprism search SPEC.yaml``, as a background
process on this machine (the service issue's ``submit`` will replace this once it exists):
the spec is validated here first with the same :class:`JobSpec`, written as YAML next to the
process's log, and the process writes the store as any job does. Interrupting sends the
driver SIGINT, as Ctrl-C would: it stops its workers and marks the job interrupted; a resume
continues it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bitprism.config import JobSpec, build_spec


def new_job_id(workload: str) -> str:
    """A job id from the workload's name and the time, e.g. ``digits-cnn-20261201-070512``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", workload.split(":")[-1]).strip("-.") or "job"
    return f"{stem[:80]}-{time.strftime('%Y%m%d-%H%M%S')}"


def form_spec(fields: dict[str, Any], store: str) -> JobSpec:
    """The job the form describes, on the dashboard's store, validated as the CLI validates a
    spec (a SpecError naming each bad field). Relative paths are made absolute, so the job
    writes where the dashboard was started, whatever folder the spec file lands in."""
    data = {k: v for k, v in fields.items() if v not in (None, "")}
    data["store"] = _absolute_sqlite(store)
    data.setdefault("job_id", new_job_id(str(data.get("workload", "job"))))
    data["output_dir"] = str(Path(data.get("output_dir", "bitprism-runs")).expanduser().resolve())
    return build_spec(data, source="the job form")


def start_job(spec: JobSpec, folder: Path) -> tuple[Path, subprocess.Popen[bytes]]:
    """Write ``spec`` as ``folder/<job_id>.yaml`` and start ``bitprism search`` on it in the
    background, its output in ``<job_id>.log`` beside it. Returns the log and the process."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_file = folder / f"{spec.job_id}.yaml"
    spec_file.write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    log = folder / f"{spec.job_id}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bitprism.cli", "search", str(spec_file), "--no-progress"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives a dashboard restart, not killed by its Ctrl-C
        )
    return log, process


def interrupt(driver: str | None) -> str:
    """Send SIGINT to the driver holding a job (``host:pid:token``, as the lease records it);
    returns what happened, in words. Only a driver on this machine can be reached."""
    if not driver:
        return "the job has no running driver"
    host, _, rest = driver.partition(":")
    pid_text = rest.split(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return f"the job's driver runs elsewhere ({driver}); interrupt it there"
    try:
        os.kill(int(pid_text), signal.SIGINT)
    except ProcessLookupError:
        return f"the job's driver (pid {pid_text}) is gone; its claim expires by itself"
    return f"interrupted the driver (pid {pid_text}); the job stops after its running trials"


def _absolute_sqlite(url: str) -> str:
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        return f"sqlite:///{Path(url.removeprefix('sqlite:///')).expanduser().resolve()}"
    return url
