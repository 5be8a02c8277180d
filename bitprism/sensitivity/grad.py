"""Differentiate a model in its layers' weights alone, and leave it as it was."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def weight_gradients(model: nn.Module, layers: Sequence[str]) -> Iterator[list[nn.Parameter]]:
    """``model`` in eval mode with only the named layers' weights requiring grad, and autograd
    on even inside a caller's ``torch.no_grad()``; yields those weights. Every
    ``requires_grad`` flag and the training mode are restored on exit."""
    weights = [model.get_submodule(name).get_parameter("weight") for name in layers]
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()
    for param in model.parameters():
        param.requires_grad_(False)
    for weight in weights:
        weight.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield weights
    finally:
        for param, flag in zip(model.parameters(), flags, strict=True):
            param.requires_grad_(flag)
        model.train(was_training)
