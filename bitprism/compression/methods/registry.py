"""Compression methods as a registry: quantisers, pruners and factorisers chosen by name.

A method is a function registered under a kind and a name with :func:`register`; a job picks
one of each kind (:class:`bitprism.config.Methods`), and
:func:`bitprism.compression.apply.compress_layer` calls what it picked without knowing which.
Data-aware methods declare the statistics they need (:class:`Stat`); the caller measures
those once per candidate on the calibration data (:mod:`bitprism.sensitivity.stats`) and
hands each layer its :class:`LayerStats`.

Every quantiser returns the same :class:`QuantizedMatrix` (symmetric codes, one scale per row
and group), so the kernel backends pack the codes of any method the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

import torch

from bitprism.config import Methods


class MethodKind(StrEnum):
    """The three steps of compressing one weight matrix, in the order they run."""

    FACTORISER = "factoriser"  # low rank: one matrix -> two
    PRUNER = "pruner"  # unstructured sparsity: exact count of zeros
    QUANTISER = "quantiser"  # integer codes and scales


class Stat(StrEnum):
    """Calibration statistics a method may need about a layer."""

    INPUT_GRAM = "input_gram"  # E[x x^T] of the layer's input (the layer-wise Hessian / 2)
    FISHER = "fisher"  # per-weight Fisher diagonal of the distillation loss


@dataclass(frozen=True)
class LayerStats:
    """What the calibration data says about one weight matrix (absent: not measured).

    ``input_gram`` is (in, in) float64, the mean of x x^T over calibration inputs (for a
    convolution, over its unfolded patches, in the weight's (channel, kh, kw) order);
    ``fisher`` has the weight's shape.
    """

    input_gram: torch.Tensor | None = None
    fisher: torch.Tensor | None = None


@dataclass(frozen=True)
class Method:
    """A registered method: its function and the statistics it needs."""

    kind: MethodKind
    name: str
    apply: Callable[..., Any]
    needs: frozenset[Stat]


_METHODS: dict[tuple[MethodKind, str], Method] = {}

F = TypeVar("F", bound=Callable[..., Any])


def register(
    kind: MethodKind, name: str, *, needs: frozenset[Stat] = frozenset()
) -> Callable[[F], F]:
    """Register the decorated function as method ``name`` of ``kind``. Signatures, by kind
    (``stats``: the layer's :class:`LayerStats`):

    - factoriser ``(weight (out, in), rank, stats) -> (first (rank, in), second (out, rank))``
    - pruner ``(weight, sparsity, stats) -> weight`` with exactly round(sparsity x numel) zeros
    - quantiser ``(rows (out, in), bits, group_size, stats) -> QuantizedMatrix``
    """

    def add(function: F) -> F:
        key = (kind, name)
        if key in _METHODS:
            raise ValueError(f"{kind.value} {name!r} is registered twice")
        _METHODS[key] = Method(kind, name, function, needs)
        return function

    return add


def get_method(kind: MethodKind, name: str) -> Method:
    """The method ``name`` of ``kind``, or a ValueError listing the registered ones."""
    try:
        return _METHODS[(kind, name)]
    except KeyError:
        known = ", ".join(method_names(kind))
        raise ValueError(f"unknown {kind.value} {name!r}; registered: {known}") from None


def method_names(kind: MethodKind) -> tuple[str, ...]:
    """The registered names of ``kind``, sorted."""
    return tuple(sorted(name for k, name in _METHODS if k is kind))


def chosen(methods: Methods, kind: MethodKind) -> Method:
    """The method of ``kind`` that ``methods`` (a job's choice) names."""
    return get_method(kind, str(getattr(methods, kind.value)))


def needed(
    methods: Methods, kinds: frozenset[MethodKind] = frozenset(MethodKind)
) -> frozenset[Stat]:
    """The statistics the methods ``methods`` names for ``kinds`` need (default: all kinds)."""
    return frozenset().union(*(chosen(methods, kind).needs for kind in kinds))


def check_methods(methods: Methods) -> None:
    """A ValueError naming the first method ``methods`` names that is not registered."""
    for kind in MethodKind:
        chosen(methods, kind)
