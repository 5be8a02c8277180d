"""Tiny real models and workloads shared by the tests (importable as ``tests.fixtures:...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from sklearn.datasets import load_digits
from torch import nn

from bitprism.config import JobSpec, build_spec
from bitprism.kernels.base import register_backend
from bitprism.kernels.torch_cuda import TorchCudaBackend
from bitprism.workloads.base import Workload

# The torch-cuda backend made for the CPU (its operators' torch arithmetic), so a whole job
# runs the GPU path's build, load, parity and timing where no GPU is. Registered on import:
# Ray workers unpickling a workload of this module register it too.
register_backend("torch-cpu")(lambda: TorchCudaBackend("cpu"))


def job_spec(store_url: str, tmp_path: Path, **fields: Any) -> JobSpec:
    """A small, quickly timed job on ``token_mlp`` in ``tmp_path``; ``fields`` override."""
    base = {
        "workload": "tests.fixtures:token_mlp",
        "trials": 4,
        "workers": 2,
        "store": store_url,
        "output_dir": str(tmp_path / "runs"),
        "job_id": "job",
        "latency": {"repeats": 5, "passes": 3},
    }
    return build_spec({**base, **fields})


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


def _fp32_outputs(workload: Workload) -> torch.Tensor:
    with torch.no_grad():
        return workload.model(*((workload.example_inputs,)))


def _is_fp32(model: nn.Module, workload: Workload, reference: torch.Tensor) -> bool:
    """Whether ``model`` computes what the fp32 model does (the reference, not a candidate)."""
    with torch.no_grad():
        return torch.allclose(model(workload.example_inputs), reference, atol=1e-4, rtol=1e-4)


def fails_when_compressed() -> Workload:
    """A metric that works on the fp32 model and raises on every compressed candidate."""
    workload = token_mlp()
    reference = _fp32_outputs(workload)

    def evaluate(m: nn.Module) -> float:
        if not _is_fp32(m, workload, reference):
            raise RuntimeError("metric exploded on purpose")
        return workload.evaluate(m)

    return Workload("fails-compressed", workload.model, evaluate, workload.example_inputs)


def hangs_when_compressed() -> Workload:
    """A metric that hangs on compressed candidates: the per-trial timeout must fail them."""
    workload = token_mlp()
    reference = _fp32_outputs(workload)

    def evaluate(m: nn.Module) -> float:
        if not _is_fp32(m, workload, reference):
            import time

            time.sleep(600)
        return workload.evaluate(m)

    return Workload("hangs", workload.model, evaluate, workload.example_inputs)


def says_a_string() -> Workload:
    """A metric that returns text instead of a number."""
    workload = token_mlp()
    return Workload("stringly", workload.model, lambda m: "0.9", workload.example_inputs)


def digits_fraction() -> Workload:
    """The built-in digits CNN, its accuracy given as a fraction in [0, 1] instead of percent."""
    from bitprism.workloads import resolve_workload

    workload = resolve_workload("digits-cnn")
    return Workload(
        "digits-fraction",
        workload.model,
        lambda m: workload.evaluate(m) / 100.0,
        workload.example_inputs,
        workload.calibration,
    )


def token_mlp_retrained() -> Workload:
    """The same architecture and data as token-mlp, other weights (a retrained model)."""
    workload = token_mlp()
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in workload.model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return Workload("token-mlp", workload.model, workload.evaluate, workload.example_inputs)


class _Norms(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


def nothing_to_compress() -> Workload:
    """A model with no Linear or Conv layer."""
    return Workload("norms", _Norms().eval(), lambda m: 1.0, example_inputs=torch.randn(4, 8))


class BnCNN(nn.Module):
    """Conv (no bias) + BatchNorm + ReLU blocks and a linear head, for 1x8x8 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def bn_cnn() -> Workload:
    """A small BatchNorm CNN trained briefly on digits (accuracy in percent)."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    torch.manual_seed(0)
    model = BnCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(4):
        for batch in torch.randperm(len(y)).split(64):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimizer.step()
    model.eval()
    test_x, test_y = x[-360:], y[-360:]

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(test_x).argmax(-1) == test_y).float().mean() * 100)

    return Workload("bn-cnn", model, evaluate, example_inputs=test_x[:32], calibration=[x[:64]])


class MhaTokens(nn.Module):
    """A token embedding, one ``nn.TransformerEncoderLayer`` (packed-QKV attention) and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(64, 32)
        self.block = nn.TransformerEncoderLayer(
            d_model=32, nhead=4, dim_feedforward=96, dropout=0.0, batch_first=True
        )
        self.head = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.embed(x)).mean(dim=1))


def mha_tokens() -> Workload:
    """A quickly trained transformer block with ``nn.MultiheadAttention`` on digits tokens."""
    x, y = _digits_tokens()
    torch.manual_seed(0)
    model = MhaTokens()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(80):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    model.eval()

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m(x).argmax(-1) == y).float().mean() * 100)

    return Workload("mha-tokens", model, evaluate, example_inputs=x[:16], calibration=[x[:64]])


def factory_raises() -> Workload:
    """A workload factory that fails when the job's driver builds it (after a submit)."""
    raise RuntimeError("the workload's data file is gone")


def says_nan() -> Workload:
    """A metric that returns NaN."""
    workload = token_mlp()
    return Workload("nan", workload.model, lambda m: float("nan"), workload.example_inputs)


def always_hangs() -> Workload:
    """A metric that never returns, on the fp32 model too."""
    workload = token_mlp()

    def evaluate(m: nn.Module) -> float:
        import time

        time.sleep(600)
        return 0.0

    return Workload("hangs-always", workload.model, evaluate, workload.example_inputs)


def not_a_workload() -> dict[str, str]:
    """A factory that returns something else than a Workload."""
    return {"model": "resnet"}
