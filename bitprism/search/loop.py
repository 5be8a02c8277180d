"""The ask / evaluate / time / tell loop of one job.

Trials move in rounds: up to ``workers`` candidates are evaluated at once (compress, build,
score, parity) in the pool's evaluation lane, until a round's ``latency.per_round`` candidates
(default: one per worker) are back; then the pool is idle and the verified ones are timed
together in its exclusive timing slot, interleaved with the fp32
file, so each latency is clean and each speed-up is against fp32 timed in the same passes.
Only then is Optuna told. Unverified or failed trials are told as failed, with the reason.

In a guided job the sampler's proposals are first scored by the warm start's predictor; one
clearly dominated by a trial already measured (no smaller, predicted :data:`PRUNE_DAMAGE`
times as damaging or worse and no more than :data:`PRUNE_TIME` of its time) is stored as
pruned, with the reason, and told to Optuna as PRUNED, unmeasured. Pruned proposals do not
count toward ``trials`` (the budget is of measured trials), and at most ``trials`` of them
are pruned in a job, so a sampler stuck on dominated ground still ends.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState as OptunaState

from bitprism.config import JobSpec, Precision
from bitprism.evaluators.worker import TrialOutcome, evaluate_candidate, time_files
from bitprism.search.heartbeat import TrialHeartbeat
from bitprism.search.parallel import Done, RayPool
from bitprism.search.pareto import pareto_front
from bitprism.search.progress import SearchProgress
from bitprism.search.schema import TrialOrigin, TrialRole, TrialState
from bitprism.search.store import ArtifactRecord, Store, TrialRecord
from bitprism.search.warmstart import Prediction, Predictor, Seed
from bitprism.spaces.candidate import Candidate
from bitprism.spaces.space import SearchSpace

# Margins over the predictions' own errors: predicted damage ranks single choices at Spearman
# 0.95 on digits; predicted layer speed-ups were 1-3% (median) off the whole model's on
# digits-cnn but 15-16% above it on digits-mixer (time outside the layers does not shrink).
# The time margin is smaller than that error; a proposal is pruned only when the bytes and
# damage conditions hold as well.
PRUNE_DAMAGE = 4.0
PRUNE_TIME = 0.9


class ReferenceFailed(RuntimeError):
    """The fp32 reference could not be measured, so no trial could be judged."""


@dataclass
class _Pending:
    trial: optuna.trial.Trial | None  # None for the fp32 reference
    row: int
    candidate: Candidate


class SearchLoop:
    """Runs a job's trials until ``spec.trials`` search trials have finished."""

    def __init__(
        self,
        spec: JobSpec,
        store: Store,
        study: optuna.Study,
        space: SearchSpace,
        pool: RayPool,
        ctx_ref: Any,
        timing_inputs: tuple[torch.Tensor, ...],
        heartbeat: TrialHeartbeat,
        guided: Sequence[Seed] = (),
        predictor: Predictor | None = None,
    ) -> None:
        self.heartbeat = heartbeat
        self.spec, self.store, self.study, self.space = spec, store, study, space
        self.guided = [seed.candidate for seed in guided]
        self.predictor = predictor
        self.uniform: set[str] = set()  # digests of the uniform seeds (set by _seed)
        # Trial numbers of the enqueued seeds (set by _seed): measured whatever the predictor
        # says.
        self.queued: set[int] = set()
        self.measured: list[tuple[int, Prediction]] = []  # (trial number, its prediction)
        self.pruned = 0
        # What the warm start predicted for its seeds, stored with their measurements.
        self.predicted = {seed.candidate.digest(): seed.predictions() for seed in guided}
        self.pool, self.ctx_ref, self.timing_inputs = pool, ctx_ref, timing_inputs
        self.timed_at = {"timing_batch": float(timing_inputs[0].shape[0])}
        self.per_round = max(spec.workers, spec.latency.per_round or spec.workers)
        self.job_id = spec.job_id or ""
        self.pending: dict[int, _Pending] = {}
        self.untimed: list[tuple[_Pending, TrialOutcome]] = []  # evaluated, awaiting timing
        records = store.trials(self.job_id)
        self.done = {
            r.candidate.digest(): r
            for r in records
            if r.state is TrialState.COMPLETE and self._reusable(r.role)
        }
        self.finished = sum(
            r.role is TrialRole.SEARCH and r.state in (TrialState.COMPLETE, TrialState.FAILED)
            for r in records
        )
        if predictor is not None:  # a resumed job screens against what it already measured
            self.measured = [
                (r.number, predictor.predict(r.candidate))
                for r in records
                if r.role is TrialRole.SEARCH
                and r.state is TrialState.COMPLETE
                and r.verified
                and r.number is not None
            ]
        self.reference = next(
            (
                r
                for r in records
                if r.role is TrialRole.REFERENCE and r.state is TrialState.COMPLETE
            ),
            None,
        )

    def run(self, progress: bool, notes: tuple[str, ...], announce: bool = True) -> None:
        bar = SearchProgress(
            self.job_id, self.spec.trials, self.finished, enabled=progress, announce=announce
        )
        asked = self.finished
        try:
            with bar, self.heartbeat:
                bar.announce(
                    f"{len(self.space.layers)} layers, {self.space.size():.3g} candidates; "
                    f"{self.spec.trials} trials on {self.spec.workers} Ray workers "
                    f"({self.finished} already done); timed at "
                    f"{self.spec.latency.describe(int(self.timed_at['timing_batch']))} "
                    f"in {self.spec.runtime_label()}"
                )
                for note in notes:
                    bar.announce(f"[yellow]{note}[/yellow]")
                if self.reference is None:
                    self._measure_reference(bar)
                self._seed()
                while True:
                    while (
                        asked < self.spec.trials
                        and self.pool.busy < self.spec.workers
                        and self._round_size() < self.per_round
                    ):
                        asked += self._ask(bar)
                    if self.pool.busy:
                        self._record(self.pool.wait_one(), bar)
                    elif self.untimed:
                        self._time_round(bar)
                    else:
                        break
        except KeyboardInterrupt:
            self._interrupt()
            raise

    def _reusable(self, role: TrialRole) -> bool:
        """Whether a trial's measurement may stand for a repeat of its candidate: not the
        reference's in a bf16 job, where the same candidate computes in another precision."""
        return role is TrialRole.SEARCH or self.spec.precision is Precision.FP32

    def _seed(self) -> None:
        """A new job measures the forms a user would try by hand first (int8, int4 ...), then
        the warm start's candidates."""
        uniform = self.space.uniform_seeds()
        if self.spec.precision is not Precision.FP32:  # the lower precision alone comes first
            uniform.insert(0, self.space.baseline())
        self.uniform = {seed.digest() for seed in uniform}
        if not self.study.get_trials(deepcopy=False):
            seeds = uniform + [seed for seed in self.guided if seed not in uniform]
            for seed in seeds[: self.spec.trials]:
                self.study.enqueue_trial(self.space.params(seed), skip_if_exists=True)
        # Optuna numbers a trial when it is enqueued and asks the queue first: these numbers
        # are the seeds' (a resumed job's remaining ones included).
        self.queued = {
            t.number for t in self.study.get_trials(deepcopy=False, states=(OptunaState.WAITING,))
        }

    def _origin(self, trial: optuna.trial.Trial, candidate: Candidate) -> TrialOrigin:
        """Who proposed ``trial``: a uniform seed, the warm start (the other seeds) or the
        sampler."""
        if trial.number not in self.queued:
            return TrialOrigin.SAMPLER
        if candidate.digest() in self.uniform:
            return TrialOrigin.UNIFORM
        return TrialOrigin.WARM_START

    def _round_size(self) -> int:
        return self.pool.busy + len(self.untimed)

    def _measure_reference(self, bar: SearchProgress) -> None:
        """Evaluate and time the fp32 model first; any failure stops the job at once."""
        baseline = self.space.baseline()
        row = self.store.start_trial(self.job_id, None, TrialRole.REFERENCE, baseline)
        self.pool.submit(evaluate_candidate, row, self.ctx_ref, baseline, True)
        done = self.pool.wait_one()
        if done.error is None and not done.value.verified:
            done = Done(row, error=f"the fp32 ONNX file itself is {done.value.note}")
        if done.error is None:
            outcome: TrialOutcome = done.value
            timing = self.pool.run_exclusive(
                time_files,
                self.spec.backend,
                self.spec.latency,
                self.timing_inputs,
                [outcome.onnx_path],
            )
            if timing.error is None:
                metrics = {**outcome.metrics, **timing.value[0].metrics(), **self.timed_at}
                pending = _Pending(None, row, baseline)
                where = (outcome.evaluated_on, timing.value[0].timed_on)
                self.reference = self._complete(pending, metrics, _artifact(outcome), bar, where)
                return
            done = timing
        self.store.end_trial(row, TrialState.FAILED, done.error or "")
        raise ReferenceFailed(f"the fp32 reference failed, so no trial can be judged: {done.error}")

    def _ask(self, bar: SearchProgress) -> int:
        """Ask the sampler for one trial and start it; returns how many trials of the budget
        that spent (0 when the proposal was pruned unmeasured)."""
        with warnings.catch_warnings():  # "supposed to be used with Study.optimize": we beat
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask(self.space.distributions())
        candidate = self.space.candidate(trial.params)
        origin = self._origin(trial, candidate)
        previous = self.done.get(candidate.digest())
        if previous is None or previous.artifact is None:
            if self._prune(trial, candidate, bar):
                return 0
            row = self.store.start_trial(
                self.job_id, trial.number, TrialRole.SEARCH, candidate, origin
            )
            self.pending[row] = _Pending(trial, row, candidate)
            self.heartbeat.add(trial)
            self.pool.submit(evaluate_candidate, row, self.ctx_ref, candidate)
            return 1
        # The sampler proposed a candidate already measured in this job: reuse, don't re-time.
        source = "the fp32 reference" if previous.number is None else f"trial {previous.number}"
        row = self.store.start_trial(self.job_id, trial.number, TrialRole.SEARCH, candidate, origin)
        self._complete(
            _Pending(trial, row, candidate),
            previous.metrics,
            previous.artifact,
            bar,
            (previous.evaluated_on, previous.timed_on),
            note=f"same candidate as {source}; reused",
        )
        return 1

    def _prune(self, trial: optuna.trial.Trial, candidate: Candidate, bar: SearchProgress) -> bool:
        """Store and tell ``trial`` as pruned if a measured trial clearly beats its prediction
        (module docstring); whether it was."""
        if self.predictor is None or trial.number in self.queued or self.pruned >= self.spec.trials:
            return False
        mine = self.predictor.predict(candidate)
        beater = next(
            (
                (number, theirs)
                for number, theirs in self.measured
                if theirs.clearly_beats(mine, PRUNE_DAMAGE, PRUNE_TIME)
            ),
            None,
        )
        if beater is None:
            return False
        number, theirs = beater
        reason = (
            f"trial {number} is predicted to beat it clearly "
            f"({mine.damage / max(theirs.damage, 1e-30):.1f}x its damage, "
            f"{mine.layer_bytes / theirs.layer_bytes:.2f}x its layer bytes, "
            f"{mine.layer_ms / theirs.layer_ms:.2f}x its layer time); not measured"
        )
        row = self.store.start_trial(self.job_id, trial.number, TrialRole.SEARCH, candidate)
        metrics = {**_predicted(mine), "pruned_by_trial": float(number)}
        self.store.complete_trial(row, metrics, None, None, note=reason, state=TrialState.PRUNED)
        trial.set_user_attr("bitprism_pruned", reason)
        self.study.tell(trial, state=OptunaState.PRUNED)
        self.pruned += 1
        bar.advance(False, pruned=True)
        return True

    def _record(self, done: Done, bar: SearchProgress) -> None:
        pending = self.pending.pop(done.tag)
        if done.error is not None:
            self._fail(pending, done.error, bar)
        elif not done.value.verified:
            self._fail(pending, done.value.note or "not verified", bar, done.value)
        else:
            self.untimed.append((pending, done.value))

    def _time_round(self, bar: SearchProgress) -> None:
        """Time every evaluated candidate of the round against fp32, with nothing else running."""
        batch, self.untimed = self.untimed, []
        if self.reference is None or self.reference.artifact is None:
            raise RuntimeError("a timing round needs the measured fp32 reference")
        paths = [self.reference.artifact.path, *(outcome.onnx_path for _, outcome in batch)]
        done = self.pool.run_exclusive(
            time_files,
            self.spec.backend,
            self.spec.latency,
            self.timing_inputs,
            paths,
            self.spec.precision,
        )
        for i, (pending, outcome) in enumerate(batch):
            if done.error is not None:
                self._fail(pending, f"timing failed: {done.error}", bar, outcome)
                continue
            timed = done.value[i + 1]
            metrics = {**outcome.metrics, **timed.metrics(), **self.timed_at}
            where = (outcome.evaluated_on, timed.timed_on)
            self._complete(pending, metrics, _artifact(outcome), bar, where, note=outcome.note)
        if not self.spec.keep_all_files:
            self._drop_unused_files()

    def _drop_unused_files(self) -> None:
        """Delete the ONNX files of dominated and failed trials (the pool is idle here).

        A MiniLM candidate is tens of MB: keeping one per trial would fill gigabytes. The
        records, sha256 included, stay; ``SearchResult`` rebuilds a dropped file from its
        stored candidate and checks it against that sha256 before use.
        """
        records = self.store.trials(self.job_id)
        measured = [
            (r.metrics, r.artifact.path)
            for r in records
            if r.state is TrialState.COMPLETE and r.verified and r.artifact is not None
        ]
        front = pareto_front([metrics for metrics, _ in measured], self.spec.objectives)
        used = {measured[i][1] for i in front}
        if self.reference is not None and self.reference.artifact is not None:
            used.add(self.reference.artifact.path)
        for record in records:
            if record.artifact is not None and record.artifact.path not in used:
                Path(record.artifact.path).unlink(missing_ok=True)

    def _complete(
        self,
        pending: _Pending,
        metrics: dict[str, float],
        artifact: ArtifactRecord,
        bar: SearchProgress,
        where: tuple[str | None, str | None],
        note: str | None = None,
    ) -> TrialRecord:
        if pending.trial is not None:
            metrics = {**metrics, **self.predicted.get(pending.candidate.digest(), {})}
        self.store.complete_trial(pending.row, metrics, True, artifact, note=note, where=where)
        number = None if pending.trial is None else pending.trial.number
        role = TrialRole.REFERENCE if pending.trial is None else TrialRole.SEARCH
        record = TrialRecord(
            number,
            role,
            TrialState.COMPLETE,
            pending.candidate,
            metrics,
            True,
            artifact=artifact,
            evaluated_on=where[0],
            timed_on=where[1],
        )
        if self._reusable(role):
            self.done.setdefault(pending.candidate.digest(), record)
        if self.predictor is not None and pending.trial is not None:
            prediction = self.predictor.predict(pending.candidate)
            self.measured.append((pending.trial.number, prediction))
        if pending.trial is not None:
            self._tell(pending.trial, [metrics[o.value] for o in self.spec.objectives])
        bar.advance(pending.trial is not None, metrics=metrics)
        return record

    def _fail(
        self,
        pending: _Pending,
        error: str,
        bar: SearchProgress,
        outcome: TrialOutcome | None = None,
    ) -> None:
        """Store the trial as failed (with what was measured) and tell Optuna it failed."""
        if outcome is None:
            self.store.end_trial(pending.row, TrialState.FAILED, error)
        else:
            self.store.complete_trial(
                pending.row,
                outcome.metrics,
                outcome.verified,
                _artifact(outcome),
                note=error,
                state=TrialState.FAILED,
                where=(outcome.evaluated_on, None),
            )
        if pending.trial is not None:
            pending.trial.set_user_attr("bitprism_error", error[:2000])
            self._tell(pending.trial, state=OptunaState.FAIL)
        unverified = outcome is not None and not outcome.verified
        bar.advance(pending.trial is not None, failed=True, unverified=unverified)

    def _tell(
        self,
        trial: optuna.trial.Trial,
        values: list[float] | None = None,
        state: OptunaState | None = None,
    ) -> None:
        """Tell Optuna a trial's end and stop beating for it."""
        self.study.tell(trial, values, state=state)
        self.heartbeat.discard(trial)

    def _interrupt(self) -> None:
        self.pool.cancel_all()
        for pending in [*self.pending.values(), *(p for p, _ in self.untimed)]:
            self.store.end_trial(pending.row, TrialState.INTERRUPTED, "interrupted by the user")
            if pending.trial is not None:
                self._tell(pending.trial, state=OptunaState.FAIL)
        self.pending.clear()
        self.untimed.clear()


def _predicted(prediction: Prediction) -> dict[str, float]:
    return {
        "predicted_damage": prediction.damage,
        "predicted_layer_bytes": prediction.layer_bytes,
        "predicted_layer_ms": prediction.layer_ms,
    }


def _artifact(outcome: TrialOutcome) -> ArtifactRecord:
    return ArtifactRecord(outcome.onnx_path, outcome.onnx_sha256, outcome.onnx_bytes)
