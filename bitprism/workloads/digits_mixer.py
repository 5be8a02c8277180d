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
from bitprism.workloads.digits import (
    cached_model,
    digits_split,
    digits_workload,
    train_classifier,
)
from bitprism.workloads.registry import register_workload

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


def _train_digits_mixer() -> nn.Module:
    x_train, y_train, _, _ = digits_split()
    return train_classifier(
        DigitsMixer, x_train, y_train, epochs=60, max_lr=5e-3, optimizer=torch.optim.AdamW
    )


@register_workload("digits-mixer")
def digits_mixer() -> Workload:
    """The ``digits-mixer`` workload: test accuracy (percent) on 360 held-out digits."""
    model = cached_model(f"digits-mixer-{_CACHE_VERSION}", DigitsMixer, _train_digits_mixer)
    return digits_workload("digits-mixer", model)
