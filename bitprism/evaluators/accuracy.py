"""Score a candidate with the workload's metric and check ONNX/PyTorch parity."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bitprism.workloads.base import Inputs, Workload, as_tuple


@dataclass(frozen=True)
class Parity:
    """Largest absolute output difference, and that difference over the reference's max |y|."""

    max_abs_err: float
    rel_err: float


def score(workload: Workload, model: nn.Module) -> float:
    """The workload's metric on ``model``.

    Raises:
        TypeError: when ``evaluate`` returns anything but a real number (a string, a bool, a
            tensor of more than one element): ``float("0.9")`` would hide such a bug.
        ValueError: when the number is NaN or infinite.
    """
    with torch.no_grad():
        raw = workload.evaluate(model)
    if isinstance(raw, torch.Tensor) and raw.numel() == 1 and not raw.is_complex():
        raw = raw.item()
    if isinstance(raw, bool) or not isinstance(raw, numbers.Real):
        raise TypeError(
            f"workload {workload.name!r}: evaluate() must return a number, got "
            f"{type(raw).__name__} {raw!r:.80}"
        )
    value = float(raw)
    if not math.isfinite(value):
        raise ValueError(f"workload {workload.name!r}: evaluate() returned {value}")
    return value


def parity(reference: nn.Module, candidate: nn.Module, batches: Sequence[Inputs]) -> Parity:
    """Compare every output of ``candidate`` with ``reference`` on the calibration batches."""
    max_err, max_ref = 0.0, 0.0
    with torch.no_grad():
        for batch in batches:
            ref_out = _flat(reference(*as_tuple(batch)))
            cand_out = _flat(candidate(*as_tuple(batch)))
            if len(ref_out) != len(cand_out):
                raise ValueError(f"output count differs: {len(ref_out)} vs {len(cand_out)}")
            for r, c in zip(ref_out, cand_out, strict=True):
                diff = (r.float() - c.float()).abs().max().item()
                max_err = max(max_err, diff if math.isfinite(diff) else math.inf)
                max_ref = max(max_ref, r.float().abs().max().item())
    return Parity(max_abs_err=max_err, rel_err=max_err / max_ref if max_ref else max_err)


def _flat(outputs: object) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, (tuple, list)):
        return [t for o in outputs for t in _flat(o)]
    if isinstance(outputs, dict):
        return [t for k in sorted(outputs) for t in _flat(outputs[k])]
    raise ValueError(f"model output of type {type(outputs).__name__} cannot be compared")
