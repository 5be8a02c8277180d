"""What a target backend offers per layer: the only thing the space asks of a backend.

A protocol here (not in ``kernels``) keeps the arrows pointing down: the space is pure data
and imports no runtime; every backend in ``kernels`` satisfies it.
"""

from __future__ import annotations

from typing import Protocol

from bitprism.spaces.layer import LayerInfo


class Offers(Protocol):
    """The compressed forms a backend really runs, per layer."""

    name: str

    def weight_bits(self, layer: LayerInfo) -> tuple[int, ...]:
        """Weight widths this backend runs for ``layer`` (16 = fp32, always offered)."""
        ...

    def supports_low_rank(self, layer: LayerInfo) -> bool:
        """Whether the layer can be replaced by two factor matmuls."""
        ...

    def sparse_pattern(self, layer: LayerInfo) -> tuple[int, int] | None:
        """(N, M) when this backend's sparse kernel runs ``layer`` with at most N non-zeros in
        every M weights along the input (2:4 on NVIDIA GPUs): sparsity is then that pattern,
        offered at 1 - N/M. None: no pattern for this layer (see ``knobs.Sparsity``)."""
        ...

    def gains_from(self, knob: str) -> bool:
        """Whether the knob (a ``LayerChoice`` field) can save bytes or time on this backend.

        A knob that cannot (unstructured sparsity without a sparse kernel) only costs accuracy
        and trial budget, so it is searched only when the user asks (``extra_knobs``).
        """
        ...
