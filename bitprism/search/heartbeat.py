"""Optuna's trial heartbeats for bitprism's ask/tell loop.

Optuna fails a RUNNING trial whose heartbeat is older than the storage's grace period
(:func:`optuna.storages.fail_stale_trials`), so a trial whose driver was killed, on any host,
is failed by Optuna's own machinery and its callback. Optuna records heartbeats only inside
``study.optimize``, one thread per trial; the search loop asks and tells trials itself, so
:class:`TrialHeartbeat` beats for all the trials it has in flight from one thread, through
the storage's public ``record_heartbeat``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

import optuna
from sqlalchemy.exc import OperationalError

TRIAL_HEARTBEAT_S = 3  # how often a driver beats for its trials in flight
TRIAL_GRACE_S = 12  # how long without a beat before a RUNNING trial is failed as lost
LOST = f"its driver stopped: no heartbeat for {TRIAL_GRACE_S} s"

StaleCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


def storage_options(on_stale: StaleCallback | None) -> dict[str, Any]:
    """The RDBStorage arguments that turn on heartbeats, with ``on_stale`` run for each trial
    :func:`optuna.storages.fail_stale_trials` fails."""
    return {
        "heartbeat_interval": TRIAL_HEARTBEAT_S,
        "grace_period": TRIAL_GRACE_S,
        "heartbeat_stale_trial_callback": on_stale,
    }


class TrialHeartbeat:
    """Context manager: a daemon thread beating every ``TRIAL_HEARTBEAT_S`` for the trials
    added and not yet discarded (the first beat is immediate: Optuna never fails a trial with
    no beat at all)."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage
        self._trials: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="bitprism-trials", daemon=True)

    def add(self, trial: optuna.trial.Trial) -> None:
        self.storage.record_heartbeat(trial._trial_id)  # Optuna's own id; no public accessor
        with self._lock:
            self._trials.add(trial._trial_id)

    def discard(self, trial: optuna.trial.Trial) -> None:
        with self._lock:
            self._trials.discard(trial._trial_id)

    def __enter__(self) -> TrialHeartbeat:
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

    def _beat(self) -> None:
        while not self._stop.wait(TRIAL_HEARTBEAT_S):
            with self._lock:
                beating = list(self._trials)
            try:
                for trial_id in beating:
                    self.storage.record_heartbeat(trial_id)
            except OperationalError:  # a busy or briefly unreachable database: beat next time
                continue
