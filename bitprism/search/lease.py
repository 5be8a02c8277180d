"""One driver per job: a lease row in the store, kept alive by a heartbeat thread.

A second driver on a running job is refused. A driver that was killed stops beating, so its
lease expires after ``LEASE_TTL_S`` and the job can be resumed; on the same machine a lease
whose process is gone is taken over at once.

The same thread watches for ``bitprism cancel``: a job marked cancelled in the store is
stopped as Ctrl-C would stop it (KeyboardInterrupt in the driver's main thread), wherever
the driver runs, so a cancel needs no signal, host or Ray address, only the store.
"""

from __future__ import annotations

import _thread
import datetime as dt
import os
import secrets
import signal
import socket
import threading
import time
from types import TracebackType
from typing import Any

from bitprism.search.schema import JobStatus
from bitprism.search.store import Store

LEASE_TTL_S = 60.0
_BEAT_S = LEASE_TTL_S / 6
CANCEL_POLL_S = 2.0  # how often the driver looks for a cancel


class JobBusyError(RuntimeError):
    """Another live driver holds the job."""


class Lease:
    """Context manager holding ``job_id`` for this process.

    Example:
        >>> with Lease(store, "job-1"):
        ...     run_the_search()
    """

    def __init__(self, store: Store, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self.cancelled = False  # set when the driver was stopped by a cancel
        self.driver = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="bitprism-lease", daemon=True)

    def __enter__(self) -> Lease:
        holder = self.store.acquire_lease(self.job_id, self.driver, LEASE_TTL_S)
        if holder is not None and dead_here(holder):
            holder = self.store.acquire_lease(
                self.job_id, self.driver, LEASE_TTL_S, dead=holder.split(" ")[0]
            )
        if holder is not None:
            raise JobBusyError(
                f"job {self.job_id!r} is being run by another driver, {holder}; wait for it to "
                f"finish (a killed driver's claim expires after {LEASE_TTL_S:g} s)"
            )
        if threading.current_thread() is threading.main_thread():
            # A process started in the background by a shell script, or by a parent that
            # ignores Ctrl-C, inherits SIGINT ignored, and Python then raises no
            # KeyboardInterrupt: neither Ctrl-C nor a cancel would stop this driver.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.store.release_lease(self.job_id, self.driver)

    def _beat(self) -> None:
        beat = time.monotonic()
        while not self._stop.wait(CANCEL_POLL_S):
            status = self.store.job_status(self.job_id)
            if status is JobStatus.CANCELLED and not self.cancelled:
                self.cancelled = True
                _thread.interrupt_main()
            if time.monotonic() - beat >= _BEAT_S:
                self.store.renew_lease(self.job_id, self.driver)
                beat = time.monotonic()


def lost_driver(job: Any, now: dt.datetime | None = None) -> str | None:
    """Why a job that says it is pending or running has no live driver, or None.

    Its driver renews the lease every ``LEASE_TTL_S / 6``; a lease left unrenewed for
    ``LEASE_TTL_S`` means the driver was killed or its machine lost (on any host), and
    ``bitprism resume`` takes the job over. ``job``: anything with id, status, driver and
    heartbeat_at (a store record, a dashboard row).
    """
    if job.status not in (JobStatus.PENDING, JobStatus.RUNNING):
        return None
    beat = job.heartbeat_at
    if beat is not None and beat.tzinfo is None:  # SQLite hands back naive UTC
        beat = beat.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    if job.driver is None or beat is None:
        if job.status != JobStatus.RUNNING:
            return None  # a job run directly is pending a moment before its driver holds it
        since = "no driver holds it"
    else:
        silent = (now - beat).total_seconds()
        if silent <= LEASE_TTL_S:
            return None
        age = f"{silent:.0f} s" if silent < 120 else f"{silent // 60:.0f} min"
        since = f"no heartbeat from its driver for {age}"
    return f"driver lost ({since}); `bitprism resume {job.id}` continues it"


def status_label(job: Any) -> str:
    """A job's status as lists show it: "running (driver lost)" when its driver stopped
    beating, "cancelled (stopping)" while a cancelled job's driver still holds it."""
    label = str(JobStatus(job.status).value)
    if lost_driver(job):
        return f"{label} (driver lost)"
    if job.status == JobStatus.CANCELLED and job.driver is not None:
        return f"{label} (stopping)"
    return label


def dead_here(holder: str) -> bool:
    """Whether ``holder`` ("host:pid:token (...)") is a process of this machine that is gone."""
    host, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
