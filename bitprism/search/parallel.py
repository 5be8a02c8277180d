"""The only module that talks to Ray: trial work as Ray tasks, in two lanes.

- The **evaluation lane** runs up to ``workers`` tasks at once, one CPU each (compress, build,
  score: work whose result does not depend on what else runs).
- The **timing slot** runs one task alone: :meth:`RayPool.run_exclusive` refuses to start
  while anything is in flight and blocks until its task returns, so nothing else of the job
  can run meanwhile. Latency is only ever measured there, so no other trial work shares the
  timed cores. (It asks Ray for one CPU like any task: asking for all of them made Ray
  restart its worker processes around every timing round, ~5 s each, for no gain, since
  the pool already guarantees the slot is alone.)
- **Timing lanes** keep other jobs off the timed node too. Each node declares one unit of the
  custom resource :data:`LANE` (``ray start --resources '{"bitprism_lane": 1}'``; a local Ray
  started here declares it). Evaluations take :data:`EVALUATION_SHARE` of it, so up to 100
  share a node; a timing task takes it whole, so Ray starts it on a node where nothing of any
  job is evaluating and starts no evaluation there until it ends. A cluster that declares no
  lanes still gets the job's own slot; :attr:`RayPool.lanes` says which, and the job says so.

- **GPUs**: a job whose backend runs on a GPU (``torch-cuda``) gives each evaluation
  ``gpus / workers`` of a GPU (the workers share one) and the timing task ``gpus`` whole, so
  Ray places trials on GPU nodes only and times each alone on its GPU.

Local Ray is started on demand (the embedded default); an already-initialised Ray (e.g. a
cluster connection) is reused as is. The rest of bitprism only sees submit/wait.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

_OBJECT_STORE_BYTES = 512 * 1024**2
LANE = "bitprism_lane"  # a node's timing lane (module docstring)
EVALUATION_SHARE = 0.01
NO_LANES = (
    f"this Ray cluster declares no timing lanes ({LANE!r} on each node: `ray start --resources "
    f"'{{\"{LANE}\": 1}}'`): other jobs' evaluations may share the cores a trial is timed on"
)


@dataclass(frozen=True)
class Done:
    """A finished task: its tag and either its value or the error text."""

    tag: Any
    value: Any = None
    error: str | None = None


@dataclass(frozen=True)
class _Task:
    tag: Any
    deadline: float


class RayPool:
    """Evaluations in parallel, timing alone; each task is cancelled after ``timeout_s``.

    A task whose worker process dies is retried once; one that raises is not. Ray is the one
    already initialised, else the cluster ``$RAY_ADDRESS`` names (set for a driver that Ray's
    Job Submission API starts), else a local Ray of ``workers`` CPUs started here.
    """

    def __init__(self, workers: int, timeout_s: float, gpus: int = 0) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self.gpus = gpus  # GPUs a timing task takes (each evaluation takes a share)
        self._started = _join_cluster()
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(
                address="local",
                num_cpus=workers,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=_OBJECT_STORE_BYTES,
                resources={LANE: 1},
                logging_level=logging.ERROR,
                _temp_dir=os.path.join(tempfile.gettempdir(), f"bitprism-ray-{os.getuid()}"),
            )
            self._started = True
        self._inflight: dict[ray.ObjectRef, _Task] = {}
        self._remotes: dict[Callable[..., Any], Any] = {}
        self.lanes = ray.cluster_resources().get(LANE, 0) > 0

    def put(self, value: Any) -> Any:
        """Place a large shared argument in the object store once."""
        return ray.put(value)

    def submit(self, fn: Callable[..., Any], tag: Any, *args: Any) -> None:
        """Start ``fn(*args)`` in the evaluation lane (one CPU, a share of a node's lane)."""
        ref = self._remote(fn, EVALUATION_SHARE).remote(*args)
        self._inflight[ref] = _Task(tag, time.monotonic() + self.timeout_s)

    @property
    def busy(self) -> int:
        return len(self._inflight)

    def wait_one(self) -> Done:
        """Block until one task ends or times out; errors and timeouts become ``Done.error``."""
        while True:
            deadline = min(task.deadline for task in self._inflight.values())
            timeout = max(0.0, deadline - time.monotonic())
            ready, _ = ray.wait(list(self._inflight), num_returns=1, timeout=timeout)
            if ready:
                return _result(ready[0], self._inflight.pop(ready[0]).tag)
            expired = [r for r, t in self._inflight.items() if t.deadline <= time.monotonic()]
            if expired:
                ray.cancel(expired[0], force=True)
                tag = self._inflight.pop(expired[0]).tag
                return Done(tag, error=self._timeout_message())

    def run_exclusive(self, fn: Callable[..., Any], *args: Any) -> Done:
        """Run ``fn(*args)`` alone in the timing slot and wait for it.

        Raises:
            RuntimeError: when evaluations are still in flight (the caller must drain first).
        """
        if self._inflight:
            raise RuntimeError(f"timing slot requested with {len(self._inflight)} tasks running")
        ref = self._remote(fn, 1.0).remote(*args)
        ready, _ = ray.wait([ref], num_returns=1, timeout=self.timeout_s)
        if not ready:
            ray.cancel(ref, force=True)
            return Done(None, error=self._timeout_message())
        return _result(ref, None)

    def cancel_all(self) -> list[Any]:
        """Cancel what is in flight; returns the tags that will not finish."""
        tags = [task.tag for task in self._inflight.values()]
        for ref in self._inflight:
            ray.cancel(ref, force=True)
        self._inflight.clear()
        return tags

    def close(self) -> None:
        if self._started:
            ray.shutdown()

    def _remote(self, fn: Callable[..., Any], lane: float) -> Any:
        """``fn`` as a Ray task of one CPU holding ``lane`` of its node's timing lane, and
        that share of :attr:`gpus` (a whole lane: all of them)."""
        if fn not in self._remotes:
            self._remotes[fn] = ray.remote(num_cpus=1, max_retries=1, retry_exceptions=False)(fn)
        gpus = self.gpus if lane == 1.0 else self.gpus / self.workers
        return self._remotes[fn].options(
            resources={LANE: lane} if self.lanes else {}, num_gpus=gpus
        )

    def _timeout_message(self) -> str:
        return f"TimeoutError: no result after {self.timeout_s:g} s (trial_timeout_s); cancelled"


def cluster_gpus() -> float | None:
    """The GPUs of the Ray cluster this job's trials run on (connecting to ``$RAY_ADDRESS``'s
    if need be), or None for a job whose trials run on this machine's own local Ray."""
    _join_cluster()
    if not ray.is_initialized():
        return None
    return float(ray.cluster_resources().get("GPU", 0))


def _join_cluster() -> bool:
    """Connect to the cluster ``$RAY_ADDRESS`` names unless Ray is already initialised: a
    driver Ray's Job Submission API started on a cluster (or one pointed at a cluster) runs
    its trials on the cluster's nodes. True if this call connected."""
    if ray.is_initialized() or not os.environ.get("RAY_ADDRESS"):
        return False
    ray.init(log_to_driver=False, logging_level=logging.ERROR)
    return True


def _result(ref: ray.ObjectRef, tag: Any) -> Done:
    try:
        return Done(tag, value=ray.get(ref))
    except RayTaskError as exc:  # the remote function raised: first line says what, then where
        cause = getattr(exc, "cause", None) or exc
        return Done(tag, error=f"{type(cause).__name__}: {cause}\n{exc}")
    except RayError as exc:
        return Done(tag, error=f"{type(exc).__name__}: {exc}")
