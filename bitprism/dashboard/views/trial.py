"""Trial: one trial's numbers against fp32, its per-layer choices as a heat map, and the job's
spec."""

from __future__ import annotations

import streamlit as st

from bitprism.dashboard.context import pick_job, queries
from bitprism.dashboard.export import exported
from bitprism.dashboard.trial_view import against_fp32, choices_heatmap, sensitivity_bars
from bitprism.results import ExportError

st.title("Trial")
store = queries()
job = pick_job(store)
points = store.points(job)
reference = next((p for p in points if p.number is None), None)
searched = [p for p in points if p.number is not None]
if not searched:
    st.warning("This job has no trial yet.")
    st.stop()
numbers = [p.number for p in searched if p.number is not None]
asked = st.query_params.get("trial")
start = (
    numbers.index(int(asked))
    if asked is not None and asked.isdigit() and int(asked) in numbers
    else 0
)
number = st.selectbox("trial", numbers, index=start)
st.query_params.update({"job": job, "trial": str(number)})
point = next(p for p in searched if p.number == number)
status = point.state if point.verified is not False else f"{point.state} (file not verified)"
st.subheader(f"trial {number}: {status}")
if reference is not None and point.state == "complete":
    st.markdown(f"**{against_fp32(point, reference)}**")
choices = store.choices(job, number)
sensitivity = store.sensitivity(job)
if sensitivity:
    left, right = st.columns([3, 2])
    left.plotly_chart(choices_heatmap(choices), key="layers")
    layers = [c["layer"] for c in choices]
    right.plotly_chart(sensitivity_bars(layers, sensitivity), key="sensitivity")
    st.caption(
        "right: each layer's sensitivity, the curvature per weight of the distillation loss "
        "to fp32 (a Fisher diagonal's mean) that guided the search; compress the low ones first"
    )
else:
    st.plotly_chart(choices_heatmap(choices), key="layers")
    st.caption("no sensitivities: this job was searched blind (warm_start 0)")
with st.expander("job spec"):
    st.json(store.job_spec(job))
verified = point.state == "complete" and bool(point.verified)
if verified and st.button("Export", help="re-score and re-time it against fp32, then download"):
    with st.spinner("re-scoring and re-timing the file against fp32 ..."):
        try:
            report = exported(store.url, job, number)
        except (ExportError, ValueError, KeyError) as exc:
            st.error(f"not exported: {exc}")
        else:
            st.success(f"verified again: {report.summary()}")
            st.download_button(
                f"download {report.path.name}",
                report.path.read_bytes(),
                file_name=report.path.name,
                mime="application/octet-stream",
            )
