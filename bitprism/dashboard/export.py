"""The Trial page's Export button: the CLI's verified export of one trial, to a temporary file
the page offers for download (the store is only read)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bitprism.results import ExportReport, SearchResult


def exported(store: str, job: str, trial: int) -> ExportReport:
    """``bitprism export JOB --trial N`` into a fresh temporary folder: the file byte for byte
    as timed, re-scored and re-timed against fp32 (ExportError if it strays)."""
    folder = Path(tempfile.mkdtemp(prefix="bitprism-export-"))
    result = SearchResult(job, store)
    return result.export(folder / f"{job}-trial-{trial}{result.suffix}", trial=trial)
