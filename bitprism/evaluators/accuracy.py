"""Score a candidate with the workload's metric and check ONNX/PyTorch parity."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from bitprism.workloads.base import Inputs, Workload, as_tuple, flat_outputs

DRIFT_CAP = 0.25  # a candidate that moved its output further than this gains no more leeway


@dataclass(frozen=True)
class Parity:
    """How far the ONNX file's outputs are from the PyTorch candidate's, on calibration data.

    ``rel_err`` is the relative RMS difference ||onnx - candidate|| / ||candidate|| over every
    output; ``max_abs_err`` the largest element difference; ``drift`` the relative RMS
    difference of the candidate from the uncompressed model (how far compression itself moved
    the output; 0 when not measured).
    """

    max_abs_err: float
    rel_err: float
    drift: float = 0.0

    def verified(self, tolerance: float, drift_share: float = 1.0) -> bool:
        """Whether the file computes the candidate.

        Within ``tolerance``, or no further from the candidate than ``drift_share`` of how far
        the candidate is from fp32 (capped at 25%). The second clause is needed for deep models
        with dynamically quantised inputs: float differences of 1e-6 flip a rounding here and
        there, and each flip is re-quantised downstream, so the file and an exact PyTorch copy
        drift apart by up to the quantisation noise itself. A lowering bug (wrong packing,
        saturating kernels) moves the output far more than that.
        """
        return self.rel_err <= tolerance or self.rel_err <= min(drift_share * self.drift, DRIFT_CAP)

    def metrics(self) -> dict[str, float]:
        return {
            "parity_max_abs_err": self.max_abs_err,
            "parity_rel_err": self.rel_err,
            "parity_drift": self.drift,
        }


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


def parity(
    reference: nn.Module,
    candidate: nn.Module,
    batches: Sequence[Inputs],
    original: nn.Module | None = None,
) -> Parity:
    """Compare every output of ``candidate`` (the file) with ``reference`` (the PyTorch
    candidate) on the calibration batches; with ``original`` (fp32), also measure the drift."""
    max_err, diff_sq, ref_sq, drift_sq = 0.0, 0.0, 0.0, 0.0
    with torch.no_grad():
        for batch in batches:
            ref_out = flat_outputs(reference(*as_tuple(batch)))
            cand_out = flat_outputs(candidate(*as_tuple(batch)))
            orig_out = flat_outputs(original(*as_tuple(batch))) if original is not None else None
            if len(ref_out) != len(cand_out):
                raise ValueError(f"output count differs: {len(ref_out)} vs {len(cand_out)}")
            for i, (r, c) in enumerate(zip(ref_out, cand_out, strict=True)):
                diff = (r.float() - c.float()).abs()
                worst = diff.max().item()
                max_err = max(max_err, worst if math.isfinite(worst) else math.inf)
                diff_sq += float(diff.double().pow(2).sum())
                ref_sq += float(r.double().pow(2).sum())
                if orig_out is not None:
                    drift_sq += float((r.double() - orig_out[i].double()).pow(2).sum())
    if not math.isfinite(diff_sq):
        return Parity(math.inf, math.inf, 0.0)
    scale = math.sqrt(ref_sq) if ref_sq else 1.0
    return Parity(max_err, math.sqrt(diff_sq) / scale, math.sqrt(drift_sq) / scale)
