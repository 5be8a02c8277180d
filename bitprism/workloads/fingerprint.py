"""A content fingerprint of a model: its graph and weights, the same in every process.

A job is one model: the fingerprint is stored with the job, keys the cached fp32 export, and
refuses a resume (or an export) with a retrained or edited model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
from torch import nn

from bitprism.workloads.base import Inputs, as_tuple


def model_fingerprint(model: nn.Module, example_inputs: Inputs) -> str:
    """sha256 hex digest of the module tree, every state_dict tensor, and the input shapes.

    Only text and raw tensor bytes are hashed (never ``id()`` or ``hash()``), so the digest is
    the same in every process. The inputs' batch dimension is left out: the export keeps it
    dynamic, so the same model timed at another batch size is still the same model.

    Example:
        >>> model_fingerprint(net, torch.randn(1, 64)) == model_fingerprint(net, torch.randn(8, 64))
        True
    """
    digest = hashlib.sha256()
    digest.update(repr(model).encode())
    for name, module in model.named_modules():
        digest.update(f"{name}={type(module).__module__}.{type(module).__qualname__};".encode())
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{data.dtype}:{tuple(data.shape)};".encode())
        digest.update(_raw_bytes(data))
    for tensor in as_tuple(example_inputs):
        digest.update(f"input:{tensor.dtype}:{tuple(tensor.shape[1:])};".encode())
    return digest.hexdigest()


def _raw_bytes(tensor: torch.Tensor) -> memoryview:
    """A contiguous tensor's memory as bytes, uncopied; also for dtypes numpy lacks (bf16)."""
    return tensor.reshape(-1).view(torch.uint8).numpy().data


def data_fingerprint(batches: Sequence[Inputs]) -> str:
    """sha256 hex digest of input batches (dtypes, shapes and raw bytes): what a measurement
    taken on them is cached under, so other data never reuses it."""
    digest = hashlib.sha256()
    for batch in batches:
        for tensor in as_tuple(batch):
            data = tensor.detach().cpu().contiguous()
            digest.update(f"{data.dtype}:{tuple(data.shape)};".encode())
            digest.update(_raw_bytes(data))
    return digest.hexdigest()
