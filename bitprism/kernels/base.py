"""The backend protocol and registry: a backend owns its whole runtime.

A backend is one object that (1) offers the compressed forms it really runs per layer (so the
space offers nothing else), (2) builds a candidate's deployable artifact with the exact codes
of the PyTorch candidate, (3) loads an artifact as a module ``evaluate`` and the parity check
call, and (4) gives a bare call to time. It also says what it needs of the machine (GPUs, packages)
and what its timings depend on. Nothing outside ``kernels`` names a runtime: the
evaluators and the search only see this protocol, as Optuna's loop only sees a sampler.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import onnx
import torch
from torch import nn

from bitprism.compression.apply import CompressedLayer
from bitprism.compression.quantize import InputQuant
from bitprism.config import Precision
from bitprism.spaces.layer import LayerInfo
from bitprism.spaces.offer import Offers
from bitprism.workloads.base import Workload


@dataclass(frozen=True)
class Artifact:
    """A candidate as deployed: the file's bytes and the bytes its weights take in it."""

    data: bytes
    weight_bytes: int
    suffix: str = ".onnx"


@dataclass(frozen=True)
class DeviceTime:
    """What a bound call returns when its device timed the run itself (CUDA events around the
    work alone, not around a cache flush before it): the timer takes it over the wall clock."""

    milliseconds: float


class RuntimeModule(nn.Module, ABC):
    """A loaded artifact behind ``forward``, so a user's ``evaluate(model)`` scores the file.

    It has no parameters: a metric must only call ``model(...)`` on CPU tensors.
    """

    @abstractmethod
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The artifact's outputs on ``inputs``, as CPU tensors."""

    @abstractmethod
    def bind(self, inputs: Sequence[torch.Tensor]) -> Callable[[], object]:
        """A no-argument call that runs the artifact on ``inputs`` converted once, so that a
        timed call is the runtime's inference and nothing else. It may return a
        :class:`DeviceTime`, the device's own measure of the run."""


class Backend(Offers, Protocol):
    """One target runtime (ONNX Runtime CPU, OpenVINO CPU, torch CUDA ...).

    ``precisions`` are the float precisions it can compute in, fp32 first.
    """

    precisions: tuple[Precision, ...]
    version: str  # the runtime's own version: timings are cached per version
    gpus: int  # GPUs each of its tasks needs (Ray's num_gpus); 0 for a CPU runtime
    suffix: str  # its artifacts' file suffix (.onnx, .pt2)
    lowers_onnx: bool  # whether build rewrites base_onnx (else it exports the model itself)

    def missing(self) -> str | None:
        """Why this machine cannot run this backend (no GPU, a package absent), or None."""
        ...

    def machine(self) -> str:
        """What its timings depend on besides :attr:`version`: the CPU's model and flags, or
        the GPU's name and driver. Recorded with every timing and part of the cache key."""
        ...

    def input_quant(self, layer: LayerInfo, bits: int, group_size: int) -> InputQuant | None:
        """How this backend's kernel for ``bits``-bit weights quantises the layer's input at
        run time (None: it multiplies in float), so the PyTorch candidate can do the same."""
        ...

    def build(
        self,
        base_onnx: bytes,
        layers: tuple[LayerInfo, ...],
        compressed: Mapping[str, CompressedLayer],
        source: Workload,
    ) -> Artifact:
        """The deployable artifact: the fp32 model with each compressed layer in this
        backend's real form. ``base_onnx`` is the fp32 export of ``source`` (whose model is
        the pruned one when units were removed) if the backend :attr:`lowers_onnx`; others
        export ``source`` their own way and get the job's unpruned export, unread, so a pruned
        candidate is not exported to ONNX for nothing. Deterministic: the same inputs give the
        same bytes."""
        ...

    def layer_bytes(self, layer: LayerInfo, compressed: CompressedLayer) -> int:
        """The bytes ``layer`` takes in this backend's artifact in ``compressed``'s form (what
        :meth:`build` writes for it, bias included), without building the artifact."""
        ...

    def layer_model(
        self,
        layer: LayerInfo,
        compressed: CompressedLayer,
        node: onnx.NodeProto,
        input_shape: tuple[int, ...],
        opsets: Sequence[onnx.OperatorSetIdProto],
    ) -> bytes:
        """An artifact of ``layer`` alone in ``compressed``'s form (as :meth:`build` writes it),
        reading one input of ``input_shape``, so the layer can be timed apart. ``node`` is its
        node in the fp32 export, ``opsets`` the export's operator sets."""
        ...

    def float_layers(self, module: RuntimeModule, compressed: Mapping[str, CompressedLayer]) -> int:
        """How many compressed layers of ``compressed`` the loaded ``module`` runs without their
        kernel nevertheless (quantised matmuls / lookups decompressed to float at load time,
        sparse weights run dense), as far as the runtime tells; 0 if it cannot tell."""
        ...

    def load(
        self, data: bytes, threads: int, precision: Precision = Precision.FP32
    ) -> RuntimeModule:
        """An artifact of this backend, loaded to run on ``threads`` CPU threads (a CPU
        runtime) computing in ``precision`` (one of :attr:`precisions`); ValueError if this
        machine cannot."""
        ...


_BACKENDS: dict[str, Callable[[], Backend]] = {}
# Built-in backends, imported only when asked for: an ORT job never loads OpenVINO.
_BUILT_IN = {
    "ort-cpu": "bitprism.kernels.ort_cpu",
    "openvino-cpu": "bitprism.kernels.openvino_cpu",
    "torch-cuda": "bitprism.kernels.torch_cuda",
}


def register_backend(name: str) -> Callable[[Callable[[], Backend]], Callable[[], Backend]]:
    """Decorator registering a backend factory under ``name``."""

    def decorate(factory: Callable[[], Backend]) -> Callable[[], Backend]:
        _BACKENDS[name] = factory
        return factory

    return decorate


def get_backend(name: str) -> Backend:
    """The backend registered as ``name``; ValueError listing the known ones otherwise."""
    if name not in _BACKENDS and name in _BUILT_IN:
        importlib.import_module(_BUILT_IN[name])  # registers it
    if name not in _BACKENDS:
        known = ", ".join(sorted({*_BACKENDS, *_BUILT_IN}))
        raise ValueError(f"unknown backend {name!r}; known: {known}")
    return _BACKENDS[name]()
