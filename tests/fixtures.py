"""Tiny real models and workloads shared by the tests (importable as ``tests.fixtures:...``)."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn

from bitprism.workloads.base import Workload


class TokenMLP(nn.Module):
    """Linear layers on (batch, tokens, features) input: exports as MatMul, not Gemm."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(64, 96)
        self.down = nn.Linear(96, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x))).mean(dim=1)


def _digits_tokens() -> tuple[torch.Tensor, torch.Tensor]:
    data = load_digits()
    x = torch.tensor(data.data[:400], dtype=torch.float32).div(16.0).reshape(400, 1, 64)
    return x.repeat(1, 3, 1), torch.tensor(data.target[:400])


def token_mlp() -> Workload:
    """A quickly trained 3-D-input MLP on digits: a second, transformer-shaped model."""
    x, y = _digits_tokens()
    torch.manual_seed(0)
    model = TokenMLP()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(x).argmax(-1) == y).float().mean() * 100)

    return Workload("token-mlp", model, evaluate, example_inputs=x[:16], calibration=[x[:64]])


def exploding() -> Workload:
    """A workload whose metric always raises: every trial must be recorded as failed."""
    workload = token_mlp()

    def evaluate(m: nn.Module) -> float:
        raise RuntimeError("metric exploded on purpose")

    return Workload("exploding", workload.model, evaluate, workload.example_inputs)


def crashing() -> Workload:
    """A metric that kills its worker process: Ray retries once, then the trial is failed."""
    workload = token_mlp()

    def evaluate(m: nn.Module) -> float:
        import os

        os._exit(3)

    return Workload("crashing", workload.model, evaluate, workload.example_inputs)


class _Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.export refuses it
            return self.fc(x)
        return x


def unexportable() -> Workload:
    """A model the ONNX exporter cannot trace."""
    return Workload("branchy", _Branchy(), lambda m: 1.0, example_inputs=torch.ones(4, 4))


class TiedMLP(nn.Module):
    """Two layers sharing one weight, and one ordinary layer."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(32, 32)
        self.b = nn.Linear(32, 32)
        self.b.weight = self.a.weight
        self.out = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.b(torch.relu(self.a(x)))))
