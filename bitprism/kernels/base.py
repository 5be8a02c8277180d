"""The kernel-backend protocol and registry.

A backend declares which compressed forms it can really run for a layer (so the space offers
nothing else) and rewrites the fp32 ONNX graph of a layer into that form, so that what is
timed and exported is the real low-bit kernel, not fp32 with fake-quantised weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from bitprism.spaces.layer import LayerInfo

if TYPE_CHECKING:
    import onnx

    from bitprism.evaluators.compress import CompressedLayer, InputQuant


class KernelBackend(Protocol):
    """One target runtime (ONNX Runtime CPU, torch CUDA, Triton ...)."""

    name: str

    def weight_bits(self, layer: LayerInfo) -> tuple[int, ...]:
        """Weight widths this backend runs for ``layer`` (16 = fp32, always offered)."""
        ...

    def supports_low_rank(self, layer: LayerInfo) -> bool:
        """Whether the layer can be replaced by two factor matmuls."""
        ...

    def gains_from(self, knob: str) -> bool:
        """Whether the knob (a ``LayerChoice`` field) can save bytes or time on this backend.

        A knob that cannot (unstructured sparsity without a sparse kernel) only costs accuracy
        and trial budget, so it is searched only when the user asks (``extra_knobs``).
        """
        ...

    def input_quant(self, layer: LayerInfo, bits: int, group_size: int) -> InputQuant | None:
        """How this backend's kernel for ``bits``-bit weights quantises the layer's input at
        run time (None: it multiplies in float), so the PyTorch candidate can do the same."""
        ...

    def lower(self, model: onnx.ModelProto, layer: LayerInfo, compressed: CompressedLayer) -> None:
        """Rewrite ``layer``'s node(s) of ``model`` in place into the backend's compressed form."""
        ...


_BACKENDS: dict[str, Callable[[], KernelBackend]] = {}


def register_backend(
    name: str,
) -> Callable[[Callable[[], KernelBackend]], Callable[[], KernelBackend]]:
    """Decorator registering a backend factory under ``name``."""

    def decorate(factory: Callable[[], KernelBackend]) -> Callable[[], KernelBackend]:
        _BACKENDS[name] = factory
        return factory

    return decorate


def get_backend(name: str) -> KernelBackend:
    """The backend registered as ``name``; ValueError listing the known ones otherwise."""
    import bitprism.kernels.ort_cpu  # noqa: F401  (registers "ort-cpu")

    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(sorted(_BACKENDS))}")
    return _BACKENDS[name]()
