"""Jobs: every job of the store with its state, progress and best verified numbers."""

from __future__ import annotations

import streamlit as st

from bitprism.dashboard.context import queries

st.title("Jobs")
rows = queries().jobs()
if not rows:
    st.info(f"No jobs in {queries().url} yet. Start one with `bitprism search`.")
    st.stop()
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
            "last update": f"{r.updated_at:%Y-%m-%d %H:%M}",
            "error": r.error or "",
        }
        for r in rows
    ],
    hide_index=True,
    width="stretch",
)
