"""The dashboard's entry point: ``bitprism dashboard`` runs ``streamlit run`` on this file.

It only reads the store (:mod:`bitprism.dashboard.queries`); each page is a script under
``pages/``.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).parent / "pages"

st.set_page_config(page_title="bitprism", layout="wide")
navigation = st.navigation(
    [
        st.Page(PAGES / "jobs.py", title="Jobs", default=True),
        st.Page(PAGES / "pareto.py", title="Pareto"),
        st.Page(PAGES / "trial.py", title="Trial"),
        st.Page(PAGES / "compare.py", title="Compare"),
    ]
)
navigation.run()
