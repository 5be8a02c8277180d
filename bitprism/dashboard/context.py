"""What every dashboard page shares: the store it reads, opened once per process."""

from __future__ import annotations

import argparse
import os
import sys

import streamlit as st

from bitprism.dashboard.queries import Queries
from bitprism.paths import PathError

STORE_ENV = "BITPRISM_STORE"
DEFAULT_STORE = "sqlite:///bitprism.db"


def store_url(argv: list[str] | None = None) -> str:
    """``--store URL`` after ``streamlit run app.py --`` (how ``bitprism dashboard`` starts
    it), else ``$BITPRISM_STORE``, else the CLI's default store."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--store", default=None)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return known.store or os.environ.get(STORE_ENV) or DEFAULT_STORE


@st.cache_resource
def _open(url: str) -> Queries:
    return Queries(url)


def queries() -> Queries:
    """The store's queries, or the page stops with the reason the store cannot be read."""
    url = store_url()
    try:
        return _open(url)
    except PathError as exc:
        st.error(str(exc))
        st.stop()
        raise  # st.stop() raises; this line only satisfies the type checker


def pick_job(store: Queries) -> str:
    """A job chosen on the page (``?job=`` preselects it; newest first), or the page stops
    with a hint when the store has none."""
    jobs = [r.id for r in store.jobs()]
    if not jobs:
        st.info(f"No jobs in {store.url} yet. Start one with `bitprism search`.")
        st.stop()
    wanted = st.query_params.get("job")
    job = st.selectbox("job", jobs, index=jobs.index(wanted) if wanted in jobs else 0)
    st.query_params["job"] = job
    return str(job)


def is_running(store: Queries, job: str) -> bool:
    """Whether a driver holds ``job`` now: its pages then redraw themselves."""
    return any(r.id == job and r.driver for r in store.jobs())
