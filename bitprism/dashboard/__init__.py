"""The Streamlit dashboard: reads the store (``queries``), plots with pure functions (``front``)."""
