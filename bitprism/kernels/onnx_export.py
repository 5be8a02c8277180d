"""Candidate -> ONNX: export the fp32 model once, then lower each compressed layer into it.

ONNX is the interchange every CPU backend builds on: each lowers layers its own way.
"""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Callable, Mapping

import onnx
import torch

from bitprism.compression.apply import CompressedLayer
from bitprism.kernels.base import Artifact
from bitprism.kernels.onnx_graph import find_layer_node, initializer_bytes, strip_metadata
from bitprism.spaces.layer import LayerInfo
from bitprism.workloads.base import Workload, as_tuple


def export_base(workload: Workload) -> bytes:
    """The fp32 model as ONNX bytes, batch dimension dynamic, weights embedded.

    Exported once per job: every candidate is derived from this graph by :func:`lower_candidate`,
    which is much cheaper than exporting each candidate. The exporter's own optimiser is off: it
    folds ``Transpose(weight)`` into anonymous initializers, losing the layer names the lowering
    needs; onnxruntime folds the same constants when it loads the file.
    """
    inputs, dynamic = export_inputs(workload)
    # The exporter logs a warning per torchvision op when torchvision is absent: not our concern.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            workload.model.eval(),
            inputs,
            dynamo=True,
            dynamic_shapes=dynamic,
            output_names=list(workload.output_names) if workload.output_names else None,
            external_data=False,
            verbose=False,
            optimize=False,
        )
    if program is None:
        raise RuntimeError(f"workload {workload.name!r}: torch.onnx.export returned nothing")
    proto = program.model_proto
    strip_metadata(proto)  # per-node stack traces: ~90% of the graph's bytes, read by no runtime
    buffer = io.BytesIO()
    onnx.save_model(proto, buffer)
    return buffer.getvalue()


def export_inputs(workload: Workload) -> tuple[tuple[torch.Tensor, ...], tuple[dict, ...]]:
    """The example inputs to trace ``workload``'s model on, and their dynamic dimensions."""
    # A dynamic dimension of size 1 would be specialised away; export it with size 2.
    axes = workload.axes()
    inputs = tuple(
        _widen(t, dims) for t, dims in zip(as_tuple(workload.example_inputs), axes, strict=True)
    )
    return inputs, tuple({d: torch.export.Dim.AUTO for d in dims} for dims in axes)


def _widen(tensor: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """``tensor`` with every dimension in ``dims`` of size 1 repeated to size 2."""
    for d in dims:
        if tensor.shape[d] == 1:
            tensor = torch.cat([tensor, tensor], dim=d)
    return tensor


def lowerable_layers(
    base_onnx: bytes, layers: tuple[LayerInfo, ...]
) -> tuple[tuple[LayerInfo, ...], dict[str, str]]:
    """The layers whose node the lowering can find in the export, and why the others cannot be.

    E.g. a weight shared by two modules, or fused by the exporter into another pattern.
    """
    graph = onnx.load_model_from_string(base_onnx).graph
    kept, skipped = [], {}
    for layer in layers:
        try:
            find_layer_node(graph, layer.name)
        except ValueError as exc:
            skipped[layer.name] = str(exc)
        else:
            kept.append(layer)
    return tuple(kept), skipped


# Rewrites one layer's node(s) of the model in place into a backend's form.
LowerLayer = Callable[[onnx.ModelProto, LayerInfo, CompressedLayer], None]


def lower_candidate(
    base_onnx: bytes,
    layers: tuple[LayerInfo, ...],
    compressed: Mapping[str, CompressedLayer],
    lower: LowerLayer,
) -> Artifact:
    """The base graph with every compressed layer rewritten by ``lower``, as an artifact."""
    model = onnx.load_model_from_string(base_onnx)
    for layer in layers:
        if layer.name in compressed:
            lower(model, layer, compressed[layer.name])
    return Artifact(model.SerializeToString(), initializer_bytes(model))
