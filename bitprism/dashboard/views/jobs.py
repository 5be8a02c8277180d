"""Jobs: every job of the store with its state, progress and best verified numbers; a form
that starts a job and a button that interrupts a running one. Refreshes itself while a job
runs."""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path

import streamlit as st

from bitprism.config import Sampler, SpecError
from bitprism.dashboard.context import queries
from bitprism.dashboard.queries import JobRow
from bitprism.dashboard.submit import form_spec, interrupt, start_job
from bitprism.workloads.registry import builtin_workloads

EARLY_FAILURE_S = 8.0  # a job still running after this got past its checks

st.title("Jobs")
store = queries()


def _duration(row: JobRow) -> str:
    seconds = int((row.updated_at - row.created_at) / dt.timedelta(seconds=1))
    return f"{seconds // 60} min {seconds % 60:02d} s"


@st.fragment(run_every=5)
def job_table() -> None:
    rows = store.jobs()
    if not rows:
        st.info(f"No jobs in {store.url} yet. Start one below or with `bitprism search`.")
        return
    st.dataframe(
        [
            {
                "job": r.id,
                "workload": r.workload,
                "status": r.status,
                "backend": r.backend,
                "trials": f"{r.finished} / {r.trials_asked}",
                "failed": r.counts.get("failed", 0),
                "pruned unmeasured": r.counts.get("pruned", 0),
                "best accuracy": r.best_accuracy,
                "fastest": None if r.best_speedup is None else f"{r.best_speedup:.2f}x",
                "started": f"{r.created_at:%Y-%m-%d %H:%M}",
                "running time": _duration(r),
                "error": r.error or "",
            }
            for r in rows
        ],
        hide_index=True,
        width="stretch",
    )
    running = [r for r in rows if r.driver]
    if running:
        left, right = st.columns([3, 1])
        chosen = left.selectbox("running job", [r.id for r in running])
        if right.button("Interrupt", help="as Ctrl-C in its terminal; a resume continues it"):
            holder = next(r for r in running if r.id == chosen)
            st.toast(interrupt(holder.driver))


job_table()

with st.expander("Start a job"), st.form("start"):
    builtins = builtin_workloads()
    workload = st.selectbox("workload", builtins, index=builtins.index("digits-cnn"))
    custom = st.text_input("or your own workload (package.module:factory)")
    job_id = st.text_input("job id (empty: one is made from the workload and the time)")
    first, second, third = st.columns(3)
    trials = first.number_input("trials", min_value=1, max_value=100_000, value=40)
    workers = second.number_input("workers", min_value=1, max_value=64, value=2)
    backend = third.selectbox("backend", ["ort-cpu", "openvino-cpu"])
    sampler = first.selectbox("sampler", [s.value for s in Sampler])
    max_drop = second.number_input("max accuracy drop, %", min_value=0.0, value=1.0, step=0.5)
    warm = third.number_input("warm-start seeds (0: blind)", min_value=0, max_value=64, value=8)
    if st.form_submit_button("Start"):
        fields = {
            "workload": custom.strip() or workload,
            "job_id": job_id.strip() or None,
            "trials": int(trials),
            "workers": int(workers),
            "backend": backend,
            "sampler": sampler,
            "warm_start": int(warm),
            "constraints": {"max_drop_pct": float(max_drop)},
        }
        try:
            spec = form_spec(fields, store.url)
        except SpecError as exc:
            st.error(str(exc))
        else:
            log, process = start_job(spec, Path(spec.output_dir) / "submitted")
            try:  # a bad workload or path fails within seconds, before the job is stored
                code = process.wait(timeout=EARLY_FAILURE_S)
            except subprocess.TimeoutExpired:
                st.success(f"started job {spec.job_id} (process {process.pid}; output: {log})")
            else:
                tail = log.read_text(errors="replace")[-2000:]
                if code == 0:
                    st.success(f"job {spec.job_id} already finished (output: {log})")
                else:
                    st.error(f"job {spec.job_id} stopped at once (exit {code}):\n\n{tail}")
