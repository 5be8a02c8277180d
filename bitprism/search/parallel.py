"""The only module that talks to Ray: run trial evaluations as Ray tasks.

Local Ray is started on demand (the embedded default); an already-initialised Ray (e.g. a
cluster connection) is reused as is. The rest of bitprism only sees submit/wait.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

_OBJECT_STORE_BYTES = 512 * 1024**2


@dataclass(frozen=True)
class Done:
    """A finished task: its tag and either its value or the error text."""

    tag: Any
    value: Any = None
    error: str | None = None


class RayPool:
    """At most ``workers`` evaluations in flight, one CPU each, retried once if a worker dies."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._started = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            ray.init(
                address="local",
                num_cpus=workers,
                include_dashboard=False,
                log_to_driver=False,
                object_store_memory=_OBJECT_STORE_BYTES,
                logging_level=logging.ERROR,
                _temp_dir=os.path.join(tempfile.gettempdir(), f"bitprism-ray-{os.getuid()}"),
            )
            self._started = True
        self._inflight: dict[ray.ObjectRef, Any] = {}
        self._remotes: dict[Callable[..., Any], Any] = {}

    def put(self, value: Any) -> Any:
        """Place a large shared argument in the object store once."""
        return ray.put(value)

    def submit(self, fn: Callable[..., Any], tag: Any, *args: Any) -> None:
        if fn not in self._remotes:
            self._remotes[fn] = ray.remote(num_cpus=1, max_retries=1, retry_exceptions=False)(fn)
        self._inflight[self._remotes[fn].remote(*args)] = tag

    @property
    def busy(self) -> int:
        return len(self._inflight)

    def wait_one(self) -> Done:
        """Block until one task ends; application and system errors become ``Done.error``."""
        ready, _ = ray.wait(list(self._inflight), num_returns=1)
        ref = ready[0]
        tag = self._inflight.pop(ref)
        try:
            return Done(tag, value=ray.get(ref))
        except RayTaskError as exc:  # the remote function raised: first line says what, then where
            cause = getattr(exc, "cause", None) or exc
            return Done(tag, error=f"{type(cause).__name__}: {cause}\n{exc}")
        except RayError as exc:
            return Done(tag, error=f"{type(exc).__name__}: {exc}")

    def cancel_all(self) -> list[Any]:
        """Cancel what is in flight; returns the tags that will not finish."""
        tags = list(self._inflight.values())
        for ref in self._inflight:
            ray.cancel(ref, force=True)
        self._inflight.clear()
        return tags

    def close(self) -> None:
        if self._started:
            ray.shutdown()
