"""Registered compression methods (see :mod:`.registry`); importing this registers them all."""

from bitprism.compression.methods import fwsvd, gptq, obs, plain
from bitprism.compression.methods.registry import (
    LayerStats,
    Method,
    MethodKind,
    Stat,
    check_methods,
    chosen,
    get_method,
    method_names,
    needed,
    register,
)

__all__ = [
    "LayerStats",
    "Method",
    "MethodKind",
    "Stat",
    "check_methods",
    "chosen",
    "fwsvd",
    "get_method",
    "gptq",
    "method_names",
    "needed",
    "obs",
    "plain",
    "register",
]
