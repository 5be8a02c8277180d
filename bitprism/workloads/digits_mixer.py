"""Built-in ``digits-mixer`` workload: a CNN with the blocks real vision models mix.

A stem convolution, a depthwise-separable block (a 288-weight depthwise 3x3 convolution and a
pointwise one, each followed by BatchNorm), multi-head self-attention over the 16 positions of
the pooled feature map (residual, LayerNorm) and an MLP head, on scikit-learn's 8x8 digits.
Layers differ by three orders of magnitude in size and far more in sensitivity, which is what a
blind search gets wrong (compressing the tiny depthwise kernel as readily as the head), so the
search-efficiency benchmark uses it next to ``digits-cnn`` and MiniLM. Trained once (seconds)
and cached like ``digits-cnn``.
"""

from __future__ import annotations

import torch
from torch import nn

from bitprism.workloads.base import Workload
from bitprism.workloads.digits import accuracy_percent, cache_dir, digits_split
from bitprism.workloads.registry import register_workload

_SEED = 0
_CACHE_VERSION = "v1"


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q/k/v projections (so each is a compressible
    ``nn.Linear``, and heads are prunable units: ``attention_head_size`` names their size)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention_head_size = dim // heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, tokens, -1, self.attention_head_size).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        mixed = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(mixed.transpose(1, 2).reshape(batch, tokens, -1))


class DigitsMixer(nn.Module):
    """Stem conv, depthwise-separable block, self-attention over positions, MLP head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.pointwise = nn.Sequential(nn.Conv2d(32, 64, 1), nn.BatchNorm2d(64), nn.ReLU())
        self.pool = nn.MaxPool2d(2)
        self.attention = SelfAttention(64, heads=4)
        self.norm = nn.LayerNorm(64)
        self.head = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.pointwise(self.depthwise(self.stem(x))))
        tokens = features.flatten(2).transpose(1, 2)  # (batch, 16 positions, 64 channels)
        tokens = self.norm(tokens + self.attention(tokens))
        return self.head(tokens.mean(dim=1))


def train_digits_mixer(x: torch.Tensor, y: torch.Tensor, epochs: int = 60) -> DigitsMixer:
    """Train with AdamW and a one-cycle schedule; deterministic for a fixed seed."""
    torch.manual_seed(_SEED)
    model = DigitsMixer()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    batches_per_epoch = (len(y) + 63) // 64
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=5e-3, total_steps=epochs * batches_per_epoch
    )
    generator = torch.Generator().manual_seed(_SEED)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=generator).split(64):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def load_digits_mixer() -> DigitsMixer:
    """The trained model, from the cache when present, else trained now and cached."""
    path = cache_dir() / f"digits-mixer-{_CACHE_VERSION}.pt"
    model = DigitsMixer()
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    x_train, y_train, _, _ = digits_split()
    model = train_digits_mixer(x_train, y_train)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(model.state_dict(), tmp)
    tmp.replace(path)
    return model


@register_workload("digits-mixer")
def digits_mixer() -> Workload:
    """The ``digits-mixer`` workload: test accuracy (percent) on 360 held-out digits."""
    x_train, _, x_test, y_test = digits_split()

    def evaluate(model: nn.Module) -> float:
        return accuracy_percent(model, x_test, y_test)

    return Workload(
        name="digits-mixer",
        model=load_digits_mixer(),
        evaluate=evaluate,
        example_inputs=x_test[:32],
        calibration=[x_train[i : i + 64] for i in range(0, 256, 64)],
    )
