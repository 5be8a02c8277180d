"""Built-in ``digits-cnn`` workload: a small CNN on scikit-learn's 8x8 digits.

Trained once (seconds on a CPU) and cached under the bitprism cache folder, so every job on
this workload compresses the same fp32 model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from bitprism.workloads.base import Workload
from bitprism.workloads.registry import register_workload

_SEED = 0
_CACHE_VERSION = "v2"


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions and a three-layer MLP head for 1x8x8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256),
            nn.ReLU(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def cache_dir() -> Path:
    """Where trained built-in models live (``$BITPRISM_CACHE`` or ``~/.cache/bitprism``)."""
    root = os.environ.get("BITPRISM_CACHE") or Path.home() / ".cache" / "bitprism"
    return Path(root)


def digits_split() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stratified 80/20 split of the digits images scaled to [0, 1]: x/y train, x/y test."""
    data = load_digits()
    images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(data.target, dtype=torch.long)
    idx_train, idx_test = train_test_split(
        range(len(labels)), test_size=0.2, random_state=_SEED, stratify=data.target
    )
    return images[idx_train], labels[idx_train], images[idx_test], labels[idx_test]


def train_classifier(
    make: Callable[[], nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    max_lr: float,
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Adam,
) -> nn.Module:
    """A model from ``make`` trained on (x, y) with a one-cycle schedule, batches of 64;
    deterministic for a fixed seed (set before ``make``, which initialises the weights)."""
    torch.manual_seed(_SEED)
    model = make()
    step = optimizer(model.parameters(), lr=2e-3, weight_decay=1e-4)
    batches_per_epoch = (len(y) + 63) // 64
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        step, max_lr=max_lr, total_steps=epochs * batches_per_epoch
    )
    generator = torch.Generator().manual_seed(_SEED)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(64):
            step.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            step.step()
            schedule.step()
    return model.eval()


def cached_model(
    name: str, make: Callable[[], nn.Module], train: Callable[[], nn.Module]
) -> nn.Module:
    """The trained model cached as ``name``.pt, else ``train()``-ed now and cached."""
    path = cache_dir() / f"{name}.pt"
    if path.is_file():
        model = make()
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    model = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model


def digits_workload(name: str, model: nn.Module) -> Workload:
    """``model`` judged by test accuracy (percent) on 360 held-out digits."""
    x_train, _, x_test, y_test = digits_split()

    def evaluate(candidate: nn.Module) -> float:
        return accuracy_percent(candidate, x_test, y_test)

    return Workload(
        name=name,
        model=model,
        evaluate=evaluate,
        example_inputs=x_test[:32],
        calibration=[x_train[i : i + 64] for i in range(0, 256, 64)],
    )


def accuracy_percent(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 accuracy of ``model`` on (x, y), in percent."""
    with torch.no_grad():
        predictions = model(x).argmax(dim=-1)
    return float((predictions == y).float().mean() * 100.0)


def _train_digits_cnn() -> nn.Module:
    x_train, y_train, _, _ = digits_split()
    return train_classifier(DigitsCNN, x_train, y_train, epochs=40, max_lr=6e-3)


@register_workload("digits-cnn")
def digits_cnn() -> Workload:
    """The ``digits-cnn`` workload: test accuracy (percent) on 360 held-out digits."""
    model = cached_model(f"digits-cnn-{_CACHE_VERSION}", DigitsCNN, _train_digits_cnn)
    return digits_workload("digits-cnn", model)
