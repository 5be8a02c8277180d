"""ONNX Runtime sessions, and an ``nn.Module`` face for them so user metrics run unchanged."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnxruntime as ort
import torch
from torch import nn


def make_session(model_bytes: bytes, threads: int) -> ort.InferenceSession:
    """A CPU session with a fixed thread count and full graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def feeds(session: ort.InferenceSession, inputs: Sequence[torch.Tensor]) -> dict[str, np.ndarray]:
    """Positional tensors to the session's named inputs."""
    names = [i.name for i in session.get_inputs()]
    if len(names) != len(inputs):
        raise ValueError(f"the ONNX model takes {len(names)} inputs, got {len(inputs)}")
    return {name: t.detach().cpu().numpy() for name, t in zip(names, inputs, strict=True)}


class OrtModule(nn.Module):
    """Runs an ONNX Runtime session behind ``forward`` so ``evaluate(model)`` scores the file.

    It has no parameters: a metric must only call ``model(...)`` on CPU tensors.
    """

    def __init__(self, session: ort.InferenceSession) -> None:
        super().__init__()
        self.session = session

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs = self.session.run(None, feeds(self.session, inputs))
        tensors = tuple(torch.from_numpy(np.asarray(o)) for o in outputs)
        return tensors[0] if len(tensors) == 1 else tensors
