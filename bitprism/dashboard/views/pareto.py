"""Pareto: any two objectives of a job (or all three in 3-D), its front drawn as a line, fp32
as a star, points coloured by who proposed them or by state; a slider keeps the points
within an accuracy drop; a clicked point shows its per-layer choices. Redraws itself every
few seconds while the job runs."""

from __future__ import annotations

import streamlit as st

from bitprism.dashboard.context import is_running, pick_job, queries
from bitprism.dashboard.front import (
    AXES,
    AXES_3D,
    COLOUR_BY,
    front_2d,
    hypervolume_curve,
    measured,
    pareto_figure,
    pareto_figure_3d,
    searchable,
    within_drop,
)

LIVE_S = 5  # seconds between redraws while the job runs

st.title("Pareto front")
store = queries()
job = pick_job(store)
view, colour, left, right = st.columns([1, 1, 1, 1])
three_d = view.radio("view", ["2-D", "3-D"], horizontal=True) == "3-D"
colour_by = colour.selectbox("colour by", list(COLOUR_BY))
names = list(AXES)
x = left.selectbox("x", names, index=names.index("speedup"), disabled=three_d)
y = right.selectbox("y", names, index=names.index("accuracy"), disabled=three_d)
drop_default = float(store.job_spec(job).get("constraints", {}).get("max_drop_pct") or 1.0)
max_drop = st.slider("max accuracy drop, % of fp32", 0.0, 20.0, min(drop_default, 20.0), 0.5)


@st.fragment(run_every=LIVE_S if is_running(store, job) else None)
def front() -> None:
    """Everything drawn from the job's trials: rerun alone while the job runs."""
    points = store.points(job)
    reference = next((p for p in points if p.number is None and p.state == "complete"), None)
    axes = AXES_3D if three_d else (x, y, "accuracy")
    by_state = COLOUR_BY[colour_by][0] == "state"
    shown = measured(points, axes, failed=by_state)
    if reference is not None:
        shown = within_drop(shown, reference, max_drop)
    searched = [p for p in shown if searchable(p)]
    if not searched:
        st.warning(
            "No verified trial to plot yet"
            + ("" if reference is not None else " (the fp32 reference is not measured)")
            + ": a running job fills this page as trials finish."
        )
        return
    if three_d:
        st.plotly_chart(pareto_figure_3d(shown, reference, colour_by), key="front3d")
        event = None
    else:
        figure = pareto_figure(shown, x, y, reference, colour_by)
        event = st.plotly_chart(figure, on_select="rerun", selection_mode="points", key="front")
        on_front = front_2d(
            [p.metrics[x] for p in searched],
            [p.metrics[y] for p in searched],
            (AXES[x].maximise, AXES[y].maximise),
        )
        st.caption(
            f"{len(searched)} verified trials within {max_drop:g}% of fp32's accuracy, "
            f"{len(on_front)} on the front of {x} and {y}; speed-ups are against fp32 timed "
            "in the same passes. Click a point for its per-layer choices."
        )
    pruned = sum(p.state == "pruned" for p in points)
    hidden = sum(p.state == "failed" for p in points) - sum(p.state == "failed" for p in shown)
    if pruned or hidden:
        hint = "" if by_state or not hidden else " (colour by trial state for those that kept it)"
        st.caption(
            f"not plotted: {pruned} proposals pruned unmeasured (predicted dominated), "
            f"{hidden} failed trials without the numbers these axes need{hint}"
        )
    if reference is not None:
        xs, ys = hypervolume_curve(points, reference)
        st.subheader("hypervolume over measured trials")
        st.line_chart(
            {"trials measured": xs, "hypervolume": ys}, x="trials measured", y="hypervolume"
        )
        st.caption(
            "of (accuracy / fp32's, speed-up, bytes / fp32's) above 90% of fp32's accuracy, "
            "0.5x its speed and its size: it flattens once the search stops finding better points"
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


front()
