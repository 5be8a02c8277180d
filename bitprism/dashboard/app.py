"""The dashboard's entry point: ``bitprism dashboard`` runs ``streamlit run`` on this file.

It only reads the store (:mod:`bitprism.dashboard.queries`); each page is a script under
``views/`` (not ``pages/``, which Streamlit would also list as pages of its own).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

VIEWS = Path(__file__).parent / "views"

st.set_page_config(page_title="bitprism", layout="wide")
navigation = st.navigation(
    [
        st.Page(VIEWS / "jobs.py", title="Jobs", default=True),
        st.Page(VIEWS / "pareto.py", title="Pareto"),
        st.Page(VIEWS / "trial.py", title="Trial"),
        st.Page(VIEWS / "compare.py", title="Compare"),
    ]
)
navigation.run()
