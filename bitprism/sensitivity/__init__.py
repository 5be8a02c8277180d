"""Per-layer sensitivity: how much the task loss rises when a layer's weights are perturbed."""
