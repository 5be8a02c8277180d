"""ONNX graph edits: stripping exporter metadata keeps the model valid and its outputs exact."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper

from bitprism.kernels.onnx_graph import strip_metadata
from bitprism.kernels.ort_cpu import make_session
from bitprism.workloads.base import Workload, as_tuple


def _dynamo_export(workload: Workload) -> onnx.ModelProto:
    """The workload's model exactly as torch's dynamo exporter writes it, metadata included."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            workload.model.eval(), as_tuple(workload.example_inputs), dynamo=True, optimize=False
        )
    assert program is not None
    return program.model_proto


def _run(model_bytes: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(out) for out in make_session(model_bytes, threads=1).run(None, feeds)]


def _metadata_count(graph: onnx.GraphProto) -> int:
    infos = (*graph.input, *graph.output, *graph.value_info, *graph.initializer, *graph.node)
    return len(graph.metadata_props) + sum(len(info.metadata_props) for info in infos)


def test_strip_metadata_shrinks_the_digits_export_and_keeps_it_exact(digits: Workload) -> None:
    model = _dynamo_export(digits)
    before = model.SerializeToString()
    names = [node.name for node in model.graph.node]
    value_info = [(info.name, info.type) for info in model.graph.value_info]
    opsets, producer = list(model.opset_import), model.producer_name
    assert any(node.metadata_props for node in model.graph.node)

    strip_metadata(model)
    after = model.SerializeToString()

    assert len(after) < len(before)
    assert _metadata_count(model.graph) == 0 and not model.metadata_props
    assert not any(node.doc_string for node in model.graph.node)
    assert [node.name for node in model.graph.node] == names
    assert [(info.name, info.type) for info in model.graph.value_info] == value_info
    assert list(model.opset_import) == opsets and model.producer_name == producer
    onnx.checker.check_model(model, full_check=True)
    feeds = {model.graph.input[0].name: as_tuple(digits.example_inputs)[0].numpy()}
    for old, new in zip(_run(before, feeds), _run(after, feeds), strict=True):
        np.testing.assert_array_equal(new, old)


def test_export_base_output_carries_no_metadata(digits_onnx: bytes) -> None:
    model = onnx.load_model_from_string(digits_onnx)

    assert _metadata_count(model.graph) == 0
    assert not any(node.doc_string for node in model.graph.node)


def _if_model() -> onnx.ModelProto:
    """``y = relu(x) if flag else -x``, with doc strings and metadata at every level."""
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])
    branches = [
        helper.make_graph([helper.make_node(op, ["x"], ["y"], doc_string=op)], op, [], [out])
        for op in ("Relu", "Neg")
    ]
    node = helper.make_node(
        "If", ["flag"], ["y"], then_branch=branches[0], else_branch=branches[1], doc_string="if"
    )
    graph = helper.make_graph(
        [node],
        "main",
        [
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [3]),
        ],
        [out],
        doc_string="graph",
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], doc_string="m")
    if_node = model.graph.node[0]  # make_model copied the graph: edit the model's own nodes
    for proto in (model, if_node, *(attribute.g.node[0] for attribute in if_node.attribute)):
        helper.set_metadata_props(proto, {"pkg.torch.onnx.stack_trace": "File x.py, line 1"})
    return model


def test_strip_metadata_reaches_if_branches() -> None:
    model = _if_model()
    before = model.SerializeToString()
    branches = [attribute.g for attribute in model.graph.node[0].attribute]
    assert all(_metadata_count(g) == 1 for g in (model.graph, *branches))
    assert all(node.doc_string for g in branches for node in g.node)

    strip_metadata(model)

    assert not model.metadata_props and not model.doc_string and not model.graph.doc_string
    assert all(_metadata_count(g) == 0 for g in (model.graph, *branches))
    assert not any(node.doc_string for g in (model.graph, *branches) for node in g.node)
    onnx.checker.check_model(model, full_check=True)
    x = np.array([-1.0, 0.5, 2.0], dtype=np.float32)
    for flag in (True, False):
        feeds = {"flag": np.array(flag), "x": x}
        np.testing.assert_array_equal(
            _run(model.SerializeToString(), feeds)[0], _run(before, feeds)[0]
        )
