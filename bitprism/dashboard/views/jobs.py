"""Jobs: every job of the store with its state, progress and best verified numbers; a form
that submits a job (as `bitprism submit` does) and a button that cancels a queued or running
one (as `bitprism cancel` does). Refreshes itself every few seconds."""

from __future__ import annotations

import streamlit as st

from bitprism.config import Sampler
from bitprism.dashboard.context import queries
from bitprism.dashboard.submit import form_spec
from bitprism.report import ran
from bitprism.search.jobs import cancel, submit
from bitprism.search.lease import status_label
from bitprism.search.store import Store
from bitprism.workloads.registry import builtin_workloads

st.title("Jobs")
store = queries()


@st.fragment(run_every=5)
def job_table() -> None:
    rows = store.jobs()
    if not rows:
        st.info(f"No jobs in {store.url} yet. Start one below or with `bitprism submit`.")
        return
    st.dataframe(
        [
            {
                "job": r.id,
                "workload": r.workload,
                "status": status_label(r),
                "backend": r.backend,
                "trials": f"{r.finished} / {r.trials_asked}",
                "failed": r.counts.get("failed", 0),
                "pruned unmeasured": r.counts.get("pruned", 0),
                "best accuracy": r.best_accuracy,
                "fastest": None if r.best_speedup is None else f"{r.best_speedup:.2f}x",
                "created": f"{r.created_at:%Y-%m-%d %H:%M}",
                "running time": ran(r),
                "where": r.submission or "",
                "error": r.error or "",
            }
            for r in rows
        ],
        hide_index=True,
        width="stretch",
    )
    active = [r for r in rows if r.status in ("queued", "pending", "running")]
    if active:
        left, right = st.columns([3, 1])
        chosen = left.selectbox("queued or running job", [r.id for r in active])
        if right.button(
            "Cancel", help="its driver stops within seconds; `bitprism resume` continues it"
        ):
            st.toast(cancel(Store(store.url, create=False), chosen))


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
            submitted = submit(form_spec(fields, store.url))
        except ValueError as exc:  # SpecError, a bad workload reference, a taken job id
            st.error(str(exc))
        else:
            st.success(
                f"submitted job {submitted.job_id} ({submitted.where}); its output: {submitted.log}"
            )
