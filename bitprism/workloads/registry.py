"""Resolve a workload reference: a built-in name or a ``package.module:factory`` path.

Built-ins may take options (``data``: a file to score on, ``model_dir``: a local model
folder); each declares which, so an option a workload would silently ignore is an error.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bitprism.workloads.base import Workload

WorkloadFactory = Callable[..., Workload]
OPTIONS = ("data", "model_dir")


@dataclass(frozen=True)
class _Builtin:
    factory: WorkloadFactory
    options: tuple[str, ...]
    required: tuple[str, ...]


_BUILTINS: dict[str, _Builtin] = {}


def register_workload(
    name: str, options: tuple[str, ...] = (), required: tuple[str, ...] = ()
) -> Callable[[WorkloadFactory], WorkloadFactory]:
    """Decorator making a factory a built-in workload; it gets the ``options`` given as kwargs.

    ``options`` are the names of :data:`OPTIONS` the factory accepts, ``required`` those it
    cannot do without.
    """
    unknown = set(options) - set(OPTIONS) or set(required) - set(options)
    if unknown:
        raise ValueError(f"workload {name!r}: unknown or undeclared options {sorted(unknown)}")

    def decorate(factory: WorkloadFactory) -> WorkloadFactory:
        _BUILTINS[name] = _Builtin(factory, options, required)
        return factory

    return decorate


def builtin_workloads() -> list[str]:
    """Names of the built-in workloads."""
    _load_builtins()
    return sorted(_BUILTINS)


def resolve_workload(
    ref: str, *, data: Path | None = None, model_dir: Path | None = None
) -> Workload:
    """Build the workload named by ``ref`` (``"digits-cnn"`` or ``"mypkg.mod:make"``).

    Raises:
        ValueError: naming the reference when it cannot be found or does not build a Workload,
            or the option it does not take (or lacks).
    """
    factory = find_workload(ref, data=data, model_dir=model_dir)
    try:
        workload = factory()
    except ValueError:  # a built-in's own check of its data or folder: already names it
        raise
    except Exception as exc:  # the user's code failed: say whose, keep the cause chained
        raise ValueError(f"workload {ref!r} failed to build: {type(exc).__name__}: {exc}") from exc
    if not isinstance(workload, Workload):
        name = ref.partition(":")[2] or ref
        raise ValueError(f"workload {ref!r}: {name}() returned {type(workload)!r}, not Workload")
    return workload


def find_workload(
    ref: str, *, data: Path | None = None, model_dir: Path | None = None
) -> Callable[[], Any]:
    """What builds the workload ``ref`` names, found but not called: a submit checks the
    reference (and imports the user's module, which runs its top-level code) without paying
    for the model. Raises the ValueError :func:`resolve_workload` would."""
    _load_builtins()
    given: dict[str, Any] = {
        k: v for k, v in {"data": data, "model_dir": model_dir}.items() if v is not None
    }
    if ref in _BUILTINS:
        builtin = _BUILTINS[ref]
        _check_options(ref, given, builtin.options, builtin.required)
        return functools.partial(builtin.factory, **given)
    if ":" not in ref:
        raise ValueError(
            f"workload {ref!r} is neither a built-in ({', '.join(sorted(_BUILTINS))}) "
            "nor a 'package.module:factory' path"
        )
    _check_options(ref, given, (), ())
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
    return factory


def _check_options(
    ref: str, given: dict[str, Any], accepted: tuple[str, ...], required: tuple[str, ...]
) -> None:
    flag = {"data": "data (--data)", "model_dir": "model_dir (--model-dir)"}
    for option in given:
        if option not in accepted:
            takes = ", ".join(flag[o] for o in accepted) or "no options"
            raise ValueError(
                f"workload {ref!r} does not take {flag[option]}; it takes {takes}"
                + ("" if ":" not in ref else " (a factory reads its own data)")
            )
    missing = [flag[o] for o in required if o not in given]
    if missing:
        raise ValueError(f"workload {ref!r} needs {' and '.join(missing)}")


def _load_builtins() -> None:
    """Import the modules that register built-in workloads (kept lazy: heavy imports)."""
    importlib.import_module("bitprism.workloads.digits")
    importlib.import_module("bitprism.workloads.digits_mixer")
    importlib.import_module("bitprism.workloads.encoder")
