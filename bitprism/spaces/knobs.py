"""Knob kinds: each says which values one field of ``LayerChoice`` may take for a layer.

Adding a knob is one decorated class here plus a ``LayerChoice`` field; the space and the
Optuna distributions pick it up from the registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

from bitprism.spaces.candidate import KEEP_FRACTIONS, OFF_BITS, RANK_FRACTIONS, SPARSITIES
from bitprism.spaces.layer import LayerInfo
from bitprism.spaces.offer import Offers

Value = int | float


class Knob(ABC):
    """One per-layer degree of freedom."""

    field: ClassVar[str]

    @abstractmethod
    def choices(self, layer: LayerInfo, backend: Offers) -> tuple[Value, ...]:
        """Values offered for ``layer``; the first is the no-compression value."""


KNOBS: dict[str, Knob] = {}


def register_knob(cls: type[Knob]) -> type[Knob]:
    """Class decorator adding a knob kind to the registry under its ``field``."""
    KNOBS[cls.field] = cls()
    return cls


@register_knob
class WeightBits(Knob):
    """Weight bit width, limited to what the backend has a kernel for on this layer type."""

    field = "weight_bits"

    def choices(self, layer: LayerInfo, backend: Offers) -> tuple[Value, ...]:
        bits = set(backend.weight_bits(layer)) | {OFF_BITS}
        return tuple(sorted(bits, reverse=True))


@register_knob
class Sparsity(Knob):
    """The N:M pattern of the backend's sparse kernel, at 1 - N/M, where it has one for the
    layer; else unstructured magnitude sparsity, which no backend runs faster: it saves nothing
    (searched only as an extra knob), and a backend that gains from sparsity through its
    pattern offers none where the pattern does not fit."""

    field = "sparsity"

    def choices(self, layer: LayerInfo, backend: Offers) -> tuple[Value, ...]:
        pattern = backend.sparse_pattern(layer)
        if pattern is not None:
            n, m = pattern
            return (0.0, 1 - n / m)
        return (0.0,) if backend.gains_from(self.field) else SPARSITIES


@register_knob
class RankFraction(Knob):
    """Truncated-SVD rank; only fractions whose two factors hold fewer weights than the layer."""

    field = "rank_fraction"

    def choices(self, layer: LayerInfo, backend: Offers) -> tuple[Value, ...]:
        if not backend.supports_low_rank(layer):
            return (1.0,)
        full = layer.in_features * layer.out_features
        factored = layer.in_features + layer.out_features
        return tuple(f for f in RANK_FRACTIONS if f == 1.0 or low_rank(layer, f) * factored < full)


@register_knob
class Keep(Knob):
    """Structured pruning: the fraction of its group's units a group leader keeps.

    Only fractions that keep a distinct number of units (at least one) are offered.
    """

    field = "keep"

    def choices(self, layer: LayerInfo, backend: Offers) -> tuple[Value, ...]:
        if layer.prune_units < 2:
            return (1.0,)
        seen: set[int] = set()
        offered = []
        for fraction in KEEP_FRACTIONS:
            kept = max(1, round(fraction * layer.prune_units))
            if kept not in seen:
                seen.add(kept)
                offered.append(fraction)
        return tuple(offered)


def low_rank(layer: LayerInfo, rank_fraction: float) -> int:
    """The rank kept for ``rank_fraction`` of ``layer``'s full rank (at least 1)."""
    return max(1, round(rank_fraction * min(layer.in_features, layer.out_features)))
