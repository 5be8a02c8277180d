"""What can be chosen per layer: layer discovery, knob kinds, candidates and the space."""

from bitprism.spaces.candidate import Candidate, LayerChoice
from bitprism.spaces.layer import LayerInfo, LayerKind, discover_layers

__all__ = ["Candidate", "LayerChoice", "LayerInfo", "LayerKind", "discover_layers"]
