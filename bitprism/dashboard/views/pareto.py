"""Pareto: any two objectives of a job, its front drawn as a line, fp32 as a star; a slider
keeps the points within an accuracy drop; a clicked point shows its per-layer choices."""

from __future__ import annotations

import streamlit as st

from bitprism.dashboard.context import pick_job, queries
from bitprism.dashboard.front import (
    AXES,
    front_2d,
    hypervolume_curve,
    measured,
    pareto_figure,
    within_drop,
)

st.title("Pareto front")
store = queries()
job = pick_job(store)
points = store.points(job)
reference = next((p for p in points if p.number is None and p.state == "complete"), None)
left, right, slider = st.columns([1, 1, 2])
names = list(AXES)
x = left.selectbox("x", names, index=names.index("speedup"))
y = right.selectbox("y", names, index=names.index("accuracy"))
drop_default = float(store.job_spec(job).get("constraints", {}).get("max_drop_pct") or 1.0)
max_drop = slider.slider("max accuracy drop, % of fp32", 0.0, 20.0, min(drop_default, 20.0), 0.5)
shown = measured(points, (x, y, "accuracy"))
if reference is not None:
    shown = within_drop(shown, reference, max_drop)
if not [p for p in shown if p.number is not None]:
    st.warning(
        "No verified trial to plot yet"
        + ("" if reference is not None else " (the fp32 reference is not measured)")
        + ": a running job fills this page as trials finish."
    )
    st.stop()
event = st.plotly_chart(
    pareto_figure(shown, x, y, reference), on_select="rerun", selection_mode="points", key="front"
)
searched = [p for p in shown if p.number is not None]
on_front = front_2d(
    [p.metrics[x] for p in searched],
    [p.metrics[y] for p in searched],
    (AXES[x].maximise, AXES[y].maximise),
)
st.caption(
    f"{len(searched)} verified trials within {max_drop:g}% of fp32's accuracy, "
    f"{len(on_front)} on the front of {x} and {y}; speed-ups are against fp32 timed in the "
    "same passes."
)
if reference is not None:
    xs, ys = hypervolume_curve(points, reference)
    st.subheader("hypervolume over measured trials")
    st.line_chart({"trials measured": xs, "hypervolume": ys}, x="trials measured", y="hypervolume")
    st.caption(
        "of (accuracy / fp32's, speed-up, bytes / fp32's) above 90% of fp32's accuracy, 0.5x "
        "its speed and its size: it flattens once the search stops finding better points"
    )
picked = [
    int(p["customdata"])
    for p in (event.selection.points if event and event.selection else [])
    if p.get("customdata") is not None
]
if picked:
    number = picked[0]
    st.subheader(f"trial {number}")
    st.dataframe(store.choices(job, number), hide_index=True)
