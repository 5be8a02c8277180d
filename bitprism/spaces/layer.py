"""Discover the compressible layers of any ``nn.Module``."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from torch import nn


class LayerKind(StrEnum):
    """Layer types bitprism knows how to compress."""

    LINEAR = "linear"
    CONV2D = "conv2d"
    EMBEDDING = "embedding"


@dataclass(frozen=True)
class LayerInfo:
    """What the space and the backends need to know about one layer.

    ``in_features`` is the fan-in of one output channel (``in * kh * kw`` for a convolution),
    i.e. the length of a weight row as quantisation groups see it. ``prune_units`` is the
    number of units (neurons, heads, channels) of the structured-pruning group this layer leads
    (0: it leads none).
    """

    name: str
    kind: LayerKind
    weight_shape: tuple[int, ...]
    has_bias: bool
    prune_units: int = 0

    @property
    def out_features(self) -> int:
        return self.weight_shape[0]

    @property
    def in_features(self) -> int:
        return math.prod(self.weight_shape[1:])

    @property
    def params(self) -> int:
        return math.prod(self.weight_shape) + (self.out_features if self.has_bias else 0)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": self.kind.value, "weight_shape": list(self.weight_shape)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerInfo:
        return cls(
            name=data["name"],
            kind=LayerKind(data["kind"]),
            weight_shape=tuple(data["weight_shape"]),
            has_bias=bool(data["has_bias"]),
            prune_units=int(data.get("prune_units", 0)),
        )


_KINDS: dict[type[nn.Module], LayerKind] = {
    nn.Linear: LayerKind.LINEAR,
    nn.Conv2d: LayerKind.CONV2D,
    nn.Embedding: LayerKind.EMBEDDING,
}


def discover_layers(model: nn.Module) -> tuple[LayerInfo, ...]:
    """Every ``nn.Linear``, ``nn.Conv2d`` and ``nn.Embedding`` of ``model``, in module order,
    by qualified name (an embedding table's rows are its ``out_features``)."""
    layers = []
    for name, module in model.named_modules():
        kind = _KINDS.get(type(module))
        if kind is None:
            continue
        weight = module.weight
        layers.append(
            LayerInfo(
                name=name,
                kind=kind,
                weight_shape=tuple(weight.shape),
                has_bias=getattr(module, "bias", None) is not None,
            )
        )
    return tuple(layers)
