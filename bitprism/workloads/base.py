"""The Workload bundle: what a user hands bitprism (a model, its metric and its inputs)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Inputs = torch.Tensor | tuple[torch.Tensor, ...]


@dataclass
class Workload:
    """A model together with how to judge it.

    Attributes:
        name: Short name, used in job ids and reports.
        model: The fp32 ``nn.Module`` to compress; never modified by bitprism.
        evaluate: ``evaluate(model) -> float``, higher is better, in the metric's own points
            (e.g. accuracy in percent). It is called on PyTorch candidates *and* on an
            ``nn.Module`` that runs the exported ONNX file, so it must only call ``model(...)``.
        example_inputs: One batch as the deployed model sees it (batch 1 allowed); used to
            time latency; the export keeps its first (batch) dimension dynamic.
        calibration: A few input batches, used to check ONNX/PyTorch parity.
        dynamic_axes: Per input, the dimensions the exported file keeps dynamic; None = the
            first (batch) dimension of every input. E.g. ``((0, 1), (0, 1))`` for token ids
            and mask of any batch and sequence length.
        output_names: Names of the exported file's outputs (None = the exporter's own).
        latency_defaults: ``LatencySpec`` fields this workload is timed at unless the job
            sets them, e.g. ``{"threads": 2}`` for a model deployed on every core.

    Example:
        >>> Workload(name="mlp", model=net, evaluate=lambda m: 99.0,
        ...          example_inputs=torch.randn(8, 64), calibration=[torch.randn(8, 64)])
    """

    name: str
    model: nn.Module
    evaluate: Callable[[nn.Module], float]
    example_inputs: Inputs
    calibration: Sequence[Inputs] = field(default_factory=list)
    dynamic_axes: tuple[tuple[int, ...], ...] | None = None
    output_names: tuple[str, ...] | None = None
    latency_defaults: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Workload.name must be a non-empty string")
        if not isinstance(self.model, nn.Module):
            raise ValueError(f"Workload.model must be an nn.Module, got {type(self.model)!r}")
        if not callable(self.evaluate):
            raise ValueError("Workload.evaluate must be callable: evaluate(model) -> float")
        for tensor in as_tuple(self.example_inputs):
            if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
                raise ValueError("Workload.example_inputs must be tensors with a batch dimension")
        if not self.calibration:
            self.calibration = [self.example_inputs]
        inputs = as_tuple(self.example_inputs)
        axes = self.dynamic_axes
        if axes is not None and (
            len(axes) != len(inputs)
            or any(not 0 <= d < t.dim() for dims, t in zip(axes, inputs, strict=True) for d in dims)
        ):
            raise ValueError(
                f"Workload.dynamic_axes {axes} must name, per input, dimensions "
                f"the example inputs have (shapes {[tuple(t.shape) for t in inputs]})"
            )

    def axes(self) -> tuple[tuple[int, ...], ...]:
        """Per input, the dimensions kept dynamic in the export (the batch one by default)."""
        if self.dynamic_axes is not None:
            return self.dynamic_axes
        return tuple((0,) for _ in as_tuple(self.example_inputs))


def flat_outputs(outputs: object) -> list[torch.Tensor]:
    """A model's outputs as a flat list of tensors (tuples, lists and dicts unpacked, dict keys
    in sorted order), so two models' outputs can be compared element by element."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, (tuple, list)):
        return [t for o in outputs for t in flat_outputs(o)]
    if isinstance(outputs, dict):
        return [t for k in sorted(outputs) for t in flat_outputs(outputs[k])]
    raise ValueError(f"model output of type {type(outputs).__name__} cannot be compared")


def as_tuple(inputs: Inputs) -> tuple[torch.Tensor, ...]:
    """Positional model inputs as a tuple, whether one tensor or several were given."""
    return inputs if isinstance(inputs, tuple) else (inputs,)
