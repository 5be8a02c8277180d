"""Compare: two or three trials of a job side by side, numbers and per-layer choices."""

from __future__ import annotations

import streamlit as st

from bitprism.dashboard.context import pick_job, queries
from bitprism.dashboard.trial_view import KNOBS, against_fp32, label

st.title("Compare trials")
store = queries()
job = pick_job(store)
points = store.points(job)
reference = next((p for p in points if p.number is None), None)
done = [p for p in points if p.number is not None and p.state == "complete"]
if len(done) < 2:
    st.warning("Comparing needs two complete trials; this job has fewer so far.")
    st.stop()
numbers = [p.number for p in done]
asked = [int(n) for n in st.query_params.get_all("trial") if n.isdigit() and int(n) in numbers]
chosen = st.multiselect("trials (2 or 3)", numbers, default=asked or numbers[:2], max_selections=3)
if len(chosen) < 2:
    st.info("Pick two or three trials.")
    st.stop()
st.query_params["trial"] = [str(n) for n in chosen]
columns = st.columns(len(chosen))
for column, number in zip(columns, chosen, strict=True):
    point = next(p for p in done if p.number == number)
    column.subheader(f"trial {number}")
    if reference is not None:
        column.write(against_fp32(point, reference))
layers = {number: store.choices(job, number) for number in chosen}
rows = []
for i, layer in enumerate(layers[chosen[0]]):
    row: dict[str, str] = {"layer": str(layer["layer"])}
    for number in chosen:
        mine = layers[number][i]
        row[f"trial {number}"] = ", ".join(
            text if knob == "weight_bits" else f"{title} {text}"
            for knob, title in KNOBS
            if (text := label(knob, float(mine[knob]))) != "-"
        )
    rows.append(row)
st.dataframe(rows, hide_index=True, width="stretch")
