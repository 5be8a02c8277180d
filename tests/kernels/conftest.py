"""Triton kernels run under Triton's interpreter on CPU tensors where there is no CUDA device:
the interpreter is chosen when a kernel is defined, so it is switched on before any test
module imports one."""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
