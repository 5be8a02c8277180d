"""Small in-place edits of an ONNX graph: find a layer's node, swap it for new nodes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper


@dataclass(frozen=True)
class LayerNode:
    """Where a layer sits in the exported graph.

    ``node`` consumes the weight (Gemm, MatMul, Conv, or Gather for an embedding, whose
    ``activation`` is the indices); ``activation`` and ``output`` are the
    tensor names the replacement must read and write; ``bias`` is the bias initializer a Gemm or
    Conv adds (None for MatMul, whose bias is a separate Add that stays); ``remove`` lists the
    nodes to drop (the layer node, and a Transpose of the weight when the exporter made one).
    """

    node: onnx.NodeProto
    activation: str
    output: str
    bias: str | None
    remove: tuple[onnx.NodeProto, ...]


def find_layer_node(graph: onnx.GraphProto, layer_name: str) -> LayerNode:
    """Locate the node that applies ``{layer_name}.weight``.

    Raises:
        ValueError: when the weight is missing, shared, or used by an unsupported pattern.
    """
    weight = f"{layer_name}.weight"
    if weight not in {init.name for init in graph.initializer}:
        raise ValueError(f"layer {layer_name!r}: no initializer {weight!r} in the exported graph")
    users = [n for n in graph.node if weight in n.input]
    if len(users) != 1:
        raise ValueError(f"layer {layer_name!r}: weight used by {len(users)} nodes, expected 1")
    node = users[0]
    if node.op_type == "Transpose":
        transpose = node
        users = [n for n in graph.node if transpose.output[0] in n.input]
        if len(users) != 1 or users[0].op_type != "MatMul":
            raise ValueError(f"layer {layer_name!r}: transposed weight not consumed by one MatMul")
        return LayerNode(
            users[0], users[0].input[0], users[0].output[0], None, (transpose, users[0])
        )
    if node.op_type == "Gemm":
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if (
            attrs.get("transA", 0)
            or attrs.get("alpha", 1.0) != 1.0
            or attrs.get("beta", 1.0) != 1.0
        ):
            raise ValueError(f"layer {layer_name!r}: Gemm with transA/alpha/beta is not supported")
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        return LayerNode(node, node.input[0], node.output[0], bias, (node,))
    if node.op_type == "Gather" and node.input[0] == weight:  # an embedding lookup
        axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
        if axis != 0:
            raise ValueError(f"layer {layer_name!r}: Gather on axis {axis}, expected rows (0)")
        return LayerNode(node, node.input[1], node.output[0], None, (node,))
    if node.op_type in ("MatMul", "Conv") and node.input[1] == weight:
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        return LayerNode(node, node.input[0], node.output[0], bias, (node,))
    raise ValueError(f"layer {layer_name!r}: weight consumed by unsupported {node.op_type}")


def replace_nodes(
    graph: onnx.GraphProto,
    remove: tuple[onnx.NodeProto, ...],
    new_nodes: list[onnx.NodeProto],
    new_initializers: list[onnx.TensorProto],
) -> None:
    """Swap ``remove`` for ``new_nodes`` at the same place and drop initializers left unused."""
    position = min(i for i, n in enumerate(graph.node) if any(n is r for r in remove))
    kept = [n for n in graph.node if not any(n is r for r in remove)]
    kept[position:position] = new_nodes
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(new_initializers)
    used = {name for n in graph.node for name in n.input}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)


def initializer(name: str, array: np.ndarray) -> onnx.TensorProto:
    """A TensorProto initializer from a numpy array (contiguous copy)."""
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


def ensure_opset(model: onnx.ModelProto, domain: str, version: int) -> None:
    """Import ``domain`` at ``version`` unless the model already does."""
    if all(op.domain != domain for op in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(domain, version))


def initializer_bytes(model: onnx.ModelProto) -> int:
    """Bytes of all initializers as stored (packed low-bit weights count as their packed bytes)."""
    return sum(numpy_helper.to_array(init).nbytes for init in model.graph.initializer)


def strip_metadata(model: onnx.ModelProto) -> None:
    """Remove, in place, what no runtime reads: doc strings and metadata properties.

    torch's dynamo exporter records a stack trace and module path per node in
    ``metadata_props``: about nine tenths of a small model's graph bytes besides its weights.
    Subgraphs (If/Loop/Scan bodies) and functions are stripped too; names, value_info shapes,
    opsets and the producer stay.

    Example:
        >>> strip_metadata(model)
        >>> any(node.metadata_props for node in model.graph.node)
        False
    """
    model.doc_string = ""
    del model.metadata_props[:]
    _strip_graph(model.graph)
    for function in model.functions:
        function.doc_string = ""
        del function.metadata_props[:]
        for node in function.node:
            _strip_node(node)


def _strip_graph(graph: onnx.GraphProto) -> None:
    """Strip a graph, its inputs, outputs, value_info, initializers and nodes."""
    graph.doc_string = ""
    del graph.metadata_props[:]
    for info in (*graph.input, *graph.output, *graph.value_info):
        info.doc_string = ""
        del info.metadata_props[:]
    for init in graph.initializer:
        init.doc_string = ""
        del init.metadata_props[:]
    for node in graph.node:
        _strip_node(node)


def _strip_node(node: onnx.NodeProto) -> None:
    """Strip a node and the subgraphs held in its attributes (If/Loop/Scan bodies)."""
    node.doc_string = ""
    del node.metadata_props[:]
    for attribute in node.attribute:
        if attribute.HasField("g"):
            _strip_graph(attribute.g)
        for subgraph in attribute.graphs:
            _strip_graph(subgraph)
