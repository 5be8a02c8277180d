"""A candidate: one compression choice per layer, as plain, hashable, JSON-able data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

WEIGHT_BITS = (2, 3, 4, 7, 8, 16)
SPARSITIES = (0.0, 0.25, 0.5, 0.75)
RANK_FRACTIONS = (1.0, 0.5, 0.25)
KEEP_FRACTIONS = (1.0, 0.875, 0.75, 0.625, 0.5)
OFF_BITS = 16


@dataclass(frozen=True)
class LayerChoice:
    """How one layer is compressed. The defaults leave the layer untouched.

    Attributes:
        weight_bits: 2, 3, 4, 7, 8, or 16 (= not quantised); which a layer is offered is the
            backend's say (7: int8 storage with codes in [-63, 63], for kernels that
            saturate on full-range int8).
        sparsity: Fraction of weights set to zero by magnitude, in [0, 1).
        rank_fraction: Kept fraction of the rank for a truncated-SVD factorisation; 1 = off.
        keep: Fraction of the units (neurons, heads, channels) of the prunable group this
            layer leads that structured pruning keeps; 1 = off.
    """

    weight_bits: int = OFF_BITS
    sparsity: float = 0.0
    rank_fraction: float = 1.0
    keep: float = 1.0

    def __post_init__(self) -> None:
        if self.weight_bits not in WEIGHT_BITS:
            raise ValueError(f"weight_bits must be one of {WEIGHT_BITS}, got {self.weight_bits!r}")
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity!r}")
        if not 0.0 < self.rank_fraction <= 1.0:
            raise ValueError(f"rank_fraction must be in (0, 1], got {self.rank_fraction!r}")
        if not 0.0 < self.keep <= 1.0:
            raise ValueError(f"keep must be in (0, 1], got {self.keep!r}")

    @property
    def is_identity(self) -> bool:
        return self == LayerChoice()


@dataclass(frozen=True)
class Candidate:
    """Per-layer choices, ordered by layer name so that equal candidates hash equal.

    Example:
        >>> c = Candidate.from_dict({"fc": {"weight_bits": 4}})
        >>> Candidate.from_dict(c.to_dict()) == c
        True
    """

    choices: tuple[tuple[str, LayerChoice], ...]

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any] | LayerChoice]) -> Candidate:
        items = []
        for name, choice in data.items():
            if not isinstance(choice, LayerChoice):
                unknown = set(choice) - {"weight_bits", "sparsity", "rank_fraction", "keep"}
                if unknown:
                    raise ValueError(f"layer {name!r}: unknown choice fields {sorted(unknown)}")
                choice = LayerChoice(
                    weight_bits=int(choice.get("weight_bits", OFF_BITS)),
                    sparsity=float(choice.get("sparsity", 0.0)),
                    rank_fraction=float(choice.get("rank_fraction", 1.0)),
                    keep=float(choice.get("keep", 1.0)),
                )
            items.append((name, choice))
        return cls(tuple(sorted(items)))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: asdict(choice) for name, choice in self.choices}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def digest(self) -> str:
        """Stable content hash: equal candidates, equal digests, across processes."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def __getitem__(self, layer: str) -> LayerChoice:
        for name, choice in self.choices:
            if name == layer:
                return choice
        return LayerChoice()

    def __iter__(self) -> Iterator[tuple[str, LayerChoice]]:
        return iter(self.choices)
