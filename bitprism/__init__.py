"""bitprism: search per-layer compression (bits, rank, sparsity) on real kernels.

Public API (imported lazily so that ``import bitprism`` stays fast and touches no CUDA):

    >>> import bitprism
    >>> result = bitprism.search("digits-cnn", bitprism.JobSpec(trials=40, workers=2))
    >>> result.pareto[0].accuracy
    >>> result.export("out/best.onnx", max_drop=1.0)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The subpackage ``bitprism.search`` and the function ``bitprism.search()`` share a name. Loading
# the (empty) subpackage first and binding the function after keeps the function: importing its
# submodules later never rebinds this module's attribute.
import bitprism.search as _search_package  # noqa: E402,F401

if TYPE_CHECKING:
    from bitprism.api import load_result
    from bitprism.config import JobSpec, Objective
    from bitprism.results import ExportReport, ParetoPoint, SearchResult
    from bitprism.workloads.base import Workload

__all__ = [
    "ExportReport",
    "JobSpec",
    "Objective",
    "ParetoPoint",
    "SearchResult",
    "Workload",
    "load_result",
    "search",
]

_WHERE = {
    "load_result": "bitprism.api",
    "JobSpec": "bitprism.config",
    "Objective": "bitprism.config",
    "ExportReport": "bitprism.results",
    "ParetoPoint": "bitprism.results",
    "SearchResult": "bitprism.results",
    "Workload": "bitprism.workloads.base",
}


def search(workload: Any, spec: Any = None, **kwargs: Any) -> SearchResult:
    """Run (or resume) a compression search; see :func:`bitprism.api.search`."""
    from bitprism.api import search as run

    return run(workload, spec, **kwargs)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'bitprism' has no attribute {name!r}")
