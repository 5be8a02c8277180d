"""Resolve a workload reference: a built-in name or a ``package.module:factory`` path."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable

from bitprism.workloads.base import Workload

WorkloadFactory = Callable[[], Workload]
_BUILTINS: dict[str, WorkloadFactory] = {}


def register_workload(name: str) -> Callable[[WorkloadFactory], WorkloadFactory]:
    """Decorator that makes a zero-argument factory available as a built-in workload name."""

    def decorate(factory: WorkloadFactory) -> WorkloadFactory:
        _BUILTINS[name] = factory
        return factory

    return decorate


def builtin_workloads() -> list[str]:
    """Names of the built-in workloads."""
    _load_builtins()
    return sorted(_BUILTINS)


def resolve_workload(ref: str) -> Workload:
    """Build the workload named by ``ref`` (``"digits-cnn"`` or ``"mypkg.mod:make"``).

    Raises:
        ValueError: naming the reference when it cannot be found or does not build a Workload.
    """
    _load_builtins()
    if ref in _BUILTINS:
        return _BUILTINS[ref]()
    if ":" not in ref:
        raise ValueError(
            f"workload {ref!r} is neither a built-in ({', '.join(sorted(_BUILTINS))}) "
            "nor a 'package.module:factory' path"
        )
    module_name, _, attr = ref.partition(":")
    if os.getcwd() not in sys.path:  # like `python -m`: the user's project is importable
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"workload {ref!r}: cannot import module {module_name!r}: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"workload {ref!r}: {module_name} has no callable {attr!r}")
    workload = factory()
    if not isinstance(workload, Workload):
        raise ValueError(f"workload {ref!r}: {attr}() returned {type(workload)!r}, not Workload")
    return workload


def _load_builtins() -> None:
    """Import the modules that register built-in workloads (kept lazy: they import sklearn)."""
    importlib.import_module("bitprism.workloads.digits")
